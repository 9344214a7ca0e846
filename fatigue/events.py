"""Turn engagement events into the state changes the store applies atomically."""

from __future__ import annotations

from datetime import UTC

from fatigue.domain import EngagementEvent, EventType
from fatigue.rules import Rules
from fatigue.store.base import EventChange, suppression_detail
from fatigue.windows import zone

_SUPPRESSING = {
    EventType.COMPLAINT: "complaint",
    EventType.BOUNCE_HARD: "address",
}


def change_for(event: EngagementEvent, rules: Rules, now: float) -> EventChange | None:
    """Return the state change an event causes when applied at ``now``, or None if none."""
    ttl = int(rules.store.engagement_ttl.total_seconds())
    base = EventChange(
        user_id=event.user_id,
        at=event.timestamp.timestamp(),
        engagement_ttl=ttl,
        event_id=event.event_id,
        applied_at=now,
    )
    kind = event.type
    if kind in (EventType.OPEN, EventType.CLICK):
        # The customer's hour in UTC (their zone is applied when their best hour is chosen:
        # API events carry none); the audience's in the event's zone, else the default one.
        local = event.timestamp.astimezone(zone(event.timezone or rules.default_timezone))
        hour = event.timestamp.astimezone(UTC).hour
        return _replace(base, engaged=True, hour=hour, audience_hour=local.hour)
    if kind == EventType.PURCHASE:
        return _replace(base, engaged=True)
    if kind == EventType.DELIVERED:
        return _replace(base, reset_soft_bounces=True)
    if kind == EventType.BOUNCE_SOFT:
        threshold = rules.suppression.soft_bounce_threshold
        return _replace(base, soft_bounce=True, soft_bounce_threshold=threshold)
    if kind == EventType.UNSUBSCRIBE:
        return _replace(base, suppress=((_unsubscribe_scope(event), _detail(event)),))
    if kind == EventType.RESUBSCRIBE:
        return _replace(base, lift=(_unsubscribe_scope(event),))
    if kind in _SUPPRESSING:
        return _replace(base, suppress=((_SUPPRESSING[kind], _detail(event)),))
    # Sends are recorded when decided; machine opens are not engagement.
    return None


def _unsubscribe_scope(event: EngagementEvent) -> str:
    return f"category:{event.category}" if event.category else "all"


def _detail(event: EngagementEvent) -> str:
    return suppression_detail(event.type.value, event.timestamp.timestamp(), event.campaign)


def _replace(change: EventChange, **values: object) -> EventChange:
    from dataclasses import replace

    return replace(change, **values)  # type: ignore[arg-type]
