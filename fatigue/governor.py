"""The governor: whether to send, what, and when; records sends atomically and explains why.

Nothing here keeps per-customer state in the process. A decision is made in three steps: the
rules that do not depend on the customer's stored state are worked out first (``prepare``); one
atomic store call (one ``EVALSHA`` on Redis) reads the state, records the best send the state
allows and remembers the decision under the idempotency key; the outcome is then explained rule
by rule from the state read (``finish``). Only decisions the store cannot settle in that step
need a second call (``docs/fatigue.md`` lists them). Any number of processes can share one Redis.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from operator import attrgetter
from typing import NamedTuple
from zoneinfo import ZoneInfo

from fatigue.arbitrate import arbitrate, decision_for, rank
from fatigue.basis import Basis, replayed, selections
from fatigue.clock import Clock, utc_now
from fatigue.content import Selection
from fatigue.domain import (
    Action,
    Campaign,
    Candidate,
    ContentKind,
    Decision,
    EngagementEvent,
    EventType,
    MessageRequest,
    Recipient,
)
from fatigue.errors import ConflictError, StoreError
from fatigue.evaluate import (
    Plan,
    Prepared,
    Verdict,
    finish,
    plan_for,
    prepare,
    suppression_reason,
    suppression_scopes,
)
from fatigue.explain import Explanation, explain
from fatigue.identity import ByIdentity
from fatigue.jobs import Candidates, Job, make_job, store_error_decision, unavailable
from fatigue.rules import Rules
from fatigue.store.base import (
    CommitStatus,
    DecideCall,
    DecideReply,
    DecideStatus,
    DecisionMemo,
    FatigueStore,
    Replay,
    SendAttempt,
    SendRecord,
    StateQuery,
    UserState,
    decision_owner,
)
from fatigue.store.later import Later
from fatigue.windows import zone

__all__ = ["Governor", "Job", "arbitrate"]
log = logging.getLogger(__name__)
# The per-decision code below loops rather than using comprehensions: on Python 3.11 each
# comprehension or generator makes a new function object per call (a few hundred instructions
# each, several per decision).
#: A second-step commit is rejected only when another worker changed the customer's state in
#: between; deciding again converges within a few rounds.
MAX_ROUNDS = 8
# Reading an enum member off its class costs ten times a global in Python 3.11; these are read
# for every decision.
_REPLAY, _STALE, _RECORDED = DecideStatus.REPLAY, DecideStatus.STALE, DecideStatus.RECORDED
_SEND = Action.SEND
_TRANSACTIONAL = ContentKind.TRANSACTIONAL


@dataclass(slots=True)
class Draft:
    """A job's state-independent half and the store call it makes."""

    job: Job
    where: ZoneInfo
    prepared: list[Prepared]
    order: list[int]
    call: DecideCall
    #: Whether the store call can settle the decision (false when it needs the best hour).
    settled: bool


class Stamps(NamedTuple):
    """A round's moment as the store calls give it: the same float objects for every call.

    Shared, not worked out per call: the Redis store writes each as text (``repr`` of a float
    costs about two microseconds) and writes a value it has written before once
    (``fatigue.store.redis_args``).
    """

    at: float
    #: The oldest send a decision reads (``rules.history_horizon`` back).
    since: float
    #: Sends of considered items after this make the content stale (None: no no-repeat rule).
    repeat_since: float | None


class SentRound(NamedTuple):
    """One round's store calls, sent: whom they decide, when, and the replies on their way."""

    pending: list[int]
    now: datetime
    drafts: list[Draft]
    replies: Later[list[DecideReply]]


@dataclass(slots=True)
class FollowUp:
    """A decision the store call could not settle: record it (a send) or remember it."""

    index: int
    decision: Decision
    attempt: SendAttempt | None


class Governor:
    """Decide, record and explain; safe to share between threads and processes via the store."""

    def __init__(self, rules: Rules, store: FatigueStore, clock: Clock = utc_now) -> None:
        self.rules = rules
        self.store = store
        self.clock = clock
        self.plan = plan_for(rules)  # the plan explain() and replays use too
        self._default_timezone = rules.default_timezone
        timeliness = rules.timeliness
        self._no_repeat = timeliness.no_repeat if timeliness and timeliness.no_repeat else None
        history = max(rules.history_horizon, self._no_repeat or timedelta())
        self._horizon = rules.history_horizon.total_seconds()
        self._ttls = (
            _seconds(history),
            _seconds(rules.store.idempotency_ttl),
            _seconds(rules.store.engagement_ttl),
        )
        self._outage = StoreOutage(rules.store.on_store_error.value, clock)

    def decide(
        self, recipient: Recipient, request: MessageRequest, candidates: Candidates
    ) -> Decision:
        """Decide one request (see ``decide_many``)."""
        return self.decide_many([(recipient, request, candidates)])[0]

    def decide_many(
        self, requests: Sequence[tuple[Recipient, MessageRequest, Candidates]]
    ) -> list[Decision]:
        """Decide several requests: one atomic store call each, all in one round trip."""
        return self.decide_many_later(requests).result()

    def decide_many_later(
        self, requests: Sequence[tuple[Recipient, MessageRequest, Candidates]]
    ) -> Later[list[Decision]]:
        """Start ``decide_many``: the store calls are sent now, the decisions made on ``result()``.

        The store runs its calls while the caller goes on (rendering the decisions before
        these, say); whatever a decision needs after its store call happens when it is read.
        The caller reads or cancels the answer (``Later``) before asking the store again.
        """
        jobs = [
            make_job(recipient, request, candidates) for recipient, request, candidates in requests
        ]
        if not jobs:
            return Later(list)
        results: list[Decision | None] = [None] * len(jobs)
        first = self._send_round(jobs, list(range(len(jobs))))

        def decisions() -> list[Decision]:
            pending = self._settle_round(jobs, first, results)
            for _ in range(MAX_ROUNDS - 1):
                if not pending:
                    break
                pending = self._settle_round(jobs, self._send_round(jobs, pending), results)
            for index in pending:
                results[index] = unavailable(
                    self.rules, jobs[index], self.clock(), "store contention"
                )
            made = [decision for decision in results if decision is not None]
            for (_, request, _), decision in zip(requests, made, strict=True):
                _check_same_request(request, decision)
            return made

        return Later(decisions, first.replies.cancel)

    def _send_round(self, jobs: list[Job], pending: list[int]) -> SentRound:
        now = self.clock()
        stamps = self._stamps(now)
        drafts = [self._draft(jobs[index], now, stamps) for index in pending]
        return SentRound(pending, now, drafts, self.store.decide_later([d.call for d in drafts]))

    def _settle_round(
        self, jobs: list[Job], sent: SentRound, results: list[Decision | None]
    ) -> list[int]:
        pending, now, drafts = sent.pending, sent.now, sent.drafts
        try:
            replies = sent.replies.result()
        except StoreError as exc:
            self._outage.failed(exc)
            for index in pending:
                results[index] = store_error_decision(self.rules, jobs[index], now, exc)
            return []
        self._outage.answered()
        retry: list[int] = []
        follow: list[FollowUp] = []
        replays = {
            index: self._replayed(reply.replay, draft.call.query.idempotency_key)
            for index, draft, reply in zip(pending, drafts, replies, strict=True)
            if reply.status == _REPLAY and reply.replay is not None
        }
        states = self._replayed_sends([d for d in replays.values() if d is not None], now)
        for index, draft, reply in zip(pending, drafts, replies, strict=True):
            if reply.status == _REPLAY and reply.replay is not None:
                decision = replays[index]
                state = states.get(decision.decision_id) if decision is not None else None
                if decision is not None and state is not None:
                    decision = _since_decided(self.plan, decision, state, jobs[index])
                if decision is None:  # a remembered send that was never recorded: decide again
                    jobs[index] = jobs[index]._replace(decision_id=reply.replay.decision_id)
                    retry.append(index)
                results[index] = decision
                continue
            result = self._settle(index, draft, reply, now)
            if isinstance(result, FollowUp):
                follow.append(result)
            else:
                results[index] = result
        if follow:
            retry += self._follow_up(jobs, follow, results, now)
        return retry

    def _stamps(self, now: datetime) -> Stamps:
        """Return the epoch times every store call of a round shares, worked out once."""
        at = now.timestamp()
        repeat_since = None if self._no_repeat is None else at - self._no_repeat.total_seconds()
        return Stamps(at, at - self._horizon, repeat_since)

    def _draft(self, job: Job, now: datetime, stamps: Stamps) -> Draft:
        request, user = job.request, job.recipient.user_id
        timezone = job.recipient.timezone or self._default_timezone
        where = zone(timezone)
        prepared: list[Prepared] = []
        settled = True
        for campaign, items in zip(request.campaigns, job.candidates, strict=True):
            prep = prepare(self.plan, user, campaign, items, now, where, request.deferrable)
            # The best hour depends on opens the store holds: such a send cannot be settled
            # at once.
            settled = settled and not prep.frame.hour_needed
            prepared.append(prep)
        order: list[int] = []
        if settled and not request.dry_run:
            for n, prep in enumerate(prepared):
                if prep.may_send:
                    order.append(n)
            if len(order) > 1:
                order.sort(key=lambda n: rank(prepared[n]), reverse=True)
        call = self._call(job, prepared, order, settled, now, stamps, timezone)
        return Draft(job, where, prepared, order, call, settled)

    def _call(
        self,
        job: Job,
        prepared: list[Prepared],
        order: list[int],
        settled: bool,
        now: datetime,
        stamps: Stamps,
        timezone: str,
    ) -> DecideCall:
        """Build the store call: the offered sends, the no-repeat guard, the basis to keep."""
        request, user = job.request, job.recipient.user_id
        history_ttl, idempotency_ttl, engagement_ttl = self._ttls
        key = request.idempotency_key
        basis = None
        if key is not None and settled and not request.dry_run:
            basis = Basis(
                job.decision_id, now, timezone, request.campaigns, selections(prepared),
                request.deferrable, request.dry_run, request.request_digest,
            )  # fmt: skip
        guard = _considered(prepared) if self._no_repeat is not None else ()
        now_ts = stamps.at
        offers: list[SendAttempt] = []
        for n in order:
            offers.append(self._offer(job, prepared[n], now_ts))
        return DecideCall(
            query=StateQuery(user, now_ts, stamps.since, key),
            decision_id=job.decision_id,
            offers=tuple(offers),
            guard_items=guard,
            repeat_since=stamps.repeat_since if settled else None,
            basis=basis,
            audience=not settled and self.rules.send_time is not None,
            history_ttl=history_ttl,
            idempotency_ttl=idempotency_ttl,
            engagement_ttl=engagement_ttl,
        )

    def _settle(
        self, index: int, draft: Draft, reply: DecideReply, now: datetime
    ) -> Decision | FollowUp:
        """Explain the store's outcome; return a follow-up when the store could not settle it."""
        job, state = draft.job, reply.state
        assert state is not None
        conclusive = draft.settled and reply.status != _STALE
        prepared = draft.prepared
        if not conclusive and self._no_repeat is not None:
            # The content was chosen without the send history: choose it again on the real one.
            prepared = [
                self._reprepare(draft, prep, candidates, state, now)
                for prep, candidates in zip(prepared, job.candidates, strict=True)
            ]
        verdicts: list[Verdict] = []
        for prep in prepared:
            verdicts.append(finish(self.plan, prep, state, now, draft.where))
        decision, winner = decision_for(
            job.recipient.user_id, job.decision_id, job.request, verdicts, now
        )
        if reply.status == _RECORDED and reply.offer is not None:
            if winner is verdicts[draft.order[reply.offer]] and winner.action == _SEND:
                return decision
            # Cannot happen while the script and ``finish`` agree; never leave a stray count.
            log.error("store recorded offer %s but the rules chose otherwise", reply.offer)
            self.store.release(job.decision_id)
        elif conclusive and (decision.action != _SEND or job.request.dry_run):
            return decision
        return self._pending(index, job, decision, winner, now)

    def _pending(
        self, index: int, job: Job, decision: Decision, winner: Verdict, now: datetime
    ) -> Decision | FollowUp:
        key = job.request.idempotency_key
        if job.request.dry_run:
            return decision
        if decision.action == Action.SEND:
            return FollowUp(index, decision, self._attempt(job, decision, winner, now))
        return FollowUp(index, decision, None) if key is not None else decision

    def _reprepare(
        self,
        draft: Draft,
        prep: Prepared,
        candidates: Sequence[Candidate],
        state: UserState,
        now: datetime,
    ) -> Prepared:
        job = draft.job
        return prepare(
            self.plan, job.recipient.user_id, prep.campaign, candidates, now, draft.where,
            job.request.deferrable, sent=state.items,
        )  # fmt: skip

    def _follow_up(
        self,
        jobs: list[Job],
        follow: list[FollowUp],
        results: list[Decision | None],
        now: datetime,
    ) -> list[int]:
        """Record the sends and remember the other decisions the first call could not settle."""
        commits = [item for item in follow if item.attempt is not None]
        memos = [item for item in follow if item.attempt is None]
        retry: list[int] = []
        try:
            attempts = [item.attempt for item in commits if item.attempt is not None]
            outcomes = self.store.commit(attempts) if attempts else []
            notes = [self._memo(jobs[item.index], item, now) for item in memos]
            kept = self.store.remember(notes) if notes else []
        except StoreError as exc:
            self._outage.failed(exc)
            for item in follow:
                results[item.index] = store_error_decision(self.rules, jobs[item.index], now, exc)
            return []
        for item, outcome in zip(commits, outcomes, strict=True):
            if outcome.status == CommitStatus.RECORDED:
                results[item.index] = item.decision
            elif outcome.status == CommitStatus.DUPLICATE and outcome.kept is not None:
                key = jobs[item.index].request.idempotency_key
                results[item.index] = self._replayed(outcome.kept, key) or item.decision
            else:
                retry.append(item.index)
        for item, earlier in zip(memos, kept, strict=True):
            key = jobs[item.index].request.idempotency_key
            replayed = self._replayed(earlier, key) if earlier is not None else None
            results[item.index] = replayed or item.decision
        return retry

    def _memo(self, job: Job, item: FollowUp, now: datetime) -> DecisionMemo:
        key = job.request.idempotency_key
        assert key is not None
        payload = item.decision.to_json()
        return DecisionMemo(
            job.recipient.user_id, key, job.decision_id, payload, now.timestamp(), self._ttls[1]
        )

    def _replayed_sends(self, decisions: Sequence[Decision], now: datetime) -> dict[str, UserState]:
        """Return the customers' state now for remembered sends, by decision id.

        What happened since decides what a retry gets (``_since_decided``). Only replayed
        sends cost this read, one round trip for all of them; a send older than the history
        the store keeps is taken as it is.
        """
        since = now.timestamp() - self._horizon
        sends = [
            d for d in decisions
            if d.action is Action.SEND and not d.dry_run and d.decided_at.timestamp() >= since
        ]  # fmt: skip
        if not sends:
            return {}
        queries = [StateQuery(d.user_id, now.timestamp(), since) for d in sends]
        try:
            states = self.store.load(queries)
        except StoreError:  # the retries keep the remembered answers, as they would have before
            log.warning("could not check %d replayed send(s) against the store", len(sends))
            return {}
        return {d.decision_id: state for d, state in zip(sends, states, strict=True)}

    def _replayed(self, replay: Replay, key: str | None) -> Decision | None:
        """Return a remembered decision (None: decide again under its id, see ``replayed``)."""
        return replayed(self.plan, replay, key)

    def _offer(self, job: Job, prep: Prepared, now_ts: float) -> SendAttempt:
        """Return the send ``prep`` makes, with the checks the store repeats when recording it."""
        selection = prep.selection
        items = selection.items if selection is not None else ()
        frame = prep.frame
        return SendAttempt(
            user_id=job.recipient.user_id,
            record=self._record(job, prep.campaign, items, now_ts),
            caps=frame.checks,
            cooldown_since=frame.cooldown_since,
            blocking_scopes=frame.scopes,
            idempotency_key=job.request.idempotency_key,
            sunset_at=None if prep.transactional else self.plan.sunset_at,
        )

    def _record(
        self, job: Job, campaign: Campaign, items: Sequence[Candidate], now_ts: float
    ) -> SendRecord:
        transactional = campaign.kind == _TRANSACTIONAL
        return SendRecord(
            decision_id=job.decision_id,
            at=now_ts,
            channel=str(campaign.channel),
            category=campaign.category,
            campaign=campaign.id,
            kind=str(campaign.kind),
            counts=self.rules.transactional.count_toward_caps or not transactional,
            items=tuple(map(_item_id, items)),
        )

    def _attempt(
        self, job: Job, decision: Decision, verdict: Verdict, now: datetime
    ) -> SendAttempt:
        history_ttl, idempotency_ttl, engagement_ttl = self._ttls
        return self._offer(job, verdict.prep, now.timestamp())._replace(
            replay=decision.to_json() if job.request.idempotency_key else "",
            history_ttl=history_ttl,
            idempotency_ttl=idempotency_ttl,
            engagement_ttl=engagement_ttl,
        )

    def record_event(self, event: EngagementEvent) -> None:
        """Apply an engagement event to the customer's state at once."""
        from fatigue.events import change_for

        if event.type == EventType.SEND_FAILED:
            # Only the customer's own decision: a failure reported under another customer must
            # not lift that customer's caps (the id names its customer, see new_decision_id).
            if event.decision_id and decision_owner(event.decision_id) == event.user_id:
                self.store.release(event.decision_id)
            return
        change = change_for(event, self.rules, self.clock().timestamp())
        if change is not None:
            self.store.apply(change)

    def release(self, decision_id: str) -> bool:
        """Forget a recorded send the platform reports as failed; return whether it existed."""
        return self.store.release(decision_id)

    def explain(
        self, user_id: str, timezone: str | None = None, category: str = "", campaign: str = ""
    ) -> Explanation:
        """Return the customer's counters, suppression and when each kind of mail may go next.

        ``category`` and ``campaign`` name the mail asked about (see ``fatigue.explain``).
        """
        return explain(self.rules, self.store, user_id, self.clock(), timezone, category, campaign)


_item_id = attrgetter("item_id")
_campaign_id = attrgetter("id")


def _check_same_request(request: MessageRequest, decision: Decision) -> None:
    """Refuse a replay whose idempotency key was decided for another request.

    Another campaign, or the same campaign for another recipient address, template or data
    (``request_digest``; decisions remembered before it existed carry none). A fresh decision
    always matches its request; a remembered one names what the key was first used for. That
    decision stands (a send stays counted); this request is not its retry, and answering it
    with that decision (rendered to another address) would be wrong.
    """
    if decision.campaign and decision.campaign not in map(_campaign_id, request.campaigns):
        raise ConflictError(
            f"idempotency key {request.idempotency_key!r} was used for campaign "
            f"{decision.campaign!r}; a retry must repeat that request (use a new key for "
            "another campaign)"
        )
    if request.request_digest and decision.request_digest not in ("", request.request_digest):
        raise ConflictError(
            f"idempotency key {request.idempotency_key!r} was used for another request (its "
            "recipient, template or data differ); a retry must repeat that request exactly "
            "(use a new key for a new message)"
        )


def _considered(prepared: Sequence[Prepared]) -> tuple[str, ...]:
    """Return every item whose send history could change the content, once each."""
    if len(prepared) == 1:
        selection = prepared[0].selection
        return () if selection is None else _unique_considered(selection)
    seen: dict[str, None] = {}
    for prep in prepared:
        if prep.selection is not None:
            seen.update(dict.fromkeys(prep.selection.considered))
    return tuple(seen)


def _unique(selection: Selection) -> tuple[str, ...]:
    return tuple(dict.fromkeys(selection.considered))


#: A chunk's new customers share one selection (``fatigue.content.select``): its considered
#: items are made unique once.
_unique_considered = ByIdentity(_unique)


def _seconds(delta: timedelta) -> int:
    return max(1, int(delta.total_seconds()))


class StoreOutage:
    """Says once when the store starts failing and once when it has worked again for a while.

    Under an outage every decision takes the store-error policy; a line per decision would
    bury the log (about 55 a second per worker in a test), and none at all left nothing to see.
    A store that answers reads but refuses writes (out of memory, a read-only replica after a
    failover) fails a decision's second call after its first worked: announcing the end at the
    first call that worked flapped (108 lines for 98 decisions). So the end is said only once
    the store has worked with no failure for ``quiet``.
    """

    #: How long the store must work with no failure before an outage is called over.
    QUIET = timedelta(seconds=10)

    def __init__(self, policy: str, clock: Clock = utc_now, quiet: timedelta = QUIET) -> None:
        self._policy = policy
        self._clock = clock
        self._quiet = quiet
        self._last_failure: datetime | None = None  # None: no outage under way
        self._lock = threading.Lock()

    def failed(self, exc: StoreError) -> None:
        """Note a failed store call; log the first of an outage, with what the store said."""
        with self._lock:
            first = self._last_failure is None
            self._last_failure = self._clock()
        if first:
            log.warning(
                "state store failing (%s): deciding by on_store_error = %s until it works again",
                exc, self._policy,
            )  # fmt: skip

    def answered(self) -> None:
        """Note a store call that worked; log the end of an outage once none failed for a while."""
        if self._last_failure is None:
            return
        with self._lock:
            last = self._last_failure
            if last is None or self._clock() - last < self._quiet:
                return
            self._last_failure = None
        log.warning("state store working again (no failure for %d s)", self._quiet.total_seconds())


def _since_decided(plan: Plan, decision: Decision, state: UserState, job: Job) -> Decision | None:
    """Return what a retry of a remembered send gets, given the customer's state now.

    None when the send was released (its email failed to render): the retry is decided again,
    and its mail counts. A suppress when the customer has since unsubscribed, complained or
    bounced: a platform retrying after a timeout must not mail someone who just left. The
    send stays counted (the first answer may have been sent).
    """
    if all(send.decision_id != decision.decision_id for send in state.sends):
        return None
    campaign = next((c for c in job.request.campaigns if c.id == decision.campaign), None)
    if campaign is None:
        return decision
    now = suppression_reason(plan, state, suppression_scopes(campaign))
    if now.passed:
        return decision
    reason = replace(now, detail=f"{now.detail} since this send was decided; do not send it",
                     deciding=True)  # fmt: skip
    return replace(decision, action=Action.SUPPRESS, send_at=None, items=(), reasons=(reason,))
