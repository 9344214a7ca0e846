"""Send-time optimisation: the customer's best local hour, from opens and clicks."""

from __future__ import annotations

from datetime import time

from fatigue.rules import QuietHours, SendTime
from fatigue.store.base import HOURS, UserState


def allowed_hours(quiet: QuietHours | None) -> list[int]:
    """Return the local hours whose start falls outside quiet hours."""
    if quiet is None:
        return list(range(HOURS))
    hours = []
    for hour in range(HOURS):
        wall = time(hour)
        if quiet.start < quiet.end:
            inside = quiet.start <= wall < quiet.end
        else:
            inside = wall >= quiet.start or wall < quiet.end
        if not inside:
            hours.append(hour)
    return hours


def best_hour(state: UserState, settings: SendTime, quiet: QuietHours | None) -> tuple[int, str]:
    """Return ``(hour, source)``: the customer's, else the audience's, else the default hour."""
    hours = allowed_hours(quiet) or list(range(HOURS))
    for histogram, needed, source in (
        (state.hours, settings.min_events, "customer"),
        (state.audience_hours, settings.audience_min_events, "audience"),
    ):
        if sum(histogram) >= needed:
            # Ties go to the earliest hour so the answer is stable.
            best = max(hours, key=lambda hour: (histogram[hour], -hour))
            if histogram[best] > 0:
                return best, source
    default = settings.default_hour
    if default in hours:
        return default, "default"
    # A default inside quiet hours could never be reached: take the first allowed hour after it.
    later = next((hour for hour in hours if hour > default), hours[0])
    return later, f"the default {default}:00 is in quiet hours"
