"""``PendingEvents``: events the store missed, applied before the next decision."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from api.events import log_record
from api.pending import PendingEvents
from api.schemas.events import EventIn
from fatigue.domain import EngagementEvent
from fatigue.errors import StoreError, ValidationError


def pending_file(directory: Path, *kinds: str) -> PendingEvents:
    pending = PendingEvents(directory)
    moment = datetime(2026, 11, 23, 10, tzinfo=UTC)
    records = [
        log_record(EventIn.model_validate({"type": kind, "user_id": f"u{n}",
                                           "timestamp": moment.isoformat()}), moment.isoformat())
        for n, kind in enumerate(kinds)
    ]  # fmt: skip
    pending.append(records)
    return pending


def test_after_a_failure_the_next_decision_tries_again_at_once(tmp_path: Path):
    """A throttle of a second let decisions made just after the store came back miss them."""
    pending = pending_file(tmp_path, "unsubscribe")
    applied: list[EngagementEvent] = []

    def down(event: EngagementEvent) -> None:
        raise StoreError("redis store not answering (not asked: ...)")

    assert pending.settle(down) == 0
    assert pending.settle(applied.append) == 1  # no wait: the store answers again
    assert [event.type.value for event in applied] == ["unsubscribe"]
    assert pending.settle(applied.append) == 0 and len(applied) == 1  # the file was emptied


def test_a_batch_kept_again_by_each_retry_is_applied_once(tmp_path: Path):
    pending = pending_file(tmp_path, "unsubscribe", "complaint")
    again = (tmp_path / "pending.jsonl").read_text()
    with (tmp_path / "pending.jsonl").open("a") as handle:
        handle.write(again)  # the platform's retry, answered 503 too
    applied: list[str] = []
    assert pending.settle(lambda event: applied.append(event.user_id)) == 4
    assert applied == ["u0", "u1"]


def test_an_event_the_governor_objects_to_is_left_out_not_kept_for_ever(tmp_path: Path, caplog):
    """It would object every time: kept, it would stop every later event (and decision)."""
    pending = pending_file(tmp_path, "complaint", "unsubscribe")
    applied: list[str] = []

    def objecting(event: EngagementEvent) -> None:
        if event.type.value == "complaint":
            raise ValidationError("the governor objects")
        applied.append(event.user_id)

    assert pending.settle(objecting) == 2
    assert applied == ["u1"]
    assert "left out: the governor objects" in caplog.text
    assert (tmp_path / "pending.jsonl").read_text() == ""  # settled: nothing waits
