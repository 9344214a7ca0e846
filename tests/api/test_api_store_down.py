"""A state store that cannot be reached (a Redis URL where nothing listens): real failures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from api import create_app
from fatigue.testing import free_port


@pytest.fixture
def down_client(settings, clock):
    url = f"redis://127.0.0.1:{free_port()}/0"
    return create_app({**settings, "STORE_URL": url, "CLOCK": clock}).test_client()


def test_readiness_names_the_store(down_client, caplog):
    response = down_client.get("/readyz")
    assert response.status_code == 503
    checks = response.json["checks"]
    assert checks["model"] == "ok" and checks["store"].startswith("failed (StoreError")
    assert "127.0.0.1" not in response.text  # anyone may ask: the host is for the log
    assert "not ready: store: StoreError" in caplog.text and "127.0.0.1" in caplog.text


def test_compose_defers_by_the_store_policy(down_client, auth, compose_request):
    response = down_client.post("/v1/compose", json=compose_request(), headers=auth("platform"))
    assert response.status_code == 200
    decision = response.json["decision"]
    assert decision["action"] == "defer" and response.json["email"] is None
    assert [r["rule"] for r in decision["reasons"] if r["deciding"]] == ["store"]
    metrics = down_client.get("/metrics").text
    assert 'rapport_store_errors_total{part="state_store"}' in metrics


def store_errors(part: str) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value("rapport_store_errors_total", {"part": part}) or 0.0


def test_store_errors_are_counted_by_the_part_that_failed(
    down_client, settings, auth, compose_request
):
    """One unlabelled count mixed store-policy defers and event-log failures."""
    before = {part: store_errors(part) for part in ("state_store", "event_log")}
    down_client.post("/v1/compose", json=compose_request(), headers=auth("platform"))
    event = {"type": "open", "user_id": "1", "timestamp": "2026-11-23T10:00:00Z"}
    down_client.post("/v1/events", json={"events": [event]}, headers=auth("platform"))
    assert store_errors("state_store") == before["state_store"] + 2  # a defer, an event
    assert store_errors("event_log") == before["event_log"]
    Path(settings["EVENT_LOG_DIR"]).rename(Path(settings["EVENT_LOG_DIR"] + ".moved"))
    Path(settings["EVENT_LOG_DIR"]).write_text("a file where the log directory should be")
    refused = down_client.post("/v1/events", json={"events": [event]}, headers=auth("platform"))
    assert refused.status_code == 503
    assert store_errors("event_log") == before["event_log"] + 1
    assert store_errors("state_store") == before["state_store"] + 2


def test_events_answer_503_and_stay_logged(down_client, auth, settings, caplog):
    event = {"type": "unsubscribe", "user_id": "1", "timestamp": "2026-11-23T10:00:00Z"}
    response = down_client.post("/v1/events", json={"events": [event]}, headers=auth("platform"))
    assert response.status_code == 503
    assert response.content_type == "application/problem+json"
    assert response.headers["Retry-After"] == "5"
    assert response.json["detail"] == "the state store is unavailable; retry shortly"
    from pathlib import Path

    logged = list(Path(settings["EVENT_LOG_DIR"]).glob("events-*.jsonl"))
    assert logged and '"unsubscribe"' in logged[0].read_text()
    [failure] = [r for r in caplog.records if "state store failure" in r.getMessage()]
    assert failure.exc_info is None and "127.0.0.1" in failure.getMessage()  # one line, for ops


def _link(app, kind: str) -> str:
    signer = app.extensions["rapport"].get("renderer").signer
    if kind == "click":
        token = signer.click_token("12347", "weekly-picks", "https://shop.example/p/1", "22730")
        return f"/c/{token}"
    return f"/u/{signer.unsubscribe_token('12347', 'weekly-picks')}"


ONE_CLICK = {"List-Unsubscribe": "One-Click"}


@pytest.mark.redis
def test_an_unsubscribe_while_the_store_is_down_is_applied_when_it_returns(
    settings, clock, auth, compose_request, redis_url
):
    """Nobody retries a one-click POST: it is kept, and applied before the next decision."""
    down = create_app({**settings, "STORE_URL": f"redis://127.0.0.1:{free_port()}/0",
                       "CLOCK": clock})  # fmt: skip
    response = down.test_client().post(_link(down, "unsubscribe"), data=ONE_CLICK)
    assert response.status_code == 200 and "unsubscribed" in response.text
    pending = Path(settings["EVENT_LOG_DIR"]) / "pending.jsonl"
    assert '"unsubscribe"' in pending.read_text()
    deferred = down.test_client().post(
        "/v1/compose", json=compose_request(), headers=auth("platform")
    )
    assert deferred.json["decision"]["action"] == "defer"  # nothing is sent on a dead store
    assert '"unsubscribe"' in pending.read_text()  # and the event waits for it
    # The store answers again (this host's next process, on a real Redis, same event directory).
    back = create_app({**settings, "STORE_URL": f"{redis_url}?prefix=t{free_port()}:",
                       "CLOCK": clock}).test_client()  # fmt: skip
    composed = back.post("/v1/compose", json=compose_request(), headers=auth("platform")).json
    assert composed["decision"]["action"] == "suppress"
    state = back.get("/v1/users/12347/fatigue", headers=auth("engineer")).json
    assert "all" in state["suppression"] and pending.read_text() == ""


@pytest.mark.redis
def test_a_reported_unsubscribe_answered_503_still_holds_before_the_platform_retries(
    settings, clock, auth, compose_request, redis_url
):
    """The 503 asks the platform to send the events again; until it does, the unsubscribe in
    them is kept pending and applied before the next decision, as a one-click one is."""
    down = create_app({**settings, "STORE_URL": f"redis://127.0.0.1:{free_port()}/0",
                       "CLOCK": clock}).test_client()  # fmt: skip
    events = [
        {
            "type": "view",
            "user_id": "12347",
            "item_id": "22730",
            "timestamp": "2026-11-23T09:59:00Z",
        },
        {"type": "unsubscribe", "user_id": "12347", "timestamp": "2026-11-23T10:00:00Z"},
    ]
    from prometheus_client import REGISTRY

    def unavailable() -> float:
        found = REGISTRY.get_sample_value("rapport_events_total", {"outcome": "unavailable"})
        return found or 0.0

    before = unavailable()
    refused = down.post("/v1/events", json={"events": events}, headers=auth("platform"))
    assert refused.status_code == 503 and unavailable() == before + 2
    kept = (Path(settings["EVENT_LOG_DIR"]) / "pending.jsonl").read_text().splitlines()
    assert [json.loads(line)["event"] for line in kept] == ["unsubscribe"]  # the view can wait
    back = create_app({**settings, "STORE_URL": f"{redis_url}?prefix=t{free_port()}:",
                       "CLOCK": clock}).test_client()  # fmt: skip
    composed = back.post("/v1/compose", json=compose_request(), headers=auth("platform")).json
    assert composed["decision"]["action"] == "suppress"
    retried = back.post("/v1/events", json={"events": events}, headers=auth("platform"))
    assert retried.status_code == 202 and retried.json["accepted"] == 2  # the retry is harmless
    state = back.get("/v1/users/12347/fatigue", headers=auth("engineer")).json
    assert [s["reason"] for s in state["suppressions"]] == ["unsubscribe"]


def test_an_unsubscribe_is_applied_when_the_event_log_cannot_be_written(settings, clock, auth):
    broken = Path(settings["EVENT_LOG_DIR"])
    broken.write_text("a file where the log directory should be")
    app = create_app({**settings, "CLOCK": clock})
    response = app.test_client().post(_link(app, "unsubscribe"), data=ONE_CLICK)
    assert response.status_code == 200
    state = app.test_client().get("/v1/users/12347/fatigue", headers=auth("engineer")).json
    assert "all" in state["suppression"]


def test_with_nowhere_to_keep_it_an_unsubscribe_says_so_and_a_click_still_redirects(
    settings, clock
):
    Path(settings["EVENT_LOG_DIR"]).write_text("not a directory")
    app = create_app({**settings, "STORE_URL": f"redis://127.0.0.1:{free_port()}/0",
                      "CLOCK": clock})  # fmt: skip
    client = app.test_client()
    refused = client.post(_link(app, "unsubscribe"), data=ONE_CLICK)
    assert refused.status_code == 503 and "try again" in refused.text
    clicked = client.get(_link(app, "click"))
    assert clicked.status_code == 302
    assert clicked.headers["Location"].startswith("https://shop.example/p/1")


def test_an_outage_logs_its_first_failure_not_one_line_per_request(down_client, auth, caplog):
    event = {"type": "open", "user_id": "1", "timestamp": "2026-11-23T10:00:00Z"}
    for _ in range(5):
        answer = down_client.post("/v1/events", json={"events": [event]}, headers=auth("platform"))
        assert answer.status_code == 503
    lines = [r for r in caplog.records if "state store failure" in r.getMessage()]
    assert len(lines) == 1


def test_failure_lines_say_how_many_came_between_them(caplog):
    from api.problems import FailureLines

    now = [0.0]
    lines = FailureLines(every=60.0, monotonic=lambda: now[0])
    for second in (0, 1, 2, 59):
        now[0] = second
        lines.error("state store", RuntimeError("refused"))
    now[0] = 61
    lines.error("state store", RuntimeError("refused"))
    lines.error("event log", RuntimeError("full"))  # another failure has its own first line
    said = [r.getMessage() for r in caplog.records]
    assert said == [
        "state store failure: refused",
        "state store failure: refused (3 more since the last line)",
        "event log failure: full",
    ]
