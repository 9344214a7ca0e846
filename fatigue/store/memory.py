"""The in-process store, for development, tests, the demo and simulations.

It holds everything in a dict guarded by one lock, so it is only correct within one process and
forgets suppression on restart: never use it for real sends.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from fatigue.store.base import (
    HOURS,
    CommitResult,
    CommitStatus,
    EventChange,
    FatigueStore,
    SendAttempt,
    SendRecord,
    StateQuery,
    UserState,
    decision_owner,
)

log = logging.getLogger(__name__)


@dataclass
class _User:
    sends: list[SendRecord] = field(default_factory=list)
    items: dict[str, float] = field(default_factory=dict)
    suppression: dict[str, str] = field(default_factory=dict)
    ignored: int = 0
    soft_bounces: int = 0
    last_engaged: float | None = None
    hours: list[int] = field(default_factory=lambda: [0] * HOURS)
    replays: dict[str, tuple[str, float]] = field(default_factory=dict)


class MemoryStore(FatigueStore):
    """``memory://``: one process, no persistence."""

    durable = False

    def __init__(self, quiet: bool = False) -> None:
        self._lock = threading.Lock()
        self._users: dict[str, _User] = {}
        self._audience = [0] * HOURS
        if not quiet:
            log.warning(
                "memory:// fatigue store: state (including unsubscribes) lives in this process "
                "only and is lost on restart; use redis:// in production"
            )

    def load(self, queries: Sequence[StateQuery]) -> list[UserState]:
        """Read the state of several customers."""
        with self._lock:
            return [self._state(query) for query in queries]

    def _state(self, query: StateQuery) -> UserState:
        user = self._users.get(query.user_id)
        if user is None:
            return UserState(user_id=query.user_id, audience_hours=tuple(self._audience))
        replay = None
        if query.idempotency_key is not None:
            stored = user.replays.get(query.idempotency_key)
            replay = stored[0] if stored and stored[1] > query.now else None
        return UserState(
            user_id=query.user_id,
            sends=tuple(record for record in user.sends if record.at >= query.since),
            items=dict(user.items),
            suppression=dict(user.suppression),
            ignored=user.ignored,
            soft_bounces=user.soft_bounces,
            last_engaged=user.last_engaged,
            hours=tuple(user.hours),
            audience_hours=tuple(self._audience),
            replay=replay,
        )

    def commit(self, attempts: Sequence[SendAttempt]) -> list[CommitResult]:
        """Check and record each send under the lock."""
        with self._lock:
            return [self._commit(attempt) for attempt in attempts]

    def _commit(self, attempt: SendAttempt) -> CommitResult:
        user = self._users.setdefault(attempt.user_id, _User())
        now = attempt.record.at
        key = attempt.idempotency_key
        if key is not None and key in user.replays and user.replays[key][1] > now:
            return CommitResult(CommitStatus.DUPLICATE, replay=user.replays[key][0])
        for scope in attempt.blocking_scopes:
            if scope in user.suppression:
                return CommitResult(CommitStatus.REJECTED, detail=f"suppressed:{scope}")
        for index, cap in enumerate(attempt.caps):
            if sum(1 for record in user.sends if cap.matches(record)) >= cap.limit:
                return CommitResult(CommitStatus.REJECTED, detail=f"cap:{index}")
        if attempt.cooldown_since is not None and any(
            record.kind != "transactional" and record.at > attempt.cooldown_since
            for record in user.sends
        ):
            return CommitResult(CommitStatus.REJECTED, detail="cooldown")
        horizon = now - attempt.history_ttl
        user.sends = [record for record in user.sends if record.at > horizon]
        user.sends.append(attempt.record)
        user.items = {item: at for item, at in user.items.items() if at > horizon}
        user.items.update(dict.fromkeys(attempt.record.items, now))
        if attempt.record.kind != "transactional":
            user.ignored += 1
        if key is not None:
            user.replays = {k: v for k, v in user.replays.items() if v[1] > now}
            user.replays[key] = (attempt.replay, now + attempt.idempotency_ttl)
        return CommitResult(CommitStatus.RECORDED)

    def release(self, decision_id: str) -> bool:
        """Forget a recorded send."""
        owner = decision_owner(decision_id)
        with self._lock:
            user = self._users.get(owner) if owner is not None else None
            if user is None:
                return False
            found = next((r for r in user.sends if r.decision_id == decision_id), None)
            if found is None:
                return False
            user.sends.remove(found)
            for item in found.items:
                if user.items.get(item) == found.at:
                    del user.items[item]
            if found.kind != "transactional" and user.ignored > 0:
                user.ignored -= 1
            return True

    def apply(self, change: EventChange) -> None:
        """Apply an event's change."""
        with self._lock:
            user = self._users.setdefault(change.user_id, _User())
            if change.engaged:
                user.ignored = 0
                user.last_engaged = change.at
            if change.hour is not None:
                user.hours[change.hour] += 1
                self._audience[change.hour] += 1
            if change.reset_soft_bounces:
                user.soft_bounces = 0
            if change.soft_bounce:
                user.soft_bounces += 1
                threshold = change.soft_bounce_threshold
                if threshold is not None and user.soft_bounces >= threshold:
                    user.suppression["address"] = _soft_bounce_detail(change.at)
            for scope in change.lift:
                user.suppression.pop(scope, None)
            user.suppression.update(dict(change.suppress))

    def ping(self) -> None:
        """Do nothing: the memory store is always reachable."""


def _soft_bounce_detail(at: float) -> str:
    return json.dumps({"reason": "bounce_soft", "at": at})
