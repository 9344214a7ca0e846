"""Fatigue rules and simulation results in words and charts, for the engineers' console."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from fatigue.rules import Rules


@dataclass(frozen=True)
class RuleLine:
    """One rule as a heading and a sentence."""

    name: str
    sentence: str


def span(delta: timedelta) -> str:
    """Say a duration the way the rule files write it: ``1 week``, ``16 hours``, ``5 minutes``."""
    seconds = int(delta.total_seconds())
    for unit, size in (("week", 604800), ("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'' if count == 1 else 's'}"
    return f"{seconds} seconds"


def describe_rules(rules: Rules) -> list[RuleLine]:
    """Return every active rule of ``rules`` as a sentence, caps first."""
    lines = [RuleLine(f"cap: {cap.name}", _cap(cap)) for cap in rules.caps]
    if rules.cooldown:
        lines.append(
            RuleLine(
                "cooldown",
                f"At least {span(rules.cooldown.after_any)} between "
                "two non-transactional messages.",
            )
        )
    quiet = rules.quiet_hours
    if quiet:
        lines.append(
            RuleLine(
                "quiet hours",
                f"Nothing non-urgent between {quiet.start:%H:%M} and "
                f"{quiet.end:%H:%M} local time (customers without a zone: "
                f"{quiet.default_timezone}); "
                "requests then are deferred to the end.",
            )
        )
    if rules.relevance:
        lines.append(
            RuleLine(
                "relevance",
                f"Send only if at least {rules.relevance.min_items} "
                f"candidate(s) reach relevance {rules.relevance.min_relevance:g}.",
            )
        )
    lines += _content(rules)
    lines += _engagement(rules)
    lines += _other(rules)
    return lines


def _engagement(rules: Rules) -> list[RuleLine]:
    engagement = rules.engagement
    if engagement is None:
        return []
    sentence = (
        f"After {engagement.reduce_after} ignored messages the cadence drops to "
        f"{engagement.reduced_max} per {span(engagement.reduced_per)}"
    )
    if engagement.sunset_after is not None:
        sentence += f"; after {engagement.sunset_after} more, sunset until they engage"
    return [RuleLine("engagement", sentence + ".")]


def _cap(cap: Any) -> str:
    scope = f" on {cap.channel.value}"
    if cap.category:
        scope += f", category {cap.category}"
    if cap.campaign:
        scope += f", campaign {cap.campaign}"
    if cap.calendar:
        return f"At most {cap.max} per {_calendar_window(cap)}{scope}."
    return f"At most {cap.max} per {span(cap.per)} (rolling window){scope}."


def _calendar_window(cap: Any) -> str:
    """Say a calendar window as people do: "calendar week", "2 calendar days" (local time)."""
    weeks = cap.calendar_unit == "w"
    count = max(cap.per.days // (7 if weeks else 1), 1)
    unit = "week" if weeks else "day"
    bounds = "Monday to Sunday" if weeks else "midnight to midnight"
    periods = f"calendar {unit}" if count == 1 else f"{count} calendar {unit}s"
    return f"{periods} ({bounds}, the customer's local time)"


def _content(rules: Rules) -> list[RuleLine]:
    lines = []
    timeliness = rules.timeliness
    if timeliness and (timeliness.max_age_editorial or timeliness.no_repeat):
        parts = []
        if timeliness.max_age_editorial:
            parts.append(
                f"editorial items older than {span(timeliness.max_age_editorial)} are not picked"
            )
        if timeliness.no_repeat:
            parts.append(f"an item is not repeated within {span(timeliness.no_repeat)}")
        lines.append(RuleLine("timeliness", "; ".join(parts).capitalize() + "."))
    diversity = rules.diversity
    if diversity:
        parts = []
        if diversity.max_items:
            parts.append(f"at most {diversity.max_items} items per email")
        if diversity.max_per_category:
            parts.append(f"at most {diversity.max_per_category} from one category")
        parts.append(f"spread by {diversity.strategy.value}")
        lines.append(RuleLine("diversity", "; ".join(parts).capitalize() + "."))
    return lines


def _other(rules: Rules) -> list[RuleLine]:
    lines = []
    threshold = rules.suppression.soft_bounce_threshold
    always = "Unsubscribes, complaints and hard bounces always suppress"
    extra = f"; so do {threshold} soft bounces in a row" if threshold else ""
    lines.append(RuleLine("suppression", always + extra + "."))
    if rules.holdout:
        kinds = ", ".join(kind.value for kind in rules.holdout.kinds)
        lines.append(
            RuleLine(
                "holdout",
                f"{rules.holdout.percent:g}% of customers never receive "
                f"{kinds} mail (salt {rules.holdout.salt!r}).",
            )
        )
    counted = "count" if rules.transactional.count_toward_caps else "do not count"
    lines.append(RuleLine("transactional", f"Transactional messages {counted} toward the caps."))
    if rules.send_time:
        lines.append(
            RuleLine(
                "send time",
                "Deferrable requests go at the customer's best hour "
                f"(after {rules.send_time.min_events} engagements; else the audience's, else "
                f"{rules.send_time.default_hour}:00).",
            )
        )
    store = rules.store
    lines.append(
        RuleLine(
            "store",
            f"If the store is unreachable: {store.on_store_error.value} "
            f"(retry after {span(store.retry_after)}).",
        )
    )
    return lines
