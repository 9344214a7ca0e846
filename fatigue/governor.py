"""The governor: whether to send, what, and when; records sends atomically and explains why.

Nothing here keeps per-customer state in the process: every decision reads the store and records
through its atomic ``commit``, so any number of worker processes can share one Redis.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TypeAlias

from fatigue.clock import Clock, utc_now
from fatigue.domain import (
    Action,
    Candidate,
    ContentKind,
    Decision,
    EngagementEvent,
    MessageRequest,
    Reason,
    Recipient,
)
from fatigue.errors import StoreError, ValidationError
from fatigue.evaluate import Verdict, evaluate
from fatigue.events import change_for
from fatigue.explain import Explanation, explain
from fatigue.rules import Rules, StoreErrorPolicy
from fatigue.store.base import (
    CommitStatus,
    FatigueStore,
    SendAttempt,
    SendRecord,
    StateQuery,
    UserState,
    new_decision_id,
)
from fatigue.windows import zone

Candidates: TypeAlias = Sequence[Candidate] | Sequence[Sequence[Candidate]]
#: A commit is rejected only when another worker changed the customer's state in between;
#: re-reading and re-deciding converges within a few rounds.
MAX_ROUNDS = 8


@dataclass(frozen=True)
class Job:
    """One request to decide: the customer, the request and the candidates per campaign."""

    recipient: Recipient
    request: MessageRequest
    candidates: tuple[tuple[Candidate, ...], ...]


class Governor:
    """Decide, record and explain; safe to share between threads and processes via the store."""

    def __init__(self, rules: Rules, store: FatigueStore, clock: Clock = utc_now) -> None:
        self.rules = rules
        self.store = store
        self.clock = clock
        timeliness = rules.timeliness
        no_repeat = timeliness.no_repeat if timeliness and timeliness.no_repeat else timedelta()
        self._ttls = (
            _seconds(max(rules.history_horizon, no_repeat)),
            _seconds(rules.store.idempotency_ttl),
            _seconds(rules.store.engagement_ttl),
        )

    def decide(
        self, recipient: Recipient, request: MessageRequest, candidates: Candidates
    ) -> Decision:
        """Decide one request (see ``decide_many``)."""
        return self.decide_many([(recipient, request, candidates)])[0]

    def decide_many(
        self, requests: Sequence[tuple[Recipient, MessageRequest, Candidates]]
    ) -> list[Decision]:
        """Decide several requests with one store read and one atomic commit per round."""
        jobs = [_job(recipient, request, candidates) for recipient, request, candidates in requests]
        results: list[Decision | None] = [None] * len(jobs)
        pending = list(range(len(jobs)))
        for _ in range(MAX_ROUNDS):
            if not pending:
                break
            pending = self._round(jobs, pending, results)
        for index in pending:
            results[index] = self._unavailable(jobs[index], self.clock(), "store contention")
        return [decision for decision in results if decision is not None]

    def _round(
        self, jobs: list[Job], pending: list[int], results: list[Decision | None]
    ) -> list[int]:
        now = self.clock()
        horizon = (now - self.rules.history_horizon).timestamp()
        queries = [
            StateQuery(jobs[i].recipient.user_id, now.timestamp(), horizon, _key(jobs[i]))
            for i in pending
        ]
        try:
            states = self.store.load(queries)
        except StoreError as exc:
            for index in pending:
                results[index] = self._on_store_error(jobs[index], now, exc)
            return []
        to_commit: list[tuple[int, Decision, SendAttempt]] = []
        for index, state in zip(pending, states, strict=True):
            decision, verdict = self._decide_one(jobs[index], state, now)
            attempt = self._attempt(jobs[index], decision, verdict, now)
            if attempt is None:
                results[index] = decision
            else:
                to_commit.append((index, decision, attempt))
        return self._commit(jobs, to_commit, results, now)

    def _commit(
        self,
        jobs: list[Job],
        batch: list[tuple[int, Decision, SendAttempt]],
        results: list[Decision | None],
        now: datetime,
    ) -> list[int]:
        if not batch:
            return []
        try:
            outcomes = self.store.commit([attempt for _, _, attempt in batch])
        except StoreError as exc:
            for index, _, _ in batch:
                results[index] = self._on_store_error(jobs[index], now, exc)
            return []
        retry = []
        for (index, decision, _), outcome in zip(batch, outcomes, strict=True):
            if outcome.status == CommitStatus.RECORDED:
                results[index] = decision
            elif outcome.status == CommitStatus.DUPLICATE and outcome.replay:
                results[index] = Decision.from_dict(json.loads(outcome.replay))
            else:
                retry.append(index)
        return retry

    def _decide_one(
        self, job: Job, state: UserState, now: datetime
    ) -> tuple[Decision, Verdict | None]:
        if state.replay is not None:
            return Decision.from_dict(json.loads(state.replay)), None
        where = zone(job.recipient.timezone or self.rules.default_timezone)
        verdicts = [
            evaluate(self.rules, state, campaign, items, now, where, job.request.deferrable)
            for campaign, items in zip(job.request.campaigns, job.candidates, strict=True)
        ]
        winner, reasons = arbitrate(verdicts)
        decision = Decision(
            action=winner.action,
            user_id=job.recipient.user_id,
            decision_id=new_decision_id(job.recipient.user_id),
            decided_at=now,
            send_at=winner.send_at,
            items=winner.items if winner.action != Action.SUPPRESS else (),
            reasons=reasons,
            campaign=winner.campaign.id,
            idempotency_key=job.request.idempotency_key,
            dry_run=job.request.dry_run,
        )
        return decision, winner

    def _attempt(
        self, job: Job, decision: Decision, verdict: Verdict | None, now: datetime
    ) -> SendAttempt | None:
        if verdict is None or decision.action != Action.SEND or decision.dry_run:
            return None
        campaign = verdict.campaign
        transactional = campaign.kind == ContentKind.TRANSACTIONAL
        record = SendRecord(
            decision_id=decision.decision_id,
            at=now.timestamp(),
            channel=campaign.channel.value,
            category=campaign.category,
            campaign=campaign.id,
            kind=campaign.kind.value,
            counts=self.rules.transactional.count_toward_caps or not transactional,
            items=tuple(item.item_id for item in decision.items),
        )
        history_ttl, idempotency_ttl, engagement_ttl = self._ttls
        return SendAttempt(
            user_id=job.recipient.user_id,
            record=record,
            caps=verdict.caps,
            cooldown_since=verdict.cooldown_since,
            blocking_scopes=verdict.blocking_scopes,
            idempotency_key=job.request.idempotency_key,
            replay=json.dumps(decision.to_dict()) if job.request.idempotency_key else "",
            history_ttl=history_ttl,
            idempotency_ttl=idempotency_ttl,
            engagement_ttl=engagement_ttl,
        )

    def _on_store_error(self, job: Job, now: datetime, exc: StoreError) -> Decision:
        policy = self.rules.store.on_store_error
        if policy == StoreErrorPolicy.RAISE:
            raise exc
        transactional = all(c.kind == ContentKind.TRANSACTIONAL for c in job.request.campaigns)
        if policy == StoreErrorPolicy.SEND_TRANSACTIONAL and transactional:
            reason = Reason("store", False, f"store unavailable, sent unchecked: {exc}", None, None)
            return Decision(
                Action.SEND,
                job.recipient.user_id,
                new_decision_id(job.recipient.user_id),
                now,
                campaign=job.request.campaigns[0].id,
                reasons=(replace(reason, deciding=True),),
                idempotency_key=job.request.idempotency_key,
                dry_run=job.request.dry_run,
            )
        return self._unavailable(job, now, f"store unavailable: {exc}")

    def _unavailable(self, job: Job, now: datetime, detail: str) -> Decision:
        return Decision(
            Action.DEFER,
            job.recipient.user_id,
            new_decision_id(job.recipient.user_id),
            now,
            send_at=now + self.rules.store.retry_after,
            campaign=job.request.campaigns[0].id,
            reasons=(Reason("store", False, detail, deciding=True),),
            idempotency_key=job.request.idempotency_key,
            dry_run=job.request.dry_run,
        )

    def record_event(self, event: EngagementEvent) -> None:
        """Apply an engagement event to the customer's state at once."""
        from fatigue.domain import EventType

        if event.type == EventType.SEND_FAILED:
            if event.decision_id:
                self.store.release(event.decision_id)
            return
        change = change_for(event, self.rules)
        if change is not None:
            self.store.apply(change)

    def release(self, decision_id: str) -> bool:
        """Forget a recorded send the platform reports as failed; return whether it existed."""
        return self.store.release(decision_id)

    def explain(self, user_id: str, timezone: str | None = None) -> Explanation:
        """Return the customer's counters, suppression and when each kind of mail may go next."""
        return explain(self.rules, self.store, user_id, self.clock(), timezone)


def arbitrate(verdicts: Sequence[Verdict]) -> tuple[Verdict, tuple[Reason, ...]]:
    """Pick the verdict to act on: the best-scoring send, else the earliest defer."""
    sends = [v for v in verdicts if v.action == Action.SEND]
    defers = [v for v in verdicts if v.action == Action.DEFER]
    if sends:
        winner = max(sends, key=lambda v: (v.score, v.campaign.priority))
    elif defers:
        winner = min(defers, key=lambda v: (v.send_at or datetime.max, -v.score))
    else:
        winner = max(verdicts, key=lambda v: (v.score, v.campaign.priority))
    if len(verdicts) == 1:
        return winner, winner.reasons
    extra = [Reason("arbitration", True, f"{winner.campaign.id} chosen, score {winner.score:.4g}")]
    for verdict in verdicts:
        if verdict is not winner:
            extra.append(Reason("arbitration", False, _lost(verdict, winner), verdict.score))
    return winner, (*winner.reasons, *extra)


def _lost(loser: Verdict, winner: Verdict) -> str:
    name = loser.campaign.id
    deciding = next((reason for reason in loser.reasons if reason.deciding), None)
    if loser.action != Action.SEND and deciding is not None:
        return f"{name} lost: {loser.action.value} by {deciding.rule} ({deciding.detail})"
    return (
        f"{name} lost: score {loser.score:.4g} (relevance {loser.relevance:.4g} x priority "
        f"{loser.campaign.priority:g}) below {winner.campaign.id}'s {winner.score:.4g}"
    )


def _job(recipient: Recipient, request: MessageRequest, candidates: Candidates) -> Job:
    count = len(request.campaigns)
    nested = bool(candidates) and not isinstance(candidates[0], Candidate)
    if nested:
        groups = tuple(tuple(group) for group in candidates)  # type: ignore[arg-type]
        if len(groups) != count:
            raise ValidationError(
                f"{len(groups)} candidate lists for {count} campaigns: give one list per campaign"
            )
    else:
        flat = tuple(candidates)
        if flat and not isinstance(flat[0], Candidate):
            raise ValidationError("candidates must be Candidate objects or one list per campaign")
        groups = (flat,) * count  # type: ignore[assignment]
    if not recipient.user_id:
        raise ValidationError("the recipient needs a user_id")
    return Job(recipient, request, groups)


def _key(job: Job) -> str | None:
    return job.request.idempotency_key


def _seconds(delta: timedelta) -> int:
    return max(1, int(delta.total_seconds()))
