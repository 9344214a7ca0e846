"""Evaluate every rule for one customer and one campaign, on one state read."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from fatigue.content import select
from fatigue.domain import Action, Campaign, Candidate, ContentKind, Reason
from fatigue.rules import CapRule, Rules
from fatigue.sendtime import best_hour
from fatigue.store.base import CapCheck, UserState
from fatigue.windows import (
    cap_release,
    count_since,
    next_local_hour,
    quiet_hours_end,
    window_start,
)

#: Suppression scopes that stop non-transactional mail; "address" stops everything.
NON_TRANSACTIONAL_SCOPES = ("all", "complaint")


@dataclass(frozen=True)
class Verdict:
    """What the rules say about one campaign, before arbitration and recording."""

    campaign: Campaign
    action: Action
    send_at: datetime | None
    items: tuple[Candidate, ...]
    reasons: tuple[Reason, ...]
    relevance: float
    caps: tuple[CapCheck, ...] = ()
    cooldown_since: float | None = None
    blocking_scopes: tuple[str, ...] = ()

    @property
    def score(self) -> float:
        """Return relevance x priority, the arbitration score."""
        return self.relevance * self.campaign.priority


@dataclass
class _Timing:
    """Constraints that can push the send time later, gathered while rules are evaluated."""

    caps: list[tuple[Reason, CapRule, int, list[float]]] = field(default_factory=list)
    cooldown_until: datetime | None = None


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
    transactional = campaign.kind == ContentKind.TRANSACTIONAL
    scopes = _blocking_scopes(campaign)
    reasons = [_suppression(state, scopes), *_holdout(rules, state.user_id, campaign)]
    tier, engagement = _engagement(rules, state, transactional)
    reasons += engagement
    items: tuple[Candidate, ...] = ()
    relevance = 0.0
    if candidates is not None:
        selection = select(candidates, rules, now, state.items, required=not transactional)
        items, relevance = selection.items, selection.relevance
        reasons += selection.reasons
    blocking = next((reason for reason in reasons if not reason.passed), None)
    timing = _Timing()
    caps = () if transactional else _caps(rules, campaign, tier)
    checks = tuple(_cap(cap, state, now, where, reasons, timing) for cap in caps)
    cooldown_since = None if transactional else _cooldown(rules, state, now, reasons, timing)
    deciding: Reason | None = blocking
    if blocking is not None:
        action, send_at = Action.SUPPRESS, None
    else:
        action, send_at, deciding = _schedule(
            campaign, rules, reasons, timing, now, where, deferrable, state
        )
    if deciding is not None:
        reasons = [replace(r, deciding=True) if r is deciding else r for r in reasons]
    return Verdict(
        campaign, action, send_at, items, tuple(reasons), relevance, checks, cooldown_since, scopes
    )


def _blocking_scopes(campaign: Campaign) -> tuple[str, ...]:
    if campaign.kind == ContentKind.TRANSACTIONAL:
        return ("address",)
    scopes = ("address", *NON_TRANSACTIONAL_SCOPES)
    return (*scopes, f"category:{campaign.category}") if campaign.category else scopes


def _suppression(state: UserState, scopes: tuple[str, ...]) -> Reason:
    active = [scope for scope in scopes if scope in state.suppression]
    if not active:
        return Reason("suppression", True, "not suppressed")
    detail = "; ".join(f"{scope}: {state.suppression[scope]}" for scope in active)
    return Reason("suppression", False, f"suppressed ({detail})")


def holdout_bucket(salt: str, user_id: str) -> float:
    """Return the customer's stable position in 0..100 for holdout assignment."""
    digest = hashlib.sha256(f"{salt}:{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 10_000 / 100


def _holdout(rules: Rules, user_id: str, campaign: Campaign) -> list[Reason]:
    holdout = rules.holdout
    if holdout is None or campaign.kind not in holdout.kinds:
        return []
    if holdout.percent <= 0:
        return [Reason("holdout", True, "holdout is 0%", limit=0.0)]
    bucket = holdout_bucket(holdout.salt, user_id)
    held = bucket < holdout.percent
    detail = "in the holdout group" if held else "not in the holdout group"
    return [Reason("holdout", not held, detail, counter=bucket, limit=holdout.percent)]


def _engagement(rules: Rules, state: UserState, transactional: bool) -> tuple[str, list[Reason]]:
    engagement = rules.engagement
    if engagement is None or transactional:
        return "normal", []
    ignored = state.ignored
    if engagement.sunset_after is not None:
        sunset_at = engagement.reduce_after + engagement.sunset_after
        if ignored >= sunset_at:
            detail = f"ignored the last {ignored} messages: sunset until they engage"
            return "sunset", [Reason("sunset", False, detail, ignored, sunset_at)]
    if ignored >= engagement.reduce_after:
        detail = f"ignored the last {ignored} messages: reduced cadence"
        return "reduced", [Reason("engagement", True, detail, ignored, engagement.reduce_after)]
    detail = f"ignored the last {ignored} messages"
    return "normal", [Reason("engagement", True, detail, ignored, engagement.reduce_after)]


def _caps(rules: Rules, campaign: Campaign, tier: str) -> list[CapRule]:
    caps = [
        cap
        for cap in rules.caps
        if cap.channel == campaign.channel
        and cap.category in (None, campaign.category)
        and cap.campaign in (None, campaign.id)
    ]
    engagement = rules.engagement
    if tier == "reduced" and engagement is not None:
        name = f"engagement:reduced:{engagement.reduced_max}"
        caps.append(CapRule(engagement.reduced_max, engagement.reduced_per, name, campaign.channel))
    return caps


def _cap(
    cap: CapRule,
    state: UserState,
    now: datetime,
    where: ZoneInfo,
    reasons: list[Reason],
    timing: _Timing,
) -> CapCheck:
    since, inclusive = window_start(cap, now, where)
    check = CapCheck(since, inclusive, cap.max, cap.channel.value, cap.category, cap.campaign)
    stamps = sorted(record.at for record in state.sends if check.in_scope(record))
    count = count_since(stamps, since, inclusive)
    kind = "calendar" if cap.calendar else "rolling"
    detail = f"{count} of {cap.max} in the {kind} window"
    reason = Reason(cap.name, count < cap.max, detail, count, cap.max)
    reasons.append(reason)
    timing.caps.append((reason, cap, cap.max, stamps))
    return check


def _cooldown(
    rules: Rules, state: UserState, now: datetime, reasons: list[Reason], timing: _Timing
) -> float | None:
    cooldown = rules.cooldown
    if cooldown is None or cooldown.after_any.total_seconds() <= 0:
        return None
    since = (now - cooldown.after_any).timestamp()
    last = max((r.at for r in state.sends if r.kind != ContentKind.TRANSACTIONAL), default=None)
    if last is not None and last > since:
        until = datetime.fromtimestamp(last, UTC) + cooldown.after_any
        timing.cooldown_until = until
        reasons.append(Reason("cooldown", False, f"gap until {until.isoformat()}"))
    else:
        reasons.append(Reason("cooldown", True, "no message inside the cooldown"))
    return since


def _schedule(
    campaign: Campaign,
    rules: Rules,
    reasons: list[Reason],
    timing: _Timing,
    now: datetime,
    where: ZoneInfo,
    deferrable: bool,
    state: UserState,
) -> tuple[Action, datetime | None, Reason | None]:
    """Find the first moment every timing rule allows: now means send, later means defer."""
    transactional = campaign.kind == ContentKind.TRANSACTIONAL
    quiet = rules.quiet_hours
    if quiet is not None and (transactional and not quiet.transactional):
        quiet = None
    hour, send_time = None, None
    if deferrable and rules.send_time is not None and not transactional:
        hour, source = best_hour(state, rules.send_time, quiet)
        send_time = Reason("send_time", True, f"best local hour {hour}:00 ({source})", hour)
        reasons.append(send_time)
    moment, deciding = now, None
    for _ in range(16):
        start = moment
        for reason, cap, limit, stamps in timing.caps:
            release = cap_release(cap, limit, stamps, moment, where)
            if release is None:
                return Action.SUPPRESS, None, reason
            moment, deciding = _later(moment, deciding, release, reason)
        if timing.cooldown_until is not None:
            cooldown = next(reason for reason in reasons if reason.rule == "cooldown")
            moment, deciding = _later(moment, deciding, timing.cooldown_until, cooldown)
        if quiet is not None and (end := quiet_hours_end(moment, quiet, where)) is not None:
            moment, deciding = _later(moment, deciding, end, _quiet_reason(reasons, end))
        if hour is not None and send_time is not None:
            best = next_local_hour(moment, hour, where)
            moment, deciding = _later(moment, deciding, best, send_time)
        if moment == start:
            break
    if quiet is not None and not any(reason.rule == "quiet_hours" for reason in reasons):
        reasons.append(Reason("quiet_hours", True, "outside quiet hours"))
    if moment == now:
        return Action.SEND, None, None
    return Action.DEFER, moment, deciding


def _later(
    moment: datetime, deciding: Reason | None, candidate: datetime, reason: Reason
) -> tuple[datetime, Reason | None]:
    return (candidate, reason) if candidate > moment else (moment, deciding)


def _quiet_reason(reasons: list[Reason], end: datetime) -> Reason:
    for reason in reasons:
        if reason.rule == "quiet_hours":
            return reason
    reason = Reason("quiet_hours", False, f"inside quiet hours until {end.isoformat()}")
    reasons.append(reason)
    return reason
