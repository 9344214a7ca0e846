"""Time arithmetic for rules: zones, quiet hours, rolling and calendar windows, local hours.

Everything takes the moment explicitly (an aware datetime) so tests drive it with a frozen clock.
Local times are built with ``zoneinfo``; a wall time that does not exist (the hour skipped when
clocks go forward) resolves to the instant just after the gap, as ``fold=0`` arithmetic does.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fatigue.errors import Problem, ValidationError
from fatigue.rules import CapRule, QuietHours


@lru_cache(maxsize=1024)
def zone(name: str) -> ZoneInfo:
    """Return the IANA zone ``name``; raise ValidationError naming it when unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: "Europe" is a folder
        raise ValidationError(
            Problem(f"{name!r} is not an IANA time zone name", field="timezone")
        ) from None


_SECOND = timedelta(seconds=1)


# Memoised: quiet hours, calendar windows and best hours ask for the same few local times.
@lru_cache(maxsize=4096)
def local_moment(day: date, clock: time, where: ZoneInfo, fold: int = 0) -> datetime:
    """Return the UTC instant of wall time ``clock`` on ``day`` in ``where``.

    A wall time the clocks skip (the night they go forward) is taken as the first instant after
    the gap: quiet hours ending at a skipped 02:30 end when the clock reads 03:00.
    """
    wall = datetime.combine(day, clock)
    found = wall.replace(tzinfo=where, fold=fold).astimezone(UTC)
    if found.astimezone(where).replace(tzinfo=None) == wall:
        return found
    # Inside the gap: the two readings of the wall time bracket the transition; find it.
    low, high = sorted(wall.replace(tzinfo=where, fold=f).astimezone(UTC) for f in (0, 1))
    while high - low > _SECOND:
        middle = low + (high - low) / 2
        if middle.astimezone(where).replace(tzinfo=None) >= wall:
            high = middle
        else:
            low = middle
    return high.replace(microsecond=0) + (_SECOND if high.microsecond else timedelta())


def quiet_hours_end(moment: datetime, quiet: QuietHours, where: ZoneInfo) -> datetime | None:
    """Return when the quiet hours around ``moment`` end, or None when it is outside them."""
    local = moment.astimezone(where)
    wall = local.time()
    if quiet.start < quiet.end:
        inside = quiet.start <= wall < quiet.end
        end_day = local.date()
    else:
        inside = wall >= quiet.start or wall < quiet.end
        end_day = local.date() + timedelta(days=1) if wall >= quiet.start else local.date()
    if not inside:
        return None
    for fold in (0, 1):
        # On the night clocks go back the end time occurs twice; take the first one ahead.
        end = local_moment(end_day, quiet.end, where, fold)
        if end > moment:
            return end
    return None


def next_local_hour(moment: datetime, hour: int, where: ZoneInfo) -> datetime:
    """Return ``moment`` if its local hour is ``hour``, else the next local ``hour:00``."""
    local = moment.astimezone(where)
    if local.hour == hour:
        return moment
    for offset in (0, 1, 2):
        candidate = local_moment(local.date() + timedelta(days=offset), time(hour), where)
        if candidate > moment:
            return candidate
    raise AssertionError("a local hour always recurs within two days")


def window_start(cap: CapRule, moment: datetime, where: ZoneInfo) -> tuple[float, bool]:
    """Return ``(since, inclusive)``: the epoch second a cap's window starts at ``moment``."""
    if not cap.calendar:
        return (moment - cap.per).timestamp(), False
    local_day = moment.astimezone(where).date()
    if cap.calendar_unit == "w":
        weeks = cap.per.days // 7
        first = local_day - timedelta(days=local_day.weekday(), weeks=weeks - 1)
    else:
        first = local_day - timedelta(days=cap.per.days - 1)
    return local_moment(first, time(0), where).timestamp(), True


def count_since(stamps: Sequence[float], since: float, inclusive: bool) -> int:
    """Count epoch stamps inside a window that starts at ``since``."""
    if inclusive:
        return sum(1 for stamp in stamps if stamp >= since)
    return sum(1 for stamp in stamps if stamp > since)


def cap_release(
    cap: CapRule, limit: int, stamps: Sequence[float], moment: datetime, where: ZoneInfo
) -> datetime | None:
    """Return the first moment from ``moment`` on when the cap allows one more send.

    ``stamps`` are the matching sends (epoch seconds, ascending). None means never (limit 0).
    """
    if limit <= 0:
        return None
    if len(stamps) < limit:
        return moment  # too few sends in scope at all, whatever the window
    since, inclusive = window_start(cap, moment, where)
    inside = [stamp for stamp in stamps if (stamp >= since if inclusive else stamp > since)]
    if len(inside) < limit:
        return moment
    if not cap.calendar:
        # The window is (t - per, t]: the send that must drop out leaves it at stamp + per.
        return datetime.fromtimestamp(inside[len(inside) - limit], UTC) + cap.per
    boundary = moment
    for _ in range(cap.per.days + 8):
        boundary = _next_boundary(cap, boundary, where)
        since, inclusive = window_start(cap, boundary, where)
        if count_since(inside, since, inclusive) < limit:
            return boundary
    raise AssertionError("a calendar window always empties once it has rolled past its length")


def _next_boundary(cap: CapRule, moment: datetime, where: ZoneInfo) -> datetime:
    local_day = moment.astimezone(where).date()
    step = 7 - local_day.weekday() if cap.calendar_unit == "w" else 1
    return local_moment(local_day + timedelta(days=step), time(0), where)
