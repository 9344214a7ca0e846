"""gunicorn's threaded worker, leaving new connections to an idle sibling when it can.

Every worker polls the one listening socket, and a plain ``gthread`` worker accepts whatever it
can, busy or not. Keep-alive clients open their connections at once and keep them, so one
worker often took them all: on two cores, eight wrk connections split 8/0 in one run of five
and gave 397 composes/s against 850-900 in the others (one worker on one core, the other
idle), and two batch streams landed on one worker in half the runs (1,610 recipients/s against
3,163). So a worker accepts at once only while idle; when busy it holds off for ``HOLD``
seconds, long enough for an idle sibling to take the connection, and accepts it after that if
nobody has. A new connection to a server with no idle worker waits at most ``HOLD`` longer
(leaving it in the kernel's queue until a worker was idle instead kept it there for 0.6-1.2 s
with one thread per worker under load); connections already accepted are served as before.
"""

from __future__ import annotations

import time
from concurrent.futures import Future
from typing import Any

from gunicorn.workers.gthread import ThreadWorker

HOLD = 0.002  # seconds a busy worker leaves a new connection to its siblings


class BalancedThreadWorker(ThreadWorker):
    """``gthread`` that accepts at once only while idle, and after a short hold when busy."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # All three are used by the main thread only, as gunicorn's own counters are.
        self.busy = 0  # requests handed to the thread pool and not finished
        self._hold_until = 0.0  # monotonic time before which a busy worker does not accept
        # A hold has run since this worker last accepted: the next connection is taken at once,
        # however busy the worker is by then (a time window instead let a connection wait out
        # hold after hold while both workers stayed busy: 300-500 ms, or the whole run).
        self._held = False

    def set_accept_enabled(self, enabled: bool) -> None:
        """Accept only while alive and no hold is running."""
        holding = time.monotonic() < self._hold_until
        super().set_accept_enabled(enabled and self.alive and not holding)

    def accept(self, listener: Any) -> None:
        """Accept when idle, or once a busy worker's hold has left the connection unclaimed."""
        if self.busy and not self._held:
            self._held = True
            self._hold_until = time.monotonic() + HOLD
            super().set_accept_enabled(False)
            return
        self._held = False
        super().accept(listener)

    def wait_for_and_dispatch_events(self, timeout: float) -> None:
        """Wake when a hold ends, so the connection left waiting is accepted then."""
        remaining = self._hold_until - time.monotonic()
        super().wait_for_and_dispatch_events(min(timeout, remaining) if remaining > 0 else timeout)
        if self._hold_until and time.monotonic() >= self._hold_until:
            self._hold_until = 0.0
            self._follow_load()

    def enqueue_req(self, conn: Any) -> None:
        """Count the request, then hand it to a thread as gunicorn does."""
        self.busy += 1
        super().enqueue_req(conn)
        self._follow_load()

    def finish_request(self, conn: Any, fs: Future[Any]) -> None:
        """Count the request done (gunicorn may hand the connection's next one on at once)."""
        self.busy -= 1
        super().finish_request(conn, fs)
        self._follow_load()

    def _follow_load(self) -> None:
        self.set_accept_enabled(self.nr_conns < self.worker_connections)
