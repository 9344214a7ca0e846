"""The catalog: items and their metadata, in the canonical CSV, CSV.gz or JSON Lines format.

Columns: ``item_id,title,url,image_url,price,currency,category,kind,published_at,expires_at,
in_stock`` plus any extra columns, which are kept for templates. Only ``item_id`` is required.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

from engine.interactions import MAX_PROBLEMS, parse_timestamp, read_rows
from fatigue.domain import ContentKind
from fatigue.errors import Problem, ValidationError

KNOWN_COLUMNS = (
    "item_id",
    "title",
    "url",
    "image_url",
    "price",
    "currency",
    "category",
    "kind",
    "published_at",
    "expires_at",
    "in_stock",
)
_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f"}


@dataclass(frozen=True)
class CatalogItem:
    """One item a message may feature."""

    item_id: str
    title: str = ""
    url: str = ""
    image_url: str = ""
    price: float | None = None
    currency: str = ""
    category: str = ""
    kind: ContentKind = ContentKind.PROMOTIONAL
    published_at: datetime | None = None
    expires_at: datetime | None = None
    in_stock: bool = True
    extra: Mapping[str, str] = field(default_factory=dict)

    def is_available(self, now: datetime) -> bool:
        """Return whether the item can be offered at ``now`` (in stock and not expired)."""
        return self.in_stock and (self.expires_at is None or self.expires_at > now)

    def as_template_dict(self) -> dict[str, Any]:
        """Return the item as the plain dict templates see (extra columns included)."""
        return dict(self._template_dict)  # a copy: callers add to it

    @cached_property
    def _template_dict(self) -> dict[str, Any]:
        # Every rendered email asks for each of its items; the item never changes.
        data: dict[str, Any] = dict(self.extra)
        data.update(
            item_id=self.item_id,
            title=self.title,
            url=self.url,
            image_url=self.image_url,
            price=self.price,
            currency=self.currency,
            category=self.category,
            kind=self.kind.value,
            in_stock=self.in_stock,
            published_at=self.published_at.isoformat() if self.published_at else None,
            expires_at=self.expires_at.isoformat() if self.expires_at else None,
        )
        return data


class Catalog(Mapping[str, CatalogItem]):
    """Items by id, read-only."""

    def __init__(self, items: Mapping[str, CatalogItem] | None = None) -> None:
        self._items: dict[str, CatalogItem] = dict(items or {})

    def __getitem__(self, item_id: str) -> CatalogItem:
        return self._items[item_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def unavailable(self, now: datetime) -> set[str]:
        """Return the ids of items that cannot be offered at ``now``."""
        return {item_id for item_id, item in self._items.items() if not item.is_available(now)}


def load_catalog(path: str | Path, columns: Mapping[str, str] | None = None) -> Catalog:
    """Load a catalog file; raise ``ValidationError`` listing every problem with its line."""
    path = Path(path)
    if not path.is_file():
        raise ValidationError(Problem("no such file", str(path)))
    rename = {source: canonical for canonical, source in (columns or {}).items()}
    problems: list[Problem] = []
    items: dict[str, CatalogItem] = {}
    seen: set[str] = set()
    for line, raw in _rows(path, problems):
        row = {rename.get(key, key): value for key, value in raw.items()}
        item_id = str(row.get("item_id") or "").strip()
        if item_id in seen:
            problems.append(Problem(f"duplicate item_id {item_id!r}", str(path), line, "item_id"))
        seen.add(item_id)
        item = _parse_item(row, str(path), line, problems)
        if item is not None:
            items[item.item_id] = item
        if len(problems) >= MAX_PROBLEMS:
            break
    if problems:
        raise ValidationError(problems)
    return Catalog(items)


def _rows(path: Path, problems: list[Problem]) -> Iterator[tuple[int, Mapping[str, Any]]]:
    return read_rows(path, lambda line, message: problems.append(Problem(message, str(path), line)))


def _parse_item(
    row: Mapping[str, Any], source: str, line: int, problems: list[Problem]
) -> CatalogItem | None:
    def fail(column: str, message: str) -> None:
        problems.append(Problem(message, source, line, column))

    item_id = str(row.get("item_id") or "").strip()
    if not item_id:
        fail("item_id", "item_id is empty or missing")
        return None
    before = len(problems)
    price = _number(row.get("price"), lambda m: fail("price", m))
    kind = _kind(row.get("kind"), lambda m: fail("kind", m))
    published = _moment(row.get("published_at"), lambda m: fail("published_at", m))
    expires = _moment(row.get("expires_at"), lambda m: fail("expires_at", m))
    in_stock = _flag(row.get("in_stock"), lambda m: fail("in_stock", m))
    if len(problems) > before:
        return None
    extra = {k: "" if v is None else str(v) for k, v in row.items() if k not in KNOWN_COLUMNS}
    return CatalogItem(
        item_id=item_id,
        title=_str(row, "title"),
        url=_str(row, "url"),
        image_url=_str(row, "image_url"),
        price=price,
        currency=_str(row, "currency"),
        category=_str(row, "category"),
        kind=kind,
        published_at=published,
        expires_at=expires,
        in_stock=in_stock,
        extra=extra,
    )


def _str(row: Mapping[str, Any], key: str) -> str:
    value = row.get(key)
    return "" if value is None else str(value).strip()


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _number(value: Any, fail: Any) -> float | None:
    if _blank(value):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        fail(f"{value!r} is not a number")
        return None
    if not math.isfinite(number) or number < 0:
        fail(f"{value!r} is not a price (a finite number, 0 or more)")
        return None
    return number


def _kind(value: Any, fail: Any) -> ContentKind:
    if _blank(value):
        return ContentKind.PROMOTIONAL
    try:
        return ContentKind(str(value).strip().lower())
    except ValueError:
        fail(f"kind {value!r} must be one of {', '.join(k.value for k in ContentKind)}")
        return ContentKind.PROMOTIONAL


def _moment(value: Any, fail: Any) -> datetime | None:
    if _blank(value):
        return None
    try:
        return datetime.fromtimestamp(parse_timestamp(str(value)), UTC)
    except (ValueError, OverflowError):
        fail(f"unparsable date {value!r}: expected ISO-8601, YYYYMMDD or Unix seconds")
        return None


def _flag(value: Any, fail: Any) -> bool:
    if _blank(value) or value is True:
        return True
    if value is False:
        return False
    text = str(value).strip().lower()
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    fail(f"in_stock {value!r} must be true or false")
    return True
