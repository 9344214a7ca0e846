"""Fail fast while Redis does not answer: one call a second finds out whether it is back."""

from __future__ import annotations

import time
from collections.abc import Callable

#: Seconds a store that did not answer is not asked again (one call then tries it).
FAIL_FAST_SECONDS = 1.0


class FailFast:
    """After a call that got no answer, refuse calls at once for a while, then let one try.

    A hung Redis (stopped, swapping) held every call for the socket timeout: with all of a
    worker's threads waiting on it, even ``/healthz`` queued behind them, and liveness probes
    failed on every replica at once. A refused call takes the rules' ``on_store_error`` policy
    at once, as a failed one does. Only silence counts (a timeout, a refused connection): a
    Redis that answers with an error (full, read-only) is asked every time.
    """

    def __init__(
        self, seconds: float = FAIL_FAST_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.seconds = seconds
        self.clock = clock
        self._until = 0.0  # calls before this moment are refused; 0: the store answers
        self._why = ""

    def refusal(self) -> str | None:
        """Return why a call may not go now, or None (the one trial, once the wait is over)."""
        if not self._until:
            return None
        now = self.clock()
        if now < self._until:  # worded the same each time: readiness logs each change once
            return f"not asked again yet after no answer ({self._why})"
        self._until = now + self.seconds  # this call tries; the others wait for what it finds
        return None

    def failed(self, why: str) -> None:
        """Note a call that got no answer."""
        self._until, self._why = self.clock() + self.seconds, why

    def answered(self) -> None:
        """Note a call that got an answer: the store is asked again at once."""
        if self._until:
            self._until = 0.0
