"""Composition: recommend, then let the governor decide, then render the email.

This module joins the engine's two halves (the recommender and the renderer) with the governor
from ``fatigue``; the API calls it, and it never imports the API. The governor receives plain
``Candidate`` data and never sees the recommender.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from engine.serving import Filters, RecentInteraction, Recommender


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
