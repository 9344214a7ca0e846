"""Schemas of the fatigue endpoints: rules, validation, simulation and explanations."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field, StringConstraints

from api.schemas.common import ProblemError, Strict
from api.schemas.compose import ReasonOut

RulesText = Annotated[str, StringConstraints(max_length=200_000)]


class RulesOut(BaseModel):
    """The rules the governor applies now, as TOML, and where they came from."""

    source: str
    toml: str


class RulesIn(Strict):
    """A rule file to check, as TOML text."""

    toml: RulesText


class RulesVerdict(BaseModel):
    """Whether a rule file is valid, and every problem with its line when it is not."""

    valid: bool
    errors: list[ProblemError]


class TimezoneQuery(Strict):
    """Optional query of the explain endpoint."""

    timezone: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = Field(
        default=None, description="IANA zone for quiet hours; the rules' default if absent."
    )


class NextAllowedOut(BaseModel):
    """When a kind of message may next go (null: not at all), and the rules that say so."""

    at: datetime | None
    reasons: list[ReasonOut]


class FatigueOut(BaseModel):
    """A customer's fatigue state: counters, suppression and next allowed moments per kind."""

    user_id: str
    at: datetime
    timezone: str
    recent_sends: int
    ignored: int
    soft_bounces: int
    last_engaged: datetime | None
    suppression: dict[str, str]
    in_holdout: bool
    next_allowed: dict[str, NextAllowedOut]
