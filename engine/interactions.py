"""Loading interactions in the canonical format: ``user_id,item_id,timestamp,event,value``.

CSV, CSV.gz and JSON Lines are accepted; a column mapping renames a file's own headers. JSON
values are taken at their type, never coerced: ids must be strings or integers, a value a number
(``true`` is not 1, an object is not the id ``"{'x': 1}"``). Every problem is collected with
its file, line and column, and nothing is returned unless the whole file parsed: a half-loaded
data set would silently train a worse model.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from fatigue.errors import Problem, ValidationError

REQUIRED_COLUMNS = ("user_id", "item_id", "timestamp", "event")
OPTIONAL_COLUMNS = ("value",)
# A purchase is the unit; ALS's alpha then keeps its usual meaning for purchase data.
DEFAULT_EVENT_WEIGHTS: Mapping[str, float] = {
    "view": 0.1,
    "click": 0.2,
    "email_click": 0.3,
    "add_to_cart": 0.5,
    "purchase": 1.0,
}
MAX_PROBLEMS = 50  # enough to see a pattern; a million copies of one mistake help nobody


@dataclass(frozen=True)
class Interactions:
    """Column arrays of interactions, one entry per event, in file order."""

    user_ids: np.ndarray
    item_ids: np.ndarray
    timestamps: np.ndarray  # int64 Unix seconds, UTC
    events: np.ndarray
    values: np.ndarray  # float64, strictly positive

    def __len__(self) -> int:
        return int(self.user_ids.shape[0])

    def select(self, mask: np.ndarray) -> Interactions:
        """Return the interactions where ``mask`` is true."""
        return Interactions(
            self.user_ids[mask],
            self.item_ids[mask],
            self.timestamps[mask],
            self.events[mask],
            self.values[mask],
        )

    def window(self) -> tuple[datetime, datetime]:
        """Return the first and last timestamp as aware UTC datetimes."""
        if not len(self):
            raise ValidationError("no interactions")
        first, last = int(self.timestamps.min()), int(self.timestamps.max())
        return datetime.fromtimestamp(first, UTC), datetime.fromtimestamp(last, UTC)

    @classmethod
    def concatenate(cls, parts: Sequence[Interactions]) -> Interactions:
        """Join several interaction sets end to end."""
        return cls(*(np.concatenate([getattr(p, name) for p in parts]) for name in _FIELDS))

    @classmethod
    def from_records(cls, records: Iterable[tuple[str, str, int, str, float]]) -> Interactions:
        """Build from ``(user_id, item_id, unix_seconds, event, value)`` tuples."""
        rows = list(records)
        users, items, stamps, events, values = zip(*rows, strict=True) if rows else ([],) * 5
        return cls(
            np.array(users, dtype=object),
            np.array(items, dtype=object),
            np.array(stamps, dtype=np.int64),
            np.array(events, dtype=object),
            np.array(values, dtype=np.float64),
        )


_FIELDS = ("user_ids", "item_ids", "timestamps", "events", "values")


def parse_columns(spec: str | None) -> dict[str, str]:
    """Parse ``user_id=CustomerID,item_id=StockCode`` into a canonical-to-file column map."""
    if not spec:
        return {}
    mapping: dict[str, str] = {}
    for part in spec.split(","):
        canonical, sep, source = part.partition("=")
        canonical, source = canonical.strip(), source.strip()
        if not sep or not source or canonical not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS:
            raise ValidationError(
                Problem(
                    f"bad column mapping {part!r}: expected canonical=header with canonical "
                    f"one of {', '.join(REQUIRED_COLUMNS + OPTIONAL_COLUMNS)}",
                    field="columns",
                )
            )
        mapping[canonical] = source
    return mapping


FUTURE_SLACK = 86400  # seconds a timestamp may lie ahead of this machine's clock
#: Optional: rows repeating an id already read are skipped (the same event reported twice).
EVENT_ID_COLUMN = "event_id"


#: Unix seconds outside this range are refused: a digit string from 1970 or past 2100 is far
#: likelier a date written without dashes, or milliseconds, than a real moment.
EPOCH_RANGE = (946_684_800, 4_102_444_800)  # 2000-01-01 and 2100-01-01, UTC
TIMESTAMP_FORMS = "ISO-8601, YYYYMMDD or Unix seconds"


def parse_timestamp(text: str) -> int:
    """Parse ISO-8601, a compact ``YYYYMMDD`` date or Unix seconds into Unix seconds.

    ISO-8601 with ``Z`` or an offset (no offset means UTC). Eight digits are a date at UTC
    midnight, never seconds (those would fall in 1970); Unix seconds must fall in 2000-2100.
    A ``ValueError`` says what was expected.
    """
    text = text.strip()
    if not text:
        raise ValueError("empty timestamp")
    if len(text) == 8 and text.isdigit():
        try:
            moment = datetime.strptime(text, "%Y%m%d").replace(tzinfo=UTC)
        except ValueError:
            raise ValueError("not a YYYYMMDD date (eight digits are read as one)") from None
        return int(moment.timestamp())
    if text.replace(".", "", 1).isdigit():
        return _epoch_seconds(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"expected {TIMESTAMP_FORMS}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def _epoch_seconds(text: str) -> int:
    seconds = float(text)  # compared before int(): a 400-digit string is inf, not an error
    low, high = EPOCH_RANGE
    if not low <= seconds < high:
        raise ValueError(
            f"Unix seconds must fall in 2000-2100 ({low} to {high - 1}; milliseconds are "
            f"refused): expected {TIMESTAMP_FORMS}"
        )
    return int(seconds)


def load_interactions(
    paths: str | Path | Sequence[str | Path],
    columns: Mapping[str, str] | None = None,
    event_weights: Mapping[str, float] = DEFAULT_EVENT_WEIGHTS,
    default_event: str | None = None,
) -> Interactions:
    """Load one or more interaction files; raise ``ValidationError`` listing every problem.

    ``default_event`` supplies the event type for files without an event column (for example a
    plain order export where every row is a purchase).
    """
    if isinstance(paths, str | Path):
        paths = [paths]
    seen: set[str] = set()  # event ids across files: a retry after midnight lands in the next
    parts = [
        _load_one(Path(p), dict(columns or {}), event_weights, default_event, seen) for p in paths
    ]
    return Interactions.concatenate(parts)


def _load_one(
    path: Path,
    columns: dict[str, str],
    weights: Mapping[str, float],
    default_event: str | None,
    seen: set[str],
) -> Interactions:
    if not path.is_file():
        raise ValidationError(Problem("no such file", str(path)))
    if default_event is not None and default_event not in weights:
        raise ValidationError(Problem(f"unknown event type {default_event!r}", field="event"))
    parser = _RowParser(str(path), columns, weights, default_event, is_json_lines(path))
    records, read = [], 0
    for line, row in _read_rows(path, parser):
        read += 1
        if not _repeated(line, row, seen, parser):
            records.append(parser.parse(line, row))
    if parser.problems:
        raise ValidationError(parser.problems)
    if not read:  # a file of repeats alone (a batch retried after midnight) is fine
        raise ValidationError(Problem("no interactions in file", str(path)))
    return Interactions.from_records(r for r in records if r is not None)


def _repeated(line: int, row: Mapping[str, Any], seen: set[str], parser: _RowParser) -> bool:
    """Whether the row's ``event_id`` was read before: the API logs a retried event again."""
    event_id = row.get(EVENT_ID_COLUMN)
    if not event_id:
        return False
    if not isinstance(event_id, str):  # a damaged log line: say where, not a TypeError
        parser.problem(line, EVENT_ID_COLUMN, f"expected a string, got {type(event_id).__name__}")
        return True
    if event_id in seen:
        return True
    seen.add(event_id)
    return False


def _read_rows(path: Path, parser: _RowParser) -> Iterator[tuple[int, Mapping[str, Any]]]:
    return read_rows(path, lambda line, message: parser.problem(line, None, message),
                     parser.check_header)  # fmt: skip


#: The longest user or item id accepted (the API's identifiers are limited alike).
MAX_ID_LENGTH = 200
#: The largest quantity a row may carry; anything near float32's range overflows in training.
MAX_VALUE = 1_000_000.0

#: What a file that cannot be decoded at all raises while it is read (EOFError: a cut gzip).
UNREADABLE = (UnicodeDecodeError, gzip.BadGzipFile, EOFError, csv.Error)


def read_rows(
    path: Path,
    problem: Callable[[int, str], None],
    header: Callable[[Sequence[str], int], None] | None = None,
) -> Iterator[tuple[int, Mapping[str, Any]]]:
    """Yield ``(line, row)`` from a CSV or JSON Lines file (gzipped or not), as its name says.

    A JSON line that is not an object goes to ``problem`` and is skipped; ``header`` sees the
    CSV header (or the first JSON object's keys) before any row; a file that cannot be decoded
    at all is a ``ValidationError`` naming it.
    """
    try:
        with open_text(path) as handle:
            if is_json_lines(path):
                yield from _json_rows(handle, problem, header)
                return
            reader = csv.DictReader(handle)
            if header is not None:
                header(reader.fieldnames or [], 1)
            for row in reader:
                extra = row.pop(None, None)
                if extra:  # a stray comma or an unquoted one shifts every column after it
                    count = len(reader.fieldnames or [])
                    problem(reader.line_num, f"{count + len(extra)} fields; the header has {count}")
                    continue
                yield reader.line_num, row
    except UNREADABLE as exc:
        raise ValidationError(Problem(f"unreadable file: {exc}", str(path))) from exc


def open_text(path: Path) -> io.TextIOBase:
    """Open a UTF-8 text file, transparently gunzipping ``.gz`` files."""
    # utf-8-sig: spreadsheet exports ("CSV UTF-8") start with a byte order mark.
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")


def is_json_lines(path: Path) -> bool:
    """Return whether the file name says JSON Lines (``.jsonl``, ``.ndjson``, ``.json``)."""
    suffixes = [s.lower() for s in path.suffixes if s.lower() != ".gz"]
    return bool(suffixes) and suffixes[-1] in (".jsonl", ".ndjson", ".json")


def _json_rows(
    handle: Iterable[str],
    problem: Callable[[int, str], None],
    header: Callable[[Sequence[str], int], None] | None,
) -> Iterator[tuple[int, Mapping[str, Any]]]:
    for line, text in enumerate(handle, start=1):
        if not text.strip():
            continue
        try:
            row = json.loads(text)
        except json.JSONDecodeError as exc:
            problem(line, f"invalid JSON: {exc.msg}")
            continue
        if not isinstance(row, dict):
            problem(line, "expected a JSON object")
            continue
        if header is not None:
            header(list(row), line)
            header = None
        yield line, row


class _RowParser:
    """Turns raw rows into records, collecting problems instead of stopping at the first."""

    def __init__(
        self,
        source: str,
        columns: dict[str, str],
        weights: Mapping[str, float],
        default_event: str | None,
        typed: bool = False,
    ) -> None:
        self.source = source
        # JSON Lines carry types: a value must be a number there, not text that reads as one.
        self.typed = typed
        self.weights = weights
        self.default_event = default_event
        self.columns = {
            name: columns.get(name, name) for name in REQUIRED_COLUMNS + OPTIONAL_COLUMNS
        }
        self.problems: list[Problem] = []
        self._stamps: dict[str, int] = {}
        self._latest = int(time.time()) + FUTURE_SLACK

    def problem(self, line: int, field: str | None, message: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(Problem(message, self.source, line, field))

    def check_header(self, header: Sequence[str], line: int = 1) -> None:
        present = set(header)
        twice = sorted({name for name in header if list(header).count(name) > 1})
        if twice:  # the reader would keep the last column of a name and drop the others
            raise ValidationError(
                Problem(f"column(s) named twice: {', '.join(twice)}", self.source, line)
            )
        needed = [c for c in REQUIRED_COLUMNS if not (c == "event" and self.default_event)]
        missing = [self.columns[c] for c in needed if self.columns[c] not in present]
        if missing:
            found = ", ".join(header) or "nothing"
            raise ValidationError(
                Problem(
                    f"missing required column(s) {', '.join(missing)} (found: {found})",
                    self.source,
                    line,
                )
            )

    def parse(self, line: int, row: Mapping[str, Any]) -> tuple[str, str, int, str, float] | None:
        user = self._text(line, row, "user_id")
        item = self._text(line, row, "item_id")
        stamp = self._timestamp(line, row)
        event = self._event(line, row)
        value = self._value(line, row)
        if user is None or item is None or stamp is None or event is None or value is None:
            return None
        return user, item, stamp, event, value

    def _raw(self, row: Mapping[str, Any], name: str) -> Any:
        return row.get(self.columns[name])

    def _text(self, line: int, row: Mapping[str, Any], name: str) -> str | None:
        raw = self._raw(row, name)
        if raw is not None and (isinstance(raw, bool) or not isinstance(raw, str | int)):
            # str() would make an id of "{'x': 1}", "True" or "17850.0": none is anyone's id
            message = f"{name} must be a string or an integer, not {_json_type(raw)}"
            self.problem(line, self.columns[name], message)
            return None
        text = "" if raw is None else str(raw).strip()
        if not text:
            self.problem(line, self.columns[name], f"{name} is empty")
            return None
        if len(text) > MAX_ID_LENGTH:  # ids are stored fixed-width: one long one costs every row
            self.problem(line, self.columns[name], f"{name} is {len(text):,} characters long "
                         f"(at most {MAX_ID_LENGTH})")  # fmt: skip
            return None
        return text

    def _timestamp(self, line: int, row: Mapping[str, Any]) -> int | None:
        raw = self._raw(row, "timestamp")
        if raw is not None and (isinstance(raw, bool) or not isinstance(raw, str | int | float)):
            message = f"timestamp must be a string or a number, not {_json_type(raw)}"
            self.problem(line, self.columns["timestamp"], message)
            return None
        text = "" if raw is None else str(raw)
        cached = self._stamps.get(text)
        if cached is not None:
            return cached
        try:
            stamp = parse_timestamp(text)
        except ValueError as exc:
            self.problem(line, self.columns["timestamp"], f"unparsable timestamp {text!r}: {exc}")
            return None
        except OverflowError:
            message = f"unparsable timestamp {text!r}: expected {TIMESTAMP_FORMS}"
            self.problem(line, self.columns["timestamp"], message)
            return None
        if not 0 <= stamp <= self._latest:
            # Recency is measured from the newest interaction: one from the future would
            # decay every real one to nothing.
            latest = datetime.fromtimestamp(self._latest, UTC).isoformat(timespec="seconds")
            self.problem(
                line,
                self.columns["timestamp"],
                f"timestamp {text!r} is outside 1970-01-01 to {latest} (a day from now)",
            )
            return None
        self._stamps[text] = stamp
        return stamp

    def _event(self, line: int, row: Mapping[str, Any]) -> str | None:
        raw = self._raw(row, "event")
        event = str(raw).strip() if raw not in (None, "") else self.default_event
        if event is None:
            self.problem(line, self.columns["event"], "event is empty")
            return None
        if event not in self.weights:
            allowed = ", ".join(sorted(self.weights))
            self.problem(
                line, self.columns["event"], f"unknown event {event!r} (allowed: {allowed})"
            )
            return None
        return event

    def _value(self, line: int, row: Mapping[str, Any]) -> float | None:
        raw = self._raw(row, "value")
        if raw is None or (not self.typed and isinstance(raw, str) and not raw.strip()):
            return 1.0
        if self.typed and (isinstance(raw, bool) or not isinstance(raw, int | float)):
            # float(True) is 1.0 and float("3") is 3.0: a producer that wrote either is confused
            self.problem(
                line, self.columns["value"], f"value must be a number, not {_json_type(raw)}"
            )
            return None
        try:
            value = float(raw)
        except (TypeError, ValueError):
            self.problem(line, self.columns["value"], f"value {raw!r} is not a number")
            return None
        if not math.isfinite(value) or value <= 0:
            self.problem(line, self.columns["value"], f"value {raw!r} must be a positive number")
            return None
        if value > MAX_VALUE:  # past float32's range once weighted: training would turn to NaN
            self.problem(line, self.columns["value"], f"value {raw!r} is over {MAX_VALUE:,.0f}")
            return None
        return value


def _json_type(raw: Any) -> str:
    """Name a parsed JSON value as JSON would, for a message about the line it is on."""
    kinds = {bool: "the boolean", str: "the string", int: "the integer", float: "the number",
             dict: "an object", list: "an array"}  # fmt: skip
    shown = json.dumps(raw, default=repr)
    shown = shown if len(shown) <= 40 else shown[:37] + "..."
    return f"{kinds.get(type(raw), type(raw).__name__)} {shown}"
