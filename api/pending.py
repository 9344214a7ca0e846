"""Events the store could not take when they came, applied as soon as it answers again.

A one-click unsubscribe has no client that retries: a mailbox provider posts it once. A
platform's events answered ``503`` will come again, but an unsubscribe among them must hold
before then. When the state store fails, such events are kept in
``EVENT_LOG_DIR/pending.jsonl`` (appended under a lock and fsynced, like the event log): the
customer who clicked gets the usual 200, the platform its 503. Every process applies
the pending events before it composes or explains (one ``stat`` when there are none), so no
decision is made on state that misses them; while the store is down nothing is decided on it
anyway (the store-error policy never sends marketing mail). Applying twice is harmless: the
store applies each event id once.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from api.eventlog import EventLog
from fatigue.clock import Clock, utc_now
from fatigue.domain import EngagementEvent, EventType
from fatigue.errors import StoreError, ValidationError

log = logging.getLogger(__name__)
PENDING_FILE = "pending.jsonl"
SAY_EVERY = 60.0  # seconds between log lines while the store still fails, per process
#: The events that stop or restart mail: what must hold before the next decision. StrEnum
#: members: the records' plain event names are found in it too.
SUPPRESSING = frozenset(
    {EventType.UNSUBSCRIBE, EventType.RESUBSCRIBE, EventType.COMPLAINT, EventType.BOUNCE_HARD}
)


class PendingEvents(EventLog):
    """The file of events waiting for the store, shared by every process on the host."""

    def __init__(self, directory: Path, clock: Clock = utc_now) -> None:
        super().__init__(directory, clock, prefix="pending")
        self.path = directory / PENDING_FILE
        self._say_at = 0.0

    def segment(self) -> Path:
        """One file, not one a day: it is emptied whenever its events are applied."""
        return self.path

    def settle(self, apply: Callable[[EngagementEvent], None]) -> int:
        """Apply every pending event and empty the file; return how many were applied.

        On a store failure every event stays (those applied already will not count twice), and
        the next decision tries again first: none is made on state that misses them. A store
        that does not answer refuses at once (``FailFast``), so trying costs nothing then. An
        event the governor objects to (it always will) is left out, with a log line.
        """
        try:
            if not os.stat(self.path).st_size:
                return 0
            fd = os.open(self.path, os.O_RDWR)
        except OSError:  # no file (the usual case), or a directory nothing could be written to
            return 0
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # another process may be settling the same events
            records = _events(_read_all(fd), self.path)
            seen: set[str] = set()  # a batch the platform sent again is kept again
            try:
                for record in records:
                    if record.event_id is not None:
                        if record.event_id in seen:
                            continue
                        seen.add(record.event_id)
                    _apply_one(apply, record)
            except StoreError as exc:
                if time.monotonic() >= self._say_at:
                    self._say_at = time.monotonic() + SAY_EVERY
                    log.warning("%d pending event(s) wait for the store: %s", len(records), exc)
                return 0
            os.ftruncate(fd, 0)
            os.fsync(fd)
        finally:
            os.close(fd)
        if records:
            log.info("applied %d pending event(s) from %s", len(records), self.path)
        return len(records)


def _apply_one(apply: Callable[[EngagementEvent], None], event: EngagementEvent) -> None:
    try:
        apply(event)
    except ValidationError as exc:  # e.g. a time zone this host's tzdata does not know
        log.warning("pending event %s left out: %s", event.event_id, exc)


def engagement_of(record: Mapping[str, Any]) -> EngagementEvent:
    """Return the governor's event for a record shaped by ``api.events.log_record``."""
    return EngagementEvent(
        type=EventType(record["event"]),
        user_id=record["user_id"],
        timestamp=datetime.fromisoformat(record["timestamp"]),
        decision_id=record.get("decision_id"),
        campaign=record.get("campaign_id"),
        category=record.get("category"),
        timezone=record.get("timezone"),
        event_id=record.get("event_id"),
    )


def _read_all(fd: int) -> bytes:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


def _events(data: bytes, path: Path) -> list[EngagementEvent]:
    events = []
    for number, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            events.append(engagement_of(json.loads(line)))
        except (ValueError, KeyError, TypeError):  # lines are written whole: only a hand edit
            log.error("%s:%d is not a pending event; skipped: %r", path, number, line[:200])
    return events
