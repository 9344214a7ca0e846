"""Durations and clock times as rule files spell them: ``"16h"``, ``"1d12h"``, ``"21:00"``."""

from __future__ import annotations

import re
from datetime import time, timedelta

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"^(?:\d+[smhdw])+$")
_PART = re.compile(r"(\d+)([smhdw])")
_CLOCK = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
LONGEST = timedelta(days=3653)


def parse_duration(text: str) -> timedelta:
    """Parse ``"16h"`` or ``"1d12h"`` (units s, m, h, d, w); raise ValueError when malformed."""
    cleaned = text.strip().lower()
    if not _DURATION.match(cleaned):
        raise ValueError(f"{text!r} is not a duration like '30m', '16h', '1d' or '2w'")
    seconds = sum(int(count) * _UNITS[unit] for count, unit in _PART.findall(cleaned))
    if seconds > LONGEST.total_seconds():
        # Windows reach back from now: one past the calendar's start cannot be computed.
        raise ValueError(f"{text!r} is longer than the longest duration allowed (10 years)")
    return timedelta(seconds=seconds)


def duration_unit(text: str) -> str:
    """Return the single unit of a duration such as ``"2d"`` (``""`` when it mixes units)."""
    units = {unit for _, unit in _PART.findall(text.strip().lower())}
    return units.pop() if len(units) == 1 else ""


def format_duration(delta: timedelta) -> str:
    """Format a duration the way rule files write it, largest units first."""
    seconds = int(delta.total_seconds())
    if seconds == 0:
        return "0s"
    parts = []
    for unit in ("w", "d", "h", "m", "s"):
        count, seconds = divmod(seconds, _UNITS[unit])
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def parse_clock(text: str) -> time:
    """Parse a 24-hour ``"HH:MM"``; raise ValueError when malformed."""
    match = _CLOCK.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a 24-hour time like '21:00'")
    return time(int(match.group(1)), int(match.group(2)))
