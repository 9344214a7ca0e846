from __future__ import annotations

from fatigue.domain import Campaign, Candidate, ContentKind, MessageRequest, Recipient


def items(count: int = 5, relevance: float = 0.5, category: str = "shoes", **options):
    return [
        Candidate(f"item-{category}-{n}", relevance - n / 1000, category=category, **options)
        for n in range(count)
    ]


def request(campaign: str = "spring", category: str = "sale", **options) -> MessageRequest:
    kind = options.pop("kind", ContentKind.PROMOTIONAL)
    priority = options.pop("priority", 1.0)
    return MessageRequest.single(Campaign(campaign, category, kind, priority), **options)


def alice(timezone: str = "Europe/London") -> Recipient:
    return Recipient("alice", "alice@example.com", "Alice", "en-GB", timezone)
