"""Schemas of engagement and commerce events reported by the platform."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, Field, StringConstraints, model_validator

from api.schemas.common import Identifier, Strict
from engine.interactions import MAX_VALUE


class EventKind(StrEnum):
    """Every event type the API accepts: the governor's, plus commerce events for training."""

    SENT = "sent"
    DELIVERED = "delivered"
    OPEN = "open"
    MACHINE_OPEN = "machine_open"
    CLICK = "click"
    PURCHASE = "purchase"
    VIEW = "view"
    ADD_TO_CART = "add_to_cart"
    UNSUBSCRIBE = "unsubscribe"
    RESUBSCRIBE = "resubscribe"
    COMPLAINT = "complaint"
    BOUNCE_HARD = "bounce_hard"
    BOUNCE_SOFT = "bounce_soft"
    SEND_FAILED = "send_failed"


class EventIn(Strict):
    """One event; ``timestamp`` must carry its offset (``Z`` or ``+01:00``)."""

    type: EventKind
    user_id: Identifier
    timestamp: AwareDatetime
    item_id: Identifier | None = None
    campaign_id: Identifier | None = None
    decision_id: Identifier | None = None
    category: Annotated[str, StringConstraints(max_length=100)] | None = None
    # Training refuses a row past MAX_VALUE (its file with it): refused here, it never gets there.
    value: float | None = Field(
        default=None, gt=0, le=MAX_VALUE, strict=True, description="Quantity or amount."
    )  # strict: a boolean or a quoted number is a platform bug, not an amount

    @model_validator(mode="after")
    def _failure_names_its_decision(self) -> EventIn:
        if self.type is EventKind.SEND_FAILED and self.decision_id is None:
            raise ValueError("decision_id: a send_failed event must name the decision it undoes")
        return self


class EventsRequest(Strict):
    """A batch of events; each is validated on its own, so one bad line rejects only itself."""

    events: list[EventIn] = Field(min_length=1)


class EventsEnvelope(Strict):
    """The batch as first parsed: the envelope checked, each event still raw."""

    events: list[Any] = Field(min_length=1)


class RejectedEvent(BaseModel):
    """Why the event at ``index`` was not accepted."""

    index: int
    error: str


class EventsResponse(BaseModel):
    """How many events were durably accepted, and which were rejected and why."""

    accepted: int
    rejected: list[RejectedEvent]
