"""Read a history of message requests and engagement events (CSV or JSON Lines) to replay.

Columns: ``timestamp,user_id,type`` (``request`` or an event type) and, for requests,
``campaign,category,kind,priority,timezone,deferrable,items``. In CSV, ``items`` is
``item_id=relevance[@category]`` separated by ``;``; in JSON Lines it may also be a list of
objects with ``item_id``, ``relevance`` and optional ``category``. Unknown columns are ignored.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fatigue.domain import (
    Campaign,
    Candidate,
    ContentKind,
    EngagementEvent,
    EventType,
    MessageRequest,
    Recipient,
)
from fatigue.errors import Problem, ValidationError

REQUIRED = ("timestamp", "user_id", "type")


@dataclass(frozen=True)
class RequestRow:
    """A message request as it happened."""

    at: datetime
    recipient: Recipient
    request: MessageRequest
    candidates: tuple[Candidate, ...]


@dataclass(frozen=True)
class EventRow:
    """An engagement event as it happened."""

    at: datetime
    event: EngagementEvent


Row = RequestRow | EventRow


def read_history(path: str | Path) -> list[Row]:
    """Read every row, sorted by time; raise ValidationError listing each bad row and column."""
    path = Path(path)
    rows: list[Row] = []
    problems: list[Problem] = []
    for line, record in _records(path):
        try:
            rows.append(_row(record))
        except _RowError as exc:
            problems.append(Problem(exc.message, str(path), line, exc.column))
    if problems:
        raise ValidationError(problems)
    rows.sort(key=lambda row: row.at)
    return rows


class _RowError(Exception):
    def __init__(self, message: str, column: str) -> None:
        super().__init__(message)
        self.message, self.column = message, column


def _records(path: Path) -> Iterator[tuple[int, Mapping[str, Any]]]:
    try:
        handle = path.open(encoding="utf-8", newline="")
    except OSError as exc:
        raise ValidationError(Problem(f"cannot read: {exc.strerror}", str(path))) from exc
    with handle:
        if path.suffix in (".jsonl", ".ndjson", ".json"):
            for number, text in enumerate(handle, start=1):
                if text.strip():
                    yield number, _json(text, path, number)
            return
        reader = csv.DictReader(handle)
        missing = [name for name in REQUIRED if name not in (reader.fieldnames or ())]
        if missing:
            message = f"missing required column(s): {', '.join(missing)}"
            raise ValidationError(Problem(message, str(path), 1))
        for record in reader:
            yield reader.line_num, record


def _json(text: str, path: Path, number: int) -> Mapping[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValidationError(Problem(f"not valid JSON: {exc.msg}", str(path), number)) from exc
    if not isinstance(value, dict):
        raise ValidationError(Problem("each line must be a JSON object", str(path), number))
    return value


def _row(record: Mapping[str, Any]) -> Row:
    for name in REQUIRED:
        if record.get(name) in (None, ""):
            raise _RowError(f"missing {name}", name)
    at = _timestamp(record["timestamp"])
    user = str(record["user_id"])
    kind = str(record["type"])
    if kind == "request":
        return _request(record, at, user)
    try:
        event_type = EventType(kind)
    except ValueError:
        allowed = ", ".join(["request", *(e.value for e in EventType)])
        raise _RowError(f"unknown type {kind!r} (allowed: {allowed})", "type") from None
    event = EngagementEvent(
        event_type,
        user,
        at,
        decision_id=record.get("decision_id") or None,
        campaign=record.get("campaign") or None,
        category=record.get("category") or None,
        timezone=record.get("timezone") or None,
    )
    return EventRow(at, event)


def _request(record: Mapping[str, Any], at: datetime, user: str) -> RequestRow:
    if not record.get("campaign"):
        raise _RowError("a request needs a campaign", "campaign")
    try:
        kind = ContentKind(record.get("kind") or ContentKind.PROMOTIONAL)
    except ValueError:
        raise _RowError(f"unknown kind {record.get('kind')!r}", "kind") from None
    try:
        priority = float(record.get("priority") or 1.0)
    except ValueError:
        raise _RowError(
            f"priority {record.get('priority')!r} is not a number", "priority"
        ) from None
    category = str(record.get("category") or "")
    campaign = Campaign(str(record["campaign"]), category, kind, priority)
    deferrable = str(record.get("deferrable", "")).lower() in ("1", "true", "yes")
    request = MessageRequest((campaign,), deferrable=deferrable)
    recipient = Recipient(user, timezone=str(record.get("timezone") or ""))
    return RequestRow(at, recipient, request, _items(record.get("items"), category))


def _items(value: Any, category: str) -> tuple[Candidate, ...]:
    if value in (None, ""):
        return ()
    if isinstance(value, list):
        try:
            return tuple(
                Candidate(
                    str(i["item_id"]), float(i["relevance"]), category=i.get("category", category)
                )
                for i in value
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise _RowError(f"each item needs item_id and relevance ({exc})", "items") from None
    found = []
    for part in str(value).split(";"):
        name, _, rest = part.strip().partition("=")
        score, _, item_category = rest.partition("@")
        try:
            found.append(Candidate(name, float(score), category=item_category or category))
        except ValueError:
            raise _RowError(f"{part!r} is not item_id=relevance[@category]", "items") from None
    return tuple(found)


def _timestamp(value: Any) -> datetime:
    text = str(value).strip()
    try:
        if text.replace(".", "", 1).isdigit():
            return datetime.fromtimestamp(float(text), UTC)
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise _RowError(f"{text!r} is not ISO-8601 or Unix seconds", "timestamp") from None
    if moment.tzinfo is None:
        raise _RowError(f"{text!r} has no time zone (add Z or an offset)", "timestamp")
    return moment.astimezone(UTC)
