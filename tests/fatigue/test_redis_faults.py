"""A Redis that answers but fails (full, read-only) or hangs: real faults, each test its own.

The faults and the ``own_redis`` fixture are in ``redis_faults``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from fatigue.clock import FrozenClock
from fatigue.domain import EngagementEvent, EventType
from fatigue.errors import StoreError
from fatigue.governor import Governor, StoreOutage
from fatigue.rules import default_rules, load_rules
from fatigue.store import store_from_url
from fatigue.store.base import StateQuery
from fatigue.testing import free_port

from .fatigue_helpers import items, request
from .redis_faults import FAULTS, customer, hung, own_server

pytestmark = pytest.mark.redis


@pytest.fixture
def own_redis() -> Iterator[str]:
    """A redis-server of this test's own."""
    with own_server() as url:
        yield url


REFUSING = pytest.mark.parametrize("fault", list(FAULTS))


@REFUSING
def test_readiness_fails_on_a_store_that_answers_but_refuses_writes(own_redis, fault):
    """PING works on a full or read-only Redis; the decisions that write do not."""
    make, error = FAULTS[fault]
    store = store_from_url(own_redis)
    store.ping()
    with make(own_redis), pytest.raises(StoreError, match=f"answered with an error \\({error}"):
        store.ping()
    store.ping()  # it takes writes again
    store.close()


@REFUSING
def test_a_store_refusing_writes_records_no_send_as_it_refuses_unsubscribes(own_redis, fault):
    """A full Redis let a script's writes through once any write had gone: sends trimmed the
    history first, so they were recorded while the unsubscribes that should stop them failed."""
    make, _ = FAULTS[fault]
    clock = FrozenClock(datetime(2026, 1, 12, 12, tzinfo=UTC))
    rules = load_rules('[[caps]]\nmax = 5\nper = "1d"\n[relevance]\nmin_relevance = 0.0\n')
    governor = Governor(rules, store_from_url(own_redis), clock)
    assert governor.decide(customer("u"), request(idempotency_key="a"), items()).action == "send"
    clock.advance(minutes=5)
    unsubscribe = EngagementEvent(EventType.UNSUBSCRIBE, "u", clock())
    with make(own_redis):
        with pytest.raises(StoreError):
            governor.record_event(unsubscribe)
        decision = governor.decide(customer("u"), request(idempotency_key="b"), items())
        assert decision.deciding is not None and decision.deciding.rule == "store"
    state = governor.store.load([StateQuery("u", 0.0, 0.0)])[0]
    assert len(state.sends) == 1  # the first send only
    governor.store.close()


def test_a_wrong_password_is_said_to_be_refused_not_silence(own_redis):
    from redis import Redis

    with Redis.from_url(own_redis) as admin:
        admin.config_set("requirepass", "right")
        try:
            store = store_from_url(own_redis.replace("redis://", "redis://:wrong@"))
            for _ in range(2):  # a refusal is an answer: no wait starts, the second says the same
                with pytest.raises(StoreError, match=r"refused the credentials \(Authentication"):
                    store.ping()
            store.close()
        finally:
            with Redis.from_url(own_redis.replace("redis://", "redis://:right@")) as again:
                again.config_set("requirepass", "")


def test_a_store_that_is_not_there_is_said_not_to_answer():
    store = store_from_url(f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(StoreError, match=r"not answering \(ConnectionError"):
        store.ping()


@REFUSING
def test_a_store_refusing_writes_logs_one_line_naming_its_error_not_one_per_decision(
    own_redis, fault, caplog
):
    """Reads work and writes fail: the outage must not be declared over at every read."""
    make, error = FAULTS[fault]
    clock = FrozenClock(datetime(2026, 1, 12, 12, tzinfo=UTC))
    # The bundled rules choose a deferrable mail's best hour from the customer's opens: the
    # first call only reads them, the second records the send (and is refused).
    governor = Governor(default_rules(), store_from_url(own_redis), clock)
    with make(own_redis), caplog.at_level(logging.WARNING, logger="fatigue.governor"):
        for n in range(12):
            asked = request(idempotency_key=f"k{n}", deferrable=True)
            decision = governor.decide(customer(f"u{n % 3}"), asked, items())
            assert decision.deciding is not None and decision.deciding.rule == "store"
    said = [r.getMessage() for r in caplog.records if r.name == "fatigue.governor"]
    assert len(said) == 1, said
    assert said[0].startswith("state store failing (redis store answered with an error")
    assert error in said[0] and "not answering" not in said[0]
    governor.store.close()


def test_an_outage_ends_once_the_store_has_worked_for_a_while(caplog):
    """A success between failures says nothing; ten quiet seconds of successes end it once."""
    clock = FrozenClock(datetime(2026, 1, 12, 12, tzinfo=UTC))
    outage = StoreOutage("defer", clock, quiet=timedelta(seconds=10))
    with caplog.at_level(logging.WARNING, logger="fatigue.governor"):
        for _ in range(5):  # reads work, writes fail: one line
            outage.answered()
            outage.failed(StoreError("redis store answered with an error (ReadOnlyError: ...)"))
            clock.advance(seconds=1)
        outage.answered()  # 1 s after the last failure: not yet
        clock.advance(seconds=9)
        outage.answered()
        outage.answered()
    said = [r.getMessage() for r in caplog.records]
    assert said == [
        "state store failing (redis store answered with an error (ReadOnlyError: ...)): "
        "deciding by on_store_error = defer until it works again",
        "state store working again (no failure for 10 s)",
    ]


def test_a_hung_store_fails_a_call_within_about_a_second(own_redis):
    """A stopped Redis held every request for the old 5 s timeout (liveness probes queued)."""
    store = store_from_url(own_redis)
    assert store.client.connection_pool.connection_kwargs["socket_timeout"] == 1.0
    store.ping()  # connected before it hangs
    with hung(own_redis), pytest.raises(StoreError, match=r"not answering \(TimeoutError"):
        store.ping()  # after 1 s, not 5 (not timed here: these machines are shared)
    store.close()


def test_a_hung_store_is_not_asked_again_until_its_wait_is_over(own_redis):
    """Each call waited out the timeout, so a worker's threads all hung on a stopped Redis and
    even /healthz queued behind them. After a silent call the store is refused at once for a
    second; then one call tries it, and an answer lets every call go again."""
    store = store_from_url(own_redis)
    now = [100.0]
    store._fail_fast.clock = lambda: now[0]  # type: ignore[attr-defined]
    store.ping()
    asked = [StateQuery("u", 0.0, 0.0)]
    with hung(own_redis):
        with pytest.raises(StoreError, match=r"not answering \(TimeoutError"):
            store.ping()
        with pytest.raises(StoreError, match=r"not answering \(not asked again yet after no"):
            store.load(asked)  # at once: the pipeline is not even sent
    now[0] += 0.5
    with pytest.raises(StoreError, match="not asked"):
        store.ping()  # back, but its second is not over
    now[0] += 0.6
    store.ping()  # the trial call finds it answering
    assert store.load(asked)[0].sends == ()  # and every call goes again
    store.close()


def test_the_url_still_sets_the_socket_timeout(own_redis):
    store = store_from_url(f"{own_redis}?socket_timeout=0.2&prefix=t:")
    assert store.client.connection_pool.connection_kwargs["socket_timeout"] == 0.2
    store.ping()
    with hung(own_redis), pytest.raises(StoreError):
        store.ping()
    store.close()
