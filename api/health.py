"""Liveness, readiness and metrics: what orchestrators and Prometheus poll."""

from __future__ import annotations

from flask import Blueprint, Response

from api.metrics import exposition
from api.routing import operation
from api.schemas.common import Status
from api.services import services

bp = Blueprint("health", __name__)


@operation(bp, "/healthz", "GET", summary="The process is up.", roles=(), response=Status)
def healthz() -> Status:
    """Answer 200 whenever the process can serve a request."""
    return Status(status="ok")


@operation(
    bp,
    "/readyz",
    "GET",
    roles=(),
    response=Status,
    summary="The model is loaded and the state store reachable (503 with the failing check).",
    extra_responses={503: "A dependency is not ready; `checks` says which and why"},
)
def readyz() -> Status | Response:
    """Answer 200 when every component loads and answers, else 503 naming the failures."""
    checks = services().status()
    ready = all(value == "ok" for value in checks.values())
    answer = Status(status="ready" if ready else "not ready", checks=checks)
    if ready:
        return answer
    return Response(answer.model_dump_json(), status=503, mimetype="application/json")


@operation(
    bp,
    "/metrics",
    "GET",
    roles=(),
    response_media="text/plain",
    summary="Prometheus metrics: latency, decisions, renders, store errors.",
)
def metrics() -> Response:
    """Expose the Prometheus metrics of every worker."""
    return exposition()
