"""Dataset converters: public data sets into Rapport's canonical interactions and catalog.

Plain functions, like implicit's ``datasets`` module. The UCI Online Retail file (CC BY 4.0,
Chen, Sain & Guo 2012) has purchases only and no categories; categories are derived from the
product description by keyword, and URLs point at a placeholder shop.
"""

from __future__ import annotations

import csv
import functools
import gzip
import io
import math
import random
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engine.catalog import KNOWN_COLUMNS
from engine.interactions import FUTURE_SLACK, TIMESTAMP_FORMS, parse_timestamp, read_rows
from fatigue.errors import Problem, ValidationError

INTERACTION_COLUMNS = ("user_id", "item_id", "timestamp", "event", "value")
SHOP_URL = "https://shop.example.com"
# Products have five-digit stock codes (plus an optional variant letter); the few other codes
# are fees and adjustments (POST, C2, M, DOT, BANK CHARGES, PADS).
PRODUCT_CODE = re.compile(r"\d{5}")

# First keyword found in the description wins; order puts specific words before generic ones.
CATEGORY_KEYWORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("christmas", ("CHRISTMAS", "XMAS", "ADVENT", "SNOWFLAKE", "REINDEER", "SANTA")),
    ("candles-and-lights", ("CANDLE", "T-LIGHT", "LIGHT", "LANTERN", "LAMP")),
    (
        "kitchen",
        (
            "MUG",
            "CUP",
            "TEA",
            "CAKE",
            "LUNCH",
            "BOWL",
            "JAR",
            "CUTLERY",
            "PLATE",
            "BAKING",
            "JAM",
            "TRAY",
            "BOTTLE",
            "KITCHEN",
            "PANTRY",
            "EGG",
            "NAPKIN",
        ),
    ),
    ("bags", ("BAG", "HANDBAG", "PURSE", "CASE")),
    ("cards-and-wrap", ("CARD", "WRAP", "PAPER", "RIBBON", "ENVELOPE", "TAG")),
    ("stationery", ("PENCIL", "PEN", "NOTEBOOK", "STICKER", "RUBBER", "CHALK")),
    ("toys-and-kids", ("CHILDREN", "TOY", "DOLLY", "SPACEBOY", "GAME", "KIDS", "FELTCRAFT")),
    ("garden", ("GARDEN", "BIRD", "PLANT", "FLOWER", "WATERING", "ZINC")),
    (
        "home-decor",
        (
            "SIGN",
            "FRAME",
            "CLOCK",
            "DOORMAT",
            "HOLDER",
            "DECORATION",
            "HANGING",
            "CUSHION",
            "DRAWER",
            "BUNTING",
            "WALL",
            "MIRROR",
            "BOX",
            "HOOK",
        ),
    ),
)


@dataclass(frozen=True)
class RetailData:
    """Interactions and catalog rows in canonical column order."""

    interactions: list[tuple[str, str, str, str, str]]
    catalog: list[dict[str, str]]
    #: Everyone who bought, returns or not: a sample drawn from them with one seed names the
    #: same customers however returns are treated, so demo customers and tests stay put.
    buyers: tuple[str, ...] = ()


def category_of(description: str) -> str:
    """Map a product description to a coarse category by keyword."""
    words = set(_WORD.findall(description.upper()))
    for category, keywords in CATEGORY_KEYWORDS:
        # Whole words: "TAG" is not in VINTAGE, "SIGN" not in DESIGN, "TEA" not in CHATEAU.
        if any(_has(keyword, words, description.upper()) for keyword in keywords):
            return category
    return "gifts"


_WORD = re.compile(r"[A-Z0-9']+")


def _has(keyword: str, words: set[str], upper: str) -> bool:
    """Whether ``keyword`` is a word of the description (several words: as a phrase)."""
    if not keyword.isalnum():  # "T-LIGHT", a phrase
        return re.search(rf"\b{re.escape(keyword)}\b", upper) is not None
    return keyword in words or keyword + "S" in words or keyword + "ES" in words


def _retail_rows(path: Path) -> Iterator[tuple[int, Mapping[str, Any]]]:
    required = {
        "InvoiceNo",
        "StockCode",
        "Description",
        "Quantity",
        "InvoiceDate",
        "UnitPrice",
        "CustomerID",
    }

    def header(names: Sequence[str], line: int) -> None:
        missing = required - set(names)
        if missing:
            raise ValidationError(Problem(f"missing columns {sorted(missing)}", str(path), line))

    def problem(line: int, message: str) -> None:
        raise ValidationError(Problem(message, str(path), line))

    yield from read_rows(path, problem, header)


def load_online_retail(path: str | Path) -> RetailData:
    """Convert the UCI Online Retail file into canonical purchases and a catalog.

    Rows without a customer, zero quantities and non-product codes (postage, carriage, fees)
    are dropped: they are not purchases of a product by a known customer. The catalog keeps
    each item's latest price and title (from every sale, returned or not: the product exists).
    Of the rows kept, an ``InvoiceDate`` that is no moment or a sale's ``UnitPrice`` that is no
    price is refused with its file, line and column, not written for ``train`` to refuse.

    Cancellations (invoices starting with ``C``, negative quantities) are returns of goods the
    customer bought, so they are netted against that customer's purchases of that item rather
    than just dropped (else a returned order trains as a purchase). The rule: each
    cancellation, in time order, takes its quantity off the customer's purchases of the item
    made at or before it, latest first; a purchase row left with nothing is dropped, one
    partly returned keeps the rest as its quantity. A cancellation with no earlier purchase to
    take from (the goods were bought before the file starts) changes nothing: a return cannot
    undo a later purchase.
    """
    path = Path(path)
    purchases: list[_Purchase] = []
    returns: dict[tuple[str, str], list[tuple[str, float]]] = {}
    latest: dict[str, tuple[str, float, str]] = {}
    first_seen: dict[str, str] = {}
    for line, row in _retail_rows(path):
        try:
            quantity = float(row["Quantity"])
        except ValueError:
            quantity = math.nan
        if not math.isfinite(quantity):  # "nan" and "inf" parse, and would train as purchases
            raise ValidationError(Problem("not a number", str(path), line, "Quantity"))
        customer = row["CustomerID"].strip().removesuffix(".0")
        if not customer or quantity == 0 or not PRODUCT_CODE.match(row["StockCode"]):
            continue  # postage, carriage, manual adjustments, bank charges: not things to suggest
        item, timestamp = row["StockCode"].strip(), _invoice_time(row, path, line)
        if row["InvoiceNo"].startswith("C") or quantity < 0:
            returns.setdefault((customer, item), []).append((timestamp, abs(quantity)))
            continue
        purchases.append(_Purchase(customer, item, timestamp, quantity))
        latest[item] = (row["Description"].strip(), _unit_price(row, path, line), timestamp)
        first_seen.setdefault(item, timestamp)
    interactions = [
        (p.customer, p.item, p.timestamp, "purchase", f"{p.quantity:g}")
        for p in _net_returns(purchases, returns)
    ]
    catalog = [_catalog_row(item, *latest[item][:2], first_seen[item]) for item in sorted(latest)]
    buyers = tuple(sorted({p.customer for p in purchases}))
    return RetailData(interactions, catalog, buyers)


@dataclass(frozen=True)
class _Purchase:
    customer: str
    item: str
    timestamp: str  # ISO-8601 UTC, fixed width: compares as text in time order
    quantity: float


def _net_returns(
    purchases: Sequence[_Purchase], returns: Mapping[tuple[str, str], Sequence[tuple[str, float]]]
) -> list[_Purchase]:
    """Take each ``(customer, item)``'s returned ``(timestamp, quantity)`` off its purchases.

    Latest purchase at or before the return first (what was just bought is what comes back);
    rows left with nothing are dropped; the rest keep their file order.
    """
    left = [p.quantity for p in purchases]
    rows: dict[tuple[str, str], list[int]] = {}
    for index, purchase in enumerate(purchases):
        rows.setdefault((purchase.customer, purchase.item), []).append(index)
    for pair, cancelled in returns.items():
        # Newest first; of rows in the same minute, the one later in the file.
        newest = sorted(rows.get(pair, []), key=lambda i: (purchases[i].timestamp, i), reverse=True)
        for when, quantity in sorted(cancelled):
            for index in newest:
                if quantity <= 0:
                    break
                if purchases[index].timestamp <= when:
                    taken = min(quantity, left[index])
                    left[index] -= taken
                    quantity -= taken
    return [replace(p, quantity=q) for p, q in zip(purchases, left, strict=True) if q > 0]


def _invoice_time(row: Mapping[str, Any], path: Path, line: int) -> str:
    """Return the row's ``InvoiceDate`` as fixed-width ISO-8601 UTC, or refuse it with its line.

    Fixed width because the netting compares these as text; refused here, as ``train`` would
    refuse it (the file's own ``2010-12-01 08:26:00`` reads as UTC).
    """
    try:
        return _utc_text(row["InvoiceDate"].strip())
    except ValueError as exc:
        raise ValidationError(Problem(str(exc), str(path), line, "InvoiceDate")) from None


@functools.lru_cache(maxsize=65_536)  # one parse per distinct minute: 23,000 in the UCI file
def _utc_text(text: str) -> str:
    try:
        stamp = parse_timestamp(text)
    except (ValueError, OverflowError) as exc:
        reason = exc if isinstance(exc, ValueError) else f"expected {TIMESTAMP_FORMS}"
        raise ValueError(
            f"unparsable InvoiceDate {text!r}: {reason} (the UCI file's: 2010-12-01 08:26:00)"
        ) from None
    latest = time.time() + FUTURE_SLACK
    if not 0 <= stamp <= latest:
        raise ValueError(f"InvoiceDate {text!r} is outside 1970-01-01 to {_iso(latest)}")
    return _iso(stamp)


def _iso(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _unit_price(row: Mapping[str, Any], path: Path, line: int) -> float:
    """Return the row's ``UnitPrice`` (blank: 0), or refuse it with its line, as a catalog would."""
    text = row["UnitPrice"].strip()
    try:
        price = float(text or 0)
    except ValueError:
        price = math.nan
    if not math.isfinite(price) or price < 0:
        message = f"{text!r} is not a price (a finite number, 0 or more)"
        raise ValidationError(Problem(message, str(path), line, "UnitPrice"))
    return price


def _catalog_row(item: str, description: str, price: float, published: str) -> dict[str, str]:
    title = description.title() or item
    return {
        "item_id": item,
        "title": title,
        "url": f"{SHOP_URL}/items/{item}",
        "image_url": f"{SHOP_URL}/images/{item}.jpg",
        "price": f"{price:.2f}",
        "currency": "GBP",
        "category": category_of(description),
        "kind": "promotional",
        "published_at": published,
        "expires_at": "",
        "in_stock": "true",
    }


def sample_customers(data: RetailData, customers: int, seed: int = 7) -> RetailData:
    """Keep every interaction of ``customers`` randomly chosen buyers (and their items).

    A chosen customer who returned everything they bought has no interaction left.
    """
    everyone = list(data.buyers) or sorted({row[0] for row in data.interactions})
    chosen = set(random.Random(seed).sample(everyone, min(customers, len(everyone))))
    kept = [row for row in data.interactions if row[0] in chosen]
    items = {row[1] for row in kept}
    catalog = [row for row in data.catalog if row["item_id"] in items]
    return RetailData(kept, catalog, tuple(sorted(chosen)))


def write_canonical(data: RetailData, directory: str | Path) -> tuple[Path, Path]:
    """Write ``interactions.csv.gz`` and ``catalog.csv`` into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    interactions_path = directory / "interactions.csv.gz"
    # mtime=0 keeps the gzip bytes reproducible, so regenerating the demo data is a no-op diff.
    with (
        gzip.GzipFile(interactions_path, "wb", mtime=0) as raw,
        io.TextIOWrapper(raw, encoding="utf-8", newline="") as handle,
    ):
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(INTERACTION_COLUMNS)
        writer.writerows(data.interactions)
    catalog_path = directory / "catalog.csv"
    with open(catalog_path, "w", encoding="utf-8", newline="") as handle:
        dict_writer = csv.DictWriter(handle, KNOWN_COLUMNS, lineterminator="\n")
        dict_writer.writeheader()
        dict_writer.writerows(data.catalog)
    return interactions_path, catalog_path
