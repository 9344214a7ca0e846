"""The decision log: composed decisions, with their reasons, in the explain endpoint."""

from __future__ import annotations

import json
import uuid

import pytest
import redis

from api import create_app
from api.services import services
from fatigue.testing import free_port

from .conftest import ON_EVERY_STORE


def compose(client, auth, body):
    return client.post("/v1/compose", json=body, headers=auth("platform"))


def explained(client, auth, user_id="12347"):
    response = client.get(f"/v1/users/{user_id}/fatigue", headers=auth("engineer"))
    assert response.status_code == 200
    return response.json


@ON_EVERY_STORE
def test_composed_decisions_are_explained_newest_first_with_reasons(client, auth, compose_request):
    assert explained(client, auth)["recent_decisions"] == []
    sent = compose(client, auth, compose_request(key="a")).json["decision"]
    compose(client, auth, compose_request(key="a"))  # a retry replays the same decision
    deferred = compose(client, auth, compose_request(key="b")).json["decision"]
    logged = explained(client, auth)["recent_decisions"]
    assert [d["id"] for d in logged] == [deferred["id"], sent["id"]]
    assert [d["action"] for d in logged] == ["defer", "send"]
    assert logged[0]["send_at"] == deferred["send_at"] and logged[0]["send_at"] is not None
    assert logged[1]["campaign_id"] == "weekly-picks"
    assert logged[0]["reasons"] == deferred["reasons"]
    assert [r["rule"] for r in logged[0]["reasons"] if r["deciding"]]
    assert [i["item_id"] for i in logged[1]["items"]] == [i["item_id"] for i in sent["items"]]


@ON_EVERY_STORE
def test_dry_runs_are_not_logged(client, auth, compose_request):
    compose(client, auth, compose_request(key="dry", dry_run=True))
    assert explained(client, auth)["recent_decisions"] == []


@ON_EVERY_STORE
def test_batch_decisions_are_logged_per_customer(client, auth, compose_request):
    lines = [compose_request(user, f"b-{user}") for user in ("12347", "12348")]
    response = client.post(
        "/v1/compose/batch",
        data="".join(json.dumps(line) + "\n" for line in lines),
        headers={**auth("platform"), "Content-Type": "application/x-ndjson"},
    )
    assert response.status_code == 200
    answered = [json.loads(line)["decision"]["id"] for line in response.text.splitlines()]
    logged = [explained(client, auth, user)["recent_decisions"] for user in ("12347", "12348")]
    assert [[d["id"] for d in found] for found in logged] == [[n] for n in answered]


@pytest.mark.redis
def test_a_failing_log_write_leaves_the_decision_as_made(
    redis_url, settings, clock, auth, compose_request, caplog
):
    # A real fault: the log's key holds a string, so Redis answers LPUSH with WRONGTYPE.
    prefix = f"t{uuid.uuid4().hex[:8]}:"
    app = create_app({**settings, "STORE_URL": f"{redis_url}?prefix={prefix}", "CLOCK": clock})
    client = app.test_client()
    raw = redis.Redis.from_url(redis_url)
    raw.set(f"{prefix}fatigue:{{12347}}:decisions", "not a list")
    try:
        response = compose(client, auth, compose_request())
        assert response.status_code == 200
        assert response.json["decision"]["action"] == "send" and response.json["email"]
        again = compose(client, auth, compose_request(key="k-2")).json["decision"]
        assert again["action"] == "defer"  # the first send was counted all the same
        assert services(app).get("composer").log_writer.flush()  # written behind the request
        assert "decision log not written" in caplog.text
    finally:
        raw.delete(*raw.keys(f"{prefix}*"))
        raw.close()
        services(app).get("governor").store.close()


def test_a_store_that_is_down_is_not_written_twice(settings, clock, auth, compose_request, caplog):
    down = {**settings, "STORE_URL": f"redis://127.0.0.1:{free_port()}/0", "CLOCK": clock}
    app = create_app(down)
    decision = compose(app.test_client(), auth, compose_request()).json["decision"]
    assert [r["rule"] for r in decision["reasons"] if r["deciding"]] == ["store"]
    assert services(app).get("composer").log_writer.flush(timeout=10)  # written behind it
    assert "decision log not written" not in caplog.text
