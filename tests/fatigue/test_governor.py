"""Every rule through ``Governor.decide`` with an injected clock, on every store backend."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest

from fatigue.domain import Action, Candidate, ContentKind, EngagementEvent, EventType, Recipient
from fatigue.store.base import StateQuery

from .conftest import CONTRACT
from .fatigue_helpers import alice, items, request

CAP_ONLY = '[[caps]]\nmax = 2\nper = "1d"\n'


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def reason(decision, rule):
    return next(r for r in decision.reasons if r.rule == rule)


def event(kind, clock, user="alice", **options):
    return EngagementEvent(EventType(kind), user, clock(), **options)


def test_contract_rules_send_a_relevant_message(make_governor):
    decision = make_governor().decide(alice(), request(), items())
    assert decision.action == Action.SEND and decision.send_at is None
    assert [item.item_id for item in decision.items][:2] == ["item-shoes-0", "item-shoes-1"]
    assert decision.campaign == "spring" and decision.deciding is None
    assert {r.rule for r in decision.reasons} >= {"suppression", "holdout", "relevance"}


def test_rolling_cap_defers_until_the_oldest_send_leaves(make_governor, clock):
    governor = make_governor(CAP_ONLY)
    first = clock()
    assert governor.decide(alice(), request(), items()).action == Action.SEND
    clock.advance(hours=1)
    assert governor.decide(alice(), request(), items()).action == Action.SEND
    clock.advance(hours=1)
    decision = governor.decide(alice(), request(), items())
    assert decision.action == Action.DEFER
    assert decision.send_at == first + timedelta(days=1)
    cap = decision.deciding
    assert (cap.rule, cap.counter, cap.limit, cap.passed) == ("cap:all:2/1d", 2, 2, False)
    clock.set(first + timedelta(days=1))
    assert governor.decide(alice(), request(), items()).action == Action.SEND


def test_caps_scoped_by_category_and_campaign(make_governor):
    governor = make_governor(
        '[[caps]]\nmax = 1\nper = "1d"\ncategory = "sale"\n'
        '[[caps]]\nmax = 1\nper = "1d"\ncampaign = "digest"\n'
    )
    assert governor.decide(alice(), request("a", "sale"), items()).action == Action.SEND
    assert governor.decide(alice(), request("b", "sale"), items()).action == Action.DEFER
    assert governor.decide(alice(), request("digest", "news"), items()).action == Action.SEND
    assert governor.decide(alice(), request("digest", "other"), items()).action == Action.DEFER
    assert governor.decide(alice(), request("c", "news"), items()).action == Action.SEND


def test_calendar_day_cap_resets_at_local_midnight(make_governor, clock):
    governor = make_governor('[[caps]]\nmax = 1\nper = "1d"\ncalendar = true\n')
    tokyo = alice("Asia/Tokyo")
    clock.set(utc(2026, 1, 12, 14))  # 23:00 in Tokyo
    assert governor.decide(tokyo, request(), items()).action == Action.SEND
    decision = governor.decide(tokyo, request(), items())
    assert decision.action == Action.DEFER and decision.send_at == utc(2026, 1, 12, 15)
    clock.set(utc(2026, 1, 12, 15))  # midnight in Tokyo
    assert governor.decide(tokyo, request(), items()).action == Action.SEND


def test_calendar_week_cap_in_the_customers_zone(make_governor, clock):
    governor = make_governor('[[caps]]\nmax = 1\nper = "1w"\ncalendar = true\n')
    new_york = alice("America/New_York")
    clock.set(utc(2026, 1, 14, 12))  # Wednesday
    assert governor.decide(new_york, request(), items()).action == Action.SEND
    decision = governor.decide(new_york, request(), items())
    assert decision.send_at == utc(2026, 1, 19, 5)  # Monday 00:00 EST


def test_cooldown_after_any_non_transactional_message(make_governor, clock):
    governor = make_governor('[cooldown]\nafter_any = "16h"\n')
    start = clock()
    assert governor.decide(alice(), request("a"), items()).action == Action.SEND
    clock.advance(hours=2)
    decision = governor.decide(alice(), request("b"), items())
    assert decision.action == Action.DEFER and decision.deciding.rule == "cooldown"
    assert decision.send_at == start + timedelta(hours=16)
    receipt = governor.decide(alice(), request("r", kind=ContentKind.TRANSACTIONAL), items())
    assert receipt.action == Action.SEND


def test_zero_cooldown_is_off(make_governor):
    governor = make_governor('[cooldown]\nafter_any = "0s"\n')
    for _ in range(3):
        assert governor.decide(alice(), request(), items()).action == Action.SEND


def test_quiet_hours_defer_to_the_local_end_never_drop(make_governor, clock):
    governor = make_governor('[quiet_hours]\nstart = "21:00"\nend = "08:00"\n')
    clock.set(utc(2026, 1, 12, 22))
    decision = governor.decide(alice(), request(), items())
    assert decision.action == Action.DEFER and decision.deciding.rule == "quiet_hours"
    assert decision.send_at == utc(2026, 1, 13, 8)
    assert decision.items  # the content is kept for when it goes
    # The default zone applies when the recipient has none (UTC when the file names none).
    assert governor.decide(Recipient("bob"), request(), items()).send_at == utc(2026, 1, 13, 8)


def test_quiet_hours_across_spring_forward(make_governor, clock):
    governor = make_governor(CONTRACT)
    clock.set(utc(2026, 3, 28, 23))
    decision = governor.decide(alice(), request(), items())
    assert decision.send_at == utc(2026, 3, 29, 7)  # 08:00 BST


def test_transactional_ignores_quiet_hours_unless_configured(make_governor, clock):
    clock.set(utc(2026, 1, 12, 23))
    receipt = request("r", kind=ContentKind.TRANSACTIONAL)
    relaxed = make_governor('[quiet_hours]\nstart = "21:00"\nend = "08:00"\n')
    assert relaxed.decide(alice(), receipt, []).action == Action.SEND
    strict = make_governor('[quiet_hours]\nstart = "21:00"\nend = "08:00"\ntransactional = true\n')
    assert strict.decide(alice(), receipt, []).action == Action.DEFER


def test_not_enough_relevant_items_suppresses(make_governor):
    governor = make_governor("[relevance]\nmin_relevance = 0.3\nmin_items = 3\n")
    weak = items(2, 0.5) + items(5, 0.1, category="hats")
    decision = governor.decide(alice(), request(), weak)
    assert decision.action == Action.SUPPRESS and decision.items == ()
    assert (decision.deciding.rule, decision.deciding.counter, decision.deciding.limit) == (
        "relevance",
        2,
        3,
    )
    assert governor.decide(alice(), request(), items(3, 0.5)).action == Action.SEND


def test_transactional_mail_needs_no_relevant_items(make_governor):
    governor = make_governor(CONTRACT)
    receipt = governor.decide(alice(), request("r", kind=ContentKind.TRANSACTIONAL), [])
    assert receipt.action == Action.SEND
    assert "none needed" in reason(receipt, "relevance").detail
    assert governor.decide(alice(), request(), []).action == Action.SUPPRESS


def test_a_template_showing_items_is_not_sent_without_them(make_governor, caplog):
    governor = make_governor(CONTRACT)
    receipt = request("r", kind=ContentKind.TRANSACTIONAL, min_items=1)
    empty = governor.decide(alice(), receipt, [])
    assert empty.action == Action.SUPPRESS
    assert empty.deciding.rule == "template" and empty.deciding.passed is False
    assert empty.deciding.detail == "0 item(s) chosen; the email's template shows at least 1"
    # Decided before the store is asked to record anything: no send recorded, then released.
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert governor.store.load([StateQuery("alice", 0.0, 0.0)])[0].sends == ()
    full = governor.decide(alice(), request("r2", kind=ContentKind.TRANSACTIONAL, min_items=2),
                           items())  # fmt: skip
    assert full.action == Action.SEND and reason(full, "template").passed


def test_a_template_showing_more_items_than_diversity_allows_says_so(make_governor):
    governor = make_governor(
        "[relevance]\nmin_relevance = 0.0\nmin_items = 1\n[diversity]\nmax_items = 2\n"
    )
    decision = governor.decide(alice(), request("r", min_items=3), items())
    assert decision.action == Action.SUPPRESS and decision.deciding.rule == "template"
    assert decision.deciding.detail == (
        "2 item(s) chosen; the email's template shows at least 3, "
        "more than diversity.max_items (2) lets any email have"
    )


@pytest.mark.parametrize("diversity", ["", "[diversity]\nmax_items = 6\n"])
def test_no_more_items_are_chosen_than_the_email_shows(make_governor, clock, diversity):
    governor = make_governor(
        '[timeliness]\nno_repeat = "30d"\n[relevance]\nmin_relevance = 0.0\nmin_items = 1\n'
        + diversity
    )
    candidates = items(8)
    decision = governor.decide(alice(), request(max_items=3), candidates)
    assert [item.item_id for item in decision.items] == [c.item_id for c in candidates[:3]]
    clock.advance(days=1)
    again = governor.decide(alice(), request("later", max_items=3), candidates)
    # Only what the first email showed is held back as sent.
    assert [item.item_id for item in again.items] == [c.item_id for c in candidates[3:6]]
    assert "3 sent recently" in reason(again, "timeliness").detail


def test_an_email_showing_fewer_items_than_relevance_needs_still_needs_them_relevant(
    make_governor,
):
    governor = make_governor("[relevance]\nmin_relevance = 0.3\nmin_items = 3\n")
    two = governor.decide(alice(), request("a", max_items=2), items(2, 0.5))
    assert two.action == Action.SUPPRESS and two.deciding.rule == "relevance"
    enough = governor.decide(alice(), request("b", max_items=2), items(3, 0.5))
    assert enough.action == Action.SEND and len(enough.items) == 2
    assert reason(enough, "relevance").passed


def test_timeliness_excludes_stale_content(make_governor, clock):
    governor = make_governor(
        '[timeliness]\nmax_age_editorial = "14d"\nno_repeat = "30d"\n'
        "[relevance]\nmin_relevance = 0.0\nmin_items = 1\n"
    )
    now = clock()
    candidates = [
        Candidate("expired", 0.9, expires_at=now),
        Candidate("gone", 0.9, in_stock=False),
        Candidate(
            "old-news", 0.9, kind=ContentKind.EDITORIAL, published_at=now - timedelta(days=15)
        ),
        Candidate("receipt", 0.9, kind=ContentKind.TRANSACTIONAL),
        Candidate("older", 0.5, published_at=now - timedelta(days=3)),
        Candidate("fresher", 0.5, published_at=now - timedelta(days=1)),
    ]
    decision = governor.decide(alice(), request(), candidates)
    assert [item.item_id for item in decision.items] == ["fresher", "older"]
    assert "1 expired" in reason(decision, "timeliness").detail
    clock.advance(days=1)
    again = governor.decide(alice(), request(), [*candidates, Candidate("new", 0.1)])
    assert [item.item_id for item in again.items] == ["new"]
    assert "2 sent recently" in reason(again, "timeliness").detail


def test_diversity_caps_items_per_category(make_governor):
    governor = make_governor("[diversity]\nmax_items = 4\nmax_per_category = 2\n")
    mixed = items(4, 0.9, "shoes") + items(3, 0.5, "hats") + items(1, 0.1, "bags")
    decision = governor.decide(alice(), request(), mixed)
    assert [item.category for item in decision.items] == ["shoes", "shoes", "hats", "hats"]


def test_diversity_mmr_trades_relevance_for_new_categories(make_governor):
    governor = make_governor('[diversity]\nmax_items = 3\nstrategy = "mmr"\nmmr_lambda = 0.5\n')
    mixed = items(3, 0.9, "shoes") + items(1, 0.6, "hats") + items(1, 0.5, "bags")
    decision = governor.decide(alice(), request(), mixed)
    assert [item.category for item in decision.items] == ["shoes", "hats", "bags"]


def test_engagement_lowers_the_cap_then_sunsets(make_governor, clock):
    governor = make_governor(
        '[engagement]\nreduce_after = 2\nreduced_max = 1\nreduced_per = "7d"\nsunset_after = 2\n'
    )
    for _ in range(2):
        assert governor.decide(alice(), request(), items()).action == Action.SEND
        clock.advance(days=1)
    # Two ignored: one message a week now, and the last one was a day ago.
    reduced = governor.decide(alice(), request(), items())
    assert reduced.action == Action.DEFER and reduced.deciding.rule == "engagement:reduced:1"
    clock.advance(days=7)
    assert governor.decide(alice(), request(), items()).action == Action.SEND
    clock.advance(days=7)
    assert governor.decide(alice(), request(), items()).action == Action.SEND
    clock.advance(days=7)
    sunset = governor.decide(alice(), request(), items())
    assert sunset.action == Action.SUPPRESS and sunset.deciding.rule == "sunset"
    governor.record_event(event("machine_open", clock))
    assert governor.decide(alice(), request(), items()).action == Action.SUPPRESS
    governor.record_event(event("click", clock))
    assert governor.decide(alice(), request(), items()).action == Action.SEND


def test_transactional_is_exempt_from_caps_and_optionally_counts(make_governor):
    receipt = request("r", kind=ContentKind.TRANSACTIONAL)
    exempt = make_governor('[[caps]]\nmax = 1\nper = "1d"\n')
    assert exempt.decide(alice(), request(), items()).action == Action.SEND
    assert exempt.decide(alice(), receipt, []).action == Action.SEND
    counting = make_governor(
        '[[caps]]\nmax = 1\nper = "1d"\n[transactional]\ncount_toward_caps = true\n'
    )
    bob = Recipient("bob")
    assert counting.decide(bob, receipt, []).action == Action.SEND
    assert counting.decide(bob, request(), items()).action == Action.DEFER


@pytest.mark.parametrize(
    ("kind", "options", "promotional", "transactional"),
    [
        ("unsubscribe", {}, Action.SUPPRESS, Action.SEND),
        ("complaint", {}, Action.SUPPRESS, Action.SEND),
        ("bounce_hard", {}, Action.SUPPRESS, Action.SUPPRESS),
        ("unsubscribe", {"category": "other"}, Action.SEND, Action.SEND),
        ("unsubscribe", {"category": "sale"}, Action.SUPPRESS, Action.SEND),
    ],
)
def test_suppression(make_governor, clock, kind, options, promotional, transactional):
    governor = make_governor("")
    governor.record_event(event(kind, clock, **options))
    assert governor.decide(alice(), request(category="sale"), items()).action == promotional
    receipt = request("r", kind=ContentKind.TRANSACTIONAL)
    assert governor.decide(alice(), receipt, []).action == transactional


def test_resubscribe_lifts_an_unsubscribe_but_not_a_hard_bounce(make_governor, clock):
    governor = make_governor("")
    governor.record_event(event("unsubscribe", clock))
    governor.record_event(event("resubscribe", clock))
    assert governor.decide(alice(), request(), items()).action == Action.SEND
    governor.record_event(event("bounce_hard", clock))
    governor.record_event(event("resubscribe", clock))
    assert governor.decide(alice(), request(), items()).action == Action.SUPPRESS


def test_soft_bounces_past_threshold_suppress(make_governor, clock):
    governor = make_governor("[suppression]\nsoft_bounce_threshold = 2\n")
    governor.record_event(event("bounce_soft", clock))
    assert governor.decide(alice(), request(), items()).action == Action.SEND
    governor.record_event(event("bounce_soft", clock))
    decision = governor.decide(alice(), request(), items())
    assert (
        decision.action == Action.SUPPRESS
        and "soft bounces in a row stopped" in decision.deciding.detail
    )


def test_holdout_is_deterministic_and_close_to_its_percentage(make_governor):
    governor = make_governor('[holdout]\npercent = 20\nsalt = "s1"\n')
    held = [
        governor.decide(Recipient(f"user-{n}"), request(), items()).action == Action.SUPPRESS
        for n in range(500)
    ]
    assert 70 <= sum(held) <= 130
    again = make_governor('[holdout]\npercent = 20\nsalt = "s1"\n')
    first = next(n for n, h in enumerate(held) if h)
    decision = again.decide(Recipient(f"user-{first}"), request(), items())
    assert decision.deciding.rule == "holdout"
    # Editorial mail is not held out unless the rule says so.
    editorial = request(kind=ContentKind.EDITORIAL)
    assert again.decide(Recipient(f"user-{first}"), editorial, items()).action == Action.SEND


def test_arbitration_picks_relevance_times_priority_and_says_why(make_governor):
    governor = make_governor("[relevance]\nmin_relevance = 0.1\nmin_items = 1\n")
    req = request("a").__class__(
        campaigns=(
            request("low", priority=1.0).campaigns[0],
            request("boosted", priority=3.0).campaigns[0],
            request("blocked", priority=9.0).campaigns[0],
        )
    )
    candidates = [items(2, 0.6), items(2, 0.3), items(2, 0.05)]
    decision = governor.decide(alice(), req, candidates)
    assert decision.campaign == "boosted"
    losers = [r.detail for r in decision.reasons if r.rule == "arbitration" and not r.passed]
    assert any(d.startswith("low lost: score 0.5995") for d in losers)
    assert any(d.startswith("blocked lost: suppress by relevance") for d in losers)


def test_a_tied_arbitration_says_tied_not_below(make_governor):
    governor = make_governor("[relevance]\nmin_relevance = 0.1\nmin_items = 1\n")
    req = request("a").__class__(
        campaigns=(request("first").campaigns[0], request("second").campaigns[0])
    )
    decision = governor.decide(alice(), req, [items(2, 0.5), items(2, 0.5)])
    assert decision.campaign == "first"
    [lost] = [r.detail for r in decision.reasons if r.rule == "arbitration" and not r.passed]
    assert lost.startswith("second lost: score 0.4995") and "tied with first" in lost


def test_arbitration_falls_back_to_the_earliest_defer(make_governor, clock):
    governor = make_governor(
        '[[caps]]\nmax = 1\nper = "1d"\ncategory = "sale"\n'
        '[[caps]]\nmax = 1\nper = "2d"\ncategory = "news"\n'
    )
    start = clock()
    governor.decide(alice(), request("x", "sale"), items())
    governor.decide(alice(), request("y", "news"), items())
    clock.advance(hours=1)
    both = request("a").__class__(
        campaigns=(request("late", "news").campaigns[0], request("soon", "sale").campaigns[0])
    )
    decision = governor.decide(alice(), both, items())
    assert decision.action == Action.DEFER and decision.campaign == "soon"
    assert decision.send_at == start + timedelta(days=1)
    assert any(r.detail.startswith("late lost: defer by cap:news") for r in decision.reasons)


def test_send_time_defers_to_the_customers_best_hour(make_governor, clock):
    governor = make_governor(
        '[quiet_hours]\nstart = "21:00"\nend = "08:00"\ndefault_timezone = "Europe/London"\n'
        "[send_time]\ndefault_hour = 10\nmin_events = 3\naudience_min_events = 1000\n"
    )
    deferrable = request(deferrable=True)
    clock.set(utc(2026, 1, 12, 12))
    default = governor.decide(alice(), deferrable, items())
    assert default.action == Action.DEFER and default.send_at == utc(2026, 1, 13, 10)
    assert "default" in default.deciding.detail
    for day in range(3):
        at = utc(2026, 1, 5 + day, 18, 30)  # opens at 18:xx London time
        governor.record_event(EngagementEvent(EventType.OPEN, "alice", at))
    personal = governor.decide(alice(), deferrable, items())
    assert personal.send_at == utc(2026, 1, 12, 18) and "customer" in personal.deciding.detail
    clock.set(utc(2026, 1, 12, 18, 20))
    assert governor.decide(alice(), deferrable, items()).action == Action.SEND


def test_a_default_hour_inside_quiet_hours_moves_to_the_first_hour_after_them(make_governor, clock):
    """[send_time] left at 10:00 with quiet hours until 11:00 deferred for ever, 16 days a time."""
    governor = make_governor(
        '[quiet_hours]\nstart = "22:00"\nend = "11:00"\ndefault_timezone = "Europe/London"\n'
        "[send_time]\n"
    )
    clock.set(utc(2026, 1, 12, 12))
    deferred = governor.decide(alice(), request(deferrable=True), items())
    assert deferred.action == Action.DEFER and deferred.send_at == utc(2026, 1, 13, 11)
    assert "default 10:00 is in quiet hours" in deferred.deciding.detail
    clock.set(deferred.send_at)
    assert governor.decide(alice(), request(deferrable=True), items()).action == Action.SEND


def test_too_few_items_after_diversity_is_blamed_on_diversity_not_relevance(make_governor):
    governor = make_governor(
        "[relevance]\nmin_relevance = 0.05\nmin_items = 3\n"
        "[diversity]\nmax_items = 6\nmax_per_category = 2\n"
    )
    decision = governor.decide(alice(), request(), items(20, 0.9, "shoes"))
    assert decision.action == Action.SUPPRESS
    assert reason(decision, "relevance").passed and reason(decision, "relevance").counter == 20
    assert decision.deciding.rule == "diversity"
    assert (
        decision.deciding.detail
        == "kept 2 item(s) (at most 2 per category, at most 6 in all); 3 needed"
    )


def test_a_request_inside_quiet_hours_deferred_by_a_cap_says_it_is_inside(make_governor, clock):
    """The cap's release (next evening) is outside quiet hours; now is not, and says so."""
    governor = make_governor(
        '[[caps]]\nmax = 1\nper = "1d"\n'
        '[quiet_hours]\nstart = "21:00"\nend = "08:00"\ndefault_timezone = "Europe/London"\n'
    )
    clock.set(utc(2026, 1, 12, 20, 30))
    assert governor.decide(alice(), request(), items()).action == Action.SEND
    clock.set(utc(2026, 1, 12, 22, 0))
    deferred = governor.decide(alice(), request(), items())
    assert deferred.action == Action.DEFER and deferred.deciding.rule.startswith("cap")
    quiet = reason(deferred, "quiet_hours")
    assert quiet.passed and quiet.detail.startswith("inside quiet hours until 2026-01-13T08:00")


def test_send_time_never_lands_in_quiet_hours(make_governor, clock):
    governor = make_governor(
        '[quiet_hours]\nstart = "21:00"\nend = "08:00"\n[send_time]\nmin_events = 1\n'
    )
    governor.record_event(EngagementEvent(EventType.CLICK, "alice", utc(2026, 1, 5, 23)))
    governor.record_event(EngagementEvent(EventType.CLICK, "alice", utc(2026, 1, 5, 9)))
    decision = governor.decide(alice(), request(deferrable=True), items())
    assert decision.send_at == utc(2026, 1, 13, 9)


def test_idempotency_key_returns_the_same_decision_and_counts_once(make_governor, clock):
    governor = make_governor(CAP_ONLY)
    first = governor.decide(alice(), request(idempotency_key="order-1"), items())
    clock.advance(minutes=5)
    retry = governor.decide(alice(), request(idempotency_key="order-1"), items())
    assert retry == first
    assert governor.decide(alice(), request(idempotency_key="order-2"), items()).action == "send"
    assert governor.decide(alice(), request(idempotency_key="order-3"), items()).action == "defer"


def test_dry_run_records_nothing(make_governor):
    governor = make_governor('[[caps]]\nmax = 1\nper = "1d"\n')
    for _ in range(3):
        decision = governor.decide(alice(), request(dry_run=True), items())
        assert decision.action == Action.SEND and decision.dry_run
    assert governor.decide(alice(), request(), items()).action == Action.SEND


def test_release_of_a_failed_send_frees_the_cap(make_governor, clock):
    governor = make_governor('[[caps]]\nmax = 1\nper = "1d"\n')
    sent = governor.decide(alice(), request(), items())
    assert governor.decide(alice(), request(), items()).action == Action.DEFER
    governor.record_event(
        EngagementEvent(EventType.SEND_FAILED, "alice", clock(), sent.decision_id)
    )
    assert governor.decide(alice(), request(), items()).action == Action.SEND
    assert governor.release(sent.decision_id) is False


def test_decide_many_batches_and_keeps_order(make_governor):
    governor = make_governor('[[caps]]\nmax = 1\nper = "1d"\n')
    batch = [(Recipient(f"u{n % 3}"), request(), items()) for n in range(6)]
    actions = [d.action for d in governor.decide_many(batch)]
    assert actions == [Action.SEND] * 3 + [Action.DEFER] * 3


def test_explain_reports_counters_suppression_and_next_moments(make_governor, clock):
    governor = make_governor(CONTRACT)
    governor.decide(alice(), request(), items())
    governor.record_event(event("unsubscribe", clock, category="sale"))
    report = governor.explain("alice", "Europe/London")
    assert report.recent_sends == 1 and report.ignored == 1
    assert "category:sale" in report.suppression
    moments = {entry.kind: entry.at for entry in report.next_allowed}
    # The cooldown ends at 04:00, inside quiet hours, so the next moment is 08:00.
    assert moments[ContentKind.PROMOTIONAL] == utc(2026, 1, 13, 8)
    assert moments[ContentKind.TRANSACTIONAL] == clock()
    data = report.to_dict()
    assert data["next_allowed"]["promotional"]["at"] == "2026-01-13T08:00:00+00:00"
    governor.record_event(event("complaint", clock))
    after = {e.kind: e.at for e in governor.explain("alice").next_allowed}
    assert after[ContentKind.PROMOTIONAL] is None and after[ContentKind.TRANSACTIONAL] == clock()


def test_explain_for_a_category_or_campaign_applies_their_rules(make_governor, clock):
    rules = CONTRACT + '\n[[caps]]\nmax = 1\nper = "7d"\ncampaign = "spring"\n'
    governor = make_governor(rules)
    governor.decide(alice(), request("spring", "sale"), items())
    governor.record_event(event("unsubscribe", clock, category="sale"))
    clock.advance(days=2)  # past the day cap and the cooldown: only the scoped rules remain

    def moments(**asked):
        report = governor.explain("alice", **asked)
        return report, {entry.kind: entry.at for entry in report.next_allowed}

    report, anything = moments()
    assert anything[ContentKind.PROMOTIONAL] == clock() and report.category == ""
    report, sale = moments(category="sale")
    assert sale[ContentKind.PROMOTIONAL] is None  # unsubscribed from sale mail
    assert sale[ContentKind.TRANSACTIONAL] == clock()
    assert report.to_dict()["category"] == "sale"
    _, spring = moments(campaign="spring")
    # The campaign's weekly cap frees a week after its send, at 12:00 on the 19th.
    assert spring[ContentKind.PROMOTIONAL] == utc(2026, 1, 19, 12)


def test_decision_round_trips_through_json(make_governor):
    from fatigue.domain import Decision

    decision = make_governor(CONTRACT).decide(alice(), request(), items())
    assert Decision.from_dict(decision.to_dict()) == decision


def test_a_complaint_is_said_to_stop_marketing_not_every_email():
    """Receipts still go to someone who complained; only a hard bounce stops everything."""
    from fatigue.store.base import suppression_detail
    from fatigue.suppressions import describe_suppression

    complaint = describe_suppression("complaint", suppression_detail("complaint", 0.0))
    assert complaint.startswith("marked an email as spam, which stops all marketing email")
    bounce = describe_suppression("address", suppression_detail("bounce_hard", 0.0))
    assert bounce.startswith("a hard bounce stopped all email to this address")
