"""The decision path's shortcuts give exactly what the plain code they replaced gave."""

from __future__ import annotations

import json
import os
import random
import re
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest

from fatigue.basis import Basis
from fatigue.content import Selection, _capped, _mmr, _rank
from fatigue.domain import (
    Campaign,
    Candidate,
    ContentKind,
    Decision,
    MessageRequest,
    Reason,
    Recipient,
    reason_to_dict,
)
from fatigue.identity import ByIdentity
from fatigue.store.base import (
    SendRecord,
    compact_json,
    decision_owner,
    new_decision_id,
    read_json,
)

NOW = datetime(2026, 5, 15, 12, 0, tzinfo=UTC)
TEXTS = [
    "plain",
    "",
    'quote " and \\ backslash',
    "controls \x00\x01\x1f\n\t\r\b\f",
    "delete \x7f",
    "latin é and emoji 😀",
    "lone surrogate \ud800",
    "slash / and <tags>",
]


@pytest.mark.parametrize("text", TEXTS)
def test_a_send_record_member_is_what_json_dumps_wrote(text: str) -> None:
    record = SendRecord(f"d1.{text}", 1.5, "email", text, f"c-{text}", "promotional", False,
                        (text, "i2"))  # fmt: skip
    old = json.dumps(
        {"d": record.decision_id, "ch": "email", "cat": text, "cmp": f"c-{text}",
         "k": "promotional", "c": 0, "i": [text, "i2"]},
        separators=(",", ":"),
    )  # fmt: skip
    assert record.to_member() == old
    assert SendRecord.from_member(old, 1.5) == record


def test_compact_json_matches_json_for_every_character_below_0x800() -> None:
    for code in range(0x800):
        if 0xD800 <= code < 0xE000:
            continue
        data = {"k": chr(code), "n": [code, True, None]}
        assert compact_json(data) == json.dumps(data, separators=(",", ":")), hex(code)


def _old_candidate_row(item: Candidate) -> list[Any]:
    published, expires = item.published_at, item.expires_at
    return [
        item.item_id, item.relevance, item.score, item.source, item.category, str(item.kind),
        published.isoformat() if published is not None else None,
        expires.isoformat() if expires is not None else None,
        item.in_stock,
    ]  # fmt: skip


def _old_basis_json(basis: Basis) -> str:
    """The encoding ``Basis.to_json`` wrote before its fragments, spelled out."""

    def selection(chosen: Selection | None) -> dict[str, Any] | None:
        if chosen is None:
            return None
        return {
            "items": [_old_candidate_row(item) for item in chosen.items],
            "reasons": [reason_to_dict(reason) for reason in chosen.reasons],
            "relevant": chosen.relevant,
            "relevance": chosen.relevance,
        }

    data = {
        "id": basis.decision_id, "at": basis.decided_at.isoformat(), "tz": basis.timezone,
        "deferrable": basis.deferrable, "dry_run": basis.dry_run, "digest": basis.request_digest,
        "campaigns": [
            {"id": c.id, "category": c.category, "kind": str(c.kind), "priority": c.priority,
             "channel": str(c.channel)}
            for c in basis.campaigns
        ],
        "content": [selection(chosen) for chosen in basis.selections],
    }  # fmt: skip
    return orjson.dumps(data).decode()


MOMENTS = [
    None,
    datetime(2026, 5, 1, 9, 30, 0, 123456, tzinfo=UTC),
    datetime(2026, 5, 1, 9, 30, tzinfo=ZoneInfo("Asia/Kathmandu")),
    datetime(2026, 5, 1, 9, 30, tzinfo=timezone(timedelta(hours=-3, minutes=-30))),
    datetime(2026, 5, 1, 9, 30),  # naive
]


@pytest.mark.parametrize("moment", MOMENTS, ids=str)
def test_a_basis_is_encoded_byte_for_byte_as_before(moment: datetime | None) -> None:
    items = (
        Candidate("i1", 0.4, 1.25, "cf", "shoes", ContentKind.EDITORIAL, moment, None, True),
        Candidate("i2", 0.1, 0.0, "pop", "hats", ContentKind.PROMOTIONAL, None, moment, False),
        Candidate("i3", 1, 2, "cf"),  # integers stay integers
    )
    shared = Reason("relevance", True, "3 item(s)", 3, 3)
    reasons = (shared, Reason("diversity", False, "kept 1", 1.0, 3.0, True), shared)
    campaign = Campaign("sale", "promo", ContentKind.PROMOTIONAL, 1.5)
    basis = Basis("d1.dTE", NOW, "Europe/London", (campaign, campaign),
                  (Selection(items, reasons, True, 0.25), None), True, False, "abc")  # fmt: skip
    for _ in range(2):  # the second time from the encodings kept
        assert basis.to_json() == _old_basis_json(basis)
    assert Basis.from_data(json.loads(basis.to_json())) == basis


def test_equal_but_differently_spelled_values_keep_their_own_encoding() -> None:
    encode = ByIdentity(lambda reason: orjson.dumps(reason_to_dict(reason)))
    whole, fraction = Reason("cap", True, "", 3, 3), Reason("cap", True, "", 3.0, 3.0)
    assert whole == fraction
    assert encode(whole) != encode(fraction)
    assert encode(whole) is encode(whole)


def test_an_identity_cache_starts_again_past_its_limit() -> None:
    built: list[object] = []
    cache = ByIdentity(lambda value: built.append(value) or len(built), limit=2)
    keys = [object() for _ in range(3)]
    assert [cache(key) for key in keys] == [1, 2, 3]
    assert cache(keys[2]) == 3 and cache(keys[0]) == 4  # rebuilt after the clear


def test_decision_ids_keep_their_shape_and_never_repeat() -> None:
    ids = [new_decision_id("bob@example") for _ in range(3000)]  # past one batch of randomness
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"d[0-9a-f]{20}\.Ym9iQGV4YW1wbGU", i) for i in ids)
    assert {decision_owner(i) for i in ids} == {"bob@example"}


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_draws_its_own_decision_ids() -> None:
    new_decision_id("u")  # the parent holds ids read ahead
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(read)
        os.write(write, " ".join(new_decision_id("u") for _ in range(5)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = set(pipe.read().split())
    os.waitpid(pid, 0)
    parent = {new_decision_id("u") for _ in range(5)}
    assert len(child) == 5 and not child & parent


def _old_rank(items: list[Candidate]) -> None:
    def published(item: Candidate) -> float:
        return item.published_at.timestamp() if item.published_at else float("-inf")

    if any(item.published_at for item in items):
        items.sort(key=published, reverse=True)
    items.sort(key=lambda item: item.relevance, reverse=True)


def _candidates(rng: random.Random, n: int = 30) -> list[Candidate]:
    days = [None, None, NOW - timedelta(days=2), NOW - timedelta(days=20), NOW]
    return [
        Candidate(
            f"i{rng.randrange(40)}", rng.choice([0.01, 0.2, 0.5, 0.5, 0.9]),
            category=rng.choice("abcd"), kind=rng.choice(list(ContentKind)),
            published_at=rng.choice(days), expires_at=rng.choice([None, None, NOW]),
            in_stock=rng.random() > 0.1,
        )
        for _ in range(n)
    ]  # fmt: skip


def test_ranking_orders_ties_as_before() -> None:
    rng = random.Random(5)
    for _ in range(300):
        items = _candidates(rng)
        ours, theirs = list(items), list(items)
        _rank(ours)
        _old_rank(theirs)
        assert [id(item) for item in ours] == [id(item) for item in theirs]


@pytest.mark.parametrize("per_category", [None, 1, 2])
def test_diversity_counts_are_the_chosen_items_per_category(per_category: int | None) -> None:
    rng = random.Random(9)
    for _ in range(100):
        items = _candidates(rng, 12)
        for chosen, counts in (_capped(items, 5, per_category), _mmr(items, 5, 0.7, per_category)):
            assert dict(counts) == dict(Counter(item.category for item in chosen))


@pytest.mark.parametrize(
    "text",
    ['["recorded",1,[],{},[],[false,"17.5"]]', '{"n":18446744073709551615}', "[NaN]",
     '["\\ud800"]', '{"a":1,"a":2}', "[1e400]", '"\\/"'],
)  # fmt: skip
def test_json_is_read_as_json_loads_reads_it(text: str) -> None:
    assert repr(read_json(text)) == repr(json.loads(text))
    assert repr(read_json(text.encode())) == repr(json.loads(text.encode()))


def test_the_same_offer_at_the_same_moment_is_selected_once() -> None:
    from fatigue.content import _select, select
    from fatigue.rules import load_rules

    rules = load_rules(
        '[relevance]\nmin_relevance = 0.1\nmin_items = 2\n[timeliness]\nno_repeat = "7d"\n'
        "[diversity]\nmax_items = 3\nmax_per_category = 1\n"
    )
    shared = [
        Candidate(f"i{n}", 0.9 - n / 10, category=f"c{n % 2}", published_at=NOW) for n in range(6)
    ]
    first = select(list(shared), rules, NOW, {})
    assert select(list(shared), rules, NOW, {}) is first  # a new list of the same candidates
    assert first == _select(shared, rules, NOW, {}, True, 0)
    # Anything else that could change the choice is chosen again, and chosen right.
    sent = {"i0": NOW.timestamp()}
    later = NOW + timedelta(days=400)
    copies = [Candidate(c.item_id, c.relevance, category=c.category) for c in shared]
    for args in ((shared, NOW, sent), (shared, later, {}), (copies, NOW, {})):
        again = select(list(args[0]), rules, args[1], args[2])
        assert again is not first and again == _select(args[0], rules, args[1], args[2], True, 0)
    assert select(shared, rules, NOW, sent).items[0].item_id != "i0"  # sent before
    assert select(shared, rules, NOW, {}, True, 5) != first  # the template asks for more
    assert select(shared, rules, NOW, {}) == first  # chosen again, and kept
    assert select(shared, rules, NOW, {}, True, 0, 1) != first  # the email shows fewer


def test_a_decision_with_shared_items_and_reasons_is_written_byte_for_byte_as_before() -> None:
    from fatigue.domain import Action, Decision, candidate_to_dict

    item = Candidate("i1", 0.25, 1.5, "trending", "gifts", ContentKind.EDITORIAL, NOW, None, True)
    why = Reason("daily", False, "1 of 1 in the rolling window", 1, 1.0, deciding=True)
    for n in range(3):  # the second and third reuse what the first wrote
        decision = Decision(Action.SUPPRESS, f"u{n}", f"d{n}", NOW, items=(item, item),
                            reasons=(why,), campaign="c", idempotency_key="k")  # fmt: skip
        data = decision.to_dict()
        data.update(decided_at=NOW, items=[candidate_to_dict(item, lambda m: m)] * 2)
        assert decision.to_json() == orjson.dumps(data).decode()


def _old_decide_args(call: Any) -> list[Any]:
    """``decide_args`` as it was written before any layout was shared."""
    rows = [
        [
            offer.record.to_member(),
            False if offer.cooldown_since is None else repr(offer.cooldown_since),
            False if offer.sunset_at is None else offer.sunset_at,
            offer.blocking_scopes,
            [v for c in offer.caps for v in (repr(c.since), c.inclusive, c.limit, c.channel,
                                             c.category or "", c.campaign or "", c.min_ignored)],
            sorted(offer.record.items, reverse=True),
            offer.record.kind != "transactional",
        ]
        for offer in call.offers
    ]  # fmt: skip
    query, repeat = call.query, call.repeat_since
    payload = [repr(query.since), call.decision_id, 1, str(call.idempotency_ttl),
               str(call.history_ttl), str(call.engagement_ttl),
               False if repeat is None else repr(repeat), len(call.guard_items), rows,
               repr(query.now - call.history_ttl)]  # fmt: skip
    kept = f'{call.decision_id} {{"b":{call.basis.to_json()}'
    return [repr(query.now), orjson.dumps(payload), kept, orjson.dumps(list(call.guard_items))]


def test_decide_calls_sharing_checks_and_times_are_laid_out_byte_for_byte_as_before() -> None:
    from fatigue.store.base import CapCheck, DecideCall, SendAttempt, StateQuery
    from fatigue.store.redis_args import decide_args

    caps = (
        CapCheck(1_800_000_000.25, False, 3, "email", "sale", None, 0),
        CapCheck(1_799_999_000.0, True, 1.0, "email", None, "c1", 5),  # type: ignore[arg-type]
    )
    basis = Basis("d1.dTE", NOW, "UTC", (Campaign("c1", "sale"),), (None,))
    now, since = 1_800_000_100.123456, 1_796_000_100.123456
    calls = []
    for n, at in enumerate((now, now, now + 0.5, float(int(now)))):  # shared, then new objects
        record = SendRecord(f"d{n}.dTE", at, "email", "sale", "c1", "promotional", True, ("i1",))
        offer = SendAttempt("u1", record, caps if n < 3 else caps[:1], 1.5e9 + n, ("all",),
                            "k", sunset_at=None if n else 10)  # fmt: skip
        query = StateQuery("u1", at, since if n < 2 else at - 4e6, "k")
        repeat = None if n % 2 else at - 86400.0
        calls.append(DecideCall(query, f"d{n}.dTE", (offer,), ("i1", "i2"), repeat, basis))
    for call in calls + calls:  # the second time from the encodings kept
        assert decide_args(call) == _old_decide_args(call)


@pytest.mark.parametrize("ignored", [0, 5, 8])
def test_a_customer_without_sends_is_judged_as_one_whose_sends_do_not_count(ignored: int) -> None:
    """``finish`` skips counting for an empty history: the same verdict as sends out of scope.

    Sends on another channel that count toward no cap and are transactional touch no cap and
    no cooldown, so they go through the counting code and must come out the same.
    """
    from fatigue.evaluate import finish, plan_for, prepare
    from fatigue.rules import load_rules
    from fatigue.store.base import UserState

    rules = load_rules(
        '[[caps]]\nmax = 2\nper = "1d"\n[[caps]]\nmax = 3\nper = "1w"\ncalendar = true\n'
        '[cooldown]\nafter_any = "16h"\n'
        '[engagement]\nreduce_after = 5\nreduced_max = 1\nreduced_per = "7d"\n'
        "sunset_after = 3\n"
    )
    plan, where = plan_for(rules), ZoneInfo("Europe/London")
    campaign = Campaign("c1", "sale")
    prep = prepare(plan, "u1", campaign, [Candidate("i1", 0.5)], NOW, where)
    elsewhere = tuple(
        SendRecord(f"d{n}.dTE", NOW.timestamp() - 60 * n, "sms", "sale", "c1", "transactional",
                   False, ("i1",))
        for n in range(3)
    )  # fmt: skip
    empty = finish(plan, prep, UserState("u1", ignored=ignored), NOW, where)
    counted = finish(plan, prep, UserState("u1", elsewhere, ignored=ignored), NOW, where)
    assert empty[:3] == counted[:3]


def test_a_decision_made_at_once_is_the_decision_its_constructor_makes() -> None:
    import dataclasses
    import inspect

    from fatigue.domain import Action, Decision

    names = [field.name for field in dataclasses.fields(Decision)]
    assert list(inspect.signature(Decision.made).parameters) == names  # none can be forgotten
    item = Candidate("i1", 0.25, 1.5, "trending", "gifts", ContentKind.EDITORIAL, NOW, None, True)
    why = Reason("daily", False, "1 of 1 in the rolling window", 1, 1.0, deciding=True)
    values = dict(action=Action.DEFER, user_id="u1", decision_id="d1.dTE", decided_at=NOW,
                  send_at=NOW + timedelta(hours=2), items=(item,), reasons=(why,), campaign="c",
                  idempotency_key="k", dry_run=True, request_digest="abc")  # fmt: skip
    made, built = Decision.made(**values), Decision(**values)  # type: ignore[arg-type]
    assert made == built and vars(made) == vars(built) and hash(made) == hash(built)
    assert made.to_json() == built.to_json() and made.to_dict() == built.to_dict()
    assert made.to_json() is made.to_json()  # made once
    assert dataclasses.replace(made, dry_run=False).to_json() != made.to_json()


def test_decisions_sharing_their_items_are_written_byte_for_byte_as_before() -> None:
    from fatigue.domain import Action, Decision, candidate_to_dict

    shared = (
        Candidate("i1", 0.25, 1.5, "trending", "gifts", ContentKind.EDITORIAL, NOW, None, True),
        Candidate("i2", 1, 2, "cf"),  # integers stay integers
    )
    listed = list(shared)
    for n, items in enumerate((shared, shared, (), listed, listed)):
        decision = Decision(Action.SEND, f"u{n}", f"d{n}", NOW, items=items)  # type: ignore[arg-type]
        data = decision.to_dict()
        data.update(decided_at=NOW, items=[candidate_to_dict(c, lambda m: m) for c in items])
        assert decision.to_json() == orjson.dumps(data).decode()
        listed.reverse()  # a list handed in is written as it is when written


@pytest.mark.parametrize("audience", [None, tuple(range(24))])
@pytest.mark.parametrize("scores", [{}, [False, False], [False, "1800000000.5"]])
def test_a_new_customer_is_read_as_one_whose_engagement_says_nothing(audience, scores) -> None:
    """The Redis store skips reading an empty state: the same state as the full reading gives.

    An engagement hash holding only a field no rule reads goes through the full reading.
    """
    from fatigue.store.redis import _user_state

    guard = ("i1", "i2")
    empty = _user_state("u1", [{}, {}, {}, scores], guard, audience)
    read = _user_state("u1", [[], [], ["unread", "1"], scores], guard, audience)
    assert empty == read
    assert [type(value) for value in empty] == [type(value) for value in read]


def test_a_reason_made_at_once_is_the_reason_its_constructor_makes() -> None:
    import dataclasses
    import inspect

    names = [field.name for field in dataclasses.fields(Reason)]
    assert list(inspect.signature(Reason.made).parameters) == names  # none can be forgotten
    for values in (("holdout", False, "in the holdout group", 4.25, 5.0, False),
                   ("daily", True, "", None, None, True)):  # fmt: skip
        made, built = Reason.made(*values), Reason(*values)
        assert made == built and vars(made) == vars(built) and hash(made) == hash(built)


def test_the_last_frame_asked_for_is_found_again_only_for_the_very_same_request() -> None:
    from fatigue.evaluate import _frame, plan_for
    from fatigue.rules import load_rules

    plan = plan_for(load_rules(
        '[[caps]]\nmax = 2\nper = "1d"\n[[caps]]\nmax = 3\nper = "1w"\ncalendar = true\n'
        '[quiet_hours]\nstart = "21:00"\nend = "08:00"\n'
        '[send_time]\ndefault_hour = 9\n'
    ))  # fmt: skip
    london, tokyo = ZoneInfo("Europe/London"), ZoneInfo("Asia/Tokyo")
    sale, news = Campaign("sale", "promo"), Campaign("news", "letters", ContentKind.EDITORIAL)
    later = NOW + timedelta(hours=10)
    asks = [(sale, NOW, london, False), (sale, NOW, london, False), (sale, NOW, london, True),
            (sale, NOW, tokyo, True), (news, NOW, tokyo, True), (news, later, tokyo, True),
            (Campaign("news", "letters", ContentKind.EDITORIAL), later, tokyo, True),
            (sale, later, london, False), (sale, NOW, london, False)]  # fmt: skip
    for campaign, now, where, deferrable in asks + asks[::-1]:
        found = plan.frame(campaign, now, where, deferrable)
        assert found == _frame(plan, campaign, now, where, deferrable)


def test_the_considered_items_of_one_campaign_are_those_of_several() -> None:
    from fatigue.governor import _considered

    class Prep:
        def __init__(self, selection: Selection | None) -> None:
            self.selection = selection

    chosen = Selection((), (), True, 0.0, ("i2", "i1", "i2", "i3"))
    for selection in (chosen, chosen, Selection((), (), True, 0.0, ()), None):
        one = _considered([Prep(selection)])  # type: ignore[list-item]
        assert one == _considered([Prep(selection), Prep(None)])  # type: ignore[list-item]
    assert _considered([Prep(chosen)]) == ("i2", "i1", "i3")  # type: ignore[list-item]


def test_recipients_and_requests_made_at_once_are_what_their_constructors_make() -> None:
    import dataclasses
    import inspect

    from fatigue.domain import MessageRequest, Recipient

    for cls in (Recipient, MessageRequest):
        names = [field.name for field in dataclasses.fields(cls)]
        assert list(inspect.signature(cls.made).parameters) == names  # none can be forgotten
    who = ("u1", "ada@example.com", "Ada", "en", "Europe/London", {"tier": "gold"})
    made_recipient, built_recipient = Recipient.made(*who), Recipient(*who)
    asked = ((Campaign("c1", "sale"),), "k", True, False, "abc")
    made_request, built_request = MessageRequest.made(*asked), MessageRequest(*asked)
    for made, built in ((made_recipient, built_recipient), (made_request, built_request)):
        assert made == built and vars(made) == vars(built) and repr(made) == repr(built)
    assert hash(made_request) == hash(built_request)
    with pytest.raises(ValueError, match="at least one campaign"):
        MessageRequest.made((), None, False, False, "")


def test_many_finds_what_calling_one_by_one_finds() -> None:
    built: list[object] = []

    def build(key: object) -> tuple[str, int]:
        built.append(key)
        return ("built", len(built))

    found = ByIdentity(build, limit=3)
    first, second, equal = [1.5], [2.5], [1.5]
    assert found.many([first, second, first, equal]) == [
        ("built", 1), ("built", 2), ("built", 1), ("built", 3),
    ]  # fmt: skip
    assert built == [first, second, equal] and found.many(()) == []
    stale = [0.5]
    found._entries[id(stale)] = (["another object"], ("stale", 0))  # as if an id were reused
    assert found.many([stale, first]) == [("built", 4), ("built", 5)]  # limit reached: again
    assert found.many([stale, first]) == [found(stale), found(first)]


def test_no_class_made_at_once_checks_its_fields_after_init_unless_made_repeats_it() -> None:
    """``filled`` skips ``__post_init__``: a check added there later would be skipped too."""
    from engine.compose import ComposeInput
    from engine.render.mime import MessageParts
    from engine.render.renderer import RenderedEmail

    for cls in (Decision, Reason, Recipient, ComposeInput, MessageParts, RenderedEmail):
        assert "__post_init__" not in vars(cls), f"{cls.__name__}.made must repeat its checks"
    with pytest.raises(ValueError):  # MessageRequest.made repeats its one check
        MessageRequest.made((), None, False, False, "")
