"""Replay history through the governor with a simulated clock, to try rules before using them.

Deferred requests come back at their ``send_at`` (as a platform would re-ask), so the counts say
what customers would actually have received.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from fatigue.clock import FrozenClock
from fatigue.domain import Action, Decision
from fatigue.governor import Governor
from fatigue.history import EventRow, RequestRow, Row
from fatigue.rules import Rules
from fatigue.store.memory import MemoryStore
from fatigue.windows import zone

#: Messages per customer per week are bucketed 0..6 and "7+".
WEEK_BUCKETS = 8
MAX_DEFERRALS = 20


@dataclass
class CampaignTally:
    """Final outcome of every request for one campaign."""

    requests: int = 0
    sent: int = 0
    deferred: int = 0
    suppressed: int = 0
    pending: int = 0


@dataclass
class SimulationResult:
    """What one rule set would have done with the history."""

    label: str
    campaigns: dict[str, CampaignTally] = field(default_factory=dict)
    rules: Counter[tuple[str, str]] = field(default_factory=Counter)
    weekly: list[int] = field(default_factory=lambda: [0] * WEEK_BUCKETS)

    @property
    def total(self) -> CampaignTally:
        """Return the tallies summed over campaigns."""
        total = CampaignTally()
        for tally in self.campaigns.values():
            for name in ("requests", "sent", "deferred", "suppressed", "pending"):
                setattr(total, name, getattr(total, name) + getattr(tally, name))
        return total


def simulate(
    rules: Rules, history: Sequence[Row], label: str = "rules", week_zone: str | None = None
) -> SimulationResult:
    """Replay ``history`` (sorted by time) through a fresh governor on a memory store.

    ``week_zone`` is where the weeks of customers without a zone are counted (the rules'
    default zone unless given): runs that are compared must count them alike, or the weekly
    histogram moves where the rules changed nothing.
    """
    week_zone = week_zone or rules.default_timezone
    result = SimulationResult(label)
    if not history:
        return result
    end = history[-1].at
    clock = FrozenClock(history[0].at)
    governor = Governor(rules, MemoryStore(quiet=True), clock)
    queue: list[tuple[datetime, int, Row, int]] = [
        (row.at, order, row, 0) for order, row in enumerate(history)
    ]
    heapq.heapify(queue)
    order = len(history)
    sends: Counter[tuple[str, tuple[int, int]]] = Counter()
    for row in history:
        if isinstance(row, RequestRow):
            result.campaigns.setdefault(row.request.campaigns[0].id, CampaignTally()).requests += 1
    while queue:
        at, _, row, deferrals = heapq.heappop(queue)
        clock.set(at)
        if isinstance(row, EventRow):
            governor.record_event(row.event)
            continue
        decision = governor.decide(row.recipient, row.request, row.candidates)
        retry_at = _tally(result, decision, row, deferrals, end)
        if retry_at is not None:
            order += 1
            heapq.heappush(queue, (retry_at, order, row, deferrals + 1))
        elif decision.action == Action.SEND:
            where = row.recipient.timezone or week_zone
            sends[(row.recipient.user_id, _week(at, where))] += 1
    result.weekly = _weekly_distribution(history, sends, week_zone)
    return result


def _tally(
    result: SimulationResult, decision: Decision, row: RequestRow, deferrals: int, end: datetime
) -> datetime | None:
    """Count one decision; return when a deferred request comes back (None: it does not)."""
    tally = result.campaigns[row.request.campaigns[0].id]
    deciding = decision.deciding
    result.rules[(deciding.rule if deciding else "(none)", decision.action.value)] += 1
    if decision.action == Action.SEND:
        tally.sent += 1
    elif decision.action == Action.SUPPRESS:
        tally.suppressed += 1
    else:
        tally.deferred += 1 if deferrals == 0 else 0
        if decision.send_at is not None and decision.send_at <= end and deferrals < MAX_DEFERRALS:
            return decision.send_at
        tally.pending += 1
    return None


def _week(moment: datetime, timezone: str) -> tuple[int, int]:
    # Weeks as the customer lives them: Monday to Sunday in their zone (the rules' default, as
    # the governor's calendar caps count them, when the customer has none).
    year, week, _ = moment.astimezone(zone(timezone)).isocalendar()
    return year, week


def _weekly_distribution(
    history: Sequence[Row], sends: Counter[tuple[str, tuple[int, int]]], default_zone: str
) -> list[int]:
    """Histogram over (customer, week) pairs with a request or a send in that week.

    A send deferred past the end of the week of its request counts in the week it went.
    """
    weeks: dict[str, set[tuple[int, int]]] = defaultdict(set)
    for row in history:
        if isinstance(row, RequestRow):
            where = row.recipient.timezone or default_zone
            weeks[row.recipient.user_id].add(_week(row.at, where))
    for user, week in sends:
        weeks[user].add(week)
    buckets = [0] * WEEK_BUCKETS
    for user, user_weeks in weeks.items():
        for week in user_weeks:
            buckets[min(sends[(user, week)], WEEK_BUCKETS - 1)] += 1
    return buckets
