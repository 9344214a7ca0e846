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
worker again. A worker joins the board once its app is loaded and leaves it when told to stop:
loading or stopping, it takes no connections, and as an "idle sibling" it made every busy worker
hold every new one.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from concurrent.futures import Future
from multiprocessing.sharedctypes import RawArray
from typing import Any

from gunicorn import util
from gunicorn.workers.gthread import ThreadWorker

from api.server_errors import CapturedSocket, problem_answer

HOLD = 0.002  # seconds a worker leaves a new connection to a less busy sibling
# After a hold, the next connection within this long is taken without another hold. Far longer
# than the interpreter's 5 ms thread switch: a main thread waiting for the GIL behind busy request
# threads missed a 2 ms window, held again and again, and left a connection waiting 0.9 s.
GRACE = 0.05
SLOTS = 64  # workers the board holds; more go without it (they accept as plain gthread does)


class Board:
    """Each worker's pid and requests in hand, in memory shared by every forked worker."""

    def __init__(self, slots: int = SLOTS) -> None:
        self.pids = RawArray("q", slots)
        self.busy = RawArray("q", slots)
        self._claiming = multiprocessing.Lock()

    def claim(self, pid: int) -> int | None:
        """Take a slot that is free or left by a dead worker; None when all are taken.

        A worker killed while claiming would leave the lock held: later workers then go without
        a slot (accepting as plain gthread does) rather than hang at start.
        """
        if not self._claiming.acquire(timeout=1.0):
            return None
        try:
            for slot, owner in enumerate(self.pids):
                if owner == 0 or not _alive(owner):
                    self.pids[slot], self.busy[slot] = pid, 0
                    return slot
        finally:
            self._claiming.release()
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
    except (ProcessLookupError, PermissionError):  # gone, or the number is someone else's now
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
        self.busy = 0  # requests handed to the thread pool and not finished
        self._hold_until = 0.0  # monotonic time before which this worker does not accept
        self._grace_until = 0.0  # after a hold, until then the waiting connection is taken
        self.slot: int | None = None

    def run(self) -> None:
        """Join the board once the app is loaded, and leave it however the loop ends.

        A worker still loading its model, or one stopping, does not accept: on the board it would
        read as an idle sibling and make every busy worker hold every new connection.
        """
        self.claim_slot()
        try:
            super().run()
        finally:
            self.leave_board()

    def handle_exit(self, sig: int, frame: Any) -> None:
        """Stop as gunicorn does, leaving the board at once (no more connections are taken)."""
        super().handle_exit(sig, frame)
        self.leave_board()

    def claim_slot(self) -> None:
        """Join the board (without one, or with it full, this worker never holds)."""
        if _BOARD:
            self.slot = _BOARD[0].claim(os.getpid())

    def leave_board(self) -> None:
        """Give the slot back; from now on this worker is nobody's sibling."""
        if _BOARD and self.slot is not None:
            _BOARD[0].release(self.slot)
        self.slot = None

    def set_accept_enabled(self, enabled: bool) -> None:
        """Accept only while alive and no hold is running."""
        holding = time.monotonic() < self._hold_until
        super().set_accept_enabled(enabled and self.alive and not holding)

    def accept(self, listener: Any) -> None:
        """Accept, unless a less busy sibling could; then hold first and take what is left."""
        now = time.monotonic()
        if now >= self._grace_until and self._sibling_less_busy():
            self._hold_until = now + HOLD
            # The loop wakes when the hold ends and polls the listener again: a connection
            # still waiting then is taken within this grace, and only that one.
            self._grace_until = self._hold_until + GRACE
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
        self.busy += 1
        self._post()
        super().enqueue_req(conn)

    def finish_request(self, conn: Any, fs: Future[Any]) -> None:
        """Forget the request (gunicorn may hand the connection's next one on at once)."""
        self.busy -= 1
        self._post()
        super().finish_request(conn, fs)

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        """Answer a request gunicorn could not parse as problem+json, not its HTML page."""
        captured = CapturedSocket(client)
        super().handle_error(req, captured, addr, exc)
        if not captured.written:
            return
        try:
            answer = problem_answer(captured.written, exc)
        except Exception:  # a page this cannot read: gunicorn's own answer beats none
            self.log.exception("could not turn gunicorn's error page into problem+json")
            answer = captured.written
        try:
            util.write_nonblock(client, answer)
        except Exception:  # the client is gone: nothing to tell it
            self.log.debug("Failed to send error message.")

    def _post(self) -> None:
        if _BOARD and self.slot is not None:
            _BOARD[0].busy[self.slot] = self.busy

    def _sibling_less_busy(self) -> bool:
        if not self.busy or not _BOARD or self.slot is None:
            return False
        return _BOARD[0].less_busy_sibling(self.slot, self.busy)
