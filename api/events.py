"""``POST /v1/events``: engagement and commerce events, logged durably, then applied to state.

Order matters for "never lost once acknowledged": every valid event is first appended to the
event log and fsynced, then applied to fatigue state, and only then is the 202 sent. If the store
fails after the log write, the client gets a 503 and retries; the log may then hold a line twice,
which its ``event_id`` (a digest of the event's content) lets a reader drop.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pydantic
from flask import Blueprint, current_app, request

from api.auth import Role
from api.metrics import EVENTS, EVENTS_REJECTED, STORE_ERRORS, StorePart
from api.pending import SUPPRESSING, engagement_of
from api.problems import ApiProblem
from api.routing import operation, parse_json_body
from api.schemas.events import (
    EventIn,
    EventKind,
    EventsEnvelope,
    EventsRequest,
    EventsResponse,
    RejectedEvent,
)
from api.services import services
from engine import interactions
from fatigue.domain import EventType
from fatigue.errors import StoreError, ValidationError
from fatigue.store.base import decision_owner

log = logging.getLogger(__name__)

bp = Blueprint("events", __name__)
GOVERNED = frozenset(kind.value for kind in EventType)
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
# As far ahead of this server's clock as training accepts an interaction.
FUTURE_SLACK = timedelta(seconds=interactions.FUTURE_SLACK)
# What an API event is called in the training data: a click the email platform reports is an
# email click, which the trainer weighs more than a click on the site.
TRAINING_EVENTS = {"view": "view", "click": "email_click", "add_to_cart": "add_to_cart",
                   "purchase": "purchase"}  # fmt: skip


@operation(
    bp,
    "/v1/events",
    "POST",
    roles=(Role.PLATFORM,),
    body=EventsRequest,
    response=EventsResponse,
    status=202,
    parse_body=False,
    summary="Report events; they update fatigue state at once and feed the next training run.",
)
def post_events() -> EventsResponse:
    """Accept every valid event durably and report each rejected one with its index."""
    # A full request of events is larger than ordinary JSON bodies may be.
    request.max_content_length = int(current_app.config["MAX_EVENTS_BYTES"])
    envelope = parse_json_body(EventsEnvelope)
    limit = int(current_app.config["MAX_EVENTS_PER_REQUEST"])
    if len(envelope.events) > limit:
        raise ApiProblem(
            "too-large", f"{len(envelope.events)} events in one request; the limit is {limit}"
        )
    found = services()
    now = found.clock()
    accepted, rejected, reasons = _validate(envelope.events, now)
    received_at = now.isoformat()
    records = [(index, log_record(event, received_at)) for index, event in accepted]
    try:
        found.event_log.append([record for _, record in records])
        found.interaction_log.append(
            [interaction_row(record) for _, record in records if record["item_id"] is not None
             and record["event"] in TRAINING_EVENTS]
        )  # fmt: skip
    except StoreError:
        STORE_ERRORS.labels(StorePart.EVENT_LOG).inc()
        raise
    objections = _apply(records)
    rejected = sorted(rejected + objections, key=lambda item: item.index)
    EVENTS.labels("accepted").inc(len(accepted) - len(objections))
    EVENTS.labels("rejected").inc(len(rejected))
    reasons["refused"] += len(objections)
    for reason, count in reasons.items():
        if count:
            EVENTS_REJECTED.labels(reason).inc(count)
    return EventsResponse(accepted=len(envelope.events) - len(rejected), rejected=rejected)


def _validate(
    raw_events: list[Any], now: datetime
) -> tuple[list[tuple[int, EventIn]], list[RejectedEvent], Counter[str]]:
    """Validate each event alone, so one bad line rejects only itself; count why by reason."""
    accepted: list[tuple[int, EventIn]] = []
    rejected: list[RejectedEvent] = []
    reasons: Counter[str] = Counter()
    for index, raw in enumerate(raw_events):
        try:
            event = EventIn.model_validate(raw)
        except pydantic.ValidationError as exc:
            messages = [
                f"{'.'.join(str(p) for p in error['loc']) or 'event'}: "
                + error["msg"].removeprefix("Value error, ")
                for error in exc.errors(include_url=False)
            ]
            rejected.append(RejectedEvent(index=index, error="; ".join(messages)))
            reasons["invalid"] += 1
            continue
        if problem := _out_of_time(event.timestamp, now):
            rejected.append(RejectedEvent(index=index, error=f"timestamp: {problem}"))
            reasons["out_of_time"] += 1
        elif problem := _not_theirs(event):
            rejected.append(RejectedEvent(index=index, error=f"decision_id: {problem}"))
            reasons["not_their_decision"] += 1
        else:
            accepted.append((index, event))
    return accepted, rejected, reasons


def _not_theirs(event: EventIn) -> str:
    """Say why a ``send_failed`` may not release its decision ("" when it may).

    Releasing un-counts a send, so a report naming another customer's decision (a platform's
    mix-up, or a guess) must not lift that customer's caps.
    """
    if event.type is not EventKind.SEND_FAILED or not event.decision_id:
        return ""
    owner = decision_owner(event.decision_id)
    if owner is None:
        return "not a decision id Rapport made"
    if owner != event.user_id:
        return f"that decision was made for another customer, not user {event.user_id!r}"
    return ""


def _out_of_time(moment: datetime, now: datetime) -> str:
    """Say why ``moment`` cannot be an event's time ("" when it can).

    A report from before 2000 or from more than a day ahead of this server's clock is a
    platform's bug, and would pin last_engaged or a suppression's time out of reach.
    """
    latest = now + FUTURE_SLACK
    # The year first: comparing a year-1 time that carries an offset can overflow.
    if (
        moment.year < EARLIEST.year
        or moment.year > latest.year
        or not (EARLIEST <= moment <= latest)
    ):
        return f"must be between {EARLIEST:%Y-%m-%d} and {latest.isoformat()} (a day from now)"
    return ""


def _apply(records: list[tuple[int, dict[str, Any]]]) -> list[RejectedEvent]:
    """Update fatigue state; a store failure is a 503, a governor objection rejects one event."""
    governed = [(index, record) for index, record in records if record["event"] in GOVERNED]
    if not governed:
        return []
    governor = services().get("governor")
    rejected = []
    for position, (index, record) in enumerate(governed):
        try:
            governor.record_event(engagement_of(record))
        except ValidationError as exc:
            rejected.append(RejectedEvent(index=index, error=str(exc)))
        except StoreError:
            STORE_ERRORS.labels(StorePart.STATE_STORE).inc()
            EVENTS.labels("unavailable").inc(len(records))
            _keep_pending([r for _, r in governed[position:] if r["event"] in SUPPRESSING])
            raise
    return rejected


def _keep_pending(records: list[dict[str, Any]]) -> None:
    """Keep the suppressions the store could not take, applied before the next decision.

    The answer is still a 503, so the platform sends the batch again (applying twice is
    harmless: the store applies each event id once); until then an unsubscribe in it must
    already hold, whatever the platform composes first. Only those: every retry of a batch
    during an outage is kept again, and opens and clicks can wait for the platform.
    """
    if not records:
        return
    try:
        services().pending_events.append(records)
    except StoreError:  # the pending file failed too: the 503 and the platform's retry remain
        STORE_ERRORS.labels(StorePart.PENDING_FILE).inc()
        log.exception("%d event(s) neither applied nor kept pending", len(records))


def interaction_row(record: Mapping[str, Any]) -> dict[str, Any]:
    """Shape a logged event with an item as a canonical interaction row, as training reads it.

    ``event_id`` lets training drop the copy a retried batch writes again.
    """
    return {
        "user_id": record["user_id"],
        "item_id": record["item_id"],
        "timestamp": record["timestamp"],
        "event": TRAINING_EVENTS[record["event"]],
        "value": record["value"],
        "event_id": record["event_id"],
    }


def _content(event: EventIn) -> dict[str, Any]:
    return {
        "user_id": event.user_id,
        "item_id": event.item_id,
        # In UTC: the same moment reported with another offset is the same event (one id).
        "timestamp": event.timestamp.astimezone(UTC).isoformat(),
        "event": event.type.value,
        "value": 1.0 if event.value is None else event.value,
        "campaign_id": event.campaign_id,
        "decision_id": event.decision_id,
        "category": event.category,
    }


def log_record(event: EventIn, received_at: str) -> dict[str, Any]:
    """Shape an event as a canonical interaction row plus its email context and its id.

    The id is a digest of the content, the same on a retry: two reports of the same thing (same
    customer, item, kind, campaign and time, to the microsecond) are one event.
    """
    content = _content(event)
    digest = hashlib.sha256(json.dumps(content, sort_keys=True).encode("utf-8")).hexdigest()
    record = {**content, "event_id": digest[:24], "received_at": received_at}
    # Where the customer is says nothing about what happened: not part of the event's id.
    if event.timezone is not None:
        record["timezone"] = event.timezone
    return record
