"""A state store that cannot be reached (a Redis URL where nothing listens): real failures."""

from __future__ import annotations

import pytest

from api import create_app
from fatigue.testing import free_port


@pytest.fixture
def down_client(settings, clock):
    url = f"redis://127.0.0.1:{free_port()}/0"
    return create_app({**settings, "STORE_URL": url, "CLOCK": clock}).test_client()


def test_readiness_names_the_store(down_client):
    response = down_client.get("/readyz")
    assert response.status_code == 503
    checks = response.json["checks"]
    assert checks["model"] == "ok" and checks["store"] != "ok"


def test_compose_defers_by_the_store_policy(down_client, auth, compose_request):
    response = down_client.post("/v1/compose", json=compose_request(), headers=auth("platform"))
    assert response.status_code == 200
    decision = response.json["decision"]
    assert decision["action"] == "defer" and response.json["email"] is None
    assert [r["rule"] for r in decision["reasons"] if r["deciding"]] == ["store"]
    metrics = down_client.get("/metrics").text
    assert "rapport_store_errors_total" in metrics


def test_events_answer_503_and_stay_logged(down_client, auth, settings):
    event = {"type": "unsubscribe", "user_id": "1", "timestamp": "2026-11-23T10:00:00Z"}
    response = down_client.post("/v1/events", json={"events": [event]}, headers=auth("platform"))
    assert response.status_code == 503
    assert response.content_type == "application/problem+json"
    assert response.headers["Retry-After"] == "5"
    from pathlib import Path

    logged = list(Path(settings["EVENT_LOG_DIR"]).glob("events-*.jsonl"))
    assert logged and '"unsubscribe"' in logged[0].read_text()
