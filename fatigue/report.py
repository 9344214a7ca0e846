"""Simulation reports: a terminal table and a self-contained HTML page with inline SVG charts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path

from fatigue.errors import ConfigurationError
from fatigue.simulate import WEEK_BUCKETS, SimulationResult
from fatigue.writable import unwritable

COLOURS = ("#8c8c8c", "#2b6cb0", "#d69e2e", "#c53030", "#38a169")
BUCKET_LABELS = [str(n) for n in range(WEEK_BUCKETS - 1)] + [f"{WEEK_BUCKETS - 1}+"]


def table(rows: Sequence[Sequence[object]], header: Sequence[str]) -> str:
    """Format rows as a plain-text table with right-aligned numbers."""
    cells = [[str(cell) for cell in row] for row in [header, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]

    def line(row: list[str]) -> str:
        return "  ".join(
            cell.rjust(width) if index else cell.ljust(width)
            for index, (cell, width) in enumerate(zip(row, widths, strict=True))
        )

    return "\n".join([line(cells[0]), "  ".join("-" * w for w in widths), *map(line, cells[1:])])


def campaign_rows(result: SimulationResult) -> list[list[object]]:
    """Return one row per campaign, plus the total."""
    rows: list[list[object]] = []
    for name, tally in [*sorted(result.campaigns.items()), ("TOTAL", result.total)]:
        rows.append(
            [name, tally.requests, tally.sent, tally.deferred, tally.suppressed, tally.pending]
        )
    return rows


def terminal_report(after: SimulationResult, before: SimulationResult | None) -> str:
    """Return the text report: per campaign, per rule, messages per customer per week."""
    header = ["campaign", "requests", "sent", "deferred", "suppressed", "still deferred"]
    parts = [f"== {after.label}: per campaign ==", table(campaign_rows(after), header)]
    rule_rows = [[rule, action, count] for (rule, action), count in sorted(after.rules.items())]
    parts += ["", "== decisions by deciding rule ==", table(rule_rows, ["rule", "action", "count"])]
    weekly: list[list[object]] = [["messages/week", *BUCKET_LABELS]]
    if before is not None:
        weekly.append([before.label, *before.weekly])
    weekly.append([after.label, *after.weekly])
    labels = [str(cell) for cell in weekly[0]]
    parts += ["", "== customer-weeks by messages received ==", table(weekly[1:], labels)]
    if before is not None:
        sent_before, sent_after = before.total.sent, after.total.sent
        change = (sent_after - sent_before) / sent_before * 100 if sent_before else 0.0
        parts += ["", f"sent: {sent_before} -> {sent_after} ({change:+.1f}%)"]
    return "\n".join(parts)


def bar_chart(
    title: str, labels: Sequence[str], series: Mapping[str, Sequence[float]], width: int = 640
) -> str:
    """Return an inline SVG grouped bar chart."""
    height, top, bottom, left = 260, 30, 40, 50
    peak = max((value for values in series.values() for value in values), default=0) or 1
    group = (width - left - 10) / max(len(labels), 1)
    bar = group * 0.8 / max(len(series), 1)
    scale = (height - top - bottom) / peak
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'role="img" aria-label="{escape(title)}">',
        f'<text x="{left}" y="18" font-weight="bold">{escape(title)}</text>',
        f'<line x1="{left}" y1="{height - bottom}" x2="{width - 10}" y2="{height - bottom}" '
        'stroke="#333"/>',
        f'<text x="4" y="{top + 10}" font-size="11">{peak:g}</text>',
    ]
    for index, label in enumerate(labels):
        x0 = left + index * group + group * 0.1
        for position, (name, values) in enumerate(series.items()):
            value = values[index]
            h = value * scale
            x = x0 + position * bar
            colour = COLOURS[position % len(COLOURS)]
            parts.append(
                f'<rect x="{x:.1f}" y="{height - bottom - h:.1f}" width="{bar:.1f}" '
                f'height="{h:.1f}" fill="{colour}"><title>{escape(name)} {escape(label)}: '
                f"{value:g}</title></rect>"
            )
        parts.append(
            f'<text x="{x0 + group * 0.4:.1f}" y="{height - bottom + 14}" font-size="11" '
            f'text-anchor="middle">{escape(label)}</text>'
        )
    for position, name in enumerate(series):
        colour = COLOURS[position % len(COLOURS)]
        y = height - 12
        x = left + position * 150
        parts.append(f'<rect x="{x}" y="{y - 9}" width="10" height="10" fill="{colour}"/>')
        parts.append(f'<text x="{x + 14}" y="{y}" font-size="12">{escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def report_charts(after: SimulationResult, before: SimulationResult | None) -> list[str]:
    """Return the report's charts as inline SVG: weekly load, per campaign, per deciding rule."""
    weekly = {after.label: after.weekly}
    if before is not None:
        weekly = {before.label: before.weekly, **weekly}
    names = sorted(after.campaigns)
    outcome = {
        label: [getattr(after.campaigns[name], label) for name in names]
        for label in ("sent", "deferred", "suppressed", "pending")
    }
    rules = sorted({rule for rule, _ in after.rules})
    by_rule = {
        action: [after.rules[(rule, action)] for rule in rules]
        for action in ("send", "defer", "suppress")
    }
    return [
        bar_chart("Customer-weeks by messages received", BUCKET_LABELS, weekly),
        bar_chart(f"Outcome per campaign ({after.label})", names, outcome),
        bar_chart(f"Decisions by deciding rule ({after.label})", rules, by_rule),
    ]


def html_report(after: SimulationResult, before: SimulationResult | None) -> str:
    """Return a self-contained HTML page (no scripts, no external assets)."""
    header = ["campaign", "requests", "sent", "deferred", "suppressed", "still deferred"]
    return "\n".join(
        [
            "<!doctype html>",
            '<html lang="en"><head><meta charset="utf-8"><title>Rapport simulation</title>',
            "<style>body{font-family:sans-serif;margin:2em}td,th{padding:2px 8px;"
            "text-align:right}td:first-child,th:first-child{text-align:left}</style>",
            "</head><body>",
            f"<h1>Simulation: {escape(after.label)}</h1>",
            *report_charts(after, before),
            "<h2>Per campaign</h2>",
            _html_table(campaign_rows(after), header),
            "</body></html>",
        ]
    )


def _html_table(rows: Sequence[Sequence[object]], header: Sequence[str]) -> str:
    head = "".join(f"<th>{escape(str(cell))}</th>" for cell in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(str(cell))}</td>" for cell in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


REPORT_FILE = "index.html"


def check_writable(directory: Path) -> None:
    """Fail before a simulation, not after it, when its report could not be written.

    Nothing is created, so a run that then fails on its input leaves no empty directory.
    ``write_report`` still reports what this cannot foresee (a full disk, a race).
    """
    reason = unwritable(directory)
    if reason:
        raise ConfigurationError(f"cannot write {directory}: {reason}")
    if (directory / REPORT_FILE).is_dir():
        raise ConfigurationError(f"cannot write {directory / REPORT_FILE}: it is a directory")


def write_report(directory: Path, after: SimulationResult, before: SimulationResult | None) -> Path:
    """Write ``index.html`` into ``directory`` and return its path; ConfigurationError if not."""
    path = directory / REPORT_FILE
    try:
        directory.mkdir(parents=True, exist_ok=True)
        path.write_text(html_report(after, before), encoding="utf-8")
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigurationError(f"cannot write {exc.filename or path}: {reason}") from exc
    return path
