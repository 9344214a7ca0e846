"""gunicorn's threaded worker, leaving a new connection to a less busy sibling.

Every worker polls the one listening socket, and a plain ``gthread`` worker accepts whatever it
can, busy or not. Keep-alive clients open their connections at once and keep them, so one
worker often took them all: on two cores, eight wrk connections split 8/0 in one run of five
and gave 397 composes/s against 850-900 in the others (one worker on one core, the other
idle), and two batch streams landed on one worker in half the runs (1,610 recipients/s against
3,163).

So the workers share a small board in memory (made by the master before it forks them): each
writes how many requests it has in hand. A worker that sees a live sibling with fewer holds a
new connection for ``HOLD`` seconds, long enough for that sibling to take it, and takes it
itself after that if nobody has. When no sibling is less busy it accepts at once: holding
whenever a worker was busy at all halved the throughput of clients that open a connection per
request (a proxy without upstream keep-alive: 758-777 against 1,417-1,465 requests/s), and
holding only when every thread was busy left two batch streams that start together on one
worker again.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from concurrent.futures import Future
from multiprocessing.sharedctypes import RawArray
from typing import Any

from gunicorn.workers.gthread import ThreadWorker

HOLD = 0.002  # seconds a worker leaves a new connection to a less busy sibling
SLOTS = 64  # workers the board holds; more go without it (they accept as plain gthread does)


class Board:
    """Each worker's pid and requests in hand, in memory shared by every forked worker."""

    def __init__(self, slots: int = SLOTS) -> None:
        self.pids = RawArray("q", slots)
        self.busy = RawArray("q", slots)
        self._claiming = multiprocessing.Lock()

    def claim(self, pid: int) -> int | None:
        """Take a slot that is free or left by a dead worker; None when all are taken."""
        with self._claiming:
            for slot, owner in enumerate(self.pids):
                if owner == 0 or not _alive(owner):
                    self.pids[slot], self.busy[slot] = pid, 0
                    return slot
        return None

    def release(self, slot: int) -> None:
        """Give the slot back (a worker leaving)."""
        self.pids[slot] = 0

    def less_busy_sibling(self, slot: int, busy: int) -> bool:
        """Whether a live worker other than ``slot`` has fewer than ``busy`` requests in hand."""
        for other, pid in enumerate(self.pids):
            if other != slot and pid and self.busy[other] < busy and _alive(pid):
                return True
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process reuses the number: not a worker of ours
        return False
    return True


_BOARD: list[Board] = []  # made once, in the master (gunicorn calls ``setup`` there)


class BalancedThreadWorker(ThreadWorker):
    """``gthread`` that lets a less busy sibling take a new connection first."""

    @classmethod
    def setup(cls) -> None:
        """Make the shared board before any worker is forked (gunicorn may call this often)."""
        if not _BOARD:
            _BOARD.append(Board())

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Used by the main thread only, as gunicorn's own counters are.
        self._in_hand: set[Any] = set()  # connections handed to the thread pool, not finished
        self._hold_until = 0.0  # monotonic time before which this worker does not accept
        self._grace_until = 0.0  # after a hold, until then the waiting connection is taken
        self.slot: int | None = None

    @property
    def busy(self) -> int:
        """Requests handed to the thread pool and not finished."""
        return len(self._in_hand)

    def init_process(self) -> None:
        """Take a slot on the board, then run as gunicorn's threaded worker does."""
        self.claim_slot()
        try:
            super().init_process()
        finally:
            if _BOARD and self.slot is not None:
                _BOARD[0].release(self.slot)

    def claim_slot(self) -> None:
        """Join the board (without one, or with it full, this worker never holds)."""
        if _BOARD:
            self.slot = _BOARD[0].claim(os.getpid())

    def set_accept_enabled(self, enabled: bool) -> None:
        """Accept only while alive and no hold is running."""
        holding = time.monotonic() < self._hold_until
        super().set_accept_enabled(enabled and self.alive and not holding)

    def accept(self, listener: Any) -> None:
        """Accept, unless a less busy sibling could; then hold first and take what is left."""
        now = time.monotonic()
        if now >= self._grace_until and self._sibling_less_busy():
            self._hold_until = now + HOLD
            # The loop wakes when the hold ends and polls the listener again at once: a
            # connection still waiting then is taken within this grace, and only that one.
            self._grace_until = self._hold_until + HOLD
            super().set_accept_enabled(False)
            return
        self._grace_until = 0.0
        super().accept(listener)

    def wait_for_and_dispatch_events(self, timeout: float) -> None:
        """Wake when a hold ends, so the connection left waiting is accepted then."""
        remaining = self._hold_until - time.monotonic()
        super().wait_for_and_dispatch_events(min(timeout, remaining) if remaining > 0 else timeout)
        if self._hold_until and time.monotonic() >= self._hold_until:
            self._hold_until = 0.0
            self.set_accept_enabled(self.nr_conns < self.worker_connections)

    def enqueue_req(self, conn: Any) -> None:
        """Note the request in hand, then hand it to a thread as gunicorn does."""
        self._in_hand.add(conn)
        self._post()
        super().enqueue_req(conn)

    def finish_request(self, conn: Any, fs: Future[Any]) -> None:
        """Forget the request (gunicorn may hand the connection's next one on at once)."""
        self._in_hand.discard(conn)
        self._post()
        super().finish_request(conn, fs)

    def _post(self) -> None:
        if _BOARD and self.slot is not None:
            _BOARD[0].busy[self.slot] = len(self._in_hand)

    def _sibling_less_busy(self) -> bool:
        busy = len(self._in_hand)
        if not busy or not _BOARD or self.slot is None:
            return False
        return _BOARD[0].less_busy_sibling(self.slot, busy)
