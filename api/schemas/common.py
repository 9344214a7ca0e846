"""Schemas shared by every area: problem documents and small reusable field types."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from fatigue.errors import ValidationError
from fatigue.windows import zone

# An identifier a platform sends: non-empty, bounded, no control characters, and no spaces at
# either end (training strips them, so " 42" and "42" would be one customer there, two here).
Identifier = Annotated[
    str,
    StringConstraints(
        min_length=1,
        max_length=200,
        pattern=r"^[^\x00-\x1f\x7f\s](?:[^\x00-\x1f\x7f]*[^\x00-\x1f\x7f\s])?$",
    ),
]
# A template name: what a marketer types, safe as a file name.
TemplateName = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")
]
JsonObject = dict[str, Any]


def _known_zone(value: str) -> str:
    try:
        zone(value)
    except ValidationError as exc:
        raise ValueError(f"unknown IANA time zone {value!r}") from exc
    return value


# A customer's time zone as platforms send it: an IANA name (Europe/London).
TimeZoneName = Annotated[str, StringConstraints(max_length=64), AfterValidator(_known_zone)]


class Strict(BaseModel):
    """Base for request bodies: unknown fields are an error, so a typo is never ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ProblemError(BaseModel):
    """One thing wrong with the input and where: ``field`` (dotted path) or ``line``."""

    message: str
    line: int | None = None
    field: str | None = None
    source: str | None = None


class ProblemDocument(BaseModel):
    """An RFC 9457 problem document; ``type`` is stable, ``detail`` is for people."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[ProblemError] | None = Field(
        default=None, description="Every field or line that was wrong (validation problems)."
    )
    request_id: str | None = Field(
        default=None,
        description="This request's id (also the X-Request-Id header): the server's log lines "
        "about it carry the same id.",
    )


class Status(BaseModel):
    """A liveness or readiness answer with the state of each dependency."""

    status: str
    checks: dict[str, str] = Field(default_factory=dict)
