"""Timing: the first moment every cap, the cooldown, quiet hours and the best hour allow."""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from fatigue.domain import Action, Reason
from fatigue.rules import CapRule, Rules
from fatigue.sendtime import best_hour
from fatigue.store.base import UserState
from fatigue.windows import cap_release, next_local_hour, quiet_hours_end, zone

if TYPE_CHECKING:
    from fatigue.evaluate import Prepared

#: Each pass can only push the moment later; rules settle within a few passes.
MAX_PASSES = 16
_OUTSIDE = Reason("quiet_hours", True, "outside quiet hours")


class Timing:
    """Constraints that can push the send time later, gathered while rules are evaluated.

    Reasons are referred to by their index in the decision's reason list.
    """

    __slots__ = ("caps", "cooldown", "cooldown_until")

    def __init__(self) -> None:
        self.caps: list[tuple[int, CapRule, list[float], int]] = []
        self.cooldown: int | None = None
        self.cooldown_until: datetime | None = None


def schedule(
    rules: Rules,
    prep: Prepared,
    state: UserState,
    reasons: list[Reason],
    timing: Timing,
    now: datetime,
    where: ZoneInfo,
) -> tuple[Action, datetime | None, int | None]:
    """Return the action, ``send_at`` and the index of the deciding reason (None: none)."""
    quiet = prep.frame.quiet
    if (
        not prep.frame.hour_needed
        and prep.frame.quiet_end is None
        and timing.cooldown_until is None
        and all(0 <= count < cap.max for _, cap, _, count in timing.caps)
    ):
        # The common case: nothing pushes the moment, so the loop below would send now.
        if quiet is not None:
            reasons.append(_OUTSIDE)
        return Action.SEND, None, None
    hour, hour_reason = None, -1
    if prep.frame.hour_needed and rules.send_time is not None:
        hour, source = best_hour(
            state, rules.send_time, quiet, where, now, zone(rules.default_timezone)
        )
        hour_reason = len(reasons)
        reasons.append(Reason("send_time", True, f"best local hour {hour}:00 ({source})", hour))
    moment, deciding = _first_moment(prep, reasons, timing, now, where, hour, hour_reason)
    if moment is None:
        return Action.SUPPRESS, None, deciding
    if quiet is not None and not any(reason.rule == "quiet_hours" for reason in reasons):
        # Nothing about quiet hours moved the send; say whether now is inside them or not.
        now_end = prep.frame.quiet_end
        reasons.append(_OUTSIDE if now_end is None else _inside_but_later(now_end))
    if moment == now:
        return Action.SEND, None, None
    return Action.DEFER, moment, deciding


def _first_moment(
    prep: Prepared,
    reasons: list[Reason],
    timing: Timing,
    now: datetime,
    where: ZoneInfo,
    hour: int | None,
    hour_reason: int,
) -> tuple[datetime | None, int | None]:
    """Push the moment forward until no rule moves it; None when a cap never allows a send."""
    quiet = prep.frame.quiet
    moment, deciding, quiet_reason = now, None, None
    for _ in range(MAX_PASSES):
        start = moment
        for index, cap, stamps, _ in timing.caps:
            release = cap_release(cap, cap.max, stamps, moment, where)
            if release is None:
                return None, index
            moment, deciding = _later(moment, deciding, release, index)
        if timing.cooldown_until is not None:
            moment, deciding = _later(moment, deciding, timing.cooldown_until, timing.cooldown)
        if quiet is not None:
            end = prep.frame.quiet_end if moment == now else quiet_hours_end(moment, quiet, where)
            if end is not None:
                if quiet_reason is None:
                    quiet_reason = len(reasons)
                    reasons.append(_quiet_reason(end))
                moment, deciding = _later(moment, deciding, end, quiet_reason)
        if hour is not None:
            moment, deciding = _later(
                moment, deciding, next_local_hour(moment, hour, where), hour_reason
            )
        if moment == start:
            break
    return moment, deciding


@lru_cache(maxsize=1024)
def _inside_but_later(end: datetime) -> Reason:
    detail = f"inside quiet hours until {end.isoformat()}, but another rule sets a later time"
    return Reason("quiet_hours", True, detail)


@lru_cache(maxsize=1024)
def _quiet_reason(end: datetime) -> Reason:
    # Every customer in a zone shares the end of tonight's quiet hours: build its reason once.
    return Reason("quiet_hours", False, f"inside quiet hours until {end.isoformat()}")


def _later(
    moment: datetime, deciding: int | None, candidate: datetime, reason: int | None
) -> tuple[datetime, int | None]:
    return (candidate, reason) if candidate > moment else (moment, deciding)
