"""The per-customer decision log, written behind the requests that make the decisions.

Writing the log inside each request cost a second store round trip per single compose, about a
seventh of its CPU. Requests hand their entries to a ``DecisionLogWriter`` instead; its thread
writes whatever has gathered in one store call. Once woken, the thread lingers a few
milliseconds, so that under load one store call carries the entries of many requests (a call per
request cost a thread wake-up and a round trip each, on the cores the requests need); after a
write it gathers for another linger unwoken, and sleeps until woken only once nothing came. The log
explains decisions and never makes one: entries still queued when a process is killed are lost
(milliseconds' worth), and a failed write is reported, never retried. Readers in the same process
call ``flush`` first, so they see the decisions just made.
"""

from __future__ import annotations

import atexit
import logging
import threading
import weakref
from collections import deque
from collections.abc import Callable, Sequence

from fatigue.errors import StoreError
from fatigue.store.base import FatigueStore, LoggedDecision

log = logging.getLogger(__name__)
BATCH = 512  # entries per store call
BACKLOG = 50_000  # entries queued at most; beyond it the oldest are dropped (and reported)
LINGER = 0.01  # seconds the thread waits for more entries before a write that is not full


class DecisionLogWriter:
    """Queue decision-log entries and write them from one background thread, in batches."""

    def __init__(
        self,
        store: FatigueStore,
        ttl: Callable[[], int],
        on_error: Callable[[StoreError], None] | None = None,
        backlog: int = BACKLOG,
        linger: float = LINGER,
    ) -> None:
        self.store = store
        self.ttl = ttl  # asked at each write: the rules that set it can be reloaded
        self.on_error = on_error
        self._backlog = backlog
        self._linger = linger
        self._pending: deque[LoggedDecision] = deque()
        self._submitted = 0  # entries ever queued
        self._settled = 0  # entries written, failed or dropped
        self._closing = False
        self._idle = False  # the thread waits for a first entry (a submit must wake it)
        self._flushing = 0  # readers waiting in flush (the thread must not linger)
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def submit(self, entries: Sequence[LoggedDecision]) -> None:
        """Queue ``entries``; never waits for the store."""
        if not entries:
            return
        dropped = 0
        with self._changed:
            if self._closing:
                raise RuntimeError("the decision log writer is closed")
            self._pending.extend(entries)
            self._submitted += len(entries)
            while len(self._pending) > self._backlog:
                self._pending.popleft()
                dropped += 1
            self._settled += dropped
            self._start()
            # A lingering thread is woken only by a full batch: one wake-up per request was
            # what lingering saves.
            if self._idle or len(self._pending) >= BATCH:
                self._changed.notify_all()
        if dropped:
            self._report(StoreError(f"decision log backlog full: {dropped} entries dropped"))

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every entry queued before this call is written; False on timeout."""
        with self._changed:
            target = self._submitted
            self._flushing += 1
            self._changed.notify_all()
            try:
                return self._changed.wait_for(lambda: self._settled >= target, timeout)
            finally:
                self._flushing -= 1

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued, then stop the thread."""
        with self._changed:
            self._closing = True
            self._changed.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _start(self) -> None:
        # Started on first use (under the lock), so a process forked after building the writer
        # gets a thread of its own.
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="decision-log", daemon=True)
            self._thread.start()
            _close_at_exit(self)

    def _run(self) -> None:
        while True:
            with self._changed:
                # After each write the thread gathers entries for one more linger without being
                # woken, so under load no request pays for a wake-up. Only after a quiet linger
                # does it wait for a submit to wake it, and then it lingers as usual.
                self._changed.wait_for(self._urgent, self._linger)
                if not self._pending and not self._closing:
                    self._idle = True
                    self._changed.wait_for(lambda: self._pending or self._closing)
                    self._idle = False
                    self._changed.wait_for(self._urgent, self._linger)
                if not self._pending:
                    return  # closing, and everything is written
                batch = [self._pending.popleft() for _ in range(min(BATCH, len(self._pending)))]
            self._write(batch)
            with self._changed:
                self._settled += len(batch)
                self._changed.notify_all()

    def _urgent(self) -> bool:
        return len(self._pending) >= BATCH or self._closing or self._flushing > 0

    def write(self, entries: Sequence[LoggedDecision]) -> None:
        """Write ``entries`` in the caller's thread; a store failure is reported, not raised."""
        try:
            self.store.log_decisions(entries, ttl=self.ttl())
        except StoreError as exc:
            self._report(exc, len(entries))

    def _write(self, batch: list[LoggedDecision]) -> None:
        try:
            self.write(batch)
        except Exception:  # a bug must not kill the thread that every later entry waits on
            log.exception("writing %d decision-log entries failed", len(batch))

    def _report(self, exc: StoreError, count: int | None = None) -> None:
        if count is not None:
            log.warning("decision log not written for %d decisions: %s", count, exc)
        else:
            log.warning("%s", exc)
        if self.on_error is not None:
            self.on_error(exc)


_OPEN: weakref.WeakSet[DecisionLogWriter] = weakref.WeakSet()
_EXIT_HOOK: list[bool] = []


def _close_at_exit(writer: DecisionLogWriter) -> None:
    if not _EXIT_HOOK:
        atexit.register(_close_all)
        _EXIT_HOOK.append(True)
    _OPEN.add(writer)


def _close_all() -> None:
    """Write what is queued before the interpreter exits (a graceful worker restart)."""
    for writer in list(_OPEN):
        writer.close(timeout=2.0)
