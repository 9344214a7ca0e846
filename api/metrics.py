"""Prometheus metrics: request latency, decisions by action and reason, renders, store errors.

Metrics are process-wide (prometheus-client's default registry), so several apps in one test
process share them. Under gunicorn every worker writes to ``PROMETHEUS_MULTIPROC_DIR`` (set by
``rapport serve``) and ``/metrics`` aggregates all workers.
"""

from __future__ import annotations

import os
import time
from enum import StrEnum

from flask import Flask, Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

REQUEST_LATENCY = Histogram(
    "rapport_http_request_duration_seconds",
    "Time to answer an HTTP request, by route and status.",
    ["method", "route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
)
DECISIONS = Counter(
    "rapport_decisions_total",
    "Governor decisions, by action and the rule that decided.",
    ["action", "reason"],
)
RENDERS = Counter(
    "rapport_renders_total", "Emails rendered, by template and outcome.", ["template", "outcome"]
)


class StorePart(StrEnum):
    """What failed, as ``rapport_store_errors_total`` labels it (``part``)."""

    #: The fatigue state store (a decision taken by ``on_store_error``, an event not applied).
    STATE_STORE = "state_store"
    #: The event logs (``events-*`` and ``interactions-*``).
    EVENT_LOG = "event_log"
    #: The decision log kept beside the state (``/v1/users/{id}/fatigue``).
    DECISION_LOG = "decision_log"
    #: The file keeping link events the state store missed (``pending.jsonl``).
    PENDING_FILE = "pending_file"


# Count with STORE_ERRORS.labels(StorePart.X).inc(): one series per part, so an alert can tell
# a full disk (event_log) from a Redis outage (state_store).
STORE_ERRORS = Counter(
    "rapport_store_errors_total",
    "State store, event log, decision log or pending file failures, by part.",
    ["part"],
)
EVENTS = Counter("rapport_events_total", "Engagement events received, by outcome.", ["outcome"])
EVENTS_REJECTED = Counter(
    "rapport_events_rejected_total",
    "Events refused, by why: invalid (against the schema), out_of_time (before 2000 or over a "
    "day ahead of this server's clock), not_their_decision (send_failed naming another "
    "customer's decision), refused (the governor objected).",
    ["reason"],
)
MODEL_RELOADS = Counter("rapport_model_reloads_total", "Model versions loaded after startup.")
MODEL_LOAD_FAILURES = Counter(
    "rapport_model_load_failures_total",
    "Failed loads of a published model version, each worker counting its own (the version "
    "before kept serving).",
)
MODEL_SERVED = Gauge(
    "rapport_model_served",
    "1 for the model version a worker serves, 0 for one it served before (one series per "
    "worker: after a failed publication, workers started since may serve another).",
    ["version"],
    multiprocess_mode="liveall",
)


# Methods a label may name. Clients choose the method freely (``curl -X ANYTHING`` reaches the
# app as a 405), and each new one made a series of its own: 300 requests grew /metrics to 4,665.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def method_label(method: str) -> str:
    """Return ``method`` when it is a standard one, else ``"other"``: bounded label values."""
    return method if method in KNOWN_METHODS else "other"


#: The outcomes and reasons the event counters know, shown at 0 before the first one happens.
EVENT_OUTCOMES = ("accepted", "rejected", "unavailable")
REJECTION_REASONS = ("invalid", "out_of_time", "not_their_decision", "refused")


def declare_series() -> None:
    """Show every failure series at 0 from the start.

    An alert on a rate needs a series to read before the first failure: a series that appears
    with its first count shows no increase.
    """
    for part in StorePart:
        STORE_ERRORS.labels(part)
    for outcome in EVENT_OUTCOMES:
        EVENTS.labels(outcome)
    for reason in REJECTION_REASONS:
        EVENTS_REJECTED.labels(reason)


def instrument(app: Flask) -> None:
    """Time every request and count it by route template (never by raw path or method)."""
    declare_series()  # in each worker: the app is built after the fork

    @app.before_request
    def _start_timer() -> None:
        g.metrics_started = time.perf_counter()

    @app.after_request
    def _observe(response: Response) -> Response:
        started = g.pop("metrics_started", None)
        if started is not None:
            route = request.url_rule.rule if request.url_rule else "unmatched"
            method = method_label(request.method)
            REQUEST_LATENCY.labels(method, route, str(response.status_code)).observe(
                time.perf_counter() - started
            )
        return response


def exposition() -> Response:
    """Render every metric in the Prometheus text format, across workers when under gunicorn."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
    return Response(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)
