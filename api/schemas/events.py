"""Schemas of engagement and commerce events reported by the platform."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    Field,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)

from api.schemas.common import Identifier, Strict, TimeZoneName
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


# RFC 3339's date-time (section 5.6), which OpenAPI's ``format: date-time`` names: seconds and
# an offset required, "T" between date and time; or a JSON number of Unix seconds. Pydantic
# alone would also read a string of digits as a Unix time, and a large number as milliseconds.
_LOCAL = r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d+)?"
_RFC3339 = re.compile(_LOCAL + r"(?:[Zz]|[+-]\d{2}:\d{2})", re.ASCII)
_NO_OFFSET = re.compile(_LOCAL, re.ASCII)
_EXAMPLE = "e.g. 2026-11-23T10:00:00Z, 2026-11-23T11:00:00+01:00 or 1795428000"
_LAST_SECOND = 10**10  # 2286-11-20: a larger Unix time is in milliseconds (or microseconds)


def _rfc3339(value: Any) -> Any:
    """Let by an RFC 3339 date-time with an offset or a number of Unix seconds, nothing else."""
    if isinstance(value, datetime) or (isinstance(value, str) and _RFC3339.fullmatch(value)):
        return value  # pydantic checks the values (month 13, hour 25) and the offset
    if isinstance(value, int | float) and not isinstance(value, bool):
        if abs(value) >= _LAST_SECOND:
            raise ValueError(f"{value} is too large for Unix seconds: milliseconds? ({_EXAMPLE})")
        return datetime.fromtimestamp(value, UTC)
    if not isinstance(value, str):
        raise ValueError(
            f"must be an RFC 3339 date-time with an offset or Unix seconds ({_EXAMPLE})"
        )
    shown = repr(value if len(value) <= 40 else value[:40] + "...")
    if value.isdigit():
        raise ValueError(
            f"{shown} is text, not a date-time: send Unix seconds as a number, or an RFC 3339 "
            f"date-time with an offset ({_EXAMPLE})"
        )
    if _NO_OFFSET.fullmatch(value):
        raise ValueError(f"{shown} has no offset (timezone): add Z or +01:00 ({_EXAMPLE})")
    raise ValueError(f"{shown} is not an RFC 3339 date-time with an offset ({_EXAMPLE})")


Timestamp = Annotated[
    AwareDatetime,
    BeforeValidator(_rfc3339),
    WithJsonSchema(
        {
            "anyOf": [{"type": "string", "format": "date-time"}, {"type": "number"}],
            "description": "When it happened: an RFC 3339 date-time with its offset (Z or "
            "+01:00), or a number of Unix seconds.",
        },
        mode="validation",
    ),
]


class EventIn(Strict):
    """One event; ``timestamp`` must carry its offset (``Z`` or ``+01:00``)."""

    type: EventKind
    user_id: Identifier
    timestamp: Timestamp
    item_id: Identifier | None = None
    campaign_id: Identifier | None = None
    decision_id: Identifier | None = None
    category: Annotated[str, StringConstraints(max_length=100)] | None = None
    # Training refuses a row past MAX_VALUE (its file with it): refused here, it never gets there.
    value: float | None = Field(
        default=None, gt=0, le=MAX_VALUE, strict=True, description="Quantity or amount."
    )  # strict: a boolean or a quoted number is a platform bug, not an amount

    timezone: TimeZoneName | None = Field(
        default=None,
        description="The customer's IANA zone (Europe/London), if known: an open's or click's "
        "local hour then counts toward the audience's best send hour in that zone rather than "
        "in the rules' default zone. The customer's own best hour needs no zone.",
    )

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
