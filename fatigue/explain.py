"""``explain(user_id)``: a customer's counters, suppression and next allowed moments."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fatigue.domain import Action, Campaign, ContentKind, Reason
from fatigue.evaluate import evaluate, holdout_bucket
from fatigue.rules import Rules
from fatigue.store.base import FatigueStore, StateQuery
from fatigue.suppressions import suppression_entry
from fatigue.windows import zone


@dataclass(frozen=True)
class NextAllowed:
    """When a kind of message would next be allowed (None: not at all), and why."""

    kind: ContentKind
    at: datetime | None
    reasons: tuple[Reason, ...]


@dataclass(frozen=True)
class Explanation:
    """Why a customer is, or is not, being mailed."""

    user_id: str
    at: datetime
    timezone: str
    recent_sends: int
    ignored: int
    soft_bounces: int
    last_engaged: datetime | None
    suppression: dict[str, str]
    in_holdout: bool
    next_allowed: tuple[NextAllowed, ...]
    category: str = ""  # the category and campaign the next moments were evaluated for
    campaign: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {
            "user_id": self.user_id,
            "at": self.at.isoformat(),
            "timezone": self.timezone,
            "recent_sends": self.recent_sends,
            "ignored": self.ignored,
            "soft_bounces": self.soft_bounces,
            "last_engaged": self.last_engaged.isoformat() if self.last_engaged else None,
            "suppression": dict(self.suppression),
            "suppressions": [
                suppression_entry(scope, detail)
                for scope, detail in sorted(self.suppression.items())
            ],
            "in_holdout": self.in_holdout,
            "category": self.category or None,
            "campaign": self.campaign or None,
            "next_allowed": {
                entry.kind.value: {
                    "at": entry.at.isoformat() if entry.at else None,
                    "reasons": [dict(vars(reason)) for reason in entry.reasons],
                }
                for entry in self.next_allowed
            },
        }


def explain(
    rules: Rules,
    store: FatigueStore,
    user_id: str,
    now: datetime,
    timezone: str | None = None,
    category: str = "",
    campaign: str = "",
) -> Explanation:
    """Read the customer's state and evaluate every kind of message against it.

    ``category`` and ``campaign`` describe the message asked about: without them only rules
    that hold for every message apply, so a ``category:<c>`` suppression or a cap scoped to a
    category or campaign would not show in the next allowed moments.
    """
    horizon = (now - rules.history_horizon).timestamp()
    state = store.load([StateQuery(user_id, now.timestamp(), horizon)])[0]
    zone_name = timezone or rules.default_timezone
    where = zone(zone_name)
    entries = []
    for kind in ContentKind:
        verdict = evaluate(
            rules,
            state,
            Campaign(campaign or f"explain:{kind.value}", category=category, kind=kind),
            None,
            now,
            where,
        )
        at = now if verdict.action == Action.SEND else verdict.send_at
        entries.append(NextAllowed(kind, at, verdict.reasons))
    holdout = rules.holdout
    return Explanation(
        user_id=user_id,
        at=now,
        timezone=zone_name,
        recent_sends=len(state.sends),
        ignored=state.ignored,
        soft_bounces=state.soft_bounces,
        last_engaged=datetime.fromtimestamp(state.last_engaged, UTC)
        if state.last_engaged is not None
        else None,
        suppression=dict(state.suppression),
        in_holdout=holdout is not None and holdout_bucket(holdout.salt, user_id) < holdout.percent,
        next_allowed=tuple(entries),
        category=category,
        campaign=campaign,
    )
