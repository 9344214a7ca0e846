"""One contract, every backend: the same tests run against memory:// and a real Redis."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from fatigue.basis import Basis
from fatigue.domain import Campaign
from fatigue.errors import ConfigurationError
from fatigue.store import store_from_url
from fatigue.store.base import (
    MAX_SOFT_BOUNCES,
    CapCheck,
    CommitStatus,
    DecideCall,
    DecideStatus,
    DecisionMemo,
    EventChange,
    LoggedDecision,
    SendAttempt,
    SendRecord,
    StateQuery,
    decision_owner,
    new_decision_id,
    suppression_detail,
)

from .conftest import BACKENDS

NOW = 1_800_000_000.0
DAY = 86400


def record(user="u1", at=NOW, kind="promotional", category="sale", campaign="c1", items=()):
    return SendRecord(new_decision_id(user), at, "email", category, campaign, kind, True, items)


def attempt(rec, caps=(), **options):
    return SendAttempt(user_id=decision_owner(rec.decision_id), record=rec, caps=caps, **options)


def daily_cap(limit=3, at=NOW, **scope):
    return CapCheck(at - DAY, False, limit, "email", **scope)


def load(store, user="u1", since=0.0, now=NOW):
    return store.load([StateQuery(user, now, since)])[0]


def basis(tag: str) -> Basis:
    return Basis(tag, datetime(2027, 1, 15, 8, tzinfo=UTC), "UTC", (Campaign(tag),), (None,))


def logged(user="u1", n=0, action="defer"):
    """A decision as ``Decision.to_dict()`` shapes it, numbered ``n``."""
    reason = {"rule": "cooldown", "passed": False, "detail": f"#{n}", "deciding": True}
    decision = {
        "action": action,
        "user_id": user,
        "decision_id": f"d{n}.{user}",
        "reasons": [reason],
    }
    return LoggedDecision(user, json.dumps(decision))


def call(offers=(), key=None, decision_id=None, user="u1", **options):
    decision_id = decision_id or new_decision_id(user)
    return DecideCall(StateQuery(user, NOW, 0.0, key), decision_id, tuple(offers), **options)


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
class TestStoreContract:
    def test_an_identity_is_claimed_once_and_replaced_only_when_asked(self, store):
        """What tells the API that a store lost its data (api.store_state)."""
        assert store.identity() is None
        assert store.claim_identity("first") == "first"
        assert store.claim_identity("second") == "first"  # another host came later
        assert store.identity() == "first"
        assert store.claim_identity("after-replay", replace=True) == "after-replay"
        assert store.identity() == "after-replay"

    def test_empty_user_has_empty_state(self, store):
        state = load(store, "nobody")
        assert state.sends == () and state.suppression == {} and state.ignored == 0
        assert state.hours == (0,) * 24

    def test_commit_records_and_load_reads_back(self, store):
        rec = record(items=("i1", "i2"))
        [result] = store.commit([attempt(rec)])
        assert result.status == CommitStatus.RECORDED
        state = load(store)
        assert state.sends == (rec,)
        assert state.items == {"i1": NOW, "i2": NOW}
        assert state.ignored == 1

    def test_load_respects_since(self, store):
        store.commit([attempt(record(at=NOW - 2 * DAY)), attempt(record(at=NOW))])
        assert len(load(store, since=NOW - DAY).sends) == 1

    @pytest.mark.parametrize("path", ["commit", "decide"])
    def test_history_forgets_sends_as_old_as_its_ttl_to_the_microsecond(self, store, path):
        """Both paths trim alike: a send one history TTL old goes, one a microsecond younger stays.

        Fractional times keep sixteen digits: a horizon rounded to fourteen would trim the
        younger send too, or keep the older one.
        """
        ttl, now = 3 * DAY, NOW + 0.123456
        old, young = record(at=now - ttl, items=("old",)), record(at=now - ttl + 1e-6)
        store.commit([attempt(old), attempt(young)])
        latest = record(at=now, items=("new",))
        if path == "commit":
            store.commit([attempt(latest, history_ttl=ttl)])
        else:
            query = StateQuery("u1", now, 0.0, None)
            offer = attempt(latest, history_ttl=ttl)
            store.decide([DecideCall(query, new_decision_id("u1"), (offer,), history_ttl=ttl)])
        state = load(store, now=now)
        assert state.sends == (young, latest)
        assert state.items == {"new": now}

    def test_cap_rejects_at_limit(self, store):
        for offset in (3, 2, 1):
            rec = record(at=NOW - offset * 100)
            store.commit([attempt(rec, caps=(daily_cap(at=rec.at),))])
        [result] = store.commit([attempt(record(), caps=(daily_cap(),))])
        assert result.status == CommitStatus.REJECTED and result.replay is None
        assert len(load(store).sends) == 3

    def test_rolling_window_forgets_old_sends(self, store):
        store.commit([attempt(record(at=NOW - DAY))])  # exactly one window ago: outside
        [result] = store.commit([attempt(record(), caps=(daily_cap(limit=1),))])
        assert result.status == CommitStatus.RECORDED

    def test_inclusive_window_counts_its_start(self, store):
        store.commit([attempt(record(at=NOW - DAY))])
        cap = CapCheck(NOW - DAY, True, 1, "email")
        assert store.commit([attempt(record(), caps=(cap,))])[0].status == CommitStatus.REJECTED

    def test_cap_scope_by_category_and_campaign(self, store):
        store.commit([attempt(record(category="sale", campaign="a"))])
        other_category = daily_cap(limit=1, category="news")
        same_campaign = daily_cap(limit=1, campaign="a")
        [ok, rejected] = store.commit(
            [attempt(record(), caps=(other_category,)), attempt(record(), caps=(same_campaign,))]
        )
        assert (ok.status, rejected.status) == (CommitStatus.RECORDED, CommitStatus.REJECTED)

    def test_a_refusal_names_the_first_cap_reached_by_its_place(self, store):
        store.commit([attempt(record(category="sale", campaign="a"))])
        caps = (
            daily_cap(limit=1, category="news"),  # another category: not reached
            daily_cap(limit=2),  # one of two
            CapCheck(NOW - DAY, False, 1, "email", min_ignored=5),  # only after 5 ignored
            daily_cap(limit=1, campaign="a"),
            daily_cap(limit=0),
        )
        [result] = store.commit([attempt(record(), caps=caps)])
        assert (result.status, result.detail) == (CommitStatus.REJECTED, "cap:3")
        [fresh] = store.commit([attempt(record(user="u2"), caps=caps[:3] + caps[4:])])
        assert (fresh.status, fresh.detail) == (CommitStatus.REJECTED, "cap:3")

    def test_sends_that_do_not_count_are_not_capped(self, store):
        rec = SendRecord(new_decision_id("u1"), NOW, "email", "", "receipt", "transactional", False)
        store.commit([attempt(rec)])
        assert store.commit([attempt(record(), caps=(daily_cap(limit=1),))])[0].status == "recorded"

    def test_cooldown_rejects_after_non_transactional_only(self, store):
        receipt = record(kind="transactional", at=NOW - 60)
        store.commit([attempt(receipt)])
        [first] = store.commit([attempt(record(at=NOW - 30), cooldown_since=NOW - 3600)])
        [second] = store.commit([attempt(record(), cooldown_since=NOW - 3600)])
        assert first.status == CommitStatus.RECORDED
        assert second.status == CommitStatus.REJECTED and second.detail == "cooldown"

    def test_suppression_blocks_commit(self, store):
        store.apply(EventChange("u1", NOW, suppress=(("all", '{"reason":"unsubscribe"}'),)))
        [result] = store.commit([attempt(record(), blocking_scopes=("address", "all"))])
        assert result.status == CommitStatus.REJECTED and result.detail == "suppressed:all"
        assert load(store).suppression == {"all": '{"reason":"unsubscribe"}'}

    def test_idempotency_key_replays_and_never_counts_twice(self, store):
        first = attempt(record(), idempotency_key="k1", replay='{"first": true}')
        second = attempt(record(), idempotency_key="k1", replay='{"second": true}')
        results = store.commit([first, second])
        assert [r.status for r in results] == [CommitStatus.RECORDED, CommitStatus.DUPLICATE]
        assert results[1].replay == '{"first": true}'
        assert len(load(store).sends) == 1

    def test_release_forgets_the_send_and_its_items(self, store):
        rec = record(items=("i1",))
        store.commit([attempt(rec)])
        assert store.release(rec.decision_id) is True
        state = load(store)
        assert state.sends == () and state.items == {} and state.ignored == 0
        assert store.release(rec.decision_id) is False
        assert store.release("not-a-decision") is False

    def test_releasing_a_send_from_before_the_latest_open_leaves_ignored(self, store):
        before, after = record(at=NOW - 300), record(at=NOW - 100)
        store.commit([attempt(before)])
        store.apply(EventChange("u1", NOW - 200, engaged=True))  # an open between the two
        store.commit([attempt(after)])
        assert load(store).ignored == 1  # the later send is still ignored
        assert store.release(before.decision_id) is True
        assert load(store).ignored == 1
        assert store.release(after.decision_id) is True
        assert load(store).ignored == 0

    def test_engagement_resets_ignored_and_counts_hours(self, store):
        store.commit([attempt(record(at=NOW - 10)), attempt(record())])
        assert load(store).ignored == 2
        store.apply(EventChange("u1", NOW, engaged=True, hour=9))
        state = load(store)
        assert state.ignored == 0 and state.last_engaged == NOW
        assert state.hours[9] == 1 and state.audience_hours[9] == 1

    def test_soft_bounces_past_threshold_suppress_the_address(self, store):
        change = EventChange("u1", NOW, soft_bounce=True, soft_bounce_threshold=2)
        store.apply(change)
        assert "address" not in load(store).suppression
        store.apply(change)
        state = load(store)
        assert state.soft_bounces == 2
        assert json.loads(state.suppression["address"])["reason"] == "bounce_soft"

    def test_delivered_resets_soft_bounces(self, store):
        store.apply(EventChange("u1", NOW, soft_bounce=True, soft_bounce_threshold=2))
        store.apply(EventChange("u1", NOW, reset_soft_bounces=True))
        store.apply(EventChange("u1", NOW, soft_bounce=True, soft_bounce_threshold=2))
        assert "address" not in load(store).suppression

    def test_a_late_delivery_clears_only_the_soft_bounces_before_it(self, store):
        bounce = EventChange("u1", NOW, soft_bounce=True, soft_bounce_threshold=2)
        store.apply(replace(bounce, at=NOW - 3600))  # 09:00
        store.apply(EventChange("u1", NOW - 7200, reset_soft_bounces=True))  # 08:00, reported late
        assert load(store).soft_bounces == 1  # the 09:00 bounce came after that delivery
        store.apply(bounce)  # 10:00: two bounces with no delivery in between
        state = load(store)
        assert state.soft_bounces == 2 and "address" in state.suppression

    def test_a_delivery_clears_the_bounces_before_it_whenever_it_is_reported(self, store):
        bounce = EventChange("u1", NOW - 3600, soft_bounce=True, soft_bounce_threshold=3)
        store.apply(bounce)
        store.apply(replace(bounce, at=NOW - 60))
        store.apply(EventChange("u1", NOW - 1800, reset_soft_bounces=True))  # between the two
        assert load(store).soft_bounces == 1
        store.apply(EventChange("u1", NOW - 5000, reset_soft_bounces=True))  # older: no change
        assert load(store).soft_bounces == 1

    def test_an_older_unsubscribe_reported_after_a_resubscribe_leaves_it_lifted(self, store):
        unsubscribed = suppression_detail("unsubscribe", NOW - 7200, "c1")
        store.apply(EventChange("u1", NOW - 3600, lift=("all",)))  # resubscribed at 11:00
        store.apply(EventChange("u1", NOW - 7200, suppress=(("all", unsubscribed),)))  # 09:00
        assert load(store).suppression == {}
        later = suppression_detail("unsubscribe", NOW, "c1")
        store.apply(EventChange("u1", NOW, suppress=(("all", later),)))  # after the lift: holds
        assert load(store).suppression == {"all": later}

    def test_the_newest_soft_bounce_times_are_kept_up_to_the_shared_limit(self, store):
        for n in range(MAX_SOFT_BOUNCES + 5):
            store.apply(EventChange("u1", NOW + n, soft_bounce=True))
        assert load(store).soft_bounces == MAX_SOFT_BOUNCES
        store.apply(EventChange("u1", NOW + 9.5, reset_soft_bounces=True))  # a late delivery
        assert load(store).soft_bounces == MAX_SOFT_BOUNCES + 5 - 10  # those after 09.5 s

    def test_lift_removes_a_scope_and_keeps_others(self, store):
        store.apply(EventChange("u1", NOW, suppress=(("all", "{}"), ("address", "{}"))))
        store.apply(EventChange("u1", NOW, lift=("all",)))
        assert load(store).suppression == {"address": "{}"}

    def test_an_event_reported_twice_is_applied_once(self, store):
        change = EventChange("u1", NOW, hour=9, soft_bounce=True, event_id="ev-1")
        assert store.apply(change) is True
        assert store.apply(change) is False  # the client retried the batch
        assert store.apply(replace(change, event_id="ev-2")) is True  # another bounce
        state = load(store)
        assert state.soft_bounces == 2 and state.hours[9] == 2 and state.audience_hours[9] == 2

    def test_a_retried_batch_never_reapplies_events_older_than_the_event_memory(self, store):
        bounce = EventChange("u1", NOW, soft_bounce=True, soft_bounce_threshold=3, applied_at=NOW)
        batch = [
            replace(bounce, at=NOW - 9 * DAY, event_id="ev-bounce-9d"),
            replace(bounce, at=NOW - 8 * DAY, event_id="ev-bounce-8d"),
            EventChange("u1", NOW, engaged=True, event_id="ev-purchase", applied_at=NOW),
        ]
        assert [store.apply(change) for change in batch] == [True, True, True]
        # The client retries the batch: ids are remembered from when they were applied.
        assert [store.apply(change) for change in batch] == [False, False, False]
        state = load(store)
        assert state.soft_bounces == 2 and "address" not in state.suppression

    def test_a_late_engagement_counts_the_sends_made_since_and_never_goes_back(self, store):
        store.commit([attempt(record(at=NOW - 300)), attempt(record(at=NOW - 100))])
        store.apply(EventChange("u1", NOW - 200, engaged=True))  # reported after the second send
        state = load(store)
        assert state.last_engaged == NOW - 200 and state.ignored == 1
        store.apply(EventChange("u1", NOW - 50, engaged=True))
        store.apply(EventChange("u1", NOW - 400, engaged=True))  # older than what is known
        state = load(store)
        assert state.last_engaged == NOW - 50 and state.ignored == 0

    def test_a_resubscribe_older_than_the_unsubscribe_leaves_it(self, store):
        unsubscribed = suppression_detail("unsubscribe", NOW, "c1")
        store.apply(EventChange("u1", NOW, suppress=(("all", unsubscribed),)))
        store.apply(EventChange("u1", NOW - DAY, lift=("all",)))  # delayed or replayed
        assert load(store).suppression == {"all": unsubscribed}
        store.apply(EventChange("u1", NOW + 60, lift=("all",)))
        assert load(store).suppression == {}

    def test_an_older_suppression_never_replaces_a_newer_one(self, store):
        newer, older = (suppression_detail("complaint", NOW), suppression_detail("bounce", NOW - 9))
        store.apply(EventChange("u1", NOW, suppress=(("address", newer),)))
        store.apply(EventChange("u1", NOW - 9, suppress=(("address", older),)))
        assert load(store).suppression == {"address": newer}
        assert json.loads(newer) == {"reason": "complaint", "at": "2027-01-15T08:00:00+00:00",
                                     "ts": NOW}  # fmt: skip

    def test_users_are_isolated(self, store):
        store.commit([attempt(record(user="a"))])
        assert load(store, "b").sends == ()

    def test_user_ids_with_braces_and_unicode(self, store):
        user = "we{ird}:ü"
        rec = record(user=user)
        store.commit([attempt(rec)])
        assert load(store, user).sends == (rec,)
        assert store.release(rec.decision_id)

    def test_ping(self, store):
        store.ping()

    def test_decide_records_the_first_offer_that_passes_and_returns_the_state_before(self, store):
        store.commit([attempt(record(at=NOW - 60, category="news"))])
        blocked = attempt(record(category="news"), caps=(daily_cap(limit=1, category="news"),))
        allowed = attempt(record(category="sale"), caps=(daily_cap(limit=1, category="sale"),))
        [reply] = store.decide([call(offers=(blocked, allowed))])
        assert (reply.status, reply.offer) == (DecideStatus.RECORDED, 1)
        assert len(reply.state.sends) == 1 and reply.state.ignored == 1
        assert [r.category for r in load(store).sends] == ["news", "sale"]

    def test_decide_without_a_passing_offer_records_nothing(self, store):
        store.apply(EventChange("u1", NOW, suppress=(("all", "{}"),)))
        [reply] = store.decide([call(offers=(attempt(record(), blocking_scopes=("all",)),))])
        assert (reply.status, reply.offer) == (DecideStatus.CHECKED, None)
        assert reply.state.suppression == {"all": "{}"}
        assert load(store).sends == ()

    def test_decide_is_stale_when_a_guard_item_was_sent_recently(self, store):
        store.commit([attempt(record(at=NOW - 100, items=("i1",)))])
        stale = call(
            offers=(attempt(record()),),
            key="k",
            guard_items=("i1", "i2"),
            repeat_since=NOW - 3600,
            basis=basis("b1"),
        )
        [reply] = store.decide([stale])
        assert reply.status == DecideStatus.STALE and reply.state.items == {"i1": NOW - 100}
        assert len(load(store).sends) == 1
        # The stale decision kept nothing: the key is free for another decision.
        assert store.remember([DecisionMemo("u1", "k", "d-x", "{}", NOW, 60)]) == [None]
        fresh = call(offers=(attempt(record()),), key="k2", guard_items=("i1", "i2"),
                     basis=basis("b1"))  # fmt: skip
        [read] = store.decide([fresh])
        assert read.status == DecideStatus.RECORDED and read.state.items == {"i1": NOW - 100}

    def test_decide_keeps_the_basis_with_the_state_and_replays_it_to_others(self, store):
        store.apply(EventChange("u1", NOW, suppress=(("category:x", "{}"),)))
        first = call(offers=(attempt(record()),), key="k", basis=basis("b1"))
        [recorded] = store.decide([first])
        [again] = store.decide([call(offers=(attempt(record()),), key="k", basis=basis("b2"))])
        assert recorded.status == DecideStatus.RECORDED and again.status == DecideStatus.REPLAY
        kept = again.replay
        assert (kept.decision_id, kept.basis, kept.offer) == (first.decision_id, basis("b1"), 0)
        assert kept.state.sends == () and kept.state.suppression == {"category:x": "{}"}
        assert len(load(store).sends) == 1
        [own] = store.decide([first._replace(offers=())])  # the same decision is not a replay
        assert own.status == DecideStatus.CHECKED and len(own.state.sends) == 1

    def test_remember_keeps_unless_another_decision_holds_the_key(self, store):
        mine = DecisionMemo("u1", "k", "d-a", '{"a":1}', NOW, 60)
        assert store.remember([mine]) == [None]
        [held] = store.remember([DecisionMemo("u1", "k", "d-b", '{"b":1}', NOW, 60)])
        assert (held.decision_id, held.payload, held.state) == ("d-a", '{"a":1}', None)
        assert store.remember([replace(mine, payload='{"a":2}')]) == [None]
        [held] = store.remember([DecisionMemo("u1", "k", "d-c", '{"c":1}', NOW, 60)])
        assert (held.decision_id, held.payload) == ("d-a", '{"a":2}')

    def test_commit_by_the_decision_that_holds_the_key_records(self, store):
        rec = record()
        store.decide([call(key="k", decision_id=rec.decision_id, basis=basis("b1"))])
        [result] = store.commit([attempt(rec, idempotency_key="k", replay='{"final":1}')])
        assert result.status == CommitStatus.RECORDED
        [other] = store.commit([attempt(record(), idempotency_key="k", replay="{}")])
        assert other.status == CommitStatus.DUPLICATE and other.replay == '{"final":1}'

    def test_decide_later_decides_in_the_order_sent_and_reads_its_replies_once(self, store):
        capped = (daily_cap(limit=1),)
        first = store.decide_later([call(offers=(attempt(record(), caps=capped),))])
        [recorded] = first.result()
        second = store.decide_later([call(offers=(attempt(record(), caps=capped),))])
        other = store.decide_later([call(user="u2", offers=(attempt(record(user="u2")),))])
        [checked], [elsewhere] = second.result(), other.result()  # two answers on their way
        assert (recorded.status, checked.status) == (DecideStatus.RECORDED, DecideStatus.CHECKED)
        assert elsewhere.status == DecideStatus.RECORDED and first.result() == [recorded]
        assert len(checked.state.sends) == 1 and len(load(store).sends) == 1

    def test_a_cancelled_decide_later_leaves_the_store_answering(self, store):
        sent = store.decide_later([call(offers=(attempt(record()),))])
        sent.cancel()  # what the store did is done; the caller just never reads it
        [reply] = store.decide([call(offers=(attempt(record()),))])
        assert reply.status == DecideStatus.RECORDED and len(load(store).sends) == 2

    def test_reduced_caps_and_sunset_follow_the_ignored_count(self, store):
        store.commit([attempt(record(at=NOW - 10))])  # one ignored message
        reduced = CapCheck(NOW - DAY, False, 1, "email", min_ignored=2)
        [off] = store.decide([call(offers=(attempt(record(), caps=(reduced,)),))])
        [on] = store.decide([call(offers=(attempt(record(), caps=(reduced,)),))])
        assert (off.status, on.status) == (DecideStatus.RECORDED, DecideStatus.CHECKED)
        [sunset] = store.commit([attempt(record(), sunset_at=2)])
        assert sunset.status == CommitStatus.REJECTED and sunset.detail == "sunset"
        [offered] = store.decide([call(offers=(attempt(record(), sunset_at=2),))])
        assert offered.status == DecideStatus.CHECKED and len(load(store).sends) == 2

    def test_decision_log_is_newest_first_per_customer(self, store):
        store.log_decisions([logged("u1", 1), logged("u2", 2), logged("u1", 3, "send")])
        store.log_decisions([logged("u1", 4)])
        assert [d["decision_id"] for d in store.recent_decisions("u1")] == [
            "d4.u1",
            "d3.u1",
            "d1.u1",
        ]
        assert store.recent_decisions("u1")[1] == json.loads(logged("u1", 3, "send").decision)
        assert [d["decision_id"] for d in store.recent_decisions("u2")] == ["d2.u2"]
        assert store.recent_decisions("nobody") == []
        assert store.recent_decisions("u1", limit=1)[0]["decision_id"] == "d4.u1"

    def test_decision_log_keeps_the_newest_fifty(self, store):
        store.log_decisions([logged("u1", n) for n in range(55)])
        kept = store.recent_decisions("u1", limit=100)
        assert [d["decision_id"] for d in kept] == [f"d{n}.u1" for n in range(54, 4, -1)]
        assert len(store.recent_decisions("u1")) == 20

    def test_decision_log_shows_a_replayed_decision_once(self, store):
        store.log_decisions([logged("u1", 1), logged("u1", 2)])
        store.log_decisions([logged("u1", 1)])  # a retried request replays decision 1
        assert [d["decision_id"] for d in store.recent_decisions("u1")] == ["d1.u1", "d2.u1"]

    def test_decision_log_is_not_fatigue_state(self, store):
        user = "{odd} ü"
        store.log_decisions([logged(user, 1, "send")])
        assert store.recent_decisions(user)[0]["user_id"] == user
        state = load(store, user)
        assert state.sends == () and state.ignored == 0
        store.log_decisions([])


def test_decision_ids_name_their_owner():
    assert decision_owner(new_decision_id("bob@example")) == "bob@example"
    assert decision_owner("garbage") is None


def test_unknown_scheme_is_a_configuration_error():
    with pytest.raises(ConfigurationError, match="memcached://"):
        store_from_url("memcached://localhost")
