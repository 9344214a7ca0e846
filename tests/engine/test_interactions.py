from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from engine.interactions import load_interactions, parse_columns, parse_timestamp
from fatigue.errors import ValidationError

HEADER = "user_id,item_id,timestamp,event,value\n"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def problems_of(
    excinfo: pytest.ExceptionInfo[ValidationError],
) -> list[tuple[int | None, str | None]]:
    return [(p.line, p.field) for p in excinfo.value.problems]


def test_csv_with_every_timestamp_form(tmp_path: Path) -> None:
    path = write(
        tmp_path / "i.csv",
        HEADER
        + "u1,a,2024-03-01T10:00:00Z,purchase,2\n"
        + "u1,b,2024-03-01T11:00:00+01:00,view,\n"
        + "u2,a,1709287200,click,1\n"
        + "u2,c,2024-03-01 10:00:00,purchase,1\n",
    )
    data = load_interactions(path)
    assert len(data) == 4
    assert data.user_ids.tolist() == ["u1", "u1", "u2", "u2"]
    # 11:00+01:00 is 10:00Z; naive timestamps are read as UTC
    assert data.timestamps.tolist() == [1709287200] * 4
    assert data.values.tolist() == [2.0, 1.0, 1.0, 1.0]


def test_gzip_and_json_lines(tmp_path: Path) -> None:
    gz = tmp_path / "i.csv.gz"
    with gzip.open(gz, "wt") as handle:
        handle.write(HEADER + "u1,a,2024-03-01T10:00:00Z,purchase,1\n")
    lines = [
        {
            "user_id": "u2",
            "item_id": "b",
            "timestamp": 1709287200,
            "event": "view",
            "extra": "ignored",
        }
    ]
    jsonl = write(tmp_path / "i.jsonl", "\n".join(json.dumps(x) for x in lines) + "\n")
    data = load_interactions([gz, jsonl])
    assert data.user_ids.tolist() == ["u1", "u2"]
    assert data.events.tolist() == ["purchase", "view"]


def test_column_mapping_and_default_event(tmp_path: Path) -> None:
    path = write(
        tmp_path / "orders.csv",
        "CustomerID,StockCode,InvoiceDate,Quantity,Country\n"
        "17850,85123A,2010-12-01T08:26:00Z,6,UK\n",
    )
    mapping = parse_columns(
        "user_id=CustomerID,item_id=StockCode,timestamp=InvoiceDate,value=Quantity"
    )
    data = load_interactions(path, mapping, default_event="purchase")
    assert (data.user_ids[0], data.item_ids[0], data.events[0], data.values[0]) == (
        "17850",
        "85123A",
        "purchase",
        6.0,
    )


def test_bad_column_mapping_is_a_clear_error() -> None:
    with pytest.raises(ValidationError, match="bad column mapping 'customer=CustomerID'"):
        parse_columns("customer=CustomerID")


def test_missing_column_names_file_and_header(tmp_path: Path) -> None:
    path = write(tmp_path / "i.csv", "user_id,item_id,event\nu1,a,view\n")
    with pytest.raises(ValidationError) as excinfo:
        load_interactions(path)
    message = str(excinfo.value)
    assert str(path) in message and "missing required column(s) timestamp" in message
    assert problems_of(excinfo) == [(1, None)]


def test_every_bad_row_is_reported_with_line_and_column(tmp_path: Path) -> None:
    path = write(
        tmp_path / "i.csv",
        HEADER
        + "u1,a,2024-03-01T10:00:00Z,purchase,1\n"
        + "u1,a,yesterday,purchase,1\n"
        + "u1,a,2024-03-01T10:00:00Z,teleport,1\n"
        + ",a,2024-03-01T10:00:00Z,view,1\n"
        + "u1,a,2024-03-01T10:00:00Z,view,-3\n"
        + "u1,a,2024-03-01T10:00:00Z,view,lots\n",
    )
    with pytest.raises(ValidationError) as excinfo:
        load_interactions(path)
    assert problems_of(excinfo) == [
        (3, "timestamp"),
        (4, "event"),
        (5, "user_id"),
        (6, "value"),
        (7, "value"),
    ]
    assert (
        "unknown event 'teleport' (allowed: add_to_cart, click, email_click, purchase, view)"
        in str(excinfo.value)
    )
    assert f"{path}:3 [timestamp]" in str(excinfo.value)


def test_a_row_with_more_fields_than_the_header_is_refused(tmp_path: Path) -> None:
    path = write(
        tmp_path / "i.csv",
        HEADER + "u1,a,2024-03-01T10:00:00Z,purchase,1\n" + "u2,b,2024-03-01T10:00:00Z,view,1,x\n",
    )
    with pytest.raises(ValidationError) as excinfo:
        load_interactions(path)
    assert problems_of(excinfo) == [(3, None)]
    assert f"{path}:3: 6 fields; the header has 5" in str(excinfo.value)


def test_mapped_column_names_appear_in_errors(tmp_path: Path) -> None:
    path = write(tmp_path / "i.csv", "who,what,when,event\nu1,a,never,view\n")
    with pytest.raises(ValidationError) as excinfo:
        load_interactions(path, parse_columns("user_id=who,item_id=what,timestamp=when"))
    assert problems_of(excinfo) == [(2, "when")]


def test_invalid_json_line(tmp_path: Path) -> None:
    path = write(
        tmp_path / "i.jsonl",
        '{"user_id": "u", "item_id": "a", "timestamp": 1709287200, "event": "view"}\n{oops\n[1]\n',
    )
    with pytest.raises(ValidationError) as excinfo:
        load_interactions(path)
    assert problems_of(excinfo) == [(2, None), (3, None)]


def test_configured_event_types(tmp_path: Path) -> None:
    path = write(tmp_path / "i.csv", HEADER + "u1,a,1709287200,wishlist,1\n")
    data = load_interactions(path, event_weights={"wishlist": 2.0})
    assert data.events.tolist() == ["wishlist"]


def test_empty_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="no such file"):
        load_interactions(tmp_path / "nope.csv")
    with pytest.raises(ValidationError, match="no interactions in file"):
        load_interactions(write(tmp_path / "e.csv", HEADER))


def test_not_gzip_is_a_clear_error(tmp_path: Path) -> None:
    path = write(tmp_path / "i.csv.gz", HEADER)
    with pytest.raises(ValidationError, match="unreadable file"):
        load_interactions(path)


def test_parse_timestamp_rejects_garbage() -> None:
    with pytest.raises(ValueError):
        parse_timestamp("soon")
    assert parse_timestamp("1709287200.9") == 1709287200


def test_select_and_window(interactions) -> None:  # type: ignore[no-untyped-def]
    mask = interactions.user_ids == "u0-00"
    part = interactions.select(mask)
    assert set(part.user_ids.tolist()) == {"u0-00"}
    first, last = part.window()
    assert first <= last and int(np.sum(mask)) == len(part)


def test_rows_repeating_an_event_id_are_read_once_across_files(tmp_path: Path) -> None:
    """A batch retried after midnight is logged in two days' files; training reads it once."""
    row = {"user_id": "u1", "item_id": "i1", "timestamp": "2026-11-23T23:59:59Z",
           "event": "purchase", "value": 1, "event_id": "e1"}  # fmt: skip
    other = {**row, "item_id": "i2", "event_id": "e2"}
    unnamed = {**row, "item_id": "i3"}
    del unnamed["event_id"]
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    first.write_text("".join(json.dumps(r) + "\n" for r in (row, unnamed, unnamed)))
    second.write_text("".join(json.dumps(r) + "\n" for r in (row, other)))
    loaded = load_interactions([first, second])
    assert sorted(loaded.item_ids) == ["i1", "i2", "i3", "i3"]  # rows without an id all count


def test_absurd_values_and_ids_are_refused_with_their_line(tmp_path: Path) -> None:
    """A quantity near float32's range turned training into NaN; one long id cost gigabytes."""
    path = write(
        tmp_path / "i.csv",
        HEADER
        + "u1,a,2024-03-01T10:00:00Z,purchase,1e30\n"
        + f"{'u' * 201},a,2024-03-01T10:00:00Z,purchase,1\n"
        + "u2,a,2024-03-01T10:00:00Z,purchase,1000000\n",
    )
    with pytest.raises(ValidationError) as excinfo:
        load_interactions(path)
    assert problems_of(excinfo) == [(2, "value"), (3, "user_id")]
    assert "is over 1,000,000" in str(excinfo.value) and "at most 200" in str(excinfo.value)


def test_a_compact_date_is_that_date_not_seconds_from_1970() -> None:
    """A compact date such as 20111209 was read as Unix seconds: 1970-08-21, silently."""
    assert parse_timestamp("20111209") == parse_timestamp("2011-12-09T00:00:00Z")
    with pytest.raises(ValueError, match="not a YYYYMMDD date"):
        parse_timestamp("20111309")


def test_implausible_unix_seconds_are_refused_saying_what_was_expected(tmp_path: Path) -> None:
    path = write(
        tmp_path / "i.csv",
        HEADER
        + "u1,a,20111209,purchase,1\n"
        + "u1,b,1291193100,purchase,1\n"
        + "u1,c,12345,purchase,1\n"  # 1970: a date or a count, not a moment
        + "u1,d,1291193100000,purchase,1\n"  # milliseconds
        + "u1,e,20111232,purchase,1\n",
    )
    with pytest.raises(ValidationError) as excinfo:
        load_interactions(path)
    assert problems_of(excinfo) == [(4, "timestamp"), (5, "timestamp"), (6, "timestamp")]
    message = str(excinfo.value)
    assert f"{path}:4 [timestamp]: unparsable timestamp '12345': Unix seconds must fall in " in (
        message
    )
    assert "2000-2100" in message and "milliseconds are refused" in message
    assert f"{path}:6 [timestamp]: unparsable timestamp '20111232': not a YYYYMMDD date" in message
    good = write(tmp_path / "good.csv", HEADER + "u1,a,20111209,purchase,1\n")
    assert load_interactions(good).timestamps.tolist() == [1323388800]  # 2011-12-09T00:00Z


def test_json_values_are_taken_at_their_type_not_coerced(tmp_path: Path) -> None:
    """``"value": true`` trained as 1.0 and an object id as the text "{'x': 1}"."""
    base = {"user_id": "u1", "item_id": "a", "timestamp": "2011-01-01T00:00:00Z",
            "event": "purchase"}  # fmt: skip
    rows = [
        {**base, "user_id": 17850, "value": 3},  # integers are fine ids; numbers fine values
        {**base, "value": 2.5},
        {**base, "value": None},  # no value: the default 1
        {**base, "user_id": {"x": 1}, "value": True},
        {**base, "item_id": ["q"], "value": "3"},
        {**base, "user_id": True, "item_id": 17850.0, "timestamp": False},
        {**base, "value": {"n": 1}},
    ]
    path = write(tmp_path / "i.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ValidationError) as excinfo:
        load_interactions(path)
    assert problems_of(excinfo) == [
        (4, "user_id"),
        (4, "value"),
        (5, "item_id"),
        (5, "value"),
        (6, "user_id"),
        (6, "item_id"),
        (6, "timestamp"),
        (7, "value"),
    ]
    message = str(excinfo.value)
    assert (
        f'{path}:4 [user_id]: user_id must be a string or an integer, not an object {{"x": 1}}'
        in (message)
    )
    assert f"{path}:4 [value]: value must be a number, not the boolean true" in message
    assert f'{path}:5 [value]: value must be a number, not the string "3"' in message
    assert (
        f"{path}:6 [item_id]: item_id must be a string or an integer, not the number 17850.0"
        in (message)
    )
    valid = write(tmp_path / "valid.jsonl", "".join(json.dumps(r) + "\n" for r in rows[:3]))
    loaded = load_interactions(valid)
    assert loaded.user_ids.tolist() == ["17850", "u1", "u1"]
    assert loaded.values.tolist() == [3.0, 2.5, 1.0]


def test_csv_values_are_text_that_reads_as_a_number(tmp_path: Path) -> None:
    """Only JSON carries types: in CSV every field is text, and "3" is the number 3."""
    path = write(tmp_path / "i.csv", HEADER + "17850,a,2011-01-01T00:00:00Z,purchase,3\n")
    loaded = load_interactions(path)
    assert (loaded.user_ids.tolist(), loaded.values.tolist()) == (["17850"], [3.0])
