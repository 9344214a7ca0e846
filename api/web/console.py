"""The engineers' fatigue console: the rules in force, trying new rules, one customer's state.

Rule checking, the simulation, its charts and the customer explanation are the fatigue
package's own (``parse_rules``, ``read_history``, ``simulate``, ``fatigue.report`` and
``Governor.explain``), the same functions the API and ``rapport simulate`` call.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path, PurePath
from typing import Any

from flask import render_template, request
from werkzeug.datastructures import FileStorage

from api.auth import Role
from api.services import services, settle_pending
from api.web import bp
from api.web.readable import describe_rules
from api.web.session import current_key, login_required
from fatigue.domain import Decision
from fatigue.errors import Problem, ValidationError
from fatigue.report import report_charts
from fatigue.rules import described_source
from fatigue.suppressions import describe_suppression

ENGINEER = (Role.ENGINEER,)
HISTORY_SUFFIXES = (".csv", ".jsonl", ".ndjson", ".json")
MAX_USER_ID = 200
MAX_CATEGORY = 100  # as a compose campaign's category
CUSTOMER_PAGE = "studio/customer.html"
RECENT_DECISIONS = 20


def rules_text() -> tuple[str, str]:
    """Return the text of the rules the governor applies (as read at start) and their source."""
    rules = services().get("governor").rules
    return rules.text, described_source(rules)


@bp.get("/fatigue")
def rules_page() -> str:
    """Show the rules the governor applies now, in words and as the TOML file."""
    login_required(ENGINEER)
    rules = services().get("governor").rules
    text, source = rules_text()
    return render_template(
        "studio/rules.html", lines=describe_rules(rules), toml=text, source=source
    )


@dataclass
class Trial:
    """What the simulate page shows after a submission."""

    rules: str
    problems: list[Problem]
    checked: bool = False
    result: dict[str, Any] | None = None


@bp.route("/fatigue/simulate", methods=["GET", "POST"])
def simulate_page() -> tuple[str, int] | str:
    """Paste or upload candidate rules, check them, and replay a history through them."""
    login_required(ENGINEER)
    if request.method == "GET":
        return render_template("studio/simulate.html", trial=Trial(rules_text()[0], []))
    trial = _trial()
    status = 422 if trial.problems else 200
    return render_template("studio/simulate.html", trial=trial), status


def oversized_simulation(limit_kib: int) -> str | None:
    """Answer a simulation too large to read with its page, or None if it is not one.

    The body was refused unread: the page shows the rules in force, and console.js puts back
    the candidate rules it kept in the browser tab.
    """
    key = current_key()
    if request.endpoint != "web.simulate_page" or key is None or not key.allows(ENGINEER):
        return None
    problem = Problem(
        f"the rules and the history file together are larger than the server accepts "
        f"({limit_kib} KiB), so nothing was run; choose a smaller history file",
        source="history",
    )
    trial = Trial(rules_text()[0], [problem], checked=True)
    return render_template("studio/simulate.html", trial=trial, restore_rules=True)


def _trial() -> Trial:
    """Check the submitted rules and, when asked, run the simulation."""
    from fatigue.rules_schema import parse_rules

    upload = request.files.get("rules_file")
    text = request.form.get("rules", "")
    if upload is not None and upload.filename:
        text = upload.read().decode("utf-8", "replace")
    candidate, problems = parse_rules(text, "candidate rules") if text.strip() else (None, [])
    trial = Trial(text, list(problems), checked=True)
    if problems or request.form.get("action") != "simulate":
        return trial
    try:
        history = _history(request.files.get("history"))
    except ValidationError as exc:
        trial.problems = exc.problems
        return trial
    trial.result = _replay(history, candidate)
    return trial


def _history(upload: FileStorage | None) -> list[Any]:
    """Read an uploaded history file with the simulation's own reader."""
    from fatigue.history import read_history

    if upload is None or not upload.filename:
        raise ValidationError(Problem("choose a history file (CSV or JSON Lines)", "history"))
    name = PurePath(upload.filename).name
    suffix = PurePath(name).suffix.lower()
    if suffix not in HISTORY_SUFFIXES:
        allowed = ", ".join(HISTORY_SUFFIXES)
        raise ValidationError(Problem(f"unknown history format (allowed: {allowed})", name))
    with tempfile.TemporaryDirectory(prefix="rapport-history-") as folder:
        path = Path(folder) / f"history{suffix}"
        upload.save(path)
        try:
            return read_history(path)
        except ValidationError as exc:
            raise ValidationError([replace(p, source=name) for p in exc.problems]) from exc


def _replay(history: list[Any], candidate: Any) -> dict[str, Any]:
    """Replay the history through the rules in force and the candidate; chart both."""
    from fatigue.report import campaign_rows
    from fatigue.simulate import simulate

    in_force = services().get("governor").rules
    zone = (candidate or in_force).default_timezone  # both runs count weeks in the same zone
    before = simulate(in_force, history, "in force", zone)
    after = simulate(candidate, history, "candidate", zone) if candidate is not None else None
    shown = after or before
    sent_before, sent_after = before.total.sent, shown.total.sent
    change = (sent_after - sent_before) / sent_before * 100 if sent_before else 0.0
    return {
        "rows": len(history),
        "runs": [run for run in (before, after) if run is not None],
        "charts": report_charts(shown, before if after is not None else None),
        "campaigns": {run.label: campaign_rows(run) for run in (before, after) if run},
        "sent": (sent_before, sent_after, change),
    }


@bp.get("/fatigue/customers")
def customer_page() -> tuple[str, int] | str:
    """Explain one customer's fatigue state (``?user_id=``)."""
    login_required(ENGINEER)
    user_id = request.args.get("user_id", "").strip()
    category = request.args.get("category", "").strip()
    if not user_id:
        return render_template(CUSTOMER_PAGE, user_id="", category=category, state=None)
    problem = _too_long(user_id, "a customer id", MAX_USER_ID) or _too_long(
        category, "a category", MAX_CATEGORY
    )
    if problem:
        return render_template(
            CUSTOMER_PAGE, user_id="", category="", error=problem, state=None
        ), 422
    return render_template(
        CUSTOMER_PAGE, user_id=user_id, category=category, state=customer_state(user_id, category)
    )


def _too_long(value: str, what: str, most: int) -> str:
    return f"{what} is at most {most} characters" if len(value) > most else ""


def customer_state(user_id: str, category: str = "") -> dict[str, Any]:
    """Gather the explanation, the recent sends and decisions and the engagement tier."""
    from fatigue.store.base import StateQuery

    settle_pending()
    governor = services().get("governor")
    explanation = governor.explain(user_id, category=category)
    rules = governor.rules
    now = explanation.at
    since = (now - rules.history_horizon).timestamp()
    state = governor.store.load([StateQuery(user_id, now.timestamp(), since)])[0]
    sends = sorted(state.sends, key=lambda record: record.at, reverse=True)
    return {
        "explanation": explanation,
        "tier": engagement_tier(explanation),
        "suppression": [
            describe_suppression(scope, detail)
            for scope, detail in sorted(explanation.suppression.items())
        ],
        "sends": [(datetime.fromtimestamp(s.at, UTC), s) for s in sends[:20]],
        "decisions": [
            Decision.from_dict(data)
            for data in services().get("composer").recent_decisions(user_id, limit=RECENT_DECISIONS)
        ],
        "horizon_days": rules.history_horizon.days,
    }


def engagement_tier(explanation: Any) -> str:
    """Name the engagement tier, read from the rules the governor itself applied.

    The governor reports ``sunset`` as a failing rule and a reduced cadence as an extra cap
    named ``engagement:reduced:<max>``, so the tier shown is the one it would act on.
    """
    rules = {reason.rule for entry in explanation.next_allowed for reason in entry.reasons}
    if "sunset" in rules:
        return "sunset"
    if any(rule.startswith("engagement:reduced") for rule in rules):
        return "reduced cadence"
    return "normal"
