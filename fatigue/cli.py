"""``rapport simulate`` and ``rapport rules validate``: try fatigue rules before switching them on.

Heavy work is imported inside the commands so ``rapport --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path

import click

from fatigue.errors import user_errors

_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.command("simulate")
@click.option("--rules", "rules_path", required=True, type=_FILE, help="Rule file to try.")
@click.option("--history", required=True, type=_FILE, help="Requests and events (CSV or JSONL).")
@click.option(
    "--baseline-rules", type=_FILE, help="Rules to compare against (default: no caps at all)."
)
@click.option(
    "--report",
    "report_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Also write an HTML report with charts into this directory.",
)
def simulate(
    rules_path: Path, history: Path, baseline_rules: Path | None, report_dir: Path | None
) -> None:
    """Replay a history through the governor and report what the rules would change."""
    from fatigue.history import read_history
    from fatigue.report import check_writable, terminal_report, write_report
    from fatigue.rules import Rules, load_rules
    from fatigue.simulate import simulate as run

    with user_errors():
        rules = load_rules(rules_path)
        baseline = load_rules(baseline_rules) if baseline_rules else Rules(source="no rules")
        rows = read_history(history)
        if report_dir is not None:
            check_writable(report_dir)
        zone = rules.default_timezone  # both runs count weeks in the same zone
        before = run(
            baseline,
            rows,
            label=f"before ({baseline_rules.name if baseline_rules else 'no rules'})",
            week_zone=zone,
        )
        after = run(rules, rows, label=f"after ({rules_path.name})", week_zone=zone)
        click.echo(terminal_report(after, before))
        if report_dir is not None:
            path = write_report(report_dir, after, before)
            click.echo(f"\nreport: {path}")


@click.group("rules")
def rules() -> None:
    """Fatigue rule files."""


@rules.command("validate")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--campaigns",
    "campaigns_file",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="RAPPORT_CAMPAIGNS_FILE",
    help="Campaign registry: caps scoped to a campaign or category none of its campaigns has "
    "are errors. Default: $RAPPORT_CAMPAIGNS_FILE (the server's).",
)
def validate(path: Path, campaigns_file: Path | None) -> None:
    """Check a rule file and print every problem at once."""
    from fatigue.rules import load_rules
    from fatigue.rules import validate as check
    from fatigue.scopes import read_registered, unreachable_caps

    problems = check(path)
    if not problems:
        with user_errors():
            loaded = load_rules(path)
            if campaigns_file is not None:
                problems = unreachable_caps(loaded, read_registered(campaigns_file))
    if problems:
        for problem in problems:
            click.echo(str(problem), err=True)
        raise click.exceptions.Exit(1)
    sections = [name for name in _SECTIONS if getattr(loaded, name) is not None]
    checked = f"; campaigns checked against {campaigns_file}" if campaigns_file else ""
    click.echo(
        f"{path}: valid ({len(loaded.caps)} cap(s); "
        f"{', '.join(sections) or 'no other rules'}{checked})"
    )


_SECTIONS = (
    "cooldown",
    "quiet_hours",
    "relevance",
    "timeliness",
    "diversity",
    "engagement",
    "holdout",
    "send_time",
)
