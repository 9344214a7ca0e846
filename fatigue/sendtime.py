"""Send-time optimisation: the customer's best local hour, from opens and clicks."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo

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


def best_hour(
    state: UserState,
    settings: SendTime,
    quiet: QuietHours | None,
    where: ZoneInfo,
    now: datetime,
    default_zone: ZoneInfo,
) -> tuple[int, str]:
    """Return ``(hour, source)``: the customer's, else the audience's, else the default hour.

    The customer's opens are kept by UTC hour and shifted into ``where`` (their zone) as of
    ``now``; the audience's are local hours already.
    """
    hours = allowed_hours(quiet) or list(range(HOURS))
    for histogram, needed, source in (
        (customer_hours(state, where, now, default_zone), settings.min_events, "customer"),
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


def customer_hours(
    state: UserState, where: ZoneInfo, now: datetime, default_zone: ZoneInfo
) -> tuple[int, ...]:
    """Return the customer's opens and clicks by local hour in ``where``, as of ``now``.

    Hours kept before the histogram moved to UTC (``state.legacy_hours``) were local hours of
    the default zone; they are shifted from there.
    """
    if not any(state.hours) and not any(state.legacy_hours):
        return state.hours
    local = [0] * HOURS
    day = now.astimezone(UTC).date()
    for source, table in (
        (state.hours, _shift(UTC, where, day)),
        (state.legacy_hours, _shift(default_zone, where, now.astimezone(default_zone).date())),
    ):
        for hour, count in enumerate(source):
            if count:
                local[table[hour]] += count
    return tuple(local)


@lru_cache(maxsize=1024)
def _shift(source: tzinfo, where: ZoneInfo, day: date) -> tuple[int, ...]:
    """Map each hour of ``source`` on ``day`` to the hour of ``where`` holding its middle.

    By the middle (``hh:30``), so a zone half an hour off (Asia/Kolkata) gets the hour holding
    most of each bucket. Offsets are those of ``day``: across a DST change, opens counted in
    the other season land an hour apart.
    """
    return tuple(
        datetime.combine(day, time(hour, 30), source).astimezone(where).hour
        for hour in range(HOURS)
    )
