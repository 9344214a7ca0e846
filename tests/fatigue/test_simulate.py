"""The simulation, its history reader and the CLI commands."""

from __future__ import annotations

import json
import re
from pathlib import Path
from xml.etree import ElementTree

import pytest
from click.testing import CliRunner

from fatigue.cli import rules as rules_group
from fatigue.cli import simulate as simulate_command
from fatigue.errors import ValidationError
from fatigue.history import EventRow, RequestRow, read_history
from fatigue.report import bar_chart
from fatigue.rules import Rules, load_rules
from fatigue.simulate import simulate

from .conftest import CONTRACT

ITEMS = "a=0.5@shoes;b=0.4@shoes;c=0.3@hats;d=0.2@bags"


def history_csv(tmp_path: Path, rows: list[str]) -> Path:
    path = tmp_path / "history.csv"
    header = "timestamp,user_id,type,campaign,category,kind,priority,timezone,deferrable,items"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def daily_requests(users: int = 3, days: int = 14, per_day: int = 3) -> list[str]:
    rows = []
    for day in range(days):
        for user in range(users):
            for hour in range(per_day):
                stamp = f"2026-01-{5 + day:02d}T{10 + hour * 3:02d}:00:00Z"
                rows.append(f"{stamp},u{user},request,c{hour},sale,,,Europe/London,,{ITEMS}")
    return rows


def test_reads_csv_and_jsonl(tmp_path: Path):
    csv_path = history_csv(tmp_path, daily_requests(1, 1, 1))
    [row] = read_history(csv_path)
    assert isinstance(row, RequestRow) and [c.item_id for c in row.candidates] == list("abcd")
    assert row.candidates[2].category == "hats"
    jsonl = tmp_path / "h.jsonl"
    jsonl.write_text(
        json.dumps(
            {
                "timestamp": 1768212000,
                "user_id": "u1",
                "type": "request",
                "campaign": "c",
                "items": [{"item_id": "x", "relevance": 0.4}],
            }
        )
        + "\n"
        + json.dumps({"timestamp": "2026-01-12T08:00:00+01:00", "user_id": "u1", "type": "open"})
        + "\n"
    )
    event, request = read_history(jsonl)
    assert isinstance(event, EventRow) and isinstance(request, RequestRow)  # sorted by time


def test_bad_rows_are_reported_with_line_and_column(tmp_path: Path):
    path = history_csv(
        tmp_path,
        [
            "2026-01-05T10:00:00Z,u1,request,c1,sale,,,,,a=0.5",
            "yesterday,u1,open,,,,,,,",
            "2026-01-05T10:00:00Z,u1,teleport,,,,,,,",
            "2026-01-05T10:00:00Z,u1,request,c1,sale,,high,,,a=0.5",
            "2026-01-05T10:00:00,u1,open,,,,,,,",
        ],
    )
    with pytest.raises(ValidationError) as caught:
        read_history(path)
    found = [(p.line, p.field) for p in caught.value.problems]
    assert found == [(3, "timestamp"), (4, "type"), (5, "priority"), (6, "timestamp")]


def test_a_shown_column_chooses_no_more_items_than_the_email_shows(tmp_path: Path):
    """Without it the simulation chose up to diversity.max_items: its no-repeat rule then held
    back more than a compose showing fewer would (the API passes its request's items)."""
    path = tmp_path / "h.csv"
    header = "timestamp,user_id,type,campaign,category,kind,priority,timezone,deferrable,items"
    header += ",shown"
    items = "a=0.5;b=0.4;c=0.3;d=0.2;e=0.1"
    path.write_text("\n".join([
        header,
        f"2026-01-05T10:00:00Z,u1,request,c1,sale,,,,,{items},2",
        f"2026-01-06T10:00:00Z,u1,request,c2,sale,,,,,{items},2",
        f"2026-01-07T10:00:00Z,u1,request,c3,sale,,,,,{items},",
        "2026-01-07T10:00:00Z,u2,request,c3,sale,,,,,a=0.5,0",
    ]) + "\n")  # fmt: skip
    with pytest.raises(ValidationError) as caught:
        read_history(path)
    [problem] = caught.value.problems
    assert (problem.line, problem.field) == (5, "shown") and "from 1 to 1000" in problem.message
    path.write_text("\n".join(path.read_text().splitlines()[:-1]) + "\n")
    rows = read_history(path)
    rules = load_rules(
        '[timeliness]\nno_repeat = "30d"\n[relevance]\nmin_relevance = 0.0\nmin_items = 1\n'
    )
    result = simulate(rules, rows, "shown")
    assert result.total.sent == 3  # two, two, then the one item none of them showed
    assert [len(row.request.campaigns) for row in rows] == [1, 1, 1]
    assert [row.request.campaigns[0].max_items for row in rows] == [2, 2, None]


def test_missing_column_is_named(tmp_path: Path):
    path = tmp_path / "h.csv"
    path.write_text("timestamp,type\n")
    with pytest.raises(ValidationError, match="user_id"):
        read_history(path)


def test_rules_reduce_weekly_volume_against_no_rules(tmp_path: Path):
    rows = read_history(history_csv(tmp_path, daily_requests()))
    before = simulate(Rules(), rows, "before")
    after = simulate(load_rules('[[caps]]\nmax = 2\nper = "7d"\n'), rows, "after")
    assert before.total.sent == 3 * 14 * 3
    assert before.total.requests == after.total.requests == 126
    # Any ISO week lies inside some rolling 7-day window, so no customer-week can exceed 2.
    assert 0 < after.total.sent <= 3 * 2 * 3
    assert after.total.sent + after.total.pending == 126
    assert after.rules[("cap:all:2/7d", "defer")] > 0
    assert sum(before.weekly) == sum(after.weekly) == 6
    assert before.weekly[-1] == 6
    assert sum(after.weekly[3:]) == 0 and after.weekly[2] > 0


def test_unsubscribe_in_history_suppresses_later_requests(tmp_path: Path):
    rows = read_history(
        history_csv(
            tmp_path,
            [
                f"2026-01-05T10:00:00Z,u1,request,c1,sale,,,,,{ITEMS}",
                "2026-01-05T11:00:00Z,u1,unsubscribe,,,,,,,",
                f"2026-01-06T10:00:00Z,u1,request,c1,sale,,,,,{ITEMS}",
            ],
        )
    )
    result = simulate(Rules(), rows)
    assert (result.total.sent, result.total.suppressed) == (1, 1)
    assert result.rules[("suppression", "suppress")] == 1


def test_cli_simulate_prints_tables_and_writes_an_svg_report(tmp_path: Path):
    history = history_csv(tmp_path, daily_requests())
    rules = tmp_path / "rules.toml"
    rules.write_text(CONTRACT)
    report = tmp_path / "report"
    result = CliRunner().invoke(
        simulate_command,
        ["--rules", str(rules), "--history", str(history), "--report", str(report)],
    )
    assert result.exit_code == 0, result.output
    assert "per campaign" in result.output and "TOTAL" in result.output
    assert re.search(r"sent: 126 -> \d+ \(-\d+\.\d%\)", result.output)
    page = (report / "index.html").read_text()
    svgs = re.findall(r"<svg.*?</svg>", page, flags=re.S)
    assert len(svgs) == 3
    for svg in svgs:
        ElementTree.fromstring(svg)  # well-formed XML
    assert "<script" not in page


def test_the_bundled_sample_history_shows_every_kind_of_decision():
    """fatigue/sample_history.csv (the README's simulate example) under the bundled rules."""
    from importlib.resources import files

    history = files("fatigue") / "sample_history.csv"
    rules = files("fatigue") / "default_rules.toml"
    result = CliRunner().invoke(
        simulate_command, ["--rules", str(rules), "--history", str(history)]
    )
    assert result.exit_code == 0, result.output
    deciding = {line.split()[0] for line in result.output.split("== decisions by")[1].splitlines()
                if line[:1].isalpha()}  # fmt: skip
    assert {"daily", "quiet_hours", "relevance", "send_time", "suppression", "holdout"} <= deciding
    before, after = map(int, re.search(r"sent: (\d+) -> (\d+)", result.output).groups())
    assert 0 < after < before


def test_cli_simulate_reports_bad_rules_without_a_traceback(tmp_path: Path):
    history = history_csv(tmp_path, daily_requests(1, 1, 1))
    rules = tmp_path / "rules.toml"
    rules.write_text('[[caps]]\nmax = 1\nper = "1d"\nscope = "x"\n')
    result = CliRunner().invoke(
        simulate_command, ["--rules", str(rules), "--history", str(history)]
    )
    assert result.exit_code == 1
    assert f"{rules}:4 [caps[0].scope]: unknown key 'scope'" in result.output
    assert "Traceback" not in result.output


def test_cli_rules_validate(tmp_path: Path):
    good = tmp_path / "good.toml"
    good.write_text(CONTRACT)
    ok = CliRunner().invoke(rules_group, ["validate", str(good)])
    assert ok.exit_code == 0 and "valid (1 cap(s)" in ok.output
    bad = tmp_path / "bad.toml"
    bad.write_text('[[caps]]\nmax = -1\nper = "1d"\n[cooldown]\nafter = "1h"\n')
    result = CliRunner().invoke(rules_group, ["validate", str(bad)])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert lines == [
        f"{bad}:2 [caps[0].max]: must be at least 0, got -1",
        f"{bad}:5 [cooldown.after]: unknown key 'after' in [cooldown] (allowed: after_any)",
        f"{bad}:4 [cooldown.after_any]: missing required key 'after_any' in [cooldown]",
    ]


def test_bar_chart_escapes_labels():
    svg = bar_chart("<t>", ["a&b"], {"s<1>": [3]})
    ElementTree.fromstring(svg)
    assert "a&amp;b" in svg and "<t>" not in svg


def test_weeks_are_counted_as_the_governor_counts_them(tmp_path: Path):
    """No zone: the rules' default (as calendar caps count); a deferred send: the week it went."""
    weekly_cap = load_rules(
        '[[caps]]\nmax = 1\nper = "1w"\ncalendar = true\n'
        '[quiet_hours]\nstart = "23:30"\nend = "23:45"\ndefault_timezone = "America/New_York"\n'
    )
    sunday_and_monday_there = history_csv(tmp_path, [
        f"2026-01-12T03:00:00Z,u1,request,a,sale,,,,,{ITEMS}",
        f"2026-01-12T15:00:00Z,u1,request,b,sale,,,,,{ITEMS}",
    ])  # fmt: skip
    result = simulate(weekly_cap, read_history(sunday_and_monday_there))
    assert result.total.sent == 2 and result.weekly[:3] == [0, 2, 0]
    quiet = load_rules('[quiet_hours]\nstart = "21:00"\nend = "08:00"\n')
    sunday_night = history_csv(tmp_path, [
        f"2026-01-18T22:00:00Z,u1,request,a,sale,,,Europe/London,,{ITEMS}",
        f"2026-01-19T12:00:00Z,u2,request,a,sale,,,Europe/London,,{ITEMS}",
    ])  # fmt: skip
    result = simulate(quiet, read_history(sunday_night))
    assert result.total.sent == 2  # u1's went on Monday at 08:00
    assert sum(count * n for count, n in enumerate(result.weekly)) == 2


def test_compared_runs_count_the_weeks_of_customers_without_a_zone_alike(tmp_path: Path):
    """Rules that change nothing leave the weekly histogram as it was, whatever their zone."""
    london = load_rules('[quiet_hours]\nstart = "03:00"\nend = "03:01"\n'
                        'default_timezone = "Europe/London"\n')  # fmt: skip
    sunday_and_monday_late = history_csv(tmp_path, [
        f"2026-06-07T23:30:00Z,u1,request,a,sale,,,,,{ITEMS}",  # Monday 00:30 in London
        f"2026-06-08T23:30:00Z,u1,request,b,sale,,,,,{ITEMS}",
    ])  # fmt: skip
    history = read_history(sunday_and_monday_late)
    before = simulate(Rules(source="no rules"), history, week_zone=london.default_timezone)
    after = simulate(london, history)
    assert before.total.sent == after.total.sent == 2
    assert before.weekly == after.weekly == [0, 0, 1, 0, 0, 0, 0, 0][: len(after.weekly)]
    result = CliRunner().invoke(simulate_command, [
        "--rules", str(_write(tmp_path / "q.toml", london.text)),
        "--history", str(sunday_and_monday_late),
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = [line.split()[-8:] for line in result.output.splitlines()
            if line.startswith(("before (no rules)", "after (q.toml)"))]  # fmt: skip
    assert rows == [["0", "0", "1", "0", "0", "0", "0", "0"]] * 2


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
