"""``Later``: a store's answer read once, or cancelled; errors raised where it is read."""

from __future__ import annotations

import pytest

from fatigue.errors import StoreError
from fatigue.store.later import Later


def test_the_answer_is_read_once_and_kept():
    reads: list[int] = []
    later = Later(lambda: reads.append(1) or len(reads))
    assert (later.result(), later.result(), reads) == (1, 1, [1])


def test_an_error_reading_is_raised_on_every_result():
    def failing() -> int:
        raise StoreError("down")

    later = Later(failing)
    for _ in range(2):
        with pytest.raises(StoreError, match="down"):
            later.result()


def test_now_does_the_work_at_once_and_keeps_its_error_for_result():
    done: list[str] = []
    later = Later.now(lambda: done.append("work") or "answer")
    assert done == ["work"] and later.result() == "answer"

    def failing() -> str:
        raise StoreError("refused")

    failed = Later.now(failing)  # no raise here: where the answer is read, the caller handles it
    with pytest.raises(StoreError, match="refused"):
        failed.result()


def test_cancel_gives_the_answer_up_unread_once():
    cancelled: list[str] = []
    later = Later(lambda: "never read", lambda: cancelled.append("gone"))
    later.cancel()
    later.cancel()
    assert cancelled == ["gone"]
    with pytest.raises(RuntimeError, match="cancelled"):
        later.result()


def test_cancel_after_result_changes_nothing():
    cancelled: list[str] = []
    later = Later(lambda: "read", lambda: cancelled.append("gone"))
    assert later.result() == "read"
    later.cancel()
    assert (later.result(), cancelled) == ("read", [])
