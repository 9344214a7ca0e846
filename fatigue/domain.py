"""Domain values the governor reasons about, as plain immutable data.

The engine turns its recommendations into ``Candidate`` objects; the governor never imports the
recommender.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class ContentKind(StrEnum):
    """What a piece of content (or a campaign) is; Rapport only picks non-transactional content."""

    PROMOTIONAL = "promotional"
    EDITORIAL = "editorial"
    TRANSACTIONAL = "transactional"


@dataclass(frozen=True)
class Candidate:
    """One item the engine proposes for a customer, with what the governor needs to judge it."""

    item_id: str
    relevance: float
    score: float = 0.0
    source: str = "cf"
    category: str = ""
    kind: ContentKind = ContentKind.PROMOTIONAL
    published_at: datetime | None = None
    expires_at: datetime | None = None
    in_stock: bool = True
