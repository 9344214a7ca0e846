"""A retried request (same idempotency key) gets the same decision, whatever the action."""

from __future__ import annotations

from datetime import timedelta

import pytest

from fatigue.domain import (
    Action,
    Campaign,
    Candidate,
    ContentKind,
    EngagementEvent,
    EventType,
    MessageRequest,
)
from fatigue.errors import ConflictError
from fatigue.governor import Governor
from fatigue.rules import load_rules
from fatigue.store.base import StateQuery

from .conftest import CONTRACT
from .fatigue_helpers import alice, items, request

CAP_ONE = '[[caps]]\nmax = 1\nper = "1d"\n'


def sends(governor, user="alice"):
    now = governor.clock().timestamp()
    return len(governor.store.load([StateQuery(user, now, 0.0)])[0].sends)


def test_a_retried_defer_is_the_same_decision(make_governor, clock):
    governor = make_governor(CAP_ONE)
    assert governor.decide(alice(), request(), items()).action == Action.SEND
    first = governor.decide(alice(), request(idempotency_key="r1"), items())
    assert first.action == Action.DEFER
    clock.advance(minutes=5)
    retry = governor.decide(alice(), request(idempotency_key="r1"), items())
    assert retry == first  # same id, same moment, same reasons with the same counters
    fresh = governor.decide(alice(), request(idempotency_key="r2"), items())
    assert fresh.decision_id != first.decision_id and fresh.decided_at == clock()


@pytest.mark.parametrize("first_action", [Action.SEND, Action.DEFER])
def test_a_key_reused_for_another_campaign_is_a_conflict_and_the_first_stands(
    make_governor, first_action
):
    governor = make_governor(CAP_ONE)
    if first_action is Action.DEFER:
        governor.decide(alice(), request(idempotency_key="earlier"), items())
    first = governor.decide(alice(), request(idempotency_key="k"), items())
    assert first.action == first_action
    with pytest.raises(ConflictError, match="'spring'"):
        governor.decide(alice(), request("autumn", idempotency_key="k"), items())
    assert sends(governor) == 1
    assert governor.decide(alice(), request(idempotency_key="k"), items()) == first


@pytest.mark.parametrize("first_action", [Action.SEND, Action.DEFER])
def test_a_key_reused_for_another_request_of_the_campaign_is_a_conflict(
    make_governor, first_action
):
    """The caller's digest (recipient, template, data) is remembered with the key's decision."""
    governor = make_governor(CAP_ONE)
    if first_action is Action.DEFER:
        governor.decide(alice(), request(idempotency_key="earlier"), items())
    first = governor.decide(alice(), request(idempotency_key="k", request_digest="a"), items())
    assert first.action == first_action
    with pytest.raises(ConflictError, match="another request"):
        governor.decide(alice(), request(idempotency_key="k", request_digest="b"), items())
    assert sends(governor) == 1
    retry = governor.decide(alice(), request(idempotency_key="k", request_digest="a"), items())
    assert retry == first
    # A caller that sends no digest (and decisions kept before digests) is not checked.
    assert governor.decide(alice(), request(idempotency_key="k"), items()) == first


def test_a_retried_suppress_is_the_same_decision_after_the_state_changed(make_governor, clock):
    governor = make_governor(CONTRACT)
    governor.record_event(EngagementEvent(EventType.UNSUBSCRIBE, "alice", clock()))
    first = governor.decide(alice(), request(idempotency_key="u1"), items())
    assert first.action == Action.SUPPRESS and first.deciding.rule == "suppression"
    governor.record_event(EngagementEvent(EventType.RESUBSCRIBE, "alice", clock()))
    clock.advance(hours=1)
    assert governor.decide(alice(), request(idempotency_key="u1"), items()) == first
    assert governor.decide(alice(), request(idempotency_key="u2"), items()).action == "send"


def test_a_retried_send_keeps_its_content_when_the_candidates_change(make_governor, clock):
    governor = make_governor(CONTRACT)
    first = governor.decide(alice(), request(idempotency_key="s1"), items(5, 0.5))
    assert first.action == Action.SEND
    clock.advance(minutes=1)
    retry = governor.decide(alice(), request(idempotency_key="s1"), items(4, 0.9, "hats"))
    assert retry == first and sends(governor) == 1


def test_an_arbitrated_decision_replays_with_the_losers_reasons(make_governor, clock):
    governor = make_governor('[[caps]]\nmax = 1\nper = "1d"\ncategory = "news"\n')
    governor.decide(alice(), request("earlier", "news"), items())
    both = MessageRequest(
        (Campaign("digest", "news", priority=5.0), Campaign("sale", "sale")),
        idempotency_key="a1",
    )
    first = governor.decide(alice(), both, items())
    assert first.campaign == "sale" and first.action == Action.SEND
    assert any(r.rule == "arbitration" and "digest lost: defer" in r.detail for r in first.reasons)
    clock.advance(minutes=1)
    assert governor.decide(alice(), both, items()) == first
    assert sends(governor) == 2


def test_a_dry_run_remembers_nothing(make_governor):
    governor = make_governor(CAP_ONE)
    dry = governor.decide(alice(), request(idempotency_key="k", dry_run=True), items())
    assert dry.action == Action.SEND and dry.dry_run
    real = governor.decide(alice(), request(idempotency_key="k"), items())
    assert real.decision_id != dry.decision_id and not real.dry_run and sends(governor) == 1


def test_a_retry_after_a_no_repeat_second_step_is_the_same(make_governor, clock):
    governor = make_governor(
        '[timeliness]\nno_repeat = "30d"\n[relevance]\nmin_relevance = 0.1\nmin_items = 1\n'
    )
    governor.decide(alice(), request(), [Candidate("old", 0.9)])
    clock.advance(days=1)
    offered = [Candidate("old", 0.9), Candidate("new-1", 0.5), Candidate("new-2", 0.4)]
    first = governor.decide(alice(), request(idempotency_key="n1"), offered)
    assert [item.item_id for item in first.items] == ["new-1", "new-2"]
    assert "1 sent recently" in next(r for r in first.reasons if r.rule == "timeliness").detail
    assert governor.decide(alice(), request(idempotency_key="n1"), offered) == first
    alone = governor.decide(alice(), request(idempotency_key="n2"), [Candidate("old", 0.9)])
    assert alone.action == Action.SUPPRESS and alone.deciding.rule == "relevance"
    assert governor.decide(alice(), request(idempotency_key="n2"), offered) == alone
    assert sends(governor) == 2


def test_a_retried_best_hour_defer_is_the_same(make_governor, clock):
    governor = make_governor("[send_time]\ndefault_hour = 18\n")
    deferrable = request(idempotency_key="h1", deferrable=True)
    first = governor.decide(alice(), deferrable, items())
    assert first.action == Action.DEFER and first.deciding.rule == "send_time"
    clock.advance(hours=7)  # now 19:00: a fresh decision would defer to tomorrow
    assert governor.decide(alice(), deferrable, items()) == first


def test_a_send_at_the_best_hour_counts_once(make_governor, clock):
    governor = make_governor("[send_time]\ndefault_hour = 12\n")
    deferrable = request(idempotency_key="h2", deferrable=True)
    first = governor.decide(alice(), deferrable, items())
    assert first.action == Action.SEND
    assert governor.decide(alice(), deferrable, items()) == first and sends(governor) == 1


def test_transactional_retries_replay_too(make_governor, clock):
    governor = make_governor(CONTRACT)
    receipt = request("receipt", kind=ContentKind.TRANSACTIONAL, idempotency_key="t1")
    first = governor.decide(alice(), receipt, [])
    clock.advance(seconds=30)
    assert governor.decide(alice(), receipt, []) == first and sends(governor) == 1


def test_a_basis_that_no_longer_explains_a_defer_is_decided_again(store, clock):
    strict = Governor(load_rules(CAP_ONE), store, clock)
    strict.decide(alice(), request(), items())
    deferred = strict.decide(alice(), request(idempotency_key="c1"), items())
    assert deferred.action == Action.DEFER
    # The rules change before the retry: the kept basis now reads as a send that was never
    # recorded, so the request is decided afresh under the same id and recorded once.
    relaxed = Governor(load_rules('[[caps]]\nmax = 2\nper = "1d"\n'), store, clock)
    clock.advance(minutes=1)
    retry = relaxed.decide(alice(), request(idempotency_key="c1"), items())
    assert retry.action == Action.SEND and retry.decision_id == deferred.decision_id
    assert retry.decided_at == deferred.decided_at + timedelta(minutes=1)
    assert relaxed.decide(alice(), request(idempotency_key="c1"), items()) == retry
    assert sends(relaxed) == 2


def test_a_retry_after_its_send_was_released_is_counted_again(make_governor, clock):
    governor = make_governor(CAP_ONE)
    first = governor.decide(alice(), request(idempotency_key="k"), items())
    assert first.action == Action.SEND and sends(governor) == 1
    assert governor.release(first.decision_id)  # its email failed to render: never made
    assert sends(governor) == 0
    clock.advance(minutes=1)
    retry = governor.decide(alice(), request(idempotency_key="k"), items())
    assert retry.action == Action.SEND and retry.decision_id == first.decision_id
    assert sends(governor) == 1  # this time a mail is made, and it counts
    again = governor.decide(alice(), request(idempotency_key="k"), items())
    assert again == retry and sends(governor) == 1  # a further retry replays, counts nothing
    other = governor.decide(alice(), request(idempotency_key="k2"), items())
    assert other.action != Action.SEND  # the daily cap of one holds


def test_a_retried_send_after_an_unsubscribe_is_no_longer_a_send(make_governor, clock):
    """A platform retrying after a timeout must not mail a customer who has just left."""
    governor = make_governor(CONTRACT)
    first = governor.decide(alice(), request(idempotency_key="s1"), items())
    assert first.action == Action.SEND
    clock.advance(seconds=20)
    governor.record_event(EngagementEvent(EventType.UNSUBSCRIBE, "alice", clock()))
    retry = governor.decide(alice(), request(idempotency_key="s1"), items())
    assert retry.action == Action.SUPPRESS and retry.decision_id == first.decision_id
    assert retry.deciding.rule == "suppression" and "since this send was decided" in (
        retry.deciding.detail
    )
    assert retry.items == () and sends(governor) == 1  # the first answer may have gone out


def test_a_retried_receipt_still_goes_to_a_customer_who_unsubscribed(make_governor, clock):
    """Unsubscribing stops marketing, not transactional mail (only a hard bounce does)."""
    governor = make_governor(CONTRACT)
    receipt = request("receipt", kind=ContentKind.TRANSACTIONAL, idempotency_key="t1")
    first = governor.decide(alice(), receipt, [])
    governor.record_event(EngagementEvent(EventType.UNSUBSCRIBE, "alice", clock()))
    assert governor.decide(alice(), receipt, []) == first
