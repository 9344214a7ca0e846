"""Read a history of message requests and engagement events (CSV or JSON Lines) to replay.

Columns: ``timestamp,user_id,type`` (``request`` or an event type) and, for requests,
``campaign,category,kind,priority,timezone,deferrable,items``. In CSV, ``items`` is
``item_id=relevance[@category]`` separated by ``;``; in JSON Lines it may also be a list of
objects with ``item_id``, ``relevance`` and optional ``category``. Unknown columns are ignored.
Every bad field of every row is reported at once (accepted values: ``docs/fatigue.md``).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO, TypeVar

from fatigue.domain import (
    Campaign,
    Candidate,
    ContentKind,
    EngagementEvent,
    EventType,
    MessageRequest,
    Recipient,
)
from fatigue.errors import Problem, ValidationError, decode_utf8
from fatigue.windows import zone

REQUIRED = ("timestamp", "user_id", "type")
_COLUMNS = (
    *REQUIRED,
    *("campaign", "category", "kind", "priority", "timezone", "deferrable", "items", "shown"),
)

_T = TypeVar("_T")


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
        extra = record.get(None)  # type: ignore[call-overload]  # csv's key for surplus fields
        if extra:  # a stray comma shifts every column after it: nothing in the row is reliable
            message = f"{len(record) - 1 + len(extra)} fields; the header has {len(record) - 1}"
            problems.append(Problem(message, str(path), line))
            continue
        try:
            rows.append(_row(record))
        except _RowErrors as exc:
            problems += [Problem(message, str(path), line, column) for column, message in exc.found]
    if problems:
        raise ValidationError(problems)
    rows.sort(key=lambda row: row.at)
    return rows


class _Bad(Exception):
    """A field's value is wrong: one message per thing wrong with it (an item list has many)."""

    def __init__(self, *messages: str) -> None:
        super().__init__(*messages)
        self.messages = messages


class _RowErrors(Exception):
    """Every bad field of one row, as ``(column, message)`` pairs."""

    def __init__(self, found: list[tuple[str, str]]) -> None:
        super().__init__(found)
        self.found = found


class _Fields:
    """Parses one record field by field, noting every bad field rather than stopping at one.

    A bad field yields the caller's fallback so the rest of the row is still checked; ``done``
    then raises, so no row is ever built from a fallback.
    """

    def __init__(self, record: Mapping[str, Any]) -> None:
        self.record = record
        self.found: list[tuple[str, str]] = []

    def get(self, column: str, parse: Callable[[Any], _T], fallback: _T) -> _T:
        try:
            return parse(self.record.get(column))
        except _Bad as exc:
            self.found += [(column, message) for message in exc.messages]
            return fallback

    def done(self) -> None:
        if self.found:
            # In the documented column order, whatever order the fields were parsed in.
            raise _RowErrors(sorted(self.found, key=lambda found: _COLUMNS.index(found[0])))


def _records(path: Path) -> Iterator[tuple[int, Mapping[str, Any]]]:
    try:
        # utf-8-sig: spreadsheet exports ("CSV UTF-8") start with a byte order mark.
        handle = path.open(encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise ValidationError(Problem(f"cannot read: {exc.strerror}", str(path))) from exc
    with handle:
        try:
            yield from _parsed(handle, path)
        except UnicodeDecodeError as exc:
            # The decoder reads ahead in blocks, so its position says nothing about the line:
            # decode the whole file again to name the first bad byte and its line.
            decode_utf8(path.read_bytes(), str(path))
            # It decodes now: the file changed under us. Still one line, without the line.
            message = f"not UTF-8 text (byte 0x{exc.object[exc.start]:02x})"
            raise ValidationError(Problem(message, str(path))) from None


def _parsed(handle: TextIO, path: Path) -> Iterator[tuple[int, Mapping[str, Any]]]:
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
    try:
        for record in reader:
            yield reader.line_num, record
    except csv.Error as exc:  # e.g. a field past the csv module's size limit
        # line_num counts the lines read before the failing one.
        problem = Problem(f"not valid CSV: {exc}", str(path), reader.line_num + 1)
        raise ValidationError(problem) from None


def _json(text: str, path: Path, number: int) -> Mapping[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValidationError(Problem(f"not valid JSON: {exc.msg}", str(path), number)) from exc
    if not isinstance(value, dict):
        raise ValidationError(Problem("each line must be a JSON object", str(path), number))
    return value


def _row(record: Mapping[str, Any]) -> Row:
    fields = _Fields(record)
    at = fields.get("timestamp", _timestamp, _NO_TIME)
    user = fields.get("user_id", _required("user_id"), "")
    kind = fields.get("type", _type, "")  # unknown: neither a request nor an event to check
    timezone = fields.get("timezone", _timezone, "")
    if kind == REQUEST:
        request, recipient, candidates = _request(fields, user, timezone)
        fields.done()
        return RequestRow(at, recipient, request, candidates)
    fields.done()
    event = EngagementEvent(
        EventType(kind),
        user,
        at,
        decision_id=record.get("decision_id") or None,
        campaign=record.get("campaign") or None,
        category=record.get("category") or None,
        timezone=timezone or None,
    )
    return EventRow(at, event)


REQUEST = "request"
#: Stands in for a bad timestamp while the rest of the row is checked; never in a row.
_NO_TIME = datetime.min.replace(tzinfo=UTC)


def _request(
    fields: _Fields, user: str, timezone: str
) -> tuple[MessageRequest, Recipient, tuple[Candidate, ...]]:
    name = fields.get("campaign", _campaign, "")
    kind = fields.get("kind", _kind, ContentKind.PROMOTIONAL)
    priority = fields.get("priority", _priority, 1.0)
    deferrable = fields.get("deferrable", _flag, False)
    category = str(fields.record.get("category") or "")
    none: tuple[Candidate, ...] = ()
    candidates = fields.get("items", lambda value: _items(value, category), none)
    shown = fields.get("shown", _shown, None)
    campaign = Campaign(name, category, kind, priority, max_items=shown)
    request = MessageRequest((campaign,), deferrable=deferrable)
    return request, Recipient(user, timezone=timezone), candidates


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _required(column: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        if _blank(value):
            raise _Bad(f"missing {column}")
        return str(value)

    return parse


def _type(value: Any) -> str:
    text = _required("type")(value)
    if text != REQUEST and text not in _EVENT_TYPES:
        allowed = ", ".join([REQUEST, *_EVENT_TYPES])
        raise _Bad(f"unknown type {text!r} (allowed: {allowed})")
    return text


_EVENT_TYPES = [event.value for event in EventType]


def _campaign(value: Any) -> str:
    if _blank(value):
        raise _Bad("a request needs a campaign")
    return str(value)


def _kind(value: Any) -> ContentKind:
    if _blank(value):
        return ContentKind.PROMOTIONAL
    try:
        return ContentKind(value)
    except ValueError:
        allowed = ", ".join(kind.value for kind in ContentKind)
        raise _Bad(f"unknown kind {value!r} (allowed: {allowed})") from None


def _priority(value: Any) -> float:
    if _blank(value):
        return 1.0
    number = _finite(value)
    if number is None:
        raise _Bad(f"priority {value!r} is not a finite number")
    return number


def _shown(value: Any) -> int | None:
    """How many items the email shows (a compose request's ``items``); blank: as rules allow."""
    if _blank(value):
        return None
    text = str(value).strip()
    whole = text.isascii() and text.isdigit()  # "²" is a digit to str.isdigit
    if isinstance(value, bool) or not whole or not 1 <= int(text) <= 1_000:
        raise _Bad(f"shown {value!r} is not a whole number from 1 to 1000")
    return int(text)


def _finite(value: Any) -> float | None:
    """Return ``value`` as a finite float, or None; JSON's true/false are not numbers."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no", ""})


def _flag(value: Any) -> bool:
    # Refused rather than read as false: "maybe" or "ture" must not silently turn deferral off.
    if isinstance(value, bool):
        return value
    text = "" if value is None else str(value).strip().lower()
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise _Bad(f"{value!r} is not a yes/no value (allowed: true, false, 1, 0, yes, no, blank)")


def _timezone(value: Any) -> str:
    if _blank(value):
        return ""  # the rules' default zone applies
    name = str(value)
    try:
        zone(name)
    except ValidationError as exc:
        raise _Bad(*(problem.message for problem in exc.problems)) from None
    return name


def _items(value: Any, category: str) -> tuple[Candidate, ...]:
    if _blank(value):
        return ()
    if isinstance(value, list):
        parts = [_json_item(item, category) for item in value]
    else:
        parts = [_text_item(part, category) for part in str(value).split(";")]
    bad = [part for part in parts if isinstance(part, str)]
    if bad:
        raise _Bad(*bad)
    return tuple(part for part in parts if isinstance(part, Candidate))


def _json_item(item: Any, category: str) -> Candidate | str:
    """Return the candidate, or what is wrong with it."""
    if not isinstance(item, dict) or _blank(item.get("item_id")) or "relevance" not in item:
        return f"each item needs item_id and relevance, got {item!r}"
    name = str(item["item_id"])
    relevance = _relevance(name, item["relevance"])
    if isinstance(relevance, str):
        return relevance
    return Candidate(name, relevance, category=str(item.get("category") or category))


def _text_item(part: str, category: str) -> Candidate | str:
    """Return the candidate ``item_id=relevance[@category]``, or what is wrong with it."""
    name, equals, rest = part.strip().partition("=")
    score, _, item_category = rest.partition("@")
    if not name or not equals or _blank(score):
        return f"{part!r} is not item_id=relevance[@category]"
    relevance = _relevance(name, score)
    if isinstance(relevance, str):
        return relevance
    return Candidate(name, relevance, category=item_category or category)


def _relevance(name: str, value: Any) -> float | str:
    """Return the relevance, or what is wrong with it: like the rules' min_relevance, 0..1."""
    number = _finite(value)
    if number is None or not 0 <= number <= 1:
        return f"relevance of {name!r} must be a number within [0, 1], got {value!r}"
    return number


def _timestamp(value: Any) -> datetime:
    if _blank(value):
        raise _Bad("missing timestamp")
    text = str(value).strip()
    if text.replace(".", "", 1).isdigit():
        try:
            return datetime.fromtimestamp(float(text), UTC)
        except (ValueError, OverflowError, OSError):  # what each platform raises past its range
            raise _Bad(f"Unix seconds {text} are out of range") from None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise _Bad(f"{text!r} is not ISO-8601 or Unix seconds") from None
    if moment.tzinfo is None:
        raise _Bad(f"{text!r} has no time zone (add Z or an offset)")
    return moment.astimezone(UTC)
