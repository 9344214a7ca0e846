"""Random request streams: both backends decide alike, retries replay, and sends count once.

The store's atomic step (a Lua script on Redis, a lock in memory) decides what to record from
checks the governor prepares; the governor then explains the outcome in Python. These streams
check the two halves never disagree, on rules that exercise every kind of decision.
"""

from __future__ import annotations

import logging
import random
from datetime import UTC, datetime, timedelta

import pytest

from fatigue.clock import FrozenClock
from fatigue.domain import (
    Campaign,
    Candidate,
    ContentKind,
    Decision,
    EngagementEvent,
    EventType,
    MessageRequest,
    Recipient,
)
from fatigue.governor import Governor
from fatigue.rules import load_rules
from fatigue.store.base import StateQuery

from .conftest import BACKENDS, CONTRACT, make_store

RULES = {
    "contract": CONTRACT + '\n[store]\nidempotency_ttl = "30d"\n',
    "everything": """
[[caps]]
max = 2
per = "1d"
[[caps]]
max = 3
per = "1w"
calendar = true
[[caps]]
max = 1
per = "2d"
category = "news"
[cooldown]
after_any = "3h"
[quiet_hours]
start = "22:00"
end = "07:00"
[relevance]
min_relevance = 0.2
min_items = 2
[timeliness]
no_repeat = "5d"
[diversity]
max_items = 3
max_per_category = 2
[engagement]
reduce_after = 3
reduced_max = 1
reduced_per = "2d"
sunset_after = 3
[holdout]
percent = 10
[transactional]
count_toward_caps = true
[send_time]
default_hour = 15
min_events = 2
[store]
idempotency_ttl = "30d"
""",
}
USERS = ("ann", "bob", "cy")
ZONES = ("Europe/London", "America/New_York", "Asia/Tokyo", "")
EVENTS = (EventType.OPEN, EventType.CLICK, EventType.UNSUBSCRIBE, EventType.RESUBSCRIBE)
CAMPAIGNS = (
    Campaign("sale", "sale"),
    Campaign("news", "news", ContentKind.EDITORIAL, 2.0),
    Campaign("receipt", "", ContentKind.TRANSACTIONAL),
)


def stream(seed: int, steps: int = 120) -> list[tuple]:
    """A reproducible stream of requests, retries, events and clock moves."""
    rng = random.Random(seed)
    keys: list[tuple[str, str]] = []
    out: list[tuple] = []
    for step in range(steps):
        roll = rng.random()
        user = rng.choice(USERS)
        if roll < 0.1:
            out.append(("event", rng.choice(EVENTS), user))
        elif roll < 0.25:
            out.append(("advance", rng.choice((1, 2, 5, 13, 30))))
        elif roll < 0.35 and keys:
            out.append(("retry", *rng.choice(keys)))
        else:
            key = f"k{step}" if rng.random() < 0.6 else None
            if key:
                keys.append((user, key))
            pool = [
                Candidate(f"i{rng.randrange(12)}", round(rng.random(), 3), category=f"c{n % 3}")
                for n in range(rng.randrange(0, 7))
            ]
            campaigns = tuple(rng.sample(CAMPAIGNS, rng.choice((1, 1, 2))))
            deferrable, dry = rng.random() < 0.2, rng.random() < 0.1
            out.append(("decide", user, campaigns, pool, key, deferrable, dry))
    return out


def replay_stream(governor: Governor, clock: FrozenClock, steps: list[tuple]) -> list:
    """Run a stream; return every decision (retries checked against their first answer)."""
    zones = dict(zip(USERS, ZONES, strict=False))
    first: dict[tuple[str | None, str | None], Decision] = {}
    requests: dict[tuple[str, str], tuple] = {}
    decisions = []
    for step in steps:
        if step[0] == "event":
            governor.record_event(EngagementEvent(step[1], step[2], clock()))
        elif step[0] == "advance":
            clock.advance(hours=step[1])
        else:
            if step[0] == "retry":
                step = requests[(step[1], step[2])]
            _, user, campaigns, pool, key, deferrable, dry = step
            request = MessageRequest(campaigns, key, deferrable, dry)
            decision = governor.decide(Recipient(user, timezone=zones[user]), request, pool)
            if key is not None:
                requests.setdefault((user, key), step)
            # Keys outlive the stream (Redis expires them on its own clock, not the simulated
            # one); a dry run remembers nothing, so its retry is a fresh dry run.
            if key is not None and not dry:
                assert_same_answer(first.setdefault((user, key), decision), decision)
            decisions.append(decision)
    return decisions


def assert_same_answer(earlier: Decision, retry: Decision) -> None:
    """A retry is the first answer, but for a send whose customer has unsubscribed since."""
    if retry == earlier:
        return
    assert earlier.action == "send" and retry.action == "suppress"
    assert retry.decision_id == earlier.decision_id
    assert retry.deciding is not None and "since this send was decided" in retry.deciding.detail


def comparable(decision) -> dict:
    data = decision.to_dict()
    del data["decision_id"]
    return data


@pytest.mark.parametrize("rules", sorted(RULES))
@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("backend", BACKENDS)
def test_streams_decide_alike_and_count_each_send_once(backend, rules, seed, request, caplog):
    start = datetime(2026, 3, 27, 9, tzinfo=UTC)  # the London spring-forward weekend
    steps = stream(seed)
    results = {}
    for name in ("memory", backend):
        clock = FrozenClock(start)
        store = make_store(name, request)
        governor = Governor(load_rules(RULES[rules]), store, clock)
        with caplog.at_level(logging.ERROR, logger="fatigue"):
            results[name] = replay_stream(governor, clock, steps)
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
        sent = {d.decision_id: d for d in results[name] if d.action == "send" and not d.dry_run}
        now = clock().timestamp()
        recorded = {
            record.decision_id
            for user in USERS
            for record in store.load([StateQuery(user, now, 0.0)])[0].sends
        }
        # History older than the longest window (plus 8 days) is trimmed as it ages out.
        horizon = clock() - governor.rules.history_horizon
        assert recorded <= set(sent)
        assert {i for i, d in sent.items() if d.decided_at > horizon} <= recorded
    assert [comparable(d) for d in results[backend]] == [comparable(d) for d in results["memory"]]
    actions = {d.action for d in results["memory"]}
    assert len(actions) >= 2 and clock() - start > timedelta(hours=12)
