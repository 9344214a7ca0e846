"""Schemas of composition and recommendations: who to write to, about what, and the answer."""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from api.schemas.common import Identifier, ProblemDocument, Strict, TemplateName, TimeZoneName
from engine.render.library import EMAIL_ITEMS
from engine.render.renderer import RESERVED_VARIABLES


class CampaignKind(StrEnum):
    """What a campaign sends; transactional mail passes the caps but is never picked content."""

    PROMOTIONAL = "promotional"
    EDITORIAL = "editorial"
    TRANSACTIONAL = "transactional"


# One mailbox, as RFC 5322's addr-spec writes it (dot-atom local part, UTF-8 allowed as RFC
# 6531 does, dotted domain): anything looser put "a,b@example.com" (two mailboxes) or
# "a>b@example.com" (mailbox "a") into the To header.
_ATOM = r"[\w!#$%&'*+/=?^`{|}~-]+"
_LABEL = r"[^\W_](?:[\w-]*[^\W_])?"
_MAILBOX = re.compile(rf"{_ATOM}(?:\.{_ATOM})*@{_LABEL}(?:\.{_LABEL})+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _one_mailbox(value: str) -> str:
    if not _MAILBOX.fullmatch(value):
        raise ValueError(f"{value!r} is not one email address (like name@example.com)")
    return value


def _printable(value: str) -> str:
    if found := _CONTROL.search(value):
        raise ValueError(f"control character {found.group()!r} (the email prints this text)")
    # Spaces around it dropped here rather than by a second validator: one call out of the
    # validator per batch line, not two. "  " would pass templates' default('there', true)
    # and greet nobody: "Hello   ,".
    return value.strip()


Email = Annotated[str, StringConstraints(max_length=320), AfterValidator(_one_mailbox)]
# Text printed into the email and its Subject: no control characters (NUL, ESC, newlines),
# no spaces around it.
PlainText = Annotated[str, StringConstraints(max_length=200), AfterValidator(_printable)]


class RecipientIn(Strict):
    """The customer, as the platform knows them; nothing here is stored."""

    user_id: Identifier
    email: Email | None = None
    first_name: PlainText = Field(
        default="", description="Spaces around it are dropped; blank means unknown."
    )
    locale: Annotated[str, StringConstraints(max_length=35)] = "en"
    timezone: TimeZoneName | None = Field(
        default=None, description="IANA name, e.g. Europe/London; the rules' default if absent."
    )
    attributes: dict[str, Any] = Field(
        default_factory=dict, description="Free attributes templates can read as `recipient.*`."
    )


class CampaignIn(Strict):
    """A campaign competing for the inbox; ``template`` overrides the request's template."""

    id: Identifier
    category: Annotated[str, StringConstraints(max_length=100)] = ""
    kind: CampaignKind = CampaignKind.PROMOTIONAL
    priority: float = Field(default=1.0, ge=0, le=1_000_000)
    template: TemplateName | None = None


class CampaignsResponse(BaseModel):
    """The campaign registry: whether one is configured, and its campaigns by id."""

    registry: bool = Field(description="False: no registry, every campaign id is accepted.")
    campaigns: list[CampaignIn]


class ComposeRequest(Strict):
    """One recipient and one campaign, or several competing campaigns to arbitrate."""

    idempotency_key: Identifier = Field(
        description="The same key on a retry returns the same decision and never counts twice."
    )
    recipient: RecipientIn
    template: TemplateName | None = Field(default=None, description="Default for campaigns.")
    campaign: CampaignIn | None = None
    campaigns: list[CampaignIn] = Field(default_factory=list, max_length=20)
    dry_run: bool = Field(default=False, description="Decide and render but record nothing.")
    deferrable: bool = Field(
        default=False,
        description="May wait for the customer's best hour (the rules' [send_time]): the "
        "answer is then a defer with send_at; ask again at that moment to send.",
    )
    include_mime: bool = Field(default=False, description="Add the raw RFC 5322 message.")
    items: int = Field(
        default=EMAIL_ITEMS,
        ge=1,
        le=20,
        description="How many items the email shows at most: the governor chooses no more.",
    )
    data: dict[str, Any] = Field(
        default_factory=dict,
        max_length=50,
        description="Extra template variables, read at the top level (win-back's `offer`).",
    )

    @field_validator("data")
    @classmethod
    def _no_reserved_names(cls, value: dict[str, Any]) -> dict[str, Any]:
        taken = sorted(RESERVED_VARIABLES.intersection(value))
        if taken:
            raise ValueError(f"{', '.join(taken)}: set by Rapport itself, not by 'data'")
        bad = [name for name in value if not name.isidentifier()]
        if bad:
            raise ValueError(f"{bad[0]!r} is not a template variable name (letters, digits, _)")
        return value

    @model_validator(mode="after")
    def _one_way_to_name_campaigns(self) -> ComposeRequest:
        campaigns = self.campaigns
        if (self.campaign is None) == (not campaigns):
            raise ValueError("give exactly one of 'campaign' or a non-empty 'campaigns' list")
        # A single campaign has nothing to clash with: run for every batch line, building its
        # list of one and a set of its id cost more than the rest of this check.
        if campaigns:
            ids = [campaign.id for campaign in campaigns]
            if len(set(ids)) != len(ids):
                raise ValueError("campaign ids must be distinct")
        return self


class ReasonOut(BaseModel):
    """One rule's verdict."""

    rule: str
    passed: bool
    detail: str = ""
    counter: float | None = None
    limit: float | None = None
    deciding: bool = False


class ItemOut(BaseModel):
    """One chosen item and where it came from."""

    item_id: str
    relevance: float
    source: str


class DecisionOut(BaseModel):
    """The governor's decision: ``email`` accompanies it only when ``action`` is ``send``."""

    id: str
    action: str = Field(description="send, defer or suppress")
    user_id: str
    campaign_id: str | None = None
    send_at: datetime | None = None
    decided_at: datetime
    dry_run: bool = False
    reasons: list[ReasonOut]
    items: list[ItemOut]


class EmailOut(BaseModel):
    """The rendered email, ready for the platform to send."""

    subject: str
    preheader: str
    html: str
    text: str
    headers: dict[str, str]
    template: str
    template_version: int | None = None
    mime: str | None = None


class ComposeResponse(BaseModel):
    """The decision and, when it is ``send``, the email."""

    decision: DecisionOut
    email: EmailOut | None = None


class BatchLine(BaseModel):
    """One line of the batch answer: the input line number, then the decision or a problem."""

    line: int
    user_id: str | None = None
    decision: DecisionOut | None = None
    email: EmailOut | None = None
    error: ProblemDocument | None = None


class RecommendationFilters(Strict):
    """What to rule out on top of the customer's own history."""

    exclude_items: list[Identifier] = Field(default_factory=list, max_length=1000)
    include_categories: list[str] | None = Field(default=None, max_length=100)
    exclude_categories: list[str] = Field(default_factory=list, max_length=100)
    available_only: bool = Field(default=True, description="Drop out-of-stock, expired items.")
    exclude_history: bool = False


class RecentInteractionIn(Strict):
    """An interaction the model has not seen yet (a new customer's first clicks)."""

    item_id: Identifier
    event: Annotated[str, StringConstraints(min_length=1, max_length=50)] = "view"
    value: float = Field(default=1.0, gt=0, le=1_000_000)


class RecommendationsRequest(Strict):
    """Raw recommendations for one customer."""

    user_id: Identifier
    n: int = Field(default=10, ge=1, le=100)
    filters: RecommendationFilters = Field(default_factory=RecommendationFilters)
    recent: list[RecentInteractionIn] = Field(default_factory=list, max_length=100)


class RecommendationOut(BaseModel):
    """One recommended item with rank, raw score, calibrated relevance and provenance."""

    item_id: str
    rank: int
    score: float
    relevance: float
    source: str
    item: dict[str, Any] | None = Field(default=None, description="The catalog entry.")


class RecommendationsResponse(BaseModel):
    """The recommendations and the model version that made them."""

    user_id: str
    model_version: str
    recommendations: list[RecommendationOut]
