"""RFC 9457 problem details: every error the JSON API returns, one handler per exception family.

Clients branch on the stable ``type``; people read ``title`` and ``detail``. Validation problems
carry an ``errors`` list naming each field or line that was wrong. No traceback and no HTML error
page ever leaves the JSON API.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response, json, request
from werkzeug.exceptions import HTTPException

from api import request_ids
from api.auth import KeysUnreadable
from api.eventlog import EventLogError
from fatigue.errors import (
    ConfigurationError,
    ConflictError,
    NotFoundError,
    Problem,
    RapportError,
    StoreError,
    ValidationError,
)

PROBLEM_MEDIA_TYPE = "application/problem+json"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProblemType:
    """A documented kind of failure: its slug (part of the stable ``type`` URI) and title."""

    slug: str
    title: str
    status: int
    description: str

    @property
    def uri(self) -> str:
        """Return the stable ``type`` URI, which also serves this type's description."""
        return f"/problems/{self.slug}"


PROBLEM_TYPES: dict[str, ProblemType] = {
    problem.slug: problem
    for problem in (
        ProblemType(
            "malformed-request",
            "Malformed request",
            400,
            "The body is not valid JSON (or NDJSON); `errors` gives the line.",
        ),
        ProblemType(
            "unauthorized",
            "Missing or unknown API key",
            401,
            "Send `Authorization: Bearer <key>` with a key made by `rapport keys create`.",
        ),
        ProblemType(
            "forbidden",
            "Role not allowed",
            403,
            "The key is valid but lacks every role this endpoint accepts.",
        ),
        ProblemType(
            "not-found",
            "Not found",
            404,
            "The named template, version, campaign, user or route does not exist.",
        ),
        ProblemType(
            "method-not-allowed",
            "Method not allowed",
            405,
            "The route exists but not with this HTTP method.",
        ),
        ProblemType(
            "conflict",
            "Conflict",
            409,
            "Someone saved a newer version since the one named in `base`; `detail` names it.",
        ),
        ProblemType(
            "too-large",
            "Request too large",
            413,
            "The body or batch exceeds the configured limit named in `detail`.",
        ),
        ProblemType(
            "unsupported-media-type",
            "Unsupported media type",
            415,
            "The body's `Content-Type` is not the one this endpoint reads (named in `detail`).",
        ),
        ProblemType(
            "validation",
            "Invalid input",
            422,
            "The request is well-formed but wrong; `errors` names every field or line.",
        ),
        ProblemType("http-error", "HTTP error", 400, "A protocol-level error; see `detail`."),
        ProblemType(
            "unavailable",
            "Service unavailable",
            503,
            "The state store or model is unreachable; retry after `Retry-After` seconds.",
        ),
        ProblemType(
            "configuration",
            "Server misconfigured",
            500,
            "The server's own configuration is wrong; its operators must fix it.",
        ),
        ProblemType(
            "internal",
            "Internal error",
            500,
            "An unexpected failure; it was logged. No detail is exposed.",
        ),
    )
}


class ApiProblem(Exception):
    """Raised by views to answer with a problem document of a given type."""

    def __init__(
        self, slug: str, detail: str, *, status: int | None = None, **extensions: Any
    ) -> None:
        super().__init__(detail)
        self.kind = PROBLEM_TYPES[slug]
        self.status = status or self.kind.status
        self.detail = detail
        self.extensions = extensions


def problem_response(
    slug: str, detail: str, status: int | None = None, **extensions: Any
) -> Response:
    """Build an ``application/problem+json`` response."""
    kind = PROBLEM_TYPES[slug]
    code = status or kind.status
    body = {"type": kind.uri, "title": kind.title, "status": code, "detail": detail}
    body.update(extensions)
    request_id = request_ids.current()
    if request_id is not None:  # what to quote to the operators: their log lines carry it too
        body["request_id"] = request_id
    response = Response(json.dumps(body), status=code, mimetype=PROBLEM_MEDIA_TYPE)
    if code == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="rapport"'
    if code == 503:
        response.headers["Retry-After"] = "5"
    return response


def problem_errors(problems: list[Problem]) -> list[dict[str, Any]]:
    """Serialise problems as the ``errors`` list: message, line, field, source."""
    return [
        {"message": p.message, "line": p.line, "field": p.field, "source": p.source}
        for p in problems
    ]


def describe(problem: Problem) -> str:
    """Say what is wrong and where in one line: ``source:line field: message``."""
    where = ":".join(str(part) for part in (problem.source, problem.line) if part is not None)
    place = " ".join(part for part in (where, problem.field or "") if part)
    return f"{place}: {problem.message}" if place else problem.message


def too_large_detail() -> str:
    """Name the body limit that applies to this request (the batch endpoint has its own)."""
    limit = request.max_content_length
    return f"the request body is over the limit of {limit:,} bytes" if limit else "too large"


def _http_slug(code: int) -> str:
    return {
        400: "malformed-request",
        404: "not-found",
        405: "method-not-allowed",
        413: "too-large",
        415: "unsupported-media-type",
    }.get(code, "http-error")


def register_error_handlers(app: Flask) -> None:
    """Answer every failure with problem+json, one handler per exception family."""
    _register_rapport_errors(app)
    _register_protocol_errors(app)


class FailureLines:
    """Log a failure's first line, then at most one a minute saying how many came meanwhile.

    During an outage every refused request logged its own ERROR line (20 requests, 20 lines);
    the first says what failed, the later ones that it goes on and how often.
    """

    def __init__(self, every: float = 60.0, monotonic: Callable[[], float] = time.monotonic):
        self._every = every
        self._monotonic = monotonic
        self._last: dict[str, float] = {}
        self._quiet: dict[str, int] = {}
        self._lock = threading.Lock()

    def error(self, what: str, exc: Exception) -> None:
        """Log ``what`` failed with ``exc``, unless a line about it went out in the last minute."""
        now = self._monotonic()
        with self._lock:
            last = self._last.get(what)
            if last is not None and now - last < self._every:
                self._quiet[what] = self._quiet.get(what, 0) + 1
                return
            self._last[what] = now
            quiet = self._quiet.pop(what, 0)
        since = f" ({quiet} more since the last line)" if quiet else ""
        log.error("%s failure: %s%s", what, exc, since)


def _register_rapport_errors(app: Flask) -> None:
    """Handlers for the project's own error hierarchy and ``ApiProblem``."""
    failures = FailureLines()  # one per app: tests build many, each must log its own

    @app.errorhandler(ApiProblem)
    def _api_problem(exc: ApiProblem) -> Response:
        return problem_response(exc.kind.slug, exc.detail, exc.status, **exc.extensions)

    @app.errorhandler(ValidationError)
    def _validation(exc: ValidationError) -> Response:
        detail = "; ".join(describe(problem) for problem in exc.problems) or str(exc)
        return problem_response("validation", detail, errors=problem_errors(exc.problems))

    @app.errorhandler(NotFoundError)
    def _not_found(exc: NotFoundError) -> Response:
        return problem_response("not-found", str(exc))

    @app.errorhandler(ConflictError)
    def _conflict(exc: ConflictError) -> Response:
        return problem_response("conflict", str(exc))

    @app.errorhandler(StoreError)
    def _store(exc: StoreError) -> Response:
        what = "event log" if isinstance(exc, EventLogError) else "state store"
        # One line, and one a minute at most: a traceback per request buried the log during an
        # outage (70 lines each). The hosts and paths in ``exc`` are for the operators only.
        failures.error(what, exc)
        return problem_response("unavailable", f"the {what} is unavailable; retry shortly")

    @app.errorhandler(KeysUnreadable)
    def _keys_unreadable(exc: KeysUnreadable) -> Response:
        # No line per request: ``KeyRing`` logged the file's fault once; /readyz names it.
        detail = "the API keys file cannot be read; its operators will find why in the server log"
        return problem_response("unavailable", detail)

    @app.errorhandler(ConfigurationError)
    def _configuration(exc: ConfigurationError) -> Response:
        # The detail names files and hosts: for the operators' log, not for any caller.
        log.error("configuration error: %s", exc)
        detail = "the server's configuration is broken; its operators will find why in its log"
        return problem_response("configuration", detail)

    @app.errorhandler(RapportError)
    def _rapport(exc: RapportError) -> Response:
        return problem_response("http-error", str(exc), status=400)


def _register_protocol_errors(app: Flask) -> None:
    """Handlers for werkzeug's HTTP errors and, last, anything unexpected."""

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response:
        code = exc.code or 500
        detail = exc.description or exc.name
        if code == 413:
            detail = too_large_detail()
        response = problem_response(_http_slug(code), detail, status=code)
        if code == 405 and exc.response is None:
            allowed = getattr(exc, "valid_methods", None)
            if allowed:
                response.headers["Allow"] = ", ".join(allowed)
        return response

    @app.errorhandler(Exception)
    def _internal(exc: Exception) -> Response:
        # The route, not the path: a path may hold a customer's link token.
        route = request.url_rule.rule if request.url_rule else "an unmatched path"
        log.exception("unhandled error answering %s %s", request.method, route)
        return problem_response("internal", "internal error; it has been logged")
