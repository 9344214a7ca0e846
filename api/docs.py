"""The OpenAPI document, a readable docs page generated from it, and the problem type pages."""

from __future__ import annotations

import json
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from flask import Blueprint, Response, current_app, render_template

from api.openapi import build_spec
from api.problems import PROBLEM_TYPES, ApiProblem

bp = Blueprint("docs", __name__, template_folder="pages")


def _version() -> str:
    try:
        return version("rapport")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0.0.0"


def spec() -> dict[str, Any]:
    """Return the app's OpenAPI document, built once per app."""
    cached: dict[str, Any] | None = current_app.extensions.get("rapport.openapi")
    if cached is None:
        cached = build_spec(current_app, _version())
        current_app.extensions["rapport.openapi"] = cached
    return cached


@bp.get("/openapi.json")
def openapi_json() -> Response:
    """Serve the OpenAPI 3.1 document."""
    return Response(json.dumps(spec(), indent=1), mimetype="application/json")


@bp.get("/docs")
def docs_page() -> str:
    """Serve the API reference as one HTML page, generated from the OpenAPI document."""
    document = spec()
    return render_template(
        "docs.html",
        spec=document,
        schemas=document["components"]["schemas"],
        problems=PROBLEM_TYPES.values(),
        dumps=lambda value: json.dumps(value, indent=2),
    )


@bp.get("/problems/<slug>")
def problem_page(slug: str) -> str:
    """Describe one problem ``type`` (its URI is where clients can read what it means)."""
    kind = PROBLEM_TYPES.get(slug)
    if kind is None:
        raise ApiProblem("not-found", f"no problem type {slug!r}")
    return render_template("problem.html", kind=kind)
