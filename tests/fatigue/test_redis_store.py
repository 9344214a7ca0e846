"""Redis-only behaviour: key layout, prefix, TTLs, errors, and atomicity under real concurrency."""

from __future__ import annotations

import multiprocessing
import threading
import uuid
from contextlib import contextmanager
from datetime import UTC, datetime

import hiredis
import pytest
import redis
from redis.crc import key_slot

from fatigue.clock import FrozenClock
from fatigue.domain import Action, ContentKind, EngagementEvent, EventType, Recipient
from fatigue.errors import StoreError
from fatigue.governor import Governor, StoreOutage
from fatigue.rules import load_rules
from fatigue.store import store_from_url
from fatigue.store.base import (
    DecideCall,
    EventChange,
    LoggedDecision,
    SendAttempt,
    SendRecord,
    StateQuery,
    new_decision_id,
    suppression_detail,
)
from fatigue.testing import free_port, private_redis

from .conftest import CONTRACT
from .fatigue_helpers import alice, items, race_in_process, request

pytestmark = pytest.mark.redis
NOW = 1_800_000_000.0


@pytest.fixture
def prefix():
    return f"t{uuid.uuid4().hex[:8]}:"


@pytest.fixture
def store(redis_url, prefix):
    store = store_from_url(f"{redis_url}?prefix={prefix}")
    yield store
    store.close()


@pytest.fixture
def raw(redis_url):
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def send(user="u1", items=("i1",)):
    rec = SendRecord(new_decision_id(user), NOW, "email", "sale", "c1", "promotional", True, items)
    return SendAttempt(user, rec, history_ttl=3600, idempotency_key="k", replay="{}")


@contextmanager
def commands_from(store, raw):
    """Collect the commands ``store``'s connection sends (not those its scripts run), by MONITOR."""
    address = store.client.client_info()["addr"]
    seen: list[str] = []
    sentinel = f"end-{uuid.uuid4().hex}"
    with raw.monitor() as monitor:

        def read():
            while True:
                command = monitor.next_command()
                if sentinel in command["command"]:
                    return
                if f"{command['client_address']}:{command['client_port']}" == address:
                    seen.append(command["command"].split(" ", 1)[0].upper())

        reader = threading.Thread(target=read)
        reader.start()
        try:
            yield seen
        finally:
            with redis.Redis(connection_pool=raw.connection_pool) as other:
                other.echo(sentinel)
            reader.join(timeout=10)


def test_every_decision_is_one_evalsha(store, raw):
    clock = FrozenClock(datetime(2026, 1, 12, 12, tzinfo=UTC))
    governor = Governor(load_rules(CONTRACT), store, clock)
    governor.decide(Recipient("warm-up"), request(), items())  # the server learns the script
    governor.record_event(EngagementEvent(EventType.COMPLAINT, "carol", clock()))
    with commands_from(store, raw) as seen:
        sent = governor.decide(alice(), request(idempotency_key="k1"), items())
        deferred = governor.decide(alice(), request(idempotency_key="k2"), items())
        replayed = governor.decide(alice(), request(idempotency_key="k2"), items())
        suppressed = governor.decide(Recipient("carol"), request(idempotency_key="k3"), items())
        receipt = request("r", kind=ContentKind.TRANSACTIONAL, idempotency_key="k4")
        transactional = governor.decide(alice(), receipt, [])
        batch = governor.decide_many([(Recipient(f"b{n}"), request(), items()) for n in range(10)])
    actions = [sent.action, deferred.action, suppressed.action, transactional.action]
    assert actions == [Action.SEND, Action.DEFER, Action.SUPPRESS, Action.SEND]
    assert replayed == deferred and {d.action for d in batch} == {Action.SEND}
    assert seen == ["EVALSHA"] * 15


def test_a_server_that_lost_its_scripts_loads_them_and_decides(store, raw, redis_url):
    governor = Governor(
        load_rules(CONTRACT), store, FrozenClock(datetime(2026, 1, 12, 12, tzinfo=UTC))
    )
    governor.decide(alice(), request(), items())
    raw.script_flush()
    decisions = governor.decide_many([(Recipient(f"f{n}"), request(), items()) for n in range(3)])
    assert [d.action for d in decisions] == [Action.SEND] * 3
    assert governor.decide(alice(), request(), items()).action == Action.DEFER


def test_a_kept_decision_names_its_id_and_expires(store, raw, prefix):
    clock = FrozenClock(datetime(2026, 1, 12, 12, tzinfo=UTC))
    governor = Governor(load_rules(CONTRACT), store, clock)
    decision = governor.decide(alice(), request(idempotency_key="k9"), items())
    kept = raw.get(f"{prefix}fatigue:{{alice}}:idem:k9").decode()
    assert kept.startswith(f"{decision.decision_id} {{")
    assert 0 < raw.ttl(f"{prefix}fatigue:{{alice}}:idem:k9") <= 86400 * 2


def test_keys_are_prefixed_and_hash_tagged_by_user(store, raw, prefix):
    store.commit([send()])
    store.apply(EventChange("u1", NOW, engaged=True, hour=8, suppress=(("all", "{}"),)))
    keys = sorted(key.decode() for key in raw.keys(f"{prefix}*"))
    assert keys == [
        f"{prefix}fatigue:audience:hours",
        f"{prefix}fatigue:{{u1}}:engagement",
        f"{prefix}fatigue:{{u1}}:idem:k",
        f"{prefix}fatigue:{{u1}}:items",
        f"{prefix}fatigue:{{u1}}:sends",
        f"{prefix}fatigue:{{u1}}:suppression",
    ]
    # The slot Redis Cluster would assign (CRC16 of the hash tag): one per customer.
    slots = {key_slot(key.encode()) for key in keys if "{u1}" in key}
    assert len(slots) == 1


def test_history_expires_but_suppression_never_does(store, raw, prefix):
    store.commit([send()])
    store.apply(EventChange("u1", NOW, suppress=(("address", "{}"),), engagement_ttl=500))
    assert 0 < raw.ttl(f"{prefix}fatigue:{{u1}}:sends") <= 3600
    assert 0 < raw.ttl(f"{prefix}fatigue:{{u1}}:items") <= 3600
    assert 0 < raw.ttl(f"{prefix}fatigue:{{u1}}:idem:k") <= 86400 * 2
    assert 0 < raw.ttl(f"{prefix}fatigue:{{u1}}:engagement") <= 500
    assert raw.ttl(f"{prefix}fatigue:{{u1}}:suppression") == -1


def test_the_decision_log_is_a_push_trim_and_expire_each_in_one_pipeline(store, raw, prefix):
    entries = [LoggedDecision(user, f'{{"decision_id": "{user}"}}') for user in ("u1", "u2", "u1")]
    with commands_from(store, raw) as seen:
        store.log_decisions(entries, ttl=700)
        store.log_decisions(entries, ttl=700)
    assert seen == ["LPUSH", "LTRIM", "EXPIRE"] * 6
    assert raw.llen(f"{prefix}fatigue:{{u1}}:decisions") == 4  # u1 twice in each call
    assert 0 < raw.ttl(f"{prefix}fatigue:{{u1}}:decisions") <= 700
    assert 0 < raw.ttl(f"{prefix}fatigue:{{u2}}:decisions") <= 700


def test_prefixes_isolate_stores_on_one_server(store, redis_url):
    other = store_from_url(f"{redis_url}?prefix=other{uuid.uuid4().hex[:6]}:")
    store.commit([send()])
    assert other.load([StateQuery("u1", NOW, 0.0)])[0].sends == ()
    other.close()


def test_suppression_survives_a_new_client(store, redis_url, prefix):
    store.apply(EventChange("u1", NOW, suppress=(("complaint", "{}"),)))
    again = store_from_url(f"{redis_url}?prefix={prefix}")
    assert "complaint" in again.load([StateQuery("u1", NOW, 0.0)])[0].suppression
    again.close()


def test_unreachable_redis_raises_store_error():
    dead = store_from_url(f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(StoreError) as caught:
        dead.load([StateQuery("u1", NOW, 0.0)])
    assert isinstance(caught.value.__cause__, redis.ConnectionError)
    with pytest.raises(StoreError):
        dead.ping()
    with pytest.raises(StoreError):
        dead.log_decisions([LoggedDecision("u1", '{"decision_id": "d1"}')])
    with pytest.raises(StoreError):
        dead.recent_decisions("u1")


def test_decide_later_on_an_unreachable_redis_fails_where_it_is_read():
    """The governor handles store errors where it reads replies: sending must not raise."""
    dead = store_from_url(f"redis://127.0.0.1:{free_port()}/0")
    sent = dead.decide_later([DecideCall(StateQuery("u1", NOW, 0.0), new_decision_id("u1"), ())])
    with pytest.raises(StoreError) as caught:
        sent.result()
    assert isinstance(caught.value.__cause__, redis.ConnectionError)


def test_an_unread_answer_holds_its_connection_and_a_cancelled_one_is_closed(store):
    """Replies waiting on a connection are never read by another exchange on it."""
    pool = store.client.connection_pool
    store.ping()
    waiting = store._exchange_later([hiredis.pack_command(("ECHO", "waiting"))])
    assert store._exchange([hiredis.pack_command(("ECHO", "meanwhile"))]) == [b"meanwhile"]
    assert waiting.result() == [b"waiting"]
    dropped = store._exchange_later([hiredis.pack_command(("ECHO", "dropped"))])
    [held] = pool._in_use_connections
    dropped.cancel()
    assert not pool._in_use_connections and held._sock is None  # back in the pool, closed
    assert store._exchange([hiredis.pack_command(("ECHO", "next"))]) == [b"next"]


def test_unreachable_redis_defers_by_default_and_can_raise():
    clock = FrozenClock(datetime(2026, 1, 12, 12, tzinfo=UTC))
    dead = store_from_url(f"redis://127.0.0.1:{free_port()}/0")
    decision = Governor(load_rules(CONTRACT), dead, clock).decide(alice(), request(), items())
    assert decision.action == Action.DEFER and decision.deciding.rule == "store"
    strict = load_rules(CONTRACT + '\n[store]\non_store_error = "raise"\n')
    with pytest.raises(StoreError):
        Governor(strict, dead, clock).decide(alice(), request(), items())
    lenient = load_rules(CONTRACT + '\n[store]\non_store_error = "send_transactional"\n')
    governor = Governor(lenient, dead, clock)
    receipt = governor.decide(alice(), request("r", kind=ContentKind.TRANSACTIONAL), [])
    assert receipt.action == Action.SEND and "sent unchecked" in receipt.deciding.detail
    assert governor.decide(alice(), request(), items()).action == Action.DEFER


def test_unchecked_transactional_mail_still_gets_the_items_its_template_shows():
    """With the store down, a receipt showing recommendations is sent with them, or deferred."""
    clock = FrozenClock(datetime(2026, 1, 12, 12, tzinfo=UTC))
    dead = store_from_url(f"redis://127.0.0.1:{free_port()}/0")
    lenient = load_rules(CONTRACT + '\n[store]\non_store_error = "send_transactional"\n')
    governor = Governor(lenient, dead, clock)
    receipt = request("r", kind=ContentKind.TRANSACTIONAL, min_items=1)
    sent = governor.decide(alice(), receipt, items())
    assert sent.action == Action.SEND and "sent unchecked" in sent.deciding.detail
    assert len(sent.items) >= 1
    empty = governor.decide(alice(), receipt, [])
    assert empty.action == Action.DEFER and empty.deciding.rule == "store"
    assert "template shows at least 1" in empty.deciding.detail


def test_sixty_four_threads_never_exceed_a_cap_of_three(store):
    rules = load_rules('[[caps]]\nmax = 3\nper = "1d"\n')
    clock = FrozenClock(datetime(2026, 1, 12, 12, tzinfo=UTC))
    governor = Governor(rules, store, clock)
    for trial in range(5):
        user = f"racer-{trial}"
        barrier = threading.Barrier(64)
        actions: list[Action] = []

        def race(user=user, barrier=barrier, actions=actions):
            barrier.wait()
            recipient = alice().__class__(user)
            actions.append(governor.decide(recipient, request(), items()).action)

        threads = [threading.Thread(target=race) for _ in range(64)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert actions.count(Action.SEND) == 3
        assert actions.count(Action.DEFER) == 61
        assert len(store.load([StateQuery(user, NOW, 0.0)])[0].sends) == 3


def test_events_through_the_governor_reach_redis(store):
    clock = FrozenClock(datetime(2026, 1, 12, 12, tzinfo=UTC))
    governor = Governor(load_rules(CONTRACT), store, clock)
    governor.record_event(EngagementEvent(EventType.BOUNCE_HARD, "alice", clock()))
    decision = governor.decide(alice(), request(kind="transactional"), items())
    assert decision.action == Action.SUPPRESS


def test_four_processes_never_exceed_a_cap_of_three(store, redis_url, prefix):
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(4), context.Queue()
    url = f"{redis_url}?prefix={prefix}"
    workers = [
        context.Process(target=race_in_process, args=(url, "shared", 8, barrier, results))
        for _ in range(4)
    ]
    for worker in workers:
        worker.start()
    actions = [results.get(timeout=60) for _ in range(32)]
    for worker in workers:
        worker.join(timeout=60)
    assert actions.count("send") == 3 and actions.count("defer") == 29
    assert len(store.load([StateQuery("shared", NOW, 0.0)])[0].sends) == 3


def test_an_outage_is_logged_once_when_it_starts_and_once_when_it_ends(caplog):
    """Every decision of an outage takes the store-error policy; the log says so twice only."""
    clock = FrozenClock(datetime(2026, 1, 12, 12, tzinfo=UTC))
    port = free_port()
    with private_redis(port=port) as url:
        governor = Governor(load_rules(CONTRACT), store_from_url(url), clock)
        waited = [0.0]  # the store's fail-fast wait, moved on by hand
        governor.store._fail_fast.clock = lambda: waited[0]  # type: ignore[attr-defined]
        assert governor.decide(alice(), request(), items()).action == Action.SEND
    for _ in range(3):  # the server is gone
        decision = governor.decide(alice(), request(), items())
        assert decision.action == Action.DEFER and decision.deciding.rule == "store"
        assert str(port) not in decision.deciding.detail  # the host is for the log only
    assert caplog.text.count("state store failing (redis store not answering") == 1
    assert str(port) in caplog.text
    with private_redis(port=port):  # it comes back (empty: a fresh server)
        waited[0] += 1.5  # not asked for a second after its last silence: then asked again
        assert governor.decide(alice(), request(), items()).action == Action.SEND
        assert "state store working again" not in caplog.text  # not at its first answer
        clock.advance(seconds=StoreOutage.QUIET.total_seconds())
        governor.decide(alice(), request(), items())
        governor.decide(alice(), request(), items())
        governor.store.close()
    assert caplog.text.count("state store working again") == 1


def test_a_lift_is_remembered_as_long_as_the_suppressions_it_guards(store, raw, prefix):
    """Suppressions never expire; a lift kept in the engagement hash would, after its TTL."""
    store.apply(EventChange("u1", NOW, lift=("all",), engagement_ttl=60))
    assert raw.ttl(f"{prefix}fatigue:{{u1}}:lifted") == -1  # no expiry, as :suppression
    raw.delete(f"{prefix}fatigue:{{u1}}:engagement")  # whatever its TTL ended meanwhile
    unsubscribed = suppression_detail("unsubscribe", NOW - 60)
    store.apply(EventChange("u1", NOW - 60, suppress=(("all", unsubscribed),)))
    assert store.load([StateQuery("u1", NOW, 0.0)])[0].suppression == {}


def test_open_hours_written_before_they_were_kept_in_utc_are_read_in_the_default_zone(
    store, raw, prefix
):
    """Old ``h<n>`` fields held hours of the default zone (API events carried no zone).

    A New Yorker whose opens were counted at 15:00 London time opened at 10:00 in New York:
    that is the hour they are sent at, and new UTC counts add to the old ones.
    """
    raw.hset(f"{prefix}fatigue:{{ny}}:engagement", mapping={"h15": 2, "ignored": 0})
    rules = load_rules(
        '[quiet_hours]\nstart = "22:00"\nend = "06:00"\ndefault_timezone = "Europe/London"\n'
        "[send_time]\ndefault_hour = 8\nmin_events = 3\naudience_min_events = 1000\n"
    )
    clock = FrozenClock(datetime(2026, 1, 12, 12, tzinfo=UTC))
    governor = Governor(rules, store, clock)
    ny = Recipient("ny", timezone="America/New_York")
    assert "(default)" in governor.decide(ny, request(deferrable=True), items()).deciding.detail
    governor.record_event(
        EngagementEvent(EventType.OPEN, "ny", datetime(2026, 1, 9, 15, 20, tzinfo=UTC))
    )
    assert raw.hget(f"{prefix}fatigue:{{ny}}:engagement", "u15") == b"1"
    decision = governor.decide(ny, request(deferrable=True), items())
    assert decision.deciding.detail == "best local hour 10:00 (customer)"
    assert decision.send_at == datetime(2026, 1, 12, 15, tzinfo=UTC)


@pytest.mark.parametrize("protocol", [2, 3])
def test_both_protocols_read_the_same_state(redis_url, prefix, protocol):
    """The store reads replies itself, not through redis-py's callbacks: RESP2 and RESP3 alike.

    ``HGETALL`` answers a flat list over RESP2 and a map over RESP3; the audience's hours, the
    customer's state and a decision must come out the same either way.
    """
    store = store_from_url(f"{redis_url}?prefix={prefix}&protocol={protocol}")
    store.apply(EventChange("u1", NOW, engaged=True, hour=8, audience_hour=9))
    store.commit([send()])
    [state] = store.load([StateQuery("u1", NOW, 0.0)])
    assert state.audience_hours[9] == 1 and state.hours[8] == 1
    assert [record.items for record in state.sends] == [("i1",)] and state.ignored == 1
    clock = FrozenClock(datetime(2026, 1, 12, 12, tzinfo=UTC))
    decision = Governor(load_rules(CONTRACT), store, clock).decide(alice(), request(), items())
    assert decision.action == Action.SEND
    store.close()


def test_a_connection_the_server_closed_is_replaced(store, raw):
    """The store's pipelines take the client's pooled connections: a dead one is reconnected."""
    store.commit([send()])
    raw.client_kill_filter(_type="normal", skipme=True)  # every connection but this one
    [state] = store.load([StateQuery("u1", NOW, 0.0)])
    assert [record.items for record in state.sends] == [("i1",)]


@pytest.fixture
def packed_runs(store, monkeypatch):
    """Each pipeline the store runs with commands it packed itself: (calls, packed bytes)."""
    runs: list[tuple[list, list[bytes]]] = []
    run = store._run_later  # every pipeline is sent from here (``_run`` reads it at once)

    def spy(calls, audience=False, packed=None):
        if packed is not None:
            runs.append((list(calls), list(packed)))
        return run(calls, audience, packed)

    monkeypatch.setattr(store, "_run_later", spy)
    return runs


def hiredis_packed(calls) -> list[bytes]:
    return [hiredis.pack_command(("EVALSHA", s.sha, len(k), *k, *a)) for s, k, a in calls]


def test_decide_and_log_commands_are_the_bytes_hiredis_packs(store, packed_runs, monkeypatch):
    governor = Governor(
        load_rules(CONTRACT), store, FrozenClock(datetime(2026, 1, 12, 12, tzinfo=UTC))
    )
    governor.decide(Recipient("zoë-%d"), request(idempotency_key="clé-1"), items())
    governor.decide_many(
        [(Recipient(f"b{n}"), request(), items()) for n in range(3)]
        + [(Recipient("ünï"), request(idempotency_key="k%s"), items())]
    )
    assert {calls[0][0] for calls, _ in packed_runs} == {store._decide}
    for calls, packed in packed_runs:
        assert packed == hiredis_packed(calls)
    sent: list[list[bytes]] = []
    exchange = store._exchange
    monkeypatch.setattr(
        store, "_exchange", lambda c, n=None: sent.append(list(c)) or exchange(c, n)
    )
    store.log_decisions([LoggedDecision("zoë", '{"why": "é%d"}'), LoggedDecision("u2", "{}")], 70)
    expected = [
        b"".join(
            hiredis.pack_command(command)
            for command in (
                ("LPUSH", store.key(user, "decisions"), text),
                ("LTRIM", store.key(user, "decisions"), 0, 49),
                ("EXPIRE", store.key(user, "decisions"), 70),
            )
        )
        for user, text in (("zoë", '{"why": "é%d"}'), ("u2", "{}"))
    ]
    assert sent == [expected]


def test_an_exchange_that_fails_mid_read_never_leaves_its_replies_for_the_next(store, monkeypatch):
    """A reply the client cannot parse (a fault no real server gives, so it is faked) ends the
    exchange; the connection goes back closed, or the next exchange would read its answers."""
    from redis.connection import AbstractConnection
    from redis.exceptions import InvalidResponse

    read = AbstractConnection.read_response
    calls = {"n": 0}

    def fails_second(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise InvalidResponse("garbled")
        return read(self, *args, **kwargs)

    ping = ("ECHO", "first"), ("ECHO", "second"), ("ECHO", "third")
    assert store._exchange([hiredis.pack_command(("ECHO", "warm"))]) == [b"warm"]  # connected
    monkeypatch.setattr(AbstractConnection, "read_response", fails_second)
    with pytest.raises(InvalidResponse):
        store._exchange([hiredis.pack_command(command) for command in ping])
    monkeypatch.setattr(AbstractConnection, "read_response", read)
    assert store._exchange([hiredis.pack_command(("ECHO", "next"))]) == [b"next"]
