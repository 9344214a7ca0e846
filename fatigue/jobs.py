"""Jobs (one request to decide) and the decisions made without the store."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple, TypeAlias

from fatigue.content import select
from fatigue.domain import (
    Action,
    Candidate,
    ContentKind,
    Decision,
    MessageRequest,
    Reason,
    Recipient,
)
from fatigue.errors import StoreError, ValidationError
from fatigue.rules import Rules, StoreErrorPolicy
from fatigue.store.base import new_decision_id

Candidates: TypeAlias = Sequence[Candidate] | Sequence[Sequence[Candidate]]


class Job(NamedTuple):
    """One request to decide: the customer, the request, the candidates per campaign, the id."""

    recipient: Recipient
    request: MessageRequest
    candidates: tuple[tuple[Candidate, ...], ...]
    decision_id: str


def make_job(recipient: Recipient, request: MessageRequest, candidates: Candidates) -> Job:
    """Check one request and give it its decision id."""
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
    return Job(recipient, request, groups, new_decision_id(recipient.user_id))


def store_error_decision(rules: Rules, job: Job, now: datetime, exc: StoreError) -> Decision:
    """Decide as the rules say when the store cannot be reached (or raise ``exc``)."""
    policy = rules.store.on_store_error
    if policy == StoreErrorPolicy.RAISE:
        raise exc
    transactional = all(c.kind == ContentKind.TRANSACTIONAL for c in job.request.campaigns)
    if policy == StoreErrorPolicy.SEND_TRANSACTIONAL and transactional:
        # The email still needs what its template shows: chosen without the send history.
        campaign = job.request.campaigns[0]
        chosen = select(
            job.candidates[0], rules, now, {}, False, campaign.min_items, campaign.max_items
        )
        if chosen.relevant:
            detail = "state store unavailable, sent unchecked"
            return _without_store(job, now, Action.SEND, None, detail, chosen.items)
        template = next(reason for reason in chosen.reasons if reason.rule == "template")
        return unavailable(rules, job, now, f"state store unavailable; {template.detail}")
    # What failed, host and all, is for the operators' log (the governor logs it once per outage).
    return unavailable(rules, job, now, "state store unavailable")


def unavailable(rules: Rules, job: Job, now: datetime, detail: str) -> Decision:
    """Defer by ``retry_after``: nothing is sent blind."""
    return _without_store(job, now, Action.DEFER, now + rules.store.retry_after, detail)


def _without_store(
    job: Job,
    now: datetime,
    action: Action,
    send_at: datetime | None,
    detail: str,
    items: tuple[Candidate, ...] = (),
) -> Decision:
    return Decision(
        action,
        job.recipient.user_id,
        new_decision_id(job.recipient.user_id),
        now,
        send_at=send_at,
        campaign=job.request.campaigns[0].id,
        items=items,
        reasons=(Reason("store", False, detail, deciding=True),),
        idempotency_key=job.request.idempotency_key,
        dry_run=job.request.dry_run,
        request_digest=job.request.request_digest,
    )
