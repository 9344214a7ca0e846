"""The API on a Redis that answers but fails (read-only, out of memory) or hangs: real faults.

Each test runs its own redis-server (the faults are in tests/fatigue/redis_faults.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest

from api import create_app
from tests.fatigue.redis_faults import FAULTS, hung, own_server

pytestmark = pytest.mark.redis


@pytest.fixture
def own_redis() -> Iterator[str]:
    """A redis-server of this test's own."""
    with own_server() as url:
        yield url


@pytest.mark.parametrize("fault", list(FAULTS))
def test_readiness_and_the_log_name_a_store_that_refuses_writes(
    own_redis, fault, settings, clock, auth, compose_request, caplog
):
    """/readyz said ``store: ok`` (it only pinged) and the log flapped at every decision."""
    make, error = FAULTS[fault]
    client = create_app({**settings, "STORE_URL": own_redis, "CLOCK": clock}).test_client()
    assert client.get("/readyz").status_code == 200
    with make(own_redis), caplog.at_level(logging.WARNING, logger="fatigue.governor"):
        for n in range(10):
            # Deferrable: the best hour is read first, the send recorded in a second call.
            body = compose_request(user_id=f"c{n % 3}", key=f"k{n}", deferrable=True)
            answer = client.post("/v1/compose", json=body, headers=auth("platform"))
            assert answer.status_code == 200
            assert answer.json["decision"]["action"] == "defer"
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json["checks"]["store"] == "failed (StoreError; details in the server log)"
    said = [r.getMessage() for r in caplog.records if r.name == "fatigue.governor"]
    assert len(said) == 1 and error in said[0], said
    assert f"not ready: store: StoreError: redis store answered with an error ({error}" in (
        caplog.text
    )
    assert client.get("/readyz").status_code == 200  # it takes writes again


def test_readiness_on_a_hung_store_answers_within_about_a_second(
    own_redis,
    settings,
    clock,
):
    """With the old 5 s socket timeout every request waited 5 s on a stopped Redis."""
    client = create_app({**settings, "STORE_URL": own_redis, "CLOCK": clock}).test_client()
    assert client.get("/readyz").status_code == 200
    store = client.application.extensions["rapport"].get("store")
    assert store.client.connection_pool.connection_kwargs["socket_timeout"] == 1.0
    with hung(own_redis):
        ready = client.get("/readyz")  # within the 1 s timeout (not timed: shared machines)
    assert ready.status_code == 503 and ready.json["checks"]["store"].startswith("failed")
    assert ready.json["checks"]["clock"] == "ok"  # the store's check names the fault, once


def test_readiness_fails_when_this_hosts_clock_is_far_from_the_stores(
    own_redis, settings, clock, monkeypatch, caplog
):
    """A clock that jumped stamped sends in the future and refused events, and nobody knew.

    The host's clock cannot be moved for a test: ``time.time`` as the store module reads it is
    put three days ahead; Redis answers ``TIME`` with the real one.
    """
    client = create_app({**settings, "STORE_URL": own_redis, "CLOCK": clock}).test_client()
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json["checks"]["clock"] == "ok"
    import fatigue.store.redis as redis_store

    real = time.time
    monkeypatch.setattr(redis_store.time, "time", lambda: real() + 3 * 86400)
    skewed = client.get("/readyz")
    assert skewed.status_code == 503
    assert skewed.json["checks"]["clock"].startswith("failed (ClockSkew")
    assert "clock is 259,200 s ahead of the state store's (Redis TIME)" in caplog.text
    monkeypatch.setattr(redis_store.time, "time", real)
    assert client.get("/readyz").status_code == 200
    assert "ready again: clock" in caplog.text  # on-call sees the end, not only the start


def test_a_memory_store_has_no_clock_to_compare(settings, clock):
    client = create_app({**settings, "STORE_URL": "memory://", "CLOCK": clock}).test_client()
    assert client.get("/readyz").json["checks"]["clock"] == "ok"
