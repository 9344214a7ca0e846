"""Bad input to ``rapport simulate`` and ``rapport rules``: one clear line per problem, exit 1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from fatigue.cli import rules as rules_group
from fatigue.cli import simulate as simulate_command
from fatigue.errors import ConfigurationError, Problem, ValidationError
from fatigue.history import RequestRow, read_history
from fatigue.report import write_report
from fatigue.rules import load_rules, validate
from fatigue.simulate import simulate

from .conftest import CONTRACT

HEADER = "timestamp,user_id,type,campaign,category,kind,priority,timezone,deferrable,items"
GOOD = "2026-01-05T10:00:00Z,u1,request,c1,sale,,,Europe/London,,a=0.5"


def write_history(folder: Path, *rows: str) -> Path:
    path = folder / "history.csv"
    path.write_text("\n".join([HEADER, *rows]) + "\n", encoding="utf-8")
    return path


def problems_in(path: Path) -> list[Problem]:
    with pytest.raises(ValidationError) as caught:
        read_history(path)
    return caught.value.problems


def run_simulate(folder: Path, history: Path, *extra: str) -> Result:
    rules = folder / "rules.toml"
    rules.write_text(CONTRACT)
    arguments = ["--rules", str(rules), "--history", str(history), *extra]
    return CliRunner().invoke(simulate_command, arguments)


def assert_clean_failure(result: Result) -> None:
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output


# -- files that are not UTF-8 ------------------------------------------------------------


def test_rules_validate_names_a_non_utf8_file_and_the_line(tmp_path: Path):
    path = tmp_path / "latin.toml"
    path.write_bytes(b'[[caps]]\nmax = 1\nper = "1d"\nname = "\xff"\n')
    result = CliRunner().invoke(rules_group, ["validate", str(path)])
    assert_clean_failure(result)
    assert result.output.strip() == f"{path}:4: not UTF-8 text (byte 0xff); save the file as UTF-8"


def test_load_rules_raises_validation_error_for_a_non_utf8_file(tmp_path: Path):
    path = tmp_path / "latin.toml"
    path.write_bytes(b'a = "\xe9"\n')
    with pytest.raises(ValidationError) as caught:
        load_rules(path)
    assert [(p.source, p.line) for p in caught.value.problems] == [(str(path), 1)]
    assert validate(path) == caught.value.problems


def test_simulate_names_a_non_utf8_history_and_the_line(tmp_path: Path):
    # Far past the decoder's first block, so the line must come from the file, not the decoder.
    rows = [GOOD] * 2000 + ["2026-01-05T10:00:00Z,u1,request,caf\xe9,sale,,,,,a=0.5"]
    path = tmp_path / "latin.csv"
    path.write_bytes("\n".join([HEADER, *rows]).encode("latin-1") + b"\n")
    result = run_simulate(tmp_path, path)
    assert_clean_failure(result)
    expected = f"error: {path}:2002: not UTF-8 text (byte 0xe9); save the file as UTF-8"
    assert result.output.strip() == expected


def test_a_csv_the_csv_module_refuses_is_one_problem(tmp_path: Path):
    path = write_history(tmp_path, GOOD, f"2026-01-05T10:00:00Z,u1,{'x' * 200_000}")
    [problem] = problems_in(path)
    assert (problem.line, problem.message.startswith("not valid CSV")) == (3, True)


# -- time zones ------------------------------------------------------------------------


def test_unknown_time_zones_are_row_problems_for_requests_and_events(tmp_path: Path):
    path = write_history(
        tmp_path,
        "2026-01-05T10:00:00Z,u1,request,c1,sale,,,Mars/Olympus,,a=0.5",
        "2026-01-05T11:00:00Z,u1,open,,,,,Mars/Olympus,,",
        "yesterday,u1,open,,,,,,,",
    )
    found = [(p.line, p.field, p.message) for p in problems_in(path)]
    unknown = "'Mars/Olympus' is not an IANA time zone name"
    assert found[:2] == [(2, "timezone", unknown), (3, "timezone", unknown)]
    assert [(line, field) for line, field, _ in found[2:]] == [(4, "timestamp")]


def test_simulate_reports_an_unknown_zone_without_a_traceback(tmp_path: Path):
    path = write_history(tmp_path, "2026-01-05T10:00:00Z,u1,request,c1,sale,,,Mars/Olympus,,")
    result = run_simulate(tmp_path, path)
    assert_clean_failure(result)
    expected = f"error: {path}:2 [timezone]: 'Mars/Olympus' is not an IANA time zone name"
    assert result.output.strip() == expected


def test_known_zones_and_blank_zones_are_read(tmp_path: Path):
    path = write_history(tmp_path, GOOD, "2026-01-05T10:00:00Z,u1,request,c1,sale,,,,,a=0.5")
    first, second = read_history(path)
    assert isinstance(first, RequestRow) and isinstance(second, RequestRow)
    assert [first.recipient.timezone, second.recipient.timezone] == ["Europe/London", ""]
    assert simulate(load_rules(CONTRACT), [first, second]).total.requests == 2


# -- every problem of a row --------------------------------------------------------------


def test_every_bad_field_of_a_row_is_reported_in_column_order(tmp_path: Path):
    path = write_history(
        tmp_path, "2026-01-05T10:00:00Z,u1,request,c1,sale,weird,high,Mars/Olympus,maybe,a=x"
    )
    fields = [p.field for p in problems_in(path)]
    assert fields == ["kind", "priority", "timezone", "deferrable", "items"]


def test_each_bad_item_is_reported(tmp_path: Path):
    path = write_history(
        tmp_path, "2026-01-05T10:00:00Z,u1,request,c1,sale,,,,,a=1.5;b=nan;c=-0.1;d=0.3;=0.2"
    )
    messages = [p.message for p in problems_in(path)]
    assert len(messages) == 4
    assert "'a'" in messages[0] and "'b'" in messages[1] and "'c'" in messages[2]
    assert messages[3] == "'=0.2' is not item_id=relevance[@category]"


def test_an_unknown_type_is_not_also_checked_as_a_request(tmp_path: Path):
    path = write_history(tmp_path, "2026-01-05T10:00:00Z,,teleport,,,,,,,")
    assert [p.field for p in problems_in(path)] == ["user_id", "type"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("true", True),
        ("TRUE", True),
        ("1", True),
        ("yes", True),
        ("false", False),
        ("0", False),
        ("no", False),
        ("", False),
    ],
)
def test_deferrable_accepts_yes_no_values(tmp_path: Path, text: str, expected: bool):
    path = write_history(tmp_path, f"2026-01-05T10:00:00Z,u1,request,c1,sale,,,,{text},a=0.5")
    [row] = read_history(path)
    assert isinstance(row, RequestRow) and row.request.deferrable is expected


@pytest.mark.parametrize("text", ["maybe", "2", "y", "ture"])
def test_deferrable_refuses_anything_else(tmp_path: Path, text: str):
    path = write_history(tmp_path, f"2026-01-05T10:00:00Z,u1,request,c1,sale,,,,{text},a=0.5")
    [problem] = problems_in(path)
    assert (problem.line, problem.field) == (2, "deferrable")
    assert repr(text) in problem.message


def test_json_lines_take_booleans_and_item_objects(tmp_path: Path):
    path = tmp_path / "h.jsonl"
    record = {
        "timestamp": "2026-01-05T10:00:00Z",
        "user_id": "u1",
        "type": "request",
        "campaign": "c1",
        "deferrable": True,
        "priority": 2,
        "items": [{"item_id": "a", "relevance": 0}, {"item_id": "b", "relevance": 1}],
    }
    bad = {**record, "deferrable": "maybe", "priority": True, "items": [{"item_id": "c"}]}
    path.write_text(json.dumps(record) + "\n")
    [row] = read_history(path)
    assert isinstance(row, RequestRow) and row.request.deferrable is True
    assert [c.relevance for c in row.candidates] == [0, 1]
    path.write_text(json.dumps(bad) + "\n")
    assert [p.field for p in problems_in(path)] == ["priority", "deferrable", "items"]


@pytest.mark.parametrize("value", ["1.01", "-0.01", "nan", "inf", "x"])
def test_relevance_must_be_a_finite_number_within_0_and_1(tmp_path: Path, value: str):
    path = write_history(tmp_path, f"2026-01-05T10:00:00Z,u1,request,c1,sale,,,,,a={value}")
    [problem] = problems_in(path)
    assert problem.field == "items" and "within [0, 1]" in problem.message


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "high"])
def test_priority_must_be_a_finite_number(tmp_path: Path, value: str):
    path = write_history(tmp_path, f"2026-01-05T10:00:00Z,u1,request,c1,sale,,{value},,,a=0.5")
    [problem] = problems_in(path)
    assert problem.field == "priority" and "not a finite number" in problem.message


def test_unix_seconds_out_of_range_are_a_row_problem(tmp_path: Path):
    path = write_history(tmp_path, "99999999999999999999,u1,open,,,,,,,")
    [problem] = problems_in(path)
    assert (problem.field, problem.message) == (
        "timestamp",
        "Unix seconds 99999999999999999999 are out of range",
    )


# -- the report ----------------------------------------------------------------------------


def test_report_under_a_file_is_a_clean_error(tmp_path: Path):
    history = write_history(tmp_path, GOOD)
    (tmp_path / "file").write_text("")
    target = tmp_path / "file" / "x"
    result = run_simulate(tmp_path, history, "--report", str(target))
    assert_clean_failure(result)
    assert (
        result.output.strip()
        == f"error: cannot write {target}: {tmp_path / 'file'} is not a directory"
    )


def test_report_onto_a_directory_named_index_html_is_a_clean_error(tmp_path: Path):
    history = write_history(tmp_path, GOOD)
    (tmp_path / "out" / "index.html").mkdir(parents=True)
    result = run_simulate(tmp_path, history, "--report", str(tmp_path / "out"))
    assert_clean_failure(result)
    assert result.output.strip().startswith(f"error: cannot write {tmp_path / 'out'}")


def test_write_report_turns_os_errors_into_configuration_errors(tmp_path: Path):
    # What the early check cannot foresee (the tree changing during the simulation).
    (tmp_path / "file").write_text("")
    rows = read_history(write_history(tmp_path, GOOD))
    result = simulate(load_rules(CONTRACT), rows)
    with pytest.raises(ConfigurationError, match=r"^cannot write .*file.*: Not a directory$"):
        write_report(tmp_path / "file" / "x", result, None)


def test_a_row_with_more_fields_than_the_header_is_one_problem(tmp_path: Path):
    path = write_history(tmp_path, GOOD, GOOD + ",stray")
    assert [str(p) for p in problems_in(path)] == [f"{path}:3: 11 fields; the header has 10"]


def test_a_history_saved_by_a_spreadsheet_with_a_byte_order_mark_is_read(tmp_path: Path):
    path = write_history(tmp_path, GOOD)
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert len(read_history(path)) == 1
