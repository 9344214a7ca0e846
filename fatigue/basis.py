"""What a decision is rebuilt from on a retry: the request, the content and the moment.

The store keeps this *basis* under the idempotency key together with the state it read, in the
same atomic step that records the send, so a retried request (with the same key) gets the very
same decision without the decision's JSON having to exist before the store has answered:
``replayed`` rebuilds it by evaluating the rules on the kept state at the kept moment.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from operator import attrgetter
from typing import Any, NamedTuple

import orjson

from fatigue.arbitrate import decision_for
from fatigue.content import Selection
from fatigue.domain import (
    Action,
    Campaign,
    Candidate,
    Channel,
    ContentKind,
    Decision,
    MessageRequest,
    Reason,
    reason_json,
)
from fatigue.evaluate import Plan, finish, prepare
from fatigue.identity import encoded_once
from fatigue.store.base import Replay
from fatigue.windows import zone


class Basis(NamedTuple):
    """The state-independent inputs of one decision (a NamedTuple: one is built per request)."""

    decision_id: str
    decided_at: datetime
    timezone: str
    campaigns: tuple[Campaign, ...]
    selections: tuple[Selection | None, ...]
    deferrable: bool = False
    dry_run: bool = False
    request_digest: str = ""

    def to_json(self) -> str:
        """Encode as compact JSON."""
        data = {
            "id": self.decision_id,
            "at": self.decided_at,
            "tz": self.timezone,
            "deferrable": self.deferrable,
            "dry_run": self.dry_run,
            "digest": self.request_digest,
            "campaigns": list(map(_campaign_json, self.campaigns)),
            "content": list(map(_selection_json, self.selections)),
        }
        return orjson.dumps(data).decode()  # compact; written for every keyed decision

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Basis:
        """Rebuild from ``to_json`` output already parsed."""
        return cls(
            decision_id=data["id"],
            decided_at=datetime.fromisoformat(data["at"]),
            timezone=data["tz"],
            campaigns=tuple(_campaign_from_dict(item) for item in data["campaigns"]),
            selections=tuple(_selection_from_dict(item) for item in data["content"]),
            deferrable=bool(data["deferrable"]),
            dry_run=bool(data["dry_run"]),
            request_digest=str(data.get("digest") or ""),  # none in bases kept before it
        )


def _campaign_to_dict(campaign: Campaign) -> dict[str, Any]:
    return {
        "id": campaign.id,
        "category": campaign.category,
        "kind": str(campaign.kind),
        "priority": campaign.priority,
        "channel": str(campaign.channel),
    }


# Every decision in a batch names the same campaign objects.
_campaign_json = encoded_once(_campaign_to_dict)


def _campaign_from_dict(data: dict[str, Any]) -> Campaign:
    return Campaign(
        data["id"],
        data["category"],
        ContentKind(data["kind"]),
        data["priority"],
        Channel(data["channel"]),
    )


def _selection_to_dict(selection: Selection | None) -> dict[str, Any] | None:
    if selection is None:
        return None
    return {
        "items": [_candidate_row(item) for item in selection.items],
        "reasons": [reason_json(reason) for reason in selection.reasons],
        "relevant": selection.relevant,
        "relevance": selection.relevance,
    }


# The new customers of a batch chunk share one selection (``fatigue.content.select``).
_selection_json = encoded_once(_selection_to_dict)


def _selection_from_dict(data: dict[str, Any] | None) -> Selection | None:
    if data is None:
        return None
    return Selection(
        items=tuple(_candidate_from_row(row) for row in data["items"]),
        reasons=tuple(Reason(**reason) for reason in data["reasons"]),
        relevant=data["relevant"],
        relevance=data["relevance"],
    )


# A row, not a dict: the basis is written for every decision with an idempotency key. The
# fields are read in one C call; orjson writes the tuple as an array, the kind (a str enum) as
# its value and the dates exactly as ``isoformat`` does (as ``Decision.to_json`` relies on). The
# columns are in the order ``_candidate_from_row`` reads them.
_candidate_row = attrgetter(
    "item_id", "relevance", "score", "source", "category", "kind", "published_at", "expires_at",
    "in_stock",
)  # fmt: skip


def _candidate_from_row(row: list[Any]) -> Candidate:
    item_id, relevance, score, source, category, kind, published, expires, in_stock = row
    return Candidate(
        item_id,
        relevance,
        score,
        source,
        category,
        ContentKind(kind),
        datetime.fromisoformat(published) if published else None,
        datetime.fromisoformat(expires) if expires else None,
        in_stock,
    )


def selections(prepared: Sequence[Any]) -> tuple[Selection | None, ...]:
    """Return the selection of each prepared campaign."""
    return tuple(map(_selection_of, prepared))


_selection_of = attrgetter("selection")


def replayed(plan: Plan, replay: Replay, key: str | None) -> Decision | None:
    """Return a remembered decision, rebuilding it from its basis and state when needed.

    None means the basis now reads as a send that was never recorded (the rules changed since):
    the request must then be decided again under the same decision id.
    """
    basis = replay.basis
    if basis is None or replay.state is None:
        return Decision.from_dict(json.loads(replay.payload))
    where = zone(basis.timezone)
    user, at = replay.state.user_id, basis.decided_at
    verdicts = [
        finish(
            plan,
            prepare(plan, user, campaign, None, at, where, basis.deferrable, selection),
            replay.state,
            at,
            where,
        )
        for campaign, selection in zip(basis.campaigns, basis.selections, strict=True)
    ]
    request = MessageRequest(
        basis.campaigns, key, basis.deferrable, basis.dry_run, basis.request_digest
    )
    decision, _ = decision_for(user, basis.decision_id, request, verdicts, at)
    if decision.action == Action.SEND and replay.offer is None:
        return None
    return decision
