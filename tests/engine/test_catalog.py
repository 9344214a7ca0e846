from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from engine.catalog import load_catalog
from fatigue.domain import ContentKind
from fatigue.errors import ValidationError

HEADER = (
    "item_id,title,url,image_url,price,currency,category,kind,published_at,expires_at,"
    "in_stock,colour\n"
)


def test_loads_every_column_and_keeps_extras(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text(
        HEADER
        + "a,Mug,https://s/a,https://s/a.jpg,3.5,GBP,kitchen,promotional,2024-01-01T00:00:00Z,2024-02-01T00:00:00Z,true,red\n"
        + "b,Guide,https://s/b,,,,editorial,editorial,,,no,\n"
    )
    catalog = load_catalog(path)
    mug, guide = catalog["a"], catalog["b"]
    assert (
        mug.price == 3.5 and mug.kind is ContentKind.PROMOTIONAL and mug.extra == {"colour": "red"}
    )
    assert guide.kind is ContentKind.EDITORIAL and guide.price is None and not guide.in_stock
    template = mug.as_template_dict()
    assert template["colour"] == "red" and template["expires_at"] == "2024-02-01T00:00:00+00:00"
    assert catalog.unavailable(datetime(2024, 3, 1, tzinfo=UTC)) == {"a", "b"}
    assert catalog.unavailable(datetime(2024, 1, 15, tzinfo=UTC)) == {"b"}


def test_every_problem_named_with_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text(
        HEADER
        + "a,Mug,,,cheap,,,,,,,\n"
        + ",NoId,,,,,,,,,,\n"
        + "c,X,,,,,,flyer,,,,\n"
        + "d,X,,,,,,,someday,,maybe,\n"
        + "a,Again,,,,,,,,,,\n"
    )
    with pytest.raises(ValidationError) as excinfo:
        load_catalog(path)
    found = [(p.line, p.field) for p in excinfo.value.problems]
    assert found == [
        (2, "price"),
        (3, "item_id"),
        (4, "kind"),
        (5, "published_at"),
        (5, "in_stock"),
        (6, "item_id"),
    ]
    assert "duplicate item_id 'a'" in str(excinfo.value)


def test_json_lines_catalog_and_column_mapping(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text('{"sku": "a", "name": "Mug", "in_stock": false}\n')
    catalog = load_catalog(path, {"item_id": "sku", "title": "name"})
    assert catalog["a"].title == "Mug" and catalog["a"].in_stock is False


def test_bundled_demo_catalog_loads() -> None:
    catalog = load_catalog(Path(__file__).parents[2] / "engine" / "demo_data" / "catalog.csv")
    assert len(catalog) > 3000
    assert {item.category for item in catalog.values()} >= {"kitchen", "christmas", "gifts"}


def test_impossible_prices_and_unreadable_files_are_named_not_crashes(tmp_path: Path) -> None:
    prices = tmp_path / "prices.csv"
    prices.write_text("item_id,price\na,nan\nb,inf\nc,-5\nd,1e400\ne,9.99\n")
    with pytest.raises(ValidationError) as caught:
        load_catalog(prices)
    assert [(p.line, p.field) for p in caught.value.problems] == [
        (2, "price"), (3, "price"), (4, "price"), (5, "price")
    ]  # fmt: skip
    lines = tmp_path / "items.jsonl"
    lines.write_text('{"item_id": "a"}\n[1, 2]\n')
    with pytest.raises(ValidationError, match="expected a JSON object") as caught:
        load_catalog(lines)
    assert caught.value.problems[0].line == 2
    latin = tmp_path / "latin.csv"
    latin.write_bytes("item_id,title\na,Caf\xe9\n".encode("latin-1"))
    with pytest.raises(ValidationError, match="unreadable file"):
        load_catalog(latin)


def test_a_byte_order_mark_from_a_spreadsheet_export_is_skipped(tmp_path: Path) -> None:
    exported = tmp_path / "catalog.csv"
    exported.write_bytes("\ufeffitem_id,title\na,Mug\n".encode())
    assert load_catalog(exported)["a"].title == "Mug"
