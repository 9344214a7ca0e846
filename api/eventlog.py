"""The durable, append-only event logs: every event, and the interactions training reads.

One JSON Lines file per UTC day and log under the configured directory: ``events-*`` holds
every event with its email context, ``interactions-*`` the ones with an item in exactly the
canonical interactions shape, so ``rapport train --interactions`` reads it as it is. A batch is
written
under an exclusive lock (several server processes share the file), then ``fsync``-ed: the API
acknowledges events only after this returns. A failed write is rolled back to the previous
length, so the file never ends in a torn line.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from engine.artifact import fsync_directory
from fatigue.clock import Clock, utc_now
from fatigue.errors import StoreError
from fatigue.writable import nearest_existing, unwritable


class EventLogError(StoreError):
    """The event log cannot be written: the request fails (503) and nothing is acknowledged."""


# /readyz reports a failed append for this long: a load balancer then sends events elsewhere,
# and afterwards traffic finds out whether the fault is gone.
FAILURE_MEMORY = timedelta(seconds=30)
# Below this much free space a batch would fail (or leave nothing for the next), so the host is
# not ready: permissions alone said "ok" while every append failed on a full disk.
MIN_FREE_BYTES = 1 << 20


class EventLog:
    """Appends batches of event records to daily JSON Lines segments, durably."""

    def __init__(self, directory: Path, clock: Clock = utc_now, prefix: str = "events") -> None:
        self.directory = directory
        self.prefix = prefix
        self._clock = clock
        self._synced: set[Path] = set()  # segments whose directory entry this process synced
        self._failed: tuple[datetime, str] | None = None  # the last failed append: when, why

    def check(self) -> None:
        """Raise ``EventLogError`` unless new segments can be written (for /readyz)."""
        reason = unwritable(self.directory) or self._low_space() or self._recent_failure()
        if reason:
            raise EventLogError(f"event log directory {self.directory}: {reason}")

    def _low_space(self) -> str:
        try:
            stats = os.statvfs(nearest_existing(self.directory))
        except OSError:  # a file system that cannot say: the append will tell
            return ""
        free = stats.f_bavail * stats.f_frsize
        return f"only {free:,} bytes free" if free < MIN_FREE_BYTES else ""

    def _recent_failure(self) -> str:
        if self._failed is None or self._clock() - self._failed[0] > FAILURE_MEMORY:
            return ""
        return f"the last write failed ({self._failed[1]})"

    def segment(self) -> Path:
        """Return the file the next batch goes to (today's, in UTC)."""
        return self.directory / f"{self.prefix}-{self._clock():%Y-%m-%d}.jsonl"

    def append(self, records: Sequence[Mapping[str, Any]]) -> Path:
        """Write ``records`` as one locked, fsynced append; raise ``EventLogError`` if it fails."""
        if not records:
            return self.segment()
        payload = "".join(
            json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n"
            for record in records
        ).encode("utf-8")
        path = self.segment()
        try:
            self._append_bytes(path, payload)
        except OSError as exc:
            self._failed = (self._clock(), str(exc.strerror or exc))
            raise EventLogError(f"event log {path}: {exc.strerror or exc}") from exc
        self._failed = None
        return path

    def _append_bytes(self, path: Path, payload: bytes) -> None:
        """Append under ``flock``; on failure truncate back so no partial line remains."""
        if not self.directory.is_dir():
            self.directory.mkdir(parents=True, exist_ok=True)
            fsync_directory(self.directory.parent)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            start = os.fstat(fd).st_size
            try:
                view = memoryview(payload)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                os.fsync(fd)
            except OSError:
                os.ftruncate(fd, start)
                raise
        finally:
            os.close(fd)
        if path not in self._synced:
            # The segment's directory entry must be durable before anything in it is
            # acknowledged. Whichever process created the file, each syncs it once itself:
            # another worker may not have synced it yet.
            fsync_directory(self.directory)
            self._synced.add(path)

    def read(self) -> Iterator[dict[str, Any]]:
        """Yield every record in every segment, oldest first (for tests and tooling)."""
        for path in sorted(self.directory.glob(f"{self.prefix}-*.jsonl")):
            with path.open(encoding="utf-8") as handle:
                for line in handle:
                    if line.strip():
                        yield json.loads(line)
