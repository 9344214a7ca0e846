"""``FailFast``: a store that did not answer is not asked again for a while, then once."""

from __future__ import annotations

from fatigue.store.fail_fast import FailFast


def test_after_no_answer_calls_are_refused_then_one_tries_while_the_others_wait() -> None:
    now = [100.0]
    gate = FailFast(seconds=1.0, clock=lambda: now[0])
    assert gate.refusal() is None  # answering: every call goes
    gate.failed("TimeoutError: Timeout reading from socket")
    now[0] += 0.25
    assert gate.refusal() == (
        "not asked again yet after no answer (TimeoutError: Timeout reading from socket)"
    )
    now[0] += 0.5
    assert gate.refusal() == gate.refusal()  # worded alike each time: logged once, not per poll
    now[0] += 0.5
    assert gate.refusal() is None  # the one trial
    assert gate.refusal() is not None  # the others wait for what it finds
    gate.failed("TimeoutError: again")  # the trial found it silent still
    now[0] += 0.5
    assert "TimeoutError: again" in (gate.refusal() or "")
    now[0] += 0.6
    assert gate.refusal() is None
    gate.answered()  # it answered: everyone goes at once
    assert gate.refusal() is None and gate.refusal() is None
