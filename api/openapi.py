"""The OpenAPI 3.1 document, generated from the declared operations and their pydantic models."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import pydantic
from flask import Flask
from pydantic.json_schema import models_json_schema

from api.routing import HTML, JSON, NDJSON, Operation
from api.schemas.common import ProblemDocument

REF_TEMPLATE = "#/components/schemas/{model}"
_PATH_ARGUMENT = re.compile(r"<(?:([a-z]+):)?([A-Za-z_][A-Za-z0-9_]*)>")
# What each Flask path converter accepts, as a schema (the default one: any text but "/").
_CONVERTER_SCHEMAS: dict[str, dict[str, Any]] = {
    "int": {"type": "integer", "minimum": 0},
    "default": {"type": "string", "minLength": 1, "pattern": r"^[^/]+$"},
    "path": {"type": "string", "minLength": 1},
}
_STATUS_TEXT = {
    200: "OK",
    201: "Created",
    202: "Accepted",
    302: "Redirect (Location names where)",
    400: "Malformed request",
    401: "Missing or unknown API key",
    403: "Role not allowed",
    404: "Not found",
    413: "Too large",
    422: "Invalid input",
    503: "Store or model unavailable",
}
API_TITLE = "Rapport"
API_DESCRIPTION = (
    "Decide whether a marketing email is worth sending, what it should contain and when; "
    "then render it. Authenticate with `Authorization: Bearer <key>`; each operation lists "
    "the roles it accepts (`admin` is accepted everywhere). Errors are RFC 9457 "
    "`application/problem+json` documents."
)


def operations(app: Flask) -> list[tuple[str, str, Operation]]:
    """List ``(openapi_path, method, operation)`` for every declared endpoint, in path order."""
    found = []
    for rule in app.url_map.iter_rules():
        spec = getattr(app.view_functions[rule.endpoint], "rapport_operation", None)
        if spec is None:
            continue
        path = _PATH_ARGUMENT.sub(r"{\2}", rule.rule)
        converters = {name: kind or "default" for kind, name in _PATH_ARGUMENT.findall(rule.rule)}
        spec = replace(spec, path_types=converters)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            found.append((path, method.lower(), spec))
    return sorted(found, key=lambda item: (item[0], item[1]))


def build_spec(app: Flask, version: str) -> dict[str, Any]:
    """Build the OpenAPI document for ``app``."""
    declared = operations(app)
    schemas, refs = _component_schemas(declared)
    paths: dict[str, dict[str, Any]] = {}
    for path, method, spec in declared:
        paths.setdefault(path, {})[method] = _operation(path, method, spec, refs)
    return {
        "openapi": "3.1.0",
        "info": {"title": API_TITLE, "version": version, "description": API_DESCRIPTION},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}},
        },
    }


def _component_schemas(
    declared: list[tuple[str, str, Operation]],
) -> tuple[dict[str, Any], dict[tuple[type[pydantic.BaseModel], str], Any]]:
    """Generate one shared set of component schemas for every model the operations use."""
    wanted: dict[tuple[type[pydantic.BaseModel], str], None] = {
        (ProblemDocument, "serialization"): None
    }
    for _, _, spec in declared:
        for model, mode in (
            (spec.body, "validation"),
            (spec.query, "validation"),
            (spec.response, "serialization"),
        ):
            if model is not None:
                wanted[(model, mode)] = None
    keys = list(wanted)
    refs, top = models_json_schema(keys, ref_template=REF_TEMPLATE)  # type: ignore[arg-type]
    return dict(top.get("$defs", {})), dict(refs)  # type: ignore[arg-type]


def _operation(path: str, method: str, spec: Operation, refs: dict[Any, Any]) -> dict[str, Any]:
    """Describe one operation: parameters, body, responses and security."""
    roles = ", ".join(role.value for role in spec.roles) or "none (public)"
    document: dict[str, Any] = {
        "operationId": f"{method}_{re.sub(r'[^A-Za-z0-9]+', '_', path).strip('_')}",
        "summary": spec.summary,
        "description": f"Roles: {roles}.",
        "tags": [spec.tag],
        "x-roles": [role.value for role in spec.roles],
        "security": [{"apiKey": []}] if spec.roles else [],
        "parameters": _parameters(path, spec, refs),
        "responses": _responses(spec, refs),
    }
    if spec.body is not None:
        schema = refs[(spec.body, "validation")]
        if spec.request_media == NDJSON:
            schema = _stream_of(schema, spec.body.__name__)
        document["requestBody"] = {
            "required": True,
            "content": {spec.request_media: {"schema": schema}},
        }
    return document


def _parameters(path: str, spec: Operation, refs: dict[Any, Any]) -> list[dict[str, Any]]:
    """Path parameters from the rule, query parameters from the query model."""
    types = spec.path_types or {}
    parameters: list[dict[str, Any]] = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": _CONVERTER_SCHEMAS.get(
                types.get(name, "default"), _CONVERTER_SCHEMAS["default"]
            ),
        }
        for name in re.findall(r"{(\w+)}", path)
    ]
    if spec.query is not None:
        schema = spec.query.model_json_schema(ref_template=REF_TEMPLATE)
        required = set(schema.get("required", []))
        for name, prop in schema.get("properties", {}).items():
            parameters.append(
                {"name": name, "in": "query", "required": name in required, "schema": prop}
            )
    return parameters


def _responses(spec: Operation, refs: dict[Any, Any]) -> dict[str, Any]:
    """Describe the success response and the problem+json answers any operation may give."""
    success: dict[str, Any] = {"description": _STATUS_TEXT.get(spec.status, "OK")}
    if spec.response is not None:
        schema = refs[(spec.response, "serialization")]
        if spec.response_media != JSON:
            schema = _stream_of(schema, spec.response.__name__)
        success["content"] = {spec.response_media: {"schema": schema}}
    elif spec.response_media != JSON:
        success["content"] = {spec.response_media: {"schema": {"type": "string"}}}
    problem = {"application/problem+json": {"schema": refs[(ProblemDocument, "serialization")]}}
    responses: dict[str, Any] = {str(spec.status): success}
    for status, description in spec.extra_responses.items():
        responses[str(status)] = {"description": description}
        if spec.response_media == HTML:  # a page's failures are pages too, for people
            responses[str(status)]["content"] = {HTML: {"schema": {"type": "string"}}}
    responses["default"] = {"description": "A problem (RFC 9457)", "content": problem}
    return responses


def _stream_of(item: dict[str, Any], name: str) -> dict[str, Any]:
    """Describe an NDJSON stream: OpenAPI 3.1 cannot type lines, so by convention an array."""
    return {"type": "array", "items": item, "description": f"One {name} per line (NDJSON)."}
