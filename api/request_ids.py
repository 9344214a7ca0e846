"""Request ids: one per request, tying a client's answer to the server's log lines.

A 500 said only "it has been logged", and nothing in the log said which line was that request.
Now a client's own ``X-Request-Id`` (a proxy's or a platform's trace id) is kept when it is a
short plain token, and any other request gets a fresh one. Every answer carries it back in
``X-Request-Id``, every problem document names it in ``request_id``, the access log ends with it
and Rapport's own log lines written while handling the request carry it (``req=<id>``).
"""

from __future__ import annotations

import logging
import re
import secrets

from flask import Flask, Response, g, has_request_context, request

HEADER = "X-Request-Id"
# What a client may choose: anything else (spaces, quotes, control characters, a megabyte) would
# reach the log and the response headers, so it is replaced, not trusted.
_CLIENT_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
NO_REQUEST = "-"


def current() -> str | None:
    """Return the id of the request being handled in this context, if any."""
    return g.get("request_id") if has_request_context() else None


def _chosen(offered: str | None) -> str:
    if offered and _CLIENT_ID.fullmatch(offered):
        return offered
    return secrets.token_hex(8)


def install(app: Flask) -> None:
    """Give every request an id and send it back with every answer."""

    @app.before_request
    def _assign() -> None:
        g.request_id = _chosen(request.headers.get(HEADER))

    @app.after_request
    def _echo(response: Response) -> Response:
        # _assign is the app's first hook; only a failure before any hook ran skips it, and
        # that answer must carry an id too.
        if "request_id" not in g:
            _assign()
        response.headers[HEADER] = g.request_id
        return response


class RequestIdFilter(logging.Filter):
    """Add ``request_id`` to every log record: the current request's, or ``-`` outside one."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Annotate ``record`` (never drops it)."""
        record.request_id = current() or NO_REQUEST
        return True
