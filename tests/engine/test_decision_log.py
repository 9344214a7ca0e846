"""The background decision-log writer: batches, flush, failures reported, nothing blocks."""

from __future__ import annotations

import json
import threading
import time
import uuid

import pytest
import redis

from engine.decision_log import DecisionLogWriter
from fatigue.errors import StoreError
from fatigue.store import store_from_url
from fatigue.store.base import LoggedDecision
from fatigue.store.memory import MemoryStore


def entry(user: str, n: int) -> LoggedDecision:
    return LoggedDecision(user, json.dumps({"decision_id": f"d{n}.{user}", "action": "send"}))


def ids(store, user: str) -> list[str]:
    return [d["decision_id"] for d in store.recent_decisions(user, limit=50)]


def test_flush_waits_until_everything_queued_is_written():
    store = MemoryStore()
    writer = DecisionLogWriter(store, lambda: 60)
    for n in range(30):
        writer.submit([entry("u1", n), entry("u2", n)])
    assert writer.flush(timeout=10)
    assert ids(store, "u1") == [f"d{n}.u1" for n in range(29, -1, -1)]
    assert len(ids(store, "u2")) == 30
    writer.close()


def test_close_writes_what_is_queued_and_refuses_more():
    store = MemoryStore()
    writer = DecisionLogWriter(store, lambda: 60)
    writer.submit([entry("u1", n) for n in range(1000)])
    writer.close(timeout=10)
    assert len(store.recent_decisions("u1", limit=50)) == 50
    with pytest.raises(RuntimeError):
        writer.submit([entry("u1", 1)])


def test_a_full_backlog_drops_the_oldest_and_reports_it():
    store = MemoryStore()
    errors: list[StoreError] = []
    writer = DecisionLogWriter(store, lambda: 60, errors.append, backlog=5)
    writer.submit([entry("u1", n) for n in range(8)])  # one call: the thread cannot drain it
    assert writer.flush(timeout=10)
    assert errors and "3 entries dropped" in str(errors[0])
    assert ids(store, "u1") == [f"d{n}.u1" for n in range(7, 2, -1)]
    writer.close()


@pytest.mark.redis
def test_a_failed_write_is_reported_and_later_entries_still_written(redis_url):
    prefix = f"t{uuid.uuid4().hex[:8]}:"
    store = store_from_url(f"{redis_url}?prefix={prefix}")
    raw = redis.Redis.from_url(redis_url)
    raw.set(f"{prefix}fatigue:{{bad}}:decisions", "not a list")  # a real WRONGTYPE fault
    errors: list[StoreError] = []
    reported = threading.Event()
    writer = DecisionLogWriter(store, lambda: 60, lambda exc: (errors.append(exc), reported.set()))
    try:
        writer.submit([entry("bad", 1)])
        assert writer.flush(timeout=10) and reported.is_set()
        assert "WRONGTYPE" in str(errors[0])
        writer.submit([entry("good", 2)])
        assert writer.flush(timeout=10)
        assert ids(store, "good") == ["d2.good"]
        assert 0 < raw.ttl(f"{prefix}fatigue:{{good}}:decisions") <= 60
    finally:
        writer.close()
        raw.delete(*raw.keys(f"{prefix}*"))
        raw.close()
        store.close()


class CountingStore(MemoryStore):
    """A memory store that counts its decision-log writes (one per store call)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[int] = []

    def log_decisions(self, entries, ttl=60):  # type: ignore[no-untyped-def]
        self.writes.append(len(entries))
        super().log_decisions(entries, ttl=ttl)


def test_entries_from_many_requests_share_one_store_call():
    store = CountingStore()
    writer = DecisionLogWriter(store, lambda: 60, linger=60.0)
    for n in range(20):  # one request at a time, as a busy server's threads submit them
        writer.submit([entry("u1", n)])
    # A reader's flush ends the linger at once: were it waited out, flush would time out.
    assert writer.flush(timeout=10)
    assert store.writes == [20]
    writer.close()


def test_a_lone_entry_is_written_once_the_linger_is_over():
    store = CountingStore()
    writer = DecisionLogWriter(store, lambda: 60, linger=0.05)
    writer.submit([entry("u1", 1)])
    deadline = time.monotonic() + 10
    while not store.writes and time.monotonic() < deadline:  # no flush: nothing ends the linger
        time.sleep(0.01)
    assert store.writes == [1] and ids(store, "u1") == ["d1.u1"]
    writer.close()


def written(store: CountingStore, count: int) -> bool:
    deadline = time.monotonic() + 10
    while len(store.writes) < count and time.monotonic() < deadline:
        time.sleep(0.005)
    return len(store.writes) >= count


def test_a_busy_writer_gathers_the_next_entries_without_being_woken():
    store = CountingStore()
    writer = DecisionLogWriter(store, lambda: 60, linger=1.0)
    wakes: list[str] = []
    notify_all = writer._changed.notify_all

    def counted() -> None:  # the writer's own notifications (for flush) are not wake-ups
        if threading.current_thread() is threading.main_thread():
            wakes.append("woken")
        notify_all()

    writer._changed.notify_all = counted  # type: ignore[method-assign]
    writer.submit([entry("u1", 1)])
    assert written(store, 1)
    writer.submit([entry("u1", 2)])  # within the linger after that write: gathered unwoken
    assert written(store, 2)
    assert wakes == [] and store.writes == [1, 1]
    time.sleep(1.5)  # a quiet linger: the thread now sleeps until a submit wakes it
    writer.submit([entry("u1", 3)])
    assert written(store, 3)
    assert wakes == ["woken"] and ids(store, "u1") == ["d3.u1", "d2.u1", "d1.u1"]
    writer.close()
