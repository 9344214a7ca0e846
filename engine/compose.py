"""Composition: recommend, then let the governor decide, then render the email.

This module joins the engine's two halves (the recommender and the renderer) with the governor
from ``fatigue``; the API calls it, and it never imports the API. The governor receives plain
``Candidate`` data and never sees the recommender.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from engine.render.links import Campaign as LinkCampaign
from engine.render.renderer import RenderContext, RenderedEmail, Renderer
from engine.serving import Filters, RecentInteraction, Recommender
from fatigue.clock import Clock, utc_now
from fatigue.domain import Action, Campaign, Decision, MessageRequest, Recipient


def recommendations(
    recommender: Recommender,
    user_id: str,
    n: int,
    filters: Mapping[str, Any] | None = None,
    recent: Sequence[Mapping[str, Any]] = (),
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    """Recommend for one customer and join each pick with its catalog entry.

    ``filters`` holds ``exclude_items``, ``include_categories``, ``exclude_categories``,
    ``exclude_history`` and ``available_only`` (items out of stock or expired at ``now`` are
    dropped).
    """
    options = dict(filters or {})
    available_only = bool(options.pop("available_only", True))
    chosen = Filters.build(
        exclude_items=options.get("exclude_items", ()),
        include_categories=options.get("include_categories"),
        exclude_categories=options.get("exclude_categories", ()),
        available_at=now if available_only else None,
        exclude_history=bool(options.get("exclude_history", False)),
    )
    interactions = [RecentInteraction(**dict(item)) for item in recent]
    picks = recommender.recommend(user_id, n, chosen, interactions)
    catalog = recommender.catalog
    return [
        {
            **pick.as_dict(),
            "item": catalog[pick.item_id].as_template_dict()
            if catalog is not None and pick.item_id in catalog
            else None,
        }
        for pick in picks
    ]


@dataclass(frozen=True)
class ComposeInput:
    """One recipient, the competing campaigns and the template each would use."""

    recipient: Recipient
    campaigns: tuple[Campaign, ...]
    templates: Mapping[str, str]  # campaign id -> template name
    idempotency_key: str
    dry_run: bool = False
    items: int = 4


@dataclass(frozen=True)
class Composition:
    """The governor's decision and, when it is ``send``, the rendered email."""

    decision: Decision
    email: RenderedEmail | None = None


class Composer:
    """Recommend, decide, render: the pipeline behind ``/v1/compose`` and the batch endpoint.

    ``recommender`` is a callable so a hot-reloaded model is picked up between requests; one
    composition uses one model from start to end.
    """

    def __init__(
        self,
        recommender: Callable[[], Recommender],
        governor: Any,
        renderer: Renderer,
        clock: Clock = utc_now,
        pool: int = 30,
    ) -> None:
        self._recommender = recommender
        self.governor = governor
        self.renderer = renderer
        self.clock = clock
        self.pool = pool  # candidates offered to the governor, which picks ``items`` of them

    def check_templates(self, request: ComposeInput) -> None:
        """Raise ``NotFoundError`` before anything is decided if a template does not exist."""
        for name in set(request.templates.values()):
            self.renderer.prepared(name)

    def compose(self, request: ComposeInput) -> Composition:
        """Compose for one recipient."""
        return self.compose_many([request])[0]

    def compose_many(self, requests: Sequence[ComposeInput]) -> list[Composition]:
        """Compose for several recipients: one model call, one governor round trip."""
        for request in requests:
            self.check_templates(request)
        model = self._recommender()
        users = list(dict.fromkeys(request.recipient.user_id for request in requests))
        picks = model.recommend_many(users, self.pool, Filters(available_at=self.clock()))
        jobs = [
            (
                request.recipient,
                MessageRequest(
                    campaigns=request.campaigns,
                    idempotency_key=request.idempotency_key,
                    dry_run=request.dry_run,
                ),
                model.candidates(picks[request.recipient.user_id]),
            )
            for request in requests
        ]
        decisions = self.governor.decide_many(jobs)
        return [
            self._finish(model, request, decision)
            for request, decision in zip(requests, decisions, strict=True)
        ]

    def _finish(self, model: Recommender, request: ComposeInput, decision: Decision) -> Composition:
        """Render when the decision is ``send``; release the counted send if rendering fails."""
        if decision.action is not Action.SEND:
            return Composition(decision)
        try:
            email = self._render(model, request, decision)
        except Exception:
            # The send was counted against the caps; a mail that was never made must not be.
            if not decision.dry_run:
                self.governor.release(decision.decision_id)
            raise
        return Composition(decision, email)

    def _render(
        self, model: Recommender, request: ComposeInput, decision: Decision
    ) -> RenderedEmail:
        """Render the deciding campaign's template with the chosen items."""
        campaign_id = decision.campaign or request.campaigns[0].id
        campaign = next(c for c in request.campaigns if c.id == campaign_id)
        catalog = model.catalog
        items = [
            {
                **(
                    catalog[item.item_id].as_template_dict()
                    if catalog and item.item_id in catalog
                    else {"item_id": item.item_id}
                ),
                "relevance": item.relevance,
                "source": item.source,
            }
            for item in decision.items[: request.items]
        ]
        context = RenderContext(
            recipient=recipient_variables(request.recipient),
            items=items,
            campaign=LinkCampaign(campaign.id, campaign.id),
            extra={"decision_id": decision.decision_id},
        )
        return self.renderer.render(request.templates[campaign.id], context)


def recipient_variables(recipient: Recipient) -> dict[str, Any]:
    """Return what templates see as ``recipient``: its attributes, then the named fields."""
    return {
        **dict(recipient.attributes),
        "user_id": recipient.user_id,
        "email": recipient.email,
        "first_name": recipient.first_name,
        "locale": recipient.locale,
        "timezone": recipient.timezone,
    }
