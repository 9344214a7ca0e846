"""Declaring an endpoint once: its roles, request and response schemas, and its view.

``operation`` registers the view on a blueprint and wraps it with authentication, role checks,
body and query parsing through the pydantic models, and serialisation of the answer. The same
declaration feeds the OpenAPI document, so the spec cannot drift from what the code accepts.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pydantic
from flask import Blueprint, Response, current_app, g, request

from api.auth import ApiKey, KeyRing, Role
from api.problems import ApiProblem, problem_errors, too_large_detail
from fatigue.errors import Problem, ValidationError

JSON = "application/json"
NDJSON = "application/x-ndjson"
HTML = "text/html"
FORM = "application/x-www-form-urlencoded"
UTF8_BOM = b"\xef\xbb\xbf"
ModelT = TypeVar("ModelT", bound=pydantic.BaseModel)
View = Callable[..., Any]
_JSON_LINE = re.compile(r"at line (\d+)")
_ONE_LINE = re.compile(r"at line 1 column (\d+)")


@dataclass(frozen=True)
class Operation:
    """What the OpenAPI document says about one endpoint."""

    summary: str
    roles: tuple[Role, ...]
    tag: str
    body: type[pydantic.BaseModel] | None = None
    response: type[pydantic.BaseModel] | None = None
    status: int = 200
    query: type[pydantic.BaseModel] | None = None
    request_media: str = JSON
    response_media: str = JSON
    extra_responses: dict[int, str] = field(default_factory=dict)
    parse_body: bool = True
    #: Path parameter -> Flask converter (``int``, ``default``); filled in from the URL rule.
    path_types: dict[str, str] | None = None


def operation(
    bp: Blueprint,
    rule: str,
    method: str,
    *,
    summary: str,
    roles: Sequence[Role],
    body: type[pydantic.BaseModel] | None = None,
    response: type[pydantic.BaseModel] | None = None,
    status: int = 200,
    query: type[pydantic.BaseModel] | None = None,
    request_media: str = JSON,
    response_media: str = JSON,
    extra_responses: dict[int, str] | None = None,
    parse_body: bool = True,
) -> Callable[[View], View]:
    """Register ``view`` at ``rule`` behind auth and schema parsing; see the module docstring."""
    spec = Operation(
        summary, tuple(roles), bp.name, body, response, status, query, request_media,
        response_media, dict(extra_responses or {}), parse_body,
    )  # fmt: skip

    def decorator(view: View) -> View:
        wrapper = _wrapped(view, spec)
        bp.add_url_rule(rule, view.__name__, wrapper, methods=[method])
        return wrapper

    return decorator


def _wrapped(view: View, spec: Operation) -> View:
    """Wrap ``view``: check the key, parse body and query, serialise a model answer."""

    @functools.wraps(view)
    def wrapper(**kwargs: Any) -> Any:
        if spec.roles:
            authorize(spec.roles)
        if spec.body is not None:
            _check_media(spec.request_media)
        if spec.body is not None and spec.parse_body and spec.request_media == JSON:
            kwargs["body"] = parse_json_body(spec.body)
        if spec.query is not None:
            kwargs["query"] = parse_model(spec.query, request.args.to_dict(), "query")
        result = view(**kwargs)
        if isinstance(result, pydantic.BaseModel):
            return Response(result.model_dump_json(), status=spec.status, mimetype=JSON)
        return result

    wrapper.rapport_operation = spec  # type: ignore[attr-defined]
    return wrapper


# Besides the endpoint's own type: what clients commonly send for the same bytes.
_SAME_MEDIA = {
    JSON: {JSON},
    NDJSON: {NDJSON, "application/jsonl", "application/json"},
    FORM: {FORM, "multipart/form-data"},  # what a browser's form may post either way
}


def _check_media(expected: str) -> None:
    """Refuse a body declared as something else (a form, text): 415 naming what to send.

    A body without ``Content-Type`` is read as ``expected``; ``curl -d`` without ``-H`` says
    it is a form, which is almost always a mistake worth naming.
    """
    given = request.mimetype
    if given and given not in _SAME_MEDIA.get(expected, {expected}) and not given.endswith("+json"):
        raise ApiProblem(
            "unsupported-media-type",
            f"the body is declared as {given!r}; send it as Content-Type: {expected}",
        )


# What an authentication scheme's name looks like; never an API key (whose prefix has "_").
_SCHEME_NAME = re.compile(r"[A-Za-z][A-Za-z0-9-]{0,19}")


def _wrong_scheme(scheme: str) -> str:
    """Say what is wrong with a non-Bearer header without repeating a key sent in it."""
    if not _SCHEME_NAME.fullmatch(scheme):  # "Authorization: <key>"
        return "the Authorization header has no scheme; send 'Bearer <key>'"
    return f"the Authorization header uses the {scheme!r} scheme; send 'Bearer <key>'"


def authorize(accepted: Sequence[Role]) -> ApiKey:
    """Check the bearer key: 401 without a valid one, 403 without an accepted role."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.strip().replace("\t", " ").partition(" ")
    if not header.strip():
        raise ApiProblem("unauthorized", "missing 'Authorization: Bearer <key>' header")
    if scheme.lower() != "bearer":
        raise ApiProblem("unauthorized", _wrong_scheme(scheme))
    if not token.strip():
        raise ApiProblem("unauthorized", "the Authorization header has no key after 'Bearer'")
    keyring: KeyRing = current_app.extensions["rapport"].keyring
    key = keyring.authenticate(token.strip())
    if key is None:
        raise ApiProblem("unauthorized", "unknown API key")
    if not key.allows(accepted):
        wanted = ", ".join(role.value for role in accepted)
        raise ApiProblem("forbidden", f"key {key.name!r} lacks a role this needs ({wanted})")
    g.api_key = key
    return key


def parse_json_body(model: type[ModelT]) -> ModelT:
    """Validate the request body against ``model``: 400 if not JSON, 422 if wrong."""
    raw = request.get_data(cache=True)
    limit = request.max_content_length
    if request.content_length is None and limit is not None and len(raw) >= limit:
        # A chunked body (no Content-Length) is cut at the limit, not refused: a body that
        # reached it is over it (or exactly at it, which is refused too).
        raise ApiProblem("too-large", too_large_detail())
    raw = raw.removeprefix(UTF8_BOM)  # RFC 8259 lets a parser skip it
    if not raw.strip():
        raise ApiProblem("malformed-request", "the request body is empty; a JSON object is needed")
    try:
        return model.model_validate_json(raw, strict=True)  # "4" is not 4, as the spec says
    except pydantic.ValidationError as exc:
        raise_from_pydantic(exc, "body")
        raise  # unreachable: raise_from_pydantic always raises


def parse_model(model: type[ModelT], data: Any, where: str, line: int | None = None) -> ModelT:
    """Validate already-decoded ``data`` against ``model``, raising a 422 naming each field."""
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        raise ValidationError(pydantic_problems(exc, where, line)) from exc


def raise_from_pydantic(exc: pydantic.ValidationError, where: str) -> None:
    """Turn pydantic's errors into a 400 (not JSON at all) or a 422 (wrong fields)."""
    problems = pydantic_problems(exc, where)
    if any(error["type"] == "json_invalid" for error in exc.errors()):
        raise ApiProblem(
            "malformed-request", "the body is not valid JSON", errors=problem_errors(problems)
        ) from exc
    raise ValidationError(problems) from exc


def pydantic_problems(
    exc: pydantic.ValidationError, where: str, line: int | None = None
) -> list[Problem]:
    """List one ``Problem`` per pydantic error, with a dotted field path."""
    problems = []
    for error in exc.errors(include_url=False):
        path = ".".join(str(part) for part in error["loc"])
        at, message = line, error["msg"]
        if error["type"] == "json_invalid":
            if at is None:
                found = _JSON_LINE.search(message)
                at = int(found.group(1)) if found else None
            else:  # one NDJSON line: pydantic's "at line 1" would contradict the line named
                message = _ONE_LINE.sub(r"at column \1", message)
        problems.append(Problem(message, source=where, line=at, field=path or None))
    return problems
