"""Fatigue endpoints for engineers: the active rules, validating a rule file, explaining a user."""

from __future__ import annotations

import json
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import Blueprint

from api.auth import Role
from api.campaigns import CampaignRegistry
from api.compose import decision_answer
from api.routing import operation, parse_model
from api.schemas.common import Identifier, ProblemError, Strict
from api.schemas.compose import CampaignIn
from api.schemas.fatigue import (
    DecidingRule,
    ExplainQuery,
    FatigueOut,
    RulesIn,
    RulesOut,
    RulesVerdict,
    SimulationIn,
    SimulationOut,
    SimulationRun,
    Tally,
)
from api.services import services, settle_pending
from fatigue.domain import Decision
from fatigue.errors import Problem, ValidationError
from fatigue.rules import described_source

bp = Blueprint("fatigue", __name__)


class UserPath(Strict):
    """The customer named in a path."""

    user_id: Identifier


RECENT_DECISIONS = 20


@operation(
    bp,
    "/v1/fatigue/rules",
    "GET",
    roles=(Role.ENGINEER,),
    response=RulesOut,
    summary="The fatigue rules in force, as TOML, and their source.",
)
def get_rules() -> RulesOut:
    """Return the text of the rules the governor applies (as read at start) and their source.

    Not the file as it is now: an edit on disk takes effect only when the server restarts,
    and an engineer must see what is applied, not what will be.
    """
    rules = services().get("governor").rules
    return RulesOut(source=described_source(rules), toml=rules.text)


@operation(
    bp,
    "/v1/fatigue/rules/validate",
    "POST",
    roles=(Role.ENGINEER,),
    body=RulesIn,
    response=RulesVerdict,
    summary="Check a rule file; every problem is listed with its line and field (with a "
    "campaign registry, also caps scoped to a campaign or category none has).",
)
def validate_rules(body: RulesIn) -> RulesVerdict:
    """Validate TOML text without reading any file (the text is never taken as a path).

    With a campaign registry, a cap scoped to a campaign or category no registered campaign
    has is an error too, as it is when the server starts: it would never apply.
    """
    from fatigue.rules_schema import parse_rules

    rules, problems = parse_rules(body.toml, "<request>")
    if rules is not None:
        registry: CampaignRegistry = services().get("campaigns")
        problems = registry.unreachable(rules)
    return RulesVerdict(valid=not problems, errors=[_error(p) for p in problems])


@operation(
    bp,
    "/v1/users/<path:user_id>/fatigue",  # path: customer ids may hold "/" (compose takes them)
    "GET",
    roles=(Role.ENGINEER,),
    query=ExplainQuery,
    response=FatigueOut,
    summary="Explain a customer's state: counters, suppression, when each kind may next go "
    "(for a category or campaign when given), and the last decisions with their reasons.",
)
def explain_user(user_id: str, query: ExplainQuery) -> FatigueOut:
    """Explain why ``user_id`` is or is not being mailed."""
    if query.timezone is not None:
        try:
            ZoneInfo(query.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            problem = Problem(f"unknown IANA time zone {query.timezone!r}", field="timezone")
            raise ValidationError(problem) from exc
    parse_model(UserPath, {"user_id": user_id}, "path")  # the same rules as ids in bodies
    settle_pending()
    governor = services().get("governor")
    category = explained_category(query)
    explanation = governor.explain(user_id, query.timezone, category, query.campaign or "")
    logged = services().get("composer").recent_decisions(user_id, limit=RECENT_DECISIONS)
    return FatigueOut.model_validate(
        {
            **explanation.to_dict(),
            "recent_decisions": [decision_answer(Decision.from_dict(d)) for d in logged],
        }
    )


_QUERY_FIELDS = {"campaign.id": "campaign", "campaign.category": "category"}


def explained_category(query: ExplainQuery) -> str:
    """Return the category asked about: the query's, or else the registered campaign's.

    A registry checks the campaign as compose does (unknown, or registered with another
    category: 422), with the problems named by their query parameters.
    """
    if query.campaign is None:
        return query.category
    given = {"category": query.category} if query.category else {}
    asked = CampaignIn.model_validate({"id": query.campaign, **given})
    registry: CampaignRegistry = services().get("campaigns")
    try:
        resolved = registry.resolve(asked, "campaign")
    except ValidationError as exc:
        raise ValidationError(
            [replace(p, field=_QUERY_FIELDS.get(p.field or "", p.field)) for p in exc.problems]
        ) from exc
    return str(resolved.category)


@operation(
    bp,
    "/v1/fatigue/simulate",
    "POST",
    roles=(Role.ENGINEER,),
    body=SimulationIn,
    response=SimulationOut,
    summary="Replay a history through the rules in force and, if given, proposed rules.",
)
def simulate_rules(body: SimulationIn) -> SimulationOut:
    """Replay ``body.history`` on a private memory store; nothing live is touched."""
    from fatigue.rules_schema import parse_rules
    from fatigue.simulate import simulate

    history = _history(body.history)
    runs = [("in force", services().get("governor").rules)]
    if body.rules is not None:
        proposed, problems = parse_rules(body.rules, "rules")
        if problems or proposed is None:
            raise ValidationError(problems)
        runs.append(("proposed", proposed))
    zone = runs[-1][1].default_timezone  # every run counts weeks in the same zone
    return SimulationOut(
        runs=[_run(simulate(rules, history, label, zone)) for label, rules in runs]
    )


def _history(records: list[dict[str, Any]]) -> list[Any]:
    """Parse history records with the file reader, so errors name the record (as a line)."""
    from fatigue.history import read_history

    with tempfile.TemporaryDirectory(prefix="rapport-history-") as folder:
        path = Path(folder) / "history.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
        try:
            return read_history(path)
        except ValidationError as exc:
            raise ValidationError(
                [replace(p, source="history", line=p.line) for p in exc.problems]
            ) from exc


def _run(result: Any) -> SimulationRun:
    def tally(found: Any) -> Tally:
        return Tally.model_validate(vars(found))

    deciding = [
        DecidingRule(rule=rule, action=action, count=count)
        for (rule, action), count in sorted(result.rules.items())
    ]
    return SimulationRun(
        label=result.label,
        total=tally(result.total),
        campaigns={name: tally(found) for name, found in result.campaigns.items()},
        deciding=deciding,
        weekly=list(result.weekly),
    )


def _error(problem: Problem) -> ProblemError:
    return ProblemError(
        message=problem.message, line=problem.line, field=problem.field, source=problem.source
    )
