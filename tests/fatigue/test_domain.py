"""Decisions serialise the same way as a dict and as JSON, whatever their times look like."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from fatigue.domain import Action, Candidate, ContentKind, Decision, Reason

MOMENTS = [
    datetime(2026, 11, 23, 12, 0, tzinfo=UTC),
    datetime(2026, 11, 23, 12, 0, 0, 123456, tzinfo=UTC),  # microseconds
    datetime(2026, 7, 1, 9, 30, tzinfo=ZoneInfo("Europe/London")),  # summer time
    datetime(2026, 7, 1, 9, 30, tzinfo=ZoneInfo("Asia/Kathmandu")),  # +05:45
    datetime(2026, 7, 1, 9, 30, tzinfo=timezone(timedelta(hours=-3, minutes=-30))),
    datetime(2026, 7, 1, 9, 30),  # naive, as a catalog may give
]


@pytest.mark.parametrize("moment", MOMENTS, ids=str)
def test_json_is_the_dict_written_out(moment: datetime) -> None:
    item = Candidate("i1", 0.4, 1.2, "cf", "cat", ContentKind.EDITORIAL, moment, moment, False)
    decision = Decision(
        Action.DEFER, "u1", "d1", moment, send_at=moment, items=(item, Candidate("i2", 0.1)),
        reasons=(Reason("daily", False, "1 of 1", 1, 1, True),), campaign="c", idempotency_key="k",
    )  # fmt: skip
    assert json.loads(decision.to_json()) == decision.to_dict()
    assert decision.to_dict()["send_at"] == moment.isoformat()
    assert Decision.from_dict(json.loads(decision.to_json())) == decision
