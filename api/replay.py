"""Re-apply the event log to a state store that lost its data.

The event log (``EVENT_LOG_DIR/events-YYYY-MM-DD.jsonl``) holds every acknowledged event; the
state store holds what they did. A Redis restarted without persistence (or flushed, or
replaced) forgets every unsubscribe, complaint and hard bounce, and the customers behind them
would be mailed again. Replaying the log puts them back. The store applies each event id once,
so replaying twice, or replaying events it still has, counts nothing twice.

By default only the events that suppress or lift a suppression are replayed: their effect is a
set of scopes, the same however often and in whatever state they are applied. Engagement
(opens, clicks, bounces, deliveries) is replayed only when asked, for a store that lost
everything: re-applied to a store that still has it, events older than the store's memory of
event ids (7 days) would count again.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from api.events import GOVERNED
from api.pending import SUPPRESSING, engagement_of
from fatigue.domain import EngagementEvent
from fatigue.errors import Problem


@dataclass
class ReplayCount:
    """What a replay read and did."""

    files: int = 0
    applied: int = 0
    skipped_kind: int = 0  # engagement, without --all
    not_governed: int = 0  # commerce events (view, add_to_cart): training reads them


def segments(directory: Path, since: date | None) -> list[Path]:
    """Return the event log's daily files, oldest first, from ``since`` on (by file date)."""
    found = sorted(directory.glob("events-*.jsonl"))
    if since is None:
        return found
    return [path for path in found if path.stem.removeprefix("events-") >= since.isoformat()]


def replay(
    files: list[Path],
    apply: Callable[[EngagementEvent], None],
    everything: bool,
    on_problem: Callable[[Problem], None],
) -> ReplayCount:
    """Apply each event of ``files`` in order (only suppressions unless ``everything``)."""
    count = ReplayCount(files=len(files))
    for event in _events(files, on_problem, count):
        if not everything and event.type not in SUPPRESSING:
            count.skipped_kind += 1
            continue
        apply(event)
        count.applied += 1
    return count


def _events(
    files: list[Path], on_problem: Callable[[Problem], None], count: ReplayCount
) -> Iterator[EngagementEvent]:
    for path in files:
        with path.open(encoding="utf-8", errors="replace") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                    if record.get("event") not in GOVERNED:
                        count.not_governed += 1  # the log holds every kind the API takes
                        continue
                    yield engagement_of(record)
                except (ValueError, KeyError, TypeError, AttributeError) as exc:
                    # Lines are written whole and fsynced: only a hand edit or a torn disk.
                    on_problem(Problem(f"not an event record ({exc})", str(path), number))
