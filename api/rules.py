"""Fatigue endpoints for engineers: the active rules, validating a rule file, explaining a user."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import Blueprint, current_app

from api.auth import Role
from api.problems import ApiProblem
from api.routing import operation
from api.schemas.common import ProblemError
from api.schemas.fatigue import FatigueOut, RulesIn, RulesOut, RulesVerdict, TimezoneQuery
from api.services import services
from fatigue.errors import Problem, ValidationError

bp = Blueprint("fatigue", __name__)


@operation(
    bp,
    "/v1/fatigue/rules",
    "GET",
    roles=(Role.ENGINEER,),
    response=RulesOut,
    summary="The fatigue rules in force, as TOML, and their source.",
)
def get_rules() -> RulesOut:
    """Return the configured rule file's text, or the bundled defaults."""
    path = current_app.config.get("RULES") or ""
    if path:
        return RulesOut(source=str(path), toml=Path(path).read_text(encoding="utf-8"))
    text = resources.files("fatigue").joinpath("default_rules.toml").read_text("utf-8")
    return RulesOut(source="bundled defaults (fatigue/default_rules.toml)", toml=text)


@operation(
    bp,
    "/v1/fatigue/rules/validate",
    "POST",
    roles=(Role.ENGINEER,),
    body=RulesIn,
    response=RulesVerdict,
    summary="Check a rule file; every problem is listed with its line and field.",
)
def validate_rules(body: RulesIn) -> RulesVerdict:
    """Validate TOML text without reading any file (the text is never taken as a path)."""
    from fatigue.rules_schema import parse_rules

    _, problems = parse_rules(body.toml, "<request>")
    return RulesVerdict(valid=not problems, errors=[_error(p) for p in problems])


@operation(
    bp,
    "/v1/users/<user_id>/fatigue",
    "GET",
    roles=(Role.ENGINEER,),
    query=TimezoneQuery,
    response=FatigueOut,
    summary="Explain a customer's state: counters, suppression, when each kind may next go.",
)
def explain_user(user_id: str, query: TimezoneQuery) -> FatigueOut:
    """Explain why ``user_id`` is or is not being mailed."""
    if query.timezone is not None:
        try:
            ZoneInfo(query.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            problem = Problem(f"unknown IANA time zone {query.timezone!r}", field="timezone")
            raise ValidationError(problem) from exc
    if not user_id.strip() or len(user_id) > 200:
        raise ApiProblem("validation", "user_id must be 1 to 200 characters")
    explanation = services().get("governor").explain(user_id, query.timezone)
    return FatigueOut.model_validate(explanation.to_dict())


def _error(problem: Problem) -> ProblemError:
    return ProblemError(
        message=problem.message, line=problem.line, field=problem.field, source=problem.source
    )
