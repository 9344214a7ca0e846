"""The in-process store, for development, tests, the demo and simulations.

It holds everything in a dict guarded by one lock, so it is only correct within one process and
forgets suppression on restart: never use it for real sends.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from math import inf
from typing import Any

from fatigue.store.base import (
    DECISION_LOG_SIZE,
    DECISION_LOG_TTL,
    EVENT_MEMORY,
    HOURS,
    MAX_SOFT_BOUNCES,
    CommitResult,
    CommitStatus,
    DecideCall,
    DecideReply,
    DecideStatus,
    DecisionMemo,
    EventChange,
    FatigueStore,
    LoggedDecision,
    Replay,
    SendAttempt,
    SendRecord,
    StateQuery,
    UserState,
    decision_owner,
    newest_unique,
    suppression_detail,
    suppression_time,
)

log = logging.getLogger(__name__)


@dataclass
class _User:
    sends: list[SendRecord] = field(default_factory=list)
    items: dict[str, float] = field(default_factory=dict)
    suppression: dict[str, str] = field(default_factory=dict)
    ignored: int = 0
    soft_bounces: int = 0
    soft_bounce_times: list[float] = field(default_factory=list)  # since the latest delivery
    last_delivered: float | None = None
    lifted: dict[str, float] = field(default_factory=dict)  # scope -> when it was last lifted
    last_engaged: float | None = None
    hours: list[int] = field(default_factory=lambda: [0] * HOURS)
    replays: dict[str, tuple[Replay, float]] = field(default_factory=dict)
    events: dict[str, float] = field(default_factory=dict)  # applied event ids -> when applied

    def first_sight(self, event_id: str | None, now: float) -> bool:
        """Remember ``event_id`` from ``now`` (when applied); return False when seen before."""
        if event_id is None:
            return True
        if event_id in self.events:
            return False
        if len(self.events) >= 256:  # forget ids as Redis does, past EVENT_MEMORY
            self.events = {k: t for k, t in self.events.items() if t >= now - EVENT_MEMORY}
        self.events[event_id] = now
        return True

    def suppress(self, scope: str, detail: str) -> None:
        """Suppress ``scope`` unless a later suppression of it is kept, or it was lifted since."""
        at = suppression_time(detail)
        kept = self.suppression.get(scope)
        if (kept is None or suppression_time(kept) <= at) and self.lifted.get(scope, -inf) <= at:
            self.suppression[scope] = detail

    def lift(self, scope: str, at: float) -> None:
        """Lift ``scope`` unless it was suppressed after ``at``; remember when, for late events."""
        kept = self.suppression.get(scope)
        if kept is not None and suppression_time(kept) <= at:  # ties: the later report
            del self.suppression[scope]
        if kept is None or suppression_time(kept) <= at:
            self.lifted[scope] = max(at, self.lifted.get(scope, -inf))

    def count_soft_bounce(self, at: float | None, delivered: float | None) -> None:
        """Count soft bounces since the latest delivery, whatever order they were reported in.

        A delivery reported late clears only the bounces before it; at equal times the later
        report wins, as for suppressions.
        """
        if delivered is not None and delivered >= (self.last_delivered or -inf):
            self.last_delivered = delivered
            self.soft_bounce_times = [t for t in self.soft_bounce_times if t > delivered]
        if at is not None and at >= (self.last_delivered or -inf):
            self.soft_bounce_times = sorted([*self.soft_bounce_times, at])[-MAX_SOFT_BOUNCES:]
        self.soft_bounces = len(self.soft_bounce_times)

    def replay(self, key: str | None, now: float, mine: str = "") -> Replay | None:
        """Return the live decision kept under ``key`` unless it is decision ``mine``."""
        stored = self.replays.get(key) if key is not None else None
        if stored is None or stored[1] <= now or stored[0].decision_id == mine:
            return None
        return stored[0]

    def keep(self, key: str, replay: Replay, now: float, ttl: int) -> None:
        """Keep ``replay`` under ``key`` for ``ttl`` seconds, dropping expired entries."""
        if len(self.replays) > 16:
            self.replays = {k: v for k, v in self.replays.items() if v[1] > now}
        self.replays[key] = (replay, now + ttl)


class MemoryStore(FatigueStore):
    """``memory://``: one process, no persistence."""

    durable = False

    def __init__(self, quiet: bool = False) -> None:
        self._lock = threading.Lock()
        self._users: dict[str, _User] = {}
        self._audience = [0] * HOURS
        # Kept apart from ``_users`` so logging a decision never creates fatigue state.
        self._decisions: dict[str, deque[str]] = {}
        self._identity: str | None = None
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
        )

    def commit(self, attempts: Sequence[SendAttempt]) -> list[CommitResult]:
        """Check and record each send under the lock."""
        with self._lock:
            return [self._commit(attempt) for attempt in attempts]

    def _commit(self, attempt: SendAttempt) -> CommitResult:
        user = self._users.setdefault(attempt.user_id, _User())
        record = attempt.record
        key = attempt.idempotency_key
        earlier = user.replay(key, record.at, mine=record.decision_id)
        if earlier is not None:
            return CommitResult(CommitStatus.DUPLICATE, replay=earlier.payload, kept=earlier)
        refusal = _refusal(user, attempt)
        if refusal:
            return CommitResult(CommitStatus.REJECTED, detail=refusal)
        _record(user, attempt, attempt.history_ttl)
        if key is not None:
            replay = Replay(record.decision_id, attempt.replay)
            user.keep(key, replay, record.at, attempt.idempotency_ttl)
        return CommitResult(CommitStatus.RECORDED)

    def decide(self, calls: Sequence[DecideCall]) -> list[DecideReply]:
        """Read, check, record and remember each call under the lock, in order."""
        with self._lock:
            return [self._decide(call) for call in calls]

    def _decide(self, call: DecideCall) -> DecideReply:
        query = call.query
        user = self._users.get(query.user_id)
        if user is None:
            user = _User() if call.offers or call.basis is not None else None
            if user is not None:
                self._users[query.user_id] = user
        earlier = user.replay(query.idempotency_key, query.now, call.decision_id) if user else None
        if earlier is not None:
            return DecideReply(DecideStatus.REPLAY, replay=earlier)
        state = self._snapshot(user, call)
        if user is None:
            return DecideReply(DecideStatus.CHECKED, state)
        since = call.repeat_since
        if since is not None and any(at > since for at in state.items.values()):
            return DecideReply(DecideStatus.STALE, state)
        offer = next((n for n, a in enumerate(call.offers) if not _refusal(user, a)), None)
        if offer is not None:
            _record(user, call.offers[offer], call.history_ttl)
        key = query.idempotency_key
        if call.basis is not None and key is not None:
            replay = Replay(call.decision_id, "", state, offer, call.basis)
            user.keep(key, replay, query.now, call.idempotency_ttl)
        status = DecideStatus.CHECKED if offer is None else DecideStatus.RECORDED
        return DecideReply(status, state, offer)

    def _snapshot(self, user: _User | None, call: DecideCall) -> UserState:
        query = call.query
        audience = tuple(self._audience) if call.audience else (0,) * HOURS
        if user is None:
            return UserState(query.user_id, audience_hours=audience)
        sent = user.items
        since = query.since
        return UserState(
            user_id=query.user_id,
            sends=tuple(record for record in user.sends if record.at >= since),
            items={item: sent[item] for item in call.guard_items if item in sent},
            suppression=dict(user.suppression) if user.suppression else {},
            ignored=user.ignored,
            soft_bounces=user.soft_bounces,
            last_engaged=user.last_engaged,
            hours=tuple(user.hours) if call.audience else (0,) * HOURS,
            audience_hours=audience,
        )

    def remember(self, memos: Sequence[DecisionMemo]) -> list[Replay | None]:
        """Keep each decision unless another decision holds its key."""
        with self._lock:
            return [self._remember(memo) for memo in memos]

    def _remember(self, memo: DecisionMemo) -> Replay | None:
        user = self._users.setdefault(memo.user_id, _User())
        now = memo.at
        earlier = user.replay(memo.idempotency_key, now, memo.decision_id)
        if earlier is None:
            replay = Replay(memo.decision_id, memo.payload)
            user.keep(memo.idempotency_key, replay, now, memo.ttl)
        return earlier

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
            # Only a send made after the latest engagement is among those ignored since.
            after_engagement = user.last_engaged is None or found.at > user.last_engaged
            if found.kind != "transactional" and user.ignored > 0 and after_engagement:
                user.ignored -= 1
            return True

    def apply(self, change: EventChange) -> bool:
        """Apply an event's change once, by the event's own time (see ``EventChange``)."""
        with self._lock:
            user = self._users.setdefault(change.user_id, _User())
            if not user.first_sight(change.event_id, change.applied_at):
                return False
            at = change.at
            if change.engaged and (user.last_engaged is None or at >= user.last_engaged):
                user.last_engaged = at
                # Marketing sends since this engagement: none unless it was reported late.
                user.ignored = sum(1 for r in user.sends if r.kind != "transactional" and r.at > at)
            if change.hour is not None:
                user.hours[change.hour] += 1
            if (slot := change.audience_slot) is not None:
                self._audience[slot] += 1
            if change.reset_soft_bounces or change.soft_bounce:
                user.count_soft_bounce(
                    at if change.soft_bounce else None, at if change.reset_soft_bounces else None
                )
                threshold = change.soft_bounce_threshold
                if change.soft_bounce and threshold is not None and user.soft_bounces >= threshold:
                    user.suppress("address", suppression_detail("bounce_soft", at))
            for scope in change.lift:
                user.lift(scope, at)
            for scope, detail in change.suppress:
                user.suppress(scope, detail)
            return True

    def log_decisions(self, entries: Sequence[LoggedDecision], ttl: int = DECISION_LOG_TTL) -> None:
        """Append each decision to its customer's bounded log, under the lock."""
        # Kept as JSON, as Redis keeps it: a reader never shares the writer's objects.
        with self._lock:
            for user_id, text in entries:
                log = self._decisions.get(user_id)
                if log is None:
                    log = self._decisions[user_id] = deque(maxlen=DECISION_LOG_SIZE)
                log.appendleft(text)

    def recent_decisions(self, user_id: str, limit: int = 20) -> list[dict[str, Any]]:
        """Return the customer's logged decisions, newest first."""
        with self._lock:
            logged = list(self._decisions.get(user_id, ()))
        return newest_unique([json.loads(text) for text in logged], limit)

    def ping(self) -> None:
        """Do nothing: the memory store is always reachable."""

    def identity(self) -> str | None:
        """Return the identity given to this process's store, if any."""
        return self._identity

    def claim_identity(self, candidate: str, replace: bool = False) -> str:
        """Take ``candidate`` unless an identity is held (or ``replace``); return the one held."""
        with self._lock:
            if self._identity is None or replace:
                self._identity = candidate
            return self._identity


def _refusal(user: _User, attempt: SendAttempt) -> str:
    """Return why ``attempt`` may not be recorded now (``""`` when it may)."""
    for scope in attempt.blocking_scopes:
        if scope in user.suppression:
            return f"suppressed:{scope}"
    if attempt.sunset_at is not None and user.ignored >= attempt.sunset_at:
        return "sunset"
    for index, cap in enumerate(attempt.caps):
        if user.ignored < cap.min_ignored:
            continue
        if sum(1 for record in user.sends if cap.matches(record)) >= cap.limit:
            return f"cap:{index}"
    since = attempt.cooldown_since
    if since is not None and any(
        record.kind != "transactional" and record.at > since for record in user.sends
    ):
        return "cooldown"
    return ""


def _record(user: _User, attempt: SendAttempt, history_ttl: int) -> None:
    record = attempt.record
    now = record.at
    horizon = now - history_ttl
    user.sends = [earlier for earlier in user.sends if earlier.at > horizon]
    user.sends.append(record)
    if record.items:
        if user.items:
            user.items = {item: at for item, at in user.items.items() if at > horizon}
        user.items.update(dict.fromkeys(record.items, now))
    if record.kind != "transactional":
        user.ignored += 1
