"""Schemas of the fatigue endpoints: rules, validation, simulation and explanations."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, Field, StringConstraints

from api.schemas.common import Identifier, ProblemError, Strict
from api.schemas.compose import DecisionOut, ReasonOut

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


class ExplainQuery(Strict):
    """Optional query of the explain endpoint: the zone, and which mail is asked about."""

    timezone: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = Field(
        default=None, description="IANA zone for quiet hours; the rules' default if absent."
    )
    category: Annotated[str, StringConstraints(max_length=100)] = Field(
        default="",
        description="The mail's category, as a compose campaign's: its category suppression "
        "and category caps count in `next_allowed`.",
    )
    campaign: Identifier | None = Field(
        default=None,
        description="The mail's campaign id: caps scoped to it, and its own sends, count.",
    )


class NextAllowedOut(BaseModel):
    """When a kind of message may next go (null: not at all), and the rules that say so."""

    at: datetime | None
    reasons: list[ReasonOut]


class SuppressionOut(BaseModel):
    """One suppressed scope: no mail of it goes to the customer until a resubscribe."""

    scope: str = Field(description="`all` (marketing), `category:<c>`, `complaint` or `address`.")
    reason: str | None = Field(description="The event that suppressed it: unsubscribe, ...")
    since: datetime | None
    campaign: str | None = Field(description="The campaign the event came from, if known.")
    description: str = Field(description="The same in words, for support staff.")


class FatigueOut(BaseModel):
    """A customer's fatigue state: counters, suppression, next allowed moments, last decisions."""

    user_id: str
    at: datetime
    timezone: str
    recent_sends: int
    ignored: int
    soft_bounces: int
    last_engaged: datetime | None
    suppression: dict[str, str] = Field(
        description="Each suppressed scope's record as the store keeps it (JSON text); "
        "`suppressions` gives the same as fields."
    )
    suppressions: list[SuppressionOut] = Field(default_factory=list)
    in_holdout: bool
    category: str | None = Field(
        default=None, description="The category `next_allowed` was evaluated for, if any."
    )
    campaign: str | None = Field(
        default=None, description="The campaign `next_allowed` was evaluated for, if any."
    )
    next_allowed: dict[str, NextAllowedOut]
    recent_decisions: list[DecisionOut] = Field(
        default_factory=list,
        description="The last composed decisions (dry runs excluded), newest first, with "
        "every rule's reason: the per-customer decision log.",
    )


class SimulationIn(Strict):
    """History to replay (JSON Lines records of ``fatigue.history``) and optional new rules."""

    history: list[dict[str, Any]] = Field(min_length=1, max_length=20_000)
    rules: RulesText | None = Field(
        default=None,
        description="TOML to try; compared with the rules in force. Omit to "
        "replay the rules in force alone.",
    )


class Tally(BaseModel):
    """Final outcome of the requests of one campaign (or all)."""

    requests: int
    sent: int
    deferred: int
    suppressed: int
    pending: int


class DecidingRule(BaseModel):
    """How often one rule decided one action."""

    rule: str
    action: str
    count: int


class SimulationRun(BaseModel):
    """What one rule set would have done with the history."""

    label: str
    total: Tally
    campaigns: dict[str, Tally]
    deciding: list[DecidingRule]
    weekly: list[int] = Field(description="Customers by messages per week: 0..6, then 7+.")


class SimulationOut(BaseModel):
    """One run per rule set: the rules in force, then the proposed ones when given."""

    runs: list[SimulationRun]
