"""The best send hour in the customer's own zone, whatever zone (if any) their events carried."""

from __future__ import annotations

from datetime import UTC, datetime

from fatigue.domain import Action, EngagementEvent, EventType, Recipient
from fatigue.store.base import StateQuery

from .fatigue_helpers import items, request

# London is the default zone; the customers below live elsewhere.
SEND_TIME = (
    '[quiet_hours]\nstart = "22:00"\nend = "06:00"\ndefault_timezone = "Europe/London"\n'
    "[send_time]\ndefault_hour = 8\nmin_events = 3\naudience_min_events = 3\n"
)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def opens(governor, user: str, *moments: datetime, timezone: str | None = None) -> None:
    for at in moments:
        governor.record_event(EngagementEvent(EventType.OPEN, user, at, timezone=timezone))


def test_a_new_yorker_opening_at_ten_is_sent_at_ten_new_york_time(make_governor, clock):
    """API events carry no zone: the customer's hours must not be read in the default zone."""
    governor = make_governor(SEND_TIME)
    # 15:00 UTC is 10:00 in New York in January (and 15:00 in London).
    opens(governor, "ny", *(utc(2026, 1, 5 + day, 15, 5) for day in range(3)))
    clock.set(utc(2026, 1, 12, 12))  # 07:00 in New York
    decision = governor.decide(
        Recipient("ny", timezone="America/New_York"), request(deferrable=True), items()
    )
    assert decision.action == Action.DEFER
    assert decision.send_at == utc(2026, 1, 12, 15)
    assert decision.deciding.detail == "best local hour 10:00 (customer)"


def test_an_event_with_a_zone_counts_the_same_hour_for_the_customer(make_governor, clock):
    governor = make_governor(SEND_TIME)
    opens(
        governor,
        "tokyo",
        *(utc(2026, 1, 5 + day, 0, 30) for day in range(3)),
        timezone="Asia/Tokyo",
    )
    clock.set(utc(2026, 1, 12, 12))  # 21:00 in Tokyo
    decision = governor.decide(
        Recipient("tokyo", timezone="Asia/Tokyo"), request(deferrable=True), items()
    )
    assert decision.send_at == utc(2026, 1, 13, 0)  # 09:00 in Tokyo
    assert "9:00 (customer)" in decision.deciding.detail


def test_the_audience_histogram_counts_local_hours(make_governor, clock):
    """Customers in many zones who all open at 10:00 local teach a newcomer 10:00 local."""
    governor = make_governor(SEND_TIME)
    opens(governor, "a", utc(2026, 1, 5, 15), timezone="America/New_York")  # 10:00 there
    opens(governor, "b", utc(2026, 1, 5, 1), timezone="Asia/Tokyo")  # 10:00 there
    opens(governor, "c", utc(2026, 1, 5, 10))  # no zone: the default, London, 10:00
    clock.set(utc(2026, 1, 12, 12))
    newcomer = governor.decide(
        Recipient("new", timezone="Australia/Sydney"), request(deferrable=True), items()
    )
    assert newcomer.deciding.detail == "best local hour 10:00 (audience)"
    assert newcomer.send_at == utc(2026, 1, 12, 23)  # 10:00 on the 13th in Sydney (UTC+11)


def test_a_zone_with_a_half_hour_offset_takes_the_hour_holding_most_of_each_bucket(
    make_governor, clock
):
    governor = make_governor(SEND_TIME)
    # 04:40 UTC is 10:10 in Kolkata (UTC+5:30).
    opens(governor, "in", *(utc(2026, 1, 5 + day, 4, 40) for day in range(3)))
    clock.set(utc(2026, 1, 12, 12))
    decision = governor.decide(
        Recipient("in", timezone="Asia/Kolkata"), request(deferrable=True), items()
    )
    assert decision.deciding.detail == "best local hour 10:00 (customer)"


def test_the_customers_hours_are_kept_in_utc(store, make_governor):
    governor = make_governor(SEND_TIME)
    opens(governor, "ny", utc(2026, 1, 5, 15, 5), timezone="America/New_York")
    opens(governor, "ny", utc(2026, 1, 6, 15, 5))
    [state] = store.load([StateQuery("ny", utc(2026, 1, 12).timestamp(), 0.0)])
    assert state.hours[15] == 2 and sum(state.hours) == 2
    # The audience's hours are local: 10:00 in New York, 15:00 in London (the default zone).
    assert state.audience_hours[10] == 1 and state.audience_hours[15] == 1
