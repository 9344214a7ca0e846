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
    least = options.pop("min_items", 0)
    most = options.pop("max_items", None)
    return MessageRequest.single(
        Campaign(campaign, category, kind, priority, min_items=least, max_items=most), **options
    )


def alice(timezone: str = "Europe/London") -> Recipient:
    return Recipient("alice", "alice@example.com", "Alice", "en-GB", timezone)


def race_in_process(url: str, user: str, count: int, barrier, results) -> None:
    """Decide ``count`` requests for ``user`` in a separate process (a spawn target)."""
    from datetime import UTC, datetime

    from fatigue.clock import FrozenClock
    from fatigue.governor import Governor
    from fatigue.rules import load_rules
    from fatigue.store import store_from_url

    clock = FrozenClock(datetime(2026, 1, 12, 12, tzinfo=UTC))
    governor = Governor(load_rules('[[caps]]\nmax = 3\nper = "1d"\n'), store_from_url(url), clock)
    barrier.wait()
    for _ in range(count):
        results.put(governor.decide(Recipient(user), request(), items()).action.value)
