"""Quiet hours across DST changes and calendar windows in different time zones."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest

from fatigue.errors import ValidationError
from fatigue.rules import CapRule, QuietHours
from fatigue.windows import cap_release, next_local_hour, quiet_hours_end, window_start, zone

LONDON = zone("Europe/London")
NEW_YORK = zone("America/New_York")
TOKYO = zone("Asia/Tokyo")
NIGHT = QuietHours(time(21), time(8))


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_outside_quiet_hours_is_none():
    assert quiet_hours_end(utc(2026, 1, 12, 12), NIGHT, LONDON) is None


def test_evening_defers_to_next_morning_local():
    assert quiet_hours_end(utc(2026, 1, 12, 22), NIGHT, LONDON) == utc(2026, 1, 13, 8)
    # 22:00 UTC is 17:00 in New York: not quiet there.
    assert quiet_hours_end(utc(2026, 1, 12, 22), NIGHT, NEW_YORK) is None


def test_early_morning_defers_to_same_day_end():
    assert quiet_hours_end(utc(2026, 1, 12, 3), NIGHT, LONDON) == utc(2026, 1, 12, 8)


def test_quiet_window_inside_one_day():
    lunch = QuietHours(time(12), time(14))
    assert quiet_hours_end(utc(2026, 1, 12, 13), lunch, LONDON) == utc(2026, 1, 12, 14)
    assert quiet_hours_end(utc(2026, 1, 12, 14), lunch, LONDON) is None


def test_spring_forward_night_is_one_hour_shorter():
    # London moves to BST at 01:00 UTC on 29 March 2026: 08:00 local is then 07:00 UTC.
    end = quiet_hours_end(utc(2026, 3, 28, 22), NIGHT, LONDON)
    assert end == utc(2026, 3, 29, 7)
    assert end.astimezone(LONDON).hour == 8


def test_fall_back_night_is_one_hour_longer():
    # Back to GMT at 01:00 UTC on 25 October 2026: 08:00 local is 08:00 UTC again.
    end = quiet_hours_end(utc(2026, 10, 24, 21), NIGHT, LONDON)
    assert end == utc(2026, 10, 25, 8)


def test_quiet_end_in_the_skipped_hour_resolves_after_the_gap():
    # 01:30 does not exist in London on 29 March 2026 (01:00 GMT is 02:00 BST): the quiet hours
    # end at the first instant after the gap, when the clock reads 02:00, not an hour later.
    quiet = QuietHours(time(0, 30), time(1, 30))
    end = quiet_hours_end(utc(2026, 3, 29, 0, 45), quiet, LONDON)
    assert end == utc(2026, 3, 29, 1, 0)
    assert end.astimezone(LONDON).hour == 2 and end.astimezone(LONDON).minute == 0


def test_quiet_end_in_the_repeated_hour_takes_the_next_occurrence():
    # 01:00-01:59 happens twice in London on 25 October 2026 (BST, then GMT).
    quiet = QuietHours(time(0, 0), time(1, 30))
    second_pass = utc(2026, 10, 25, 1, 15)  # 01:15 GMT, the second 01:15
    end = quiet_hours_end(second_pass, quiet, LONDON)
    assert end == utc(2026, 10, 25, 1, 30)


def test_next_local_hour_across_dst():
    assert next_local_hour(utc(2026, 3, 28, 12), 10, LONDON) == utc(2026, 3, 29, 9)
    assert next_local_hour(utc(2026, 3, 29, 9, 30), 10, LONDON) == utc(2026, 3, 29, 9, 30)


def cap(per: timedelta, calendar: bool = False, unit: str = "", limit: int = 1) -> CapRule:
    return CapRule(limit, per, "test", calendar=calendar, calendar_unit=unit)


def test_rolling_window_excludes_its_exact_start():
    since, inclusive = window_start(cap(timedelta(days=1)), utc(2026, 1, 12, 12), LONDON)
    assert since == utc(2026, 1, 11, 12).timestamp() and inclusive is False


def test_calendar_day_starts_at_local_midnight_per_zone():
    now = utc(2026, 1, 12, 20)
    day = cap(timedelta(days=1), calendar=True, unit="d")
    assert window_start(day, now, LONDON)[0] == utc(2026, 1, 12).timestamp()
    # 20:00 UTC is already 05:00 on the 13th in Tokyo.
    assert window_start(day, now, TOKYO)[0] == utc(2026, 1, 12, 15).timestamp()
    assert window_start(day, now, NEW_YORK)[0] == utc(2026, 1, 12, 5).timestamp()


def test_calendar_week_starts_on_local_monday():
    week = cap(timedelta(weeks=1), calendar=True, unit="w")
    # Sunday 18 January 2026 23:30 in New York is Monday 04:30 UTC.
    now = utc(2026, 1, 19, 4, 30)
    assert window_start(week, now, NEW_YORK)[0] == utc(2026, 1, 12, 5).timestamp()
    assert window_start(week, now, LONDON)[0] == utc(2026, 1, 19).timestamp()


def test_rolling_release_is_when_the_oldest_counted_send_leaves():
    sends = [utc(2026, 1, 12, 9).timestamp(), utc(2026, 1, 12, 11).timestamp()]
    release = cap_release(cap(timedelta(days=1), limit=2), 2, sends, utc(2026, 1, 12, 12), LONDON)
    assert release == utc(2026, 1, 13, 9)


def test_calendar_release_is_the_next_local_midnight():
    day = cap(timedelta(days=1), calendar=True, unit="d")
    sends = [utc(2026, 1, 12, 10).timestamp()]
    assert cap_release(day, 1, sends, utc(2026, 1, 12, 12), NEW_YORK) == utc(2026, 1, 13, 5)
    assert cap_release(day, 1, sends, utc(2026, 1, 12, 12), TOKYO) == utc(2026, 1, 12, 15)


def test_calendar_day_across_spring_forward_in_new_york():
    # New York skips 02:00-03:00 on 8 March 2026; midnight still exists (05:00 UTC, EST).
    day = cap(timedelta(days=1), calendar=True, unit="d")
    sends = [utc(2026, 3, 8, 12).timestamp()]
    release = cap_release(day, 1, sends, utc(2026, 3, 8, 14), NEW_YORK)
    assert release == utc(2026, 3, 9, 4)  # midnight EDT


def test_multi_day_calendar_window_waits_for_enough_days_to_roll_off():
    three_days = cap(timedelta(days=3), calendar=True, unit="d", limit=2)
    sends = [utc(2026, 1, 10, 10).timestamp(), utc(2026, 1, 12, 10).timestamp()]
    # Window on the 12th covers 10-12; the send on the 10th leaves when the window starts on 11th.
    assert cap_release(three_days, 2, sends, utc(2026, 1, 12, 12), LONDON) == utc(2026, 1, 13)


def test_zero_limit_never_releases():
    assert cap_release(cap(timedelta(days=1), limit=0), 0, [], utc(2026, 1, 12), LONDON) is None


def test_unknown_zone_is_a_validation_error():
    with pytest.raises(ValidationError, match="Mars/Base"):
        zone("Mars/Base")


@pytest.mark.parametrize("name", ["Europe", "Mars/Olympus", "../etc", ""])
def test_a_name_that_is_no_zone_is_a_validation_error_not_a_crash(name: str) -> None:
    """``ZoneInfo("Europe")`` opens a folder (IsADirectoryError): a simulation history or a
    request carrying it was a server error."""
    with pytest.raises(ValidationError, match="is not an IANA time zone name"):
        zone(name)
