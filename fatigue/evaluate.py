"""Evaluate every rule for one customer and one campaign, in two halves around one store call.

``prepare`` does everything that does not depend on the customer's stored state (content,
holdout, cap windows, quiet hours at this moment) before the store is asked anything, so the
store can check and record a send in the same step that reads the state; ``finish`` then explains
the outcome rule by rule from the state read. ``Plan`` compiles the rules once per governor (caps
per scope, fixed reasons) so no decision re-derives them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from fatigue.content import Selection, select
from fatigue.domain import Action, Campaign, Candidate, Channel, ContentKind, Reason
from fatigue.rules import CapRule, QuietHours, Rules
from fatigue.schedule import Timing, schedule
from fatigue.store.base import CapCheck, UserState
from fatigue.suppressions import describe_suppression
from fatigue.windows import quiet_hours_end, window_start

#: Suppression scopes that stop non-transactional mail; "address" stops everything.
NON_TRANSACTIONAL_SCOPES = ("all", "complaint")
#: Memo tables are cleared past this size (campaigns and counters are few; this is a backstop).
MEMO_LIMIT = 4096
# Reading an enum member off its class costs ten times a global in Python 3.11; these are read
# for every decision.
_TRANSACTIONAL = ContentKind.TRANSACTIONAL
_SUPPRESS = Action.SUPPRESS


class Prepared(NamedTuple):
    """One campaign's state-independent half: content, holdout, and its windows now."""

    campaign: Campaign
    transactional: bool
    holdout: tuple[Reason, ...]
    selection: Selection | None
    frame: Frame
    may_send: bool

    @property
    def relevance(self) -> float:
        """Return the mean relevance of the chosen items (0 without content)."""
        return self.selection.relevance if self.selection is not None else 0.0


class Verdict(NamedTuple):
    """What the rules say about one campaign, before arbitration and recording."""

    action: Action
    send_at: datetime | None
    reasons: tuple[Reason, ...]
    #: The half worked out before the store was read: the campaign, its content and windows.
    prep: Prepared

    @property
    def campaign(self) -> Campaign:
        """Return the campaign this verdict is about."""
        return self.prep.campaign

    @property
    def items(self) -> tuple[Candidate, ...]:
        """Return the chosen items (none without content)."""
        selection = self.prep.selection
        return selection.items if selection is not None else ()

    @property
    def relevance(self) -> float:
        """Return the mean relevance of the chosen items (0 without content)."""
        return self.prep.relevance

    @property
    def score(self) -> float:
        """Return relevance x priority, the arbitration score."""
        return self.relevance * self.campaign.priority


class Plan:
    """The rules compiled once: caps per scope, the reduced-cadence cap, fixed reasons."""

    def __init__(self, rules: Rules) -> None:
        self.rules = rules
        self._caps: dict[tuple[str, str, str], tuple[CapRule, ...]] = {}
        self._memo: dict[tuple[Any, ...], Any] = {}
        self._frames: dict[tuple[Any, ...], Frame] = {}
        self._last_frame: _LastFrame | None = None
        cooldown = rules.cooldown
        after = cooldown.after_any if cooldown is not None else timedelta()
        self.cooldown: timedelta | None = after if after.total_seconds() > 0 else None
        engagement = rules.engagement
        self.sunset_at: int | None = None
        if engagement is not None and engagement.sunset_after is not None:
            self.sunset_at = engagement.reduce_after + engagement.sunset_after

    def memo(self, key: tuple[Any, ...], build: Callable[..., Any], *args: Any) -> Any:
        """Return the value memoised under ``key``, building it on first use as ``build(*args)``.

        The arguments come apart from ``build``: a lambda closing over them would be a new
        function object at every call, found or not (several per decision).
        """
        found = self._memo.get(key)
        if found is None:
            if len(self._memo) > MEMO_LIMIT:
                self._memo.clear()
            found = self._memo[key] = build(*args)
        return found

    def caps_for(self, campaign: Campaign) -> tuple[CapRule, ...]:
        """Return the caps that count for a campaign's channel, category and id."""
        key = (str(campaign.channel), campaign.category, campaign.id)
        caps = self._caps.get(key)
        if caps is None:
            if len(self._caps) > MEMO_LIMIT:
                self._caps.clear()
            caps = self._caps[key] = tuple(
                cap
                for cap in self.rules.caps
                if cap.channel == campaign.channel
                and cap.category in (None, campaign.category)
                and cap.campaign in (None, campaign.id)
            )
        return caps

    def frame(self, campaign: Campaign, now: datetime, where: ZoneInfo, deferrable: bool) -> Frame:
        """Return a campaign's windows at ``now`` in ``where``, worked out once per moment."""
        last = self._last_frame
        if (
            last is not None
            and last.campaign is campaign
            and last.now is now
            and last.where is where
            and last.deferrable == deferrable
        ):
            return last.frame
        key = (campaign, where.key, deferrable, now)
        found = self._frames.get(key)
        if found is None:
            if len(self._frames) > MEMO_LIMIT:
                self._frames.clear()
            found = self._frames[key] = _frame(self, campaign, now, where, deferrable)
        # A batch chunk asks for the same campaign, zone and moment customer after customer:
        # the very same objects are found again without hashing the campaign (a dataclass
        # hashes in Python). Replaced whole, so safe between threads.
        self._last_frame = _LastFrame(campaign, now, where, deferrable, found)
        return found

    def reduced_cap(self, channel: Channel) -> CapRule | None:
        """Return the extra cap of the reduced cadence on ``channel`` (None without the rule)."""
        engagement = self.rules.engagement
        if engagement is None:
            return None
        name = f"engagement:reduced:{engagement.reduced_max}"
        return self.memo(
            ("reduced", channel), CapRule, engagement.reduced_max, engagement.reduced_per, name,
            channel,
        )  # fmt: skip


@lru_cache(maxsize=8)
def plan_for(rules: Rules) -> Plan:
    """Return a compiled plan for ``rules`` (cached for callers that hold no plan)."""
    return Plan(rules)


def prepare(
    plan: Plan,
    user_id: str,
    campaign: Campaign,
    candidates: Sequence[Candidate] | None,
    now: datetime,
    where: ZoneInfo,
    deferrable: bool = False,
    chosen: Selection | None = None,
    sent: Mapping[str, float] | None = None,
) -> Prepared:
    """Work out everything the store's state does not change.

    ``sent`` (item id to when it was sent) feeds the no-repeat rule; ``chosen`` is content
    selected earlier (a decision being rebuilt), used instead of ``candidates``.
    """
    transactional = campaign.kind == _TRANSACTIONAL
    selection = chosen
    if candidates is not None:
        selection = select(
            candidates,
            plan.rules,
            now,
            sent or {},
            not transactional,
            campaign.min_items,
            campaign.max_items,
        )
    frame = plan.frame(campaign, now, where, deferrable)
    holdout = _holdout(plan, user_id, campaign)
    may_send = (
        frame.open and (selection is None or selection.relevant) and _first_failed(holdout) is None
    )
    return Prepared(campaign, transactional, holdout, selection, frame, may_send)


class Frame(NamedTuple):
    """A campaign's windows at one moment in one zone: the same for every customer there."""

    scopes: tuple[str, ...]
    caps: tuple[CapRule, ...]
    checks: tuple[CapCheck, ...]
    cooldown_since: float | None
    quiet: QuietHours | None
    quiet_end: datetime | None
    hour_needed: bool
    #: Whether the windows allow a send now (customers' state may still forbid it).
    open: bool


class _LastFrame(NamedTuple):
    campaign: Campaign
    now: datetime
    where: ZoneInfo
    deferrable: bool
    frame: Frame


class Scope(NamedTuple):
    """What a campaign's kind, channel and scope select from the rules, whatever the moment."""

    transactional: bool
    scopes: tuple[str, ...]
    caps: tuple[CapRule, ...]
    reduced: CapRule | None
    quiet: QuietHours | None
    #: Seconds each cap (rolling ones only; None for calendar ones) looks back.
    spans: tuple[float | None, ...]
    capped: bool


def _scope(plan: Plan, campaign: Campaign) -> Scope:
    transactional = campaign.kind == ContentKind.TRANSACTIONAL
    caps: tuple[CapRule, ...] = () if transactional else plan.caps_for(campaign)
    reduced = None if transactional else plan.reduced_cap(campaign.channel)
    if reduced is not None:
        caps = (*caps, reduced)
    quiet = plan.rules.quiet_hours
    if quiet is not None and transactional and not quiet.transactional:
        quiet = None
    spans = tuple(None if cap.calendar else cap.per.total_seconds() for cap in caps)
    capped = any(cap.max <= 0 for cap in caps)
    return Scope(transactional, suppression_scopes(campaign), caps, reduced, quiet, spans, capped)


def _frame(
    plan: Plan, campaign: Campaign, now: datetime, where: ZoneInfo, deferrable: bool
) -> Frame:
    scope: Scope = plan.memo(("scope", campaign), _scope, plan, campaign)
    now_ts = now.timestamp()
    checks = tuple(
        _check(plan, cap, now, now_ts, span, where, cap is scope.reduced)
        for cap, span in zip(scope.caps, scope.spans, strict=True)
    )
    cooldown_since = None
    if plan.cooldown is not None and not scope.transactional:
        cooldown_since = now_ts - plan.cooldown.total_seconds()
    quiet = scope.quiet
    quiet_end = quiet_hours_end(now, quiet, where) if quiet is not None else None
    hour_needed = deferrable and plan.rules.send_time is not None and not scope.transactional
    is_open = quiet_end is None and not hour_needed and not scope.capped
    return Frame(
        scope.scopes, scope.caps, checks, cooldown_since, quiet, quiet_end, hour_needed, is_open
    )


def finish(plan: Plan, prep: Prepared, state: UserState, now: datetime, where: ZoneInfo) -> Verdict:
    """Evaluate every rule on the state read and schedule the send: now, later or never."""
    frame = prep.frame
    reasons = [suppression_reason(plan, state, frame.scopes), *prep.holdout]
    tier, engagement = _engagement(plan, state.ignored, prep.transactional)
    reasons += engagement
    selection = prep.selection
    if selection is not None:
        reasons += selection.reasons
    blocking = _first_failed(reasons)
    timing = Timing()
    for cap, check in zip(frame.caps, frame.checks, strict=True):
        if check.min_ignored == 0 or tier == "reduced":
            _cap(plan, cap, check, state, reasons, timing)
    if plan.cooldown is not None and not prep.transactional:
        _cooldown(plan, state, frame.cooldown_since, reasons, timing)
    action, send_at, deciding = _SUPPRESS, None, blocking
    if blocking is None:
        action, send_at, deciding = schedule(plan.rules, prep, state, reasons, timing, now, where)
    if deciding is not None:
        was = reasons[deciding]
        reasons[deciding] = Reason.made(
            was.rule, was.passed, was.detail, was.counter, was.limit, True
        )
    return Verdict(action, send_at, tuple(reasons), prep)


def _first_failed(reasons: Sequence[Reason]) -> int | None:
    """Return the index of the first reason that did not pass (a loop: no generator to make)."""
    for index, reason in enumerate(reasons):
        if not reason.passed:
            return index
    return None


def evaluate(
    rules: Rules,
    state: UserState,
    campaign: Campaign,
    candidates: Sequence[Candidate] | None,
    now: datetime,
    where: ZoneInfo,
    deferrable: bool = False,
) -> Verdict:
    """Evaluate every rule; ``candidates=None`` skips the content rules (for ``explain``)."""
    plan = plan_for(rules)
    prep = prepare(
        plan, state.user_id, campaign, candidates, now, where, deferrable, sent=state.items
    )
    return finish(plan, prep, state, now, where)


def suppression_scopes(campaign: Campaign) -> tuple[str, ...]:
    """Return the suppression scopes that stop ``campaign``'s mail."""
    if campaign.kind == ContentKind.TRANSACTIONAL:
        return ("address",)
    scopes = ("address", *NON_TRANSACTIONAL_SCOPES)
    return (*scopes, f"category:{campaign.category}") if campaign.category else scopes


def _check(
    plan: Plan,
    cap: CapRule,
    now: datetime,
    now_ts: float,
    span: float | None,
    where: ZoneInfo,
    reduced: bool,
) -> CapCheck:
    if span is None:
        since, inclusive = window_start(cap, now, where)
    else:
        since, inclusive = now_ts - span, False
    engagement = plan.rules.engagement
    needs = engagement.reduce_after if reduced and engagement is not None else 0
    channel = str(cap.channel)
    return CapCheck(since, inclusive, cap.max, channel, cap.category, cap.campaign, needs)


def suppression_reason(plan: Plan, state: UserState, scopes: tuple[str, ...]) -> Reason:
    """Return the ``suppression`` rule's verdict for ``scopes`` in ``state``."""
    suppression = state.suppression
    active = [scope for scope in scopes if scope in suppression] if suppression else ()
    if not active:
        return plan.memo(("suppression",), Reason, "suppression", True, "not suppressed")
    # In words (the store keeps JSON): "unsubscribed from all marketing email on ...".
    detail = "; ".join(describe_suppression(scope, suppression[scope]) for scope in active)
    return Reason("suppression", False, f"suppressed: {detail}")


def holdout_bucket(salt: str, user_id: str) -> float:
    """Return the customer's stable position in 0..100 for holdout assignment."""
    digest = hashlib.sha256(f"{salt}:{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 10_000 / 100


def _holdout(plan: Plan, user_id: str, campaign: Campaign) -> tuple[Reason, ...]:
    holdout = plan.rules.holdout
    # Never transactional mail, even from Rules built in Python (a rule file cannot say so).
    if holdout is None or campaign.kind not in holdout.kinds or campaign.kind is _TRANSACTIONAL:
        return ()
    if holdout.percent <= 0:
        return plan.memo(("holdout",), _nobody_held_out)
    bucket = holdout_bucket(holdout.salt, user_id)
    held = bucket < holdout.percent
    detail = "in the holdout group" if held else "not in the holdout group"
    return (Reason.made("holdout", not held, detail, bucket, holdout.percent, False),)


def _nobody_held_out() -> tuple[Reason, ...]:
    return (Reason("holdout", True, "holdout is 0%", None, 0.0),)


def _engagement(plan: Plan, ignored: int, transactional: bool) -> tuple[str, tuple[Reason, ...]]:
    engagement = plan.rules.engagement
    if engagement is None or transactional:
        return "normal", ()
    return plan.memo(("engagement", ignored), _tier, plan, ignored)


def _tier(plan: Plan, ignored: int) -> tuple[str, tuple[Reason, ...]]:
    engagement = plan.rules.engagement
    assert engagement is not None
    sunset_at = plan.sunset_at
    if sunset_at is not None and ignored >= sunset_at:
        detail = f"ignored the last {ignored} messages: sunset until they engage"
        return "sunset", (Reason("sunset", False, detail, ignored, sunset_at),)
    if ignored >= engagement.reduce_after:
        detail = f"ignored the last {ignored} messages: reduced cadence"
        return "reduced", (Reason("engagement", True, detail, ignored, engagement.reduce_after),)
    detail = f"ignored the last {ignored} messages"
    return "normal", (Reason("engagement", True, detail, ignored, engagement.reduce_after),)


def _cap(
    plan: Plan,
    cap: CapRule,
    check: CapCheck,
    state: UserState,
    reasons: list[Reason],
    timing: Timing,
) -> None:
    since = check.since
    stamps: list[float] = []
    count = 0
    if state.sends:  # a new customer has none: nothing to count
        stamps = sorted(record.at for record in state.sends if check.in_scope(record))
        if check.inclusive:
            count = sum(1 for stamp in stamps if stamp >= since)
        else:
            count = sum(1 for stamp in stamps if stamp > since)
    reason = plan.memo(("cap", id(cap), count), _cap_reason, cap, count)
    timing.caps.append((len(reasons), cap, stamps, count))
    reasons.append(reason)


def _cap_reason(cap: CapRule, count: int) -> Reason:
    kind = "calendar" if cap.calendar else "rolling"
    detail = f"{count} of {cap.max} in the {kind} window"
    return Reason(cap.name, count < cap.max, detail, count, cap.max)


def _cooldown(
    plan: Plan, state: UserState, since: float | None, reasons: list[Reason], timing: Timing
) -> None:
    assert plan.cooldown is not None and since is not None
    sends = state.sends
    last = max((r.at for r in sends if r.kind != _TRANSACTIONAL), default=None) if sends else None
    if last is not None and last > since:
        until = datetime.fromtimestamp(last, UTC) + plan.cooldown
        timing.cooldown = len(reasons)
        timing.cooldown_until = until
        reasons.append(Reason("cooldown", False, f"gap until {until.isoformat()}"))
    else:
        reason = plan.memo(("cooldown",), Reason, "cooldown", True, _NO_COOLDOWN)
        reasons.append(reason)


_NO_COOLDOWN = "no message inside the cooldown"
