"""Parse and check a rule file, collecting every problem with its key and line.

``tomllib`` reports no line numbers for values, so ``fatigue.toml_lines`` finds each key in the
source.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fatigue import rules as r
from fatigue.domain import Channel, ContentKind
from fatigue.durations import duration_unit, parse_clock, parse_duration
from fatigue.errors import Problem
from fatigue.store.base import MAX_SOFT_BOUNCES
from fatigue.toml_lines import key_lines, line_of, read_toml

Convert = Callable[[Any], Any]


@dataclass(frozen=True)
class Key:
    """One allowed key: how to convert its value, and whether it must be present."""

    convert: Convert
    required: bool = False


def _typed(kind: type | tuple[type, ...], label: str) -> Convert:
    def convert(value: Any) -> Any:
        # bool is an int in Python; a cap of ``true`` is a typo, not 1.
        if isinstance(value, bool) and kind is not bool:
            raise ValueError(f"expected {label}, got a boolean")
        if not isinstance(value, kind):
            raise ValueError(f"expected {label}, got {type(value).__name__} {value!r}")
        return value

    return convert


def _int(low: int, high: int | None = None) -> Convert:
    def convert(value: Any) -> int:
        number = _typed(int, "an integer")(value)
        if number < low or (high is not None and number > high):
            bound = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise ValueError(f"must be {bound}, got {number}")
        return int(number)

    return convert


def _float(low: float, high: float) -> Convert:
    def convert(value: Any) -> float:
        number = _typed((int, float), "a number")(value)
        if not low <= number <= high:
            raise ValueError(f"must be between {low:g} and {high:g}, got {number}")
        return float(number)

    return convert


def _choice(enum: type[Any]) -> Convert:
    def convert(value: Any) -> Any:
        try:
            return enum(_typed(str, "a string")(value))
        except ValueError:
            allowed = ", ".join(repr(member.value) for member in enum)
            raise ValueError(f"{value!r} is not one of {allowed}") from None

    return convert


def _holdout_kinds(value: Any) -> tuple[ContentKind, ...]:
    items = _typed(list, "a list of content kinds")(value)
    kinds = tuple(_choice(ContentKind)(item) for item in items)
    if ContentKind.TRANSACTIONAL in kinds:
        raise ValueError(
            "a holdout may never hold back transactional mail (receipts, password resets): "
            "remove 'transactional' from kinds"
        )
    return kinds


def _duration(value: Any) -> Any:
    return parse_duration(_typed(str, "a duration string such as '16h'")(value))


def _positive_duration(value: Any) -> Any:
    """Parse a window or a time to live, which zero would make meaningless (Redis refuses 0 s)."""
    found = _duration(value)
    if not found:
        raise ValueError(f"{value!r} must be longer than 0s")
    return found


def _clock(value: Any) -> Any:
    return parse_clock(_typed(str, "a time string such as '21:00'")(value))


def _zone(value: Any) -> str:
    name = _typed(str, "an IANA time zone name")(value)
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not an IANA time zone name") from None
    return str(name)


_str = _typed(str, "a string")


def _scope(value: Any) -> str:
    """Read a cap's category or campaign; a blank one matched nothing here, everything on Redis."""
    text = _str(value)
    if not text.strip():
        raise ValueError("must name a category or campaign; leave the key out to cap all mail")
    return str(text)


_bool = _typed(bool, "true or false")

SECTIONS: dict[str, dict[str, Key]] = {
    "caps": {
        "max": Key(_int(0), required=True),
        "per": Key(_positive_duration, required=True),
        "name": Key(_str),
        "channel": Key(_choice(Channel)),
        "category": Key(_scope),
        "campaign": Key(_scope),
        "calendar": Key(_bool),
    },
    "cooldown": {"after_any": Key(_duration, required=True)},
    "quiet_hours": {
        "start": Key(_clock, required=True),
        "end": Key(_clock, required=True),
        "default_timezone": Key(_zone),
        "transactional": Key(_bool),
    },
    "relevance": {
        "min_relevance": Key(_float(0.0, 1.0), required=True),
        "min_items": Key(_int(0)),
    },
    "timeliness": {"max_age_editorial": Key(_duration), "no_repeat": Key(_duration)},
    "diversity": {
        "max_items": Key(_int(1)),
        "max_per_category": Key(_int(1)),
        "strategy": Key(_choice(r.DiversityStrategy)),
        "mmr_lambda": Key(_float(0.0, 1.0)),
    },
    "engagement": {
        "reduce_after": Key(_int(1), required=True),
        "reduced_max": Key(_int(0), required=True),
        "reduced_per": Key(_positive_duration, required=True),
        "sunset_after": Key(_int(1)),
    },
    "transactional": {"count_toward_caps": Key(_bool)},
    "suppression": {"soft_bounce_threshold": Key(_int(1, MAX_SOFT_BOUNCES))},
    "holdout": {
        "percent": Key(_float(0.0, 100.0), required=True),
        "salt": Key(_str),
        "kinds": Key(_holdout_kinds),
    },
    "send_time": {
        "default_hour": Key(_int(0, 23)),
        "min_events": Key(_int(1)),
        "audience_min_events": Key(_int(1)),
    },
    "store": {
        "on_store_error": Key(_choice(r.StoreErrorPolicy)),
        "retry_after": Key(_positive_duration),
        "idempotency_ttl": Key(_positive_duration),
        "engagement_ttl": Key(_positive_duration),
        "decision_log_ttl": Key(_positive_duration),
    },
}
ARRAY_SECTIONS = frozenset({"caps"})


class _Checker:
    """Collects problems while converting one parsed document."""

    def __init__(self, text: str, source: str) -> None:
        self.source = source
        self.text = text
        self.lines = key_lines(text)
        self.problems: list[Problem] = []

    def problem(self, message: str, path: tuple[Any, ...]) -> None:
        field = _field_name(path)
        self.problems.append(Problem(message, self.source, self.line(path), field or None))

    def line(self, path: tuple[Any, ...]) -> int | None:
        return line_of(self.text, self.lines, path)

    def table(self, data: Any, section: str, path: tuple[Any, ...]) -> dict[str, Any] | None:
        if not isinstance(data, dict):
            self.problem(f"[{section}] must be a table", path)
            return None
        keys = SECTIONS[section]
        values: dict[str, Any] = {}
        for name, value in data.items():
            if name not in keys:
                allowed = ", ".join(sorted(keys))
                message = f"unknown key {name!r} in [{section}] (allowed: {allowed})"
                self.problem(message, (*path, name))
                continue
            try:
                values[name] = keys[name].convert(value)
            except ValueError as exc:
                self.problem(str(exc), (*path, name))
        for name, key in keys.items():
            if key.required and name not in data:
                self.problem(f"missing required key {name!r} in [{section}]", (*path, name))
        return values if len(values) == len(data) else None


def parse_rules(text: str, source: str = "<rules>") -> tuple[r.Rules | None, list[Problem]]:
    """Parse rule-file text into ``Rules``; return ``(None, problems)`` when anything is wrong."""
    document = read_toml(text, source)
    if isinstance(document, Problem):
        return None, [document]
    checker = _Checker(text, source)
    sections: dict[str, Any] = {}
    for name, data in document.items():
        if name not in SECTIONS:
            allowed = ", ".join(sorted(SECTIONS))
            checker.problem(f"unknown section or key {name!r} (allowed: {allowed})", (name,))
        elif name in ARRAY_SECTIONS:
            sections[name] = _array(checker, name, data)
        else:
            sections[name] = checker.table(data, name, (name,))
    if checker.problems:
        return None, checker.problems
    rules = _build(sections, document, checker)
    _check_together(rules, checker)
    return (None, checker.problems) if checker.problems else (rules, [])


def _check_together(rules: r.Rules, checker: _Checker) -> None:
    """Refuse settings that are each valid but together could never let an email go."""
    relevance, diversity = rules.relevance, rules.diversity
    most = diversity.max_items if diversity is not None else None
    if relevance is not None and most is not None and most < relevance.min_items:
        checker.problem(
            f"max_items {most} is below relevance.min_items {relevance.min_items}: "
            "no email could ever hold enough items to be sent",
            ("diversity", "max_items"),
        )


def _array(checker: _Checker, name: str, data: Any) -> list[dict[str, Any] | None]:
    if not isinstance(data, list):
        checker.problem(f"{name} must be an array of tables: write [[{name}]]", (name,))
        return []
    return [checker.table(item, name, (name, index)) for index, item in enumerate(data)]


def _build(sections: Mapping[str, Any], document: Mapping[str, Any], checker: _Checker) -> r.Rules:
    caps = tuple(
        _cap(values, str(document["caps"][index]["per"]), index, checker)
        for index, values in enumerate(sections.get("caps", []))
    )
    _check_distinct_names(caps, checker)
    build: dict[str, Any] = {"caps": caps, "source": checker.source, "text": checker.text}
    simple = {
        "cooldown": r.Cooldown,
        "relevance": r.Relevance,
        "timeliness": r.Timeliness,
        "diversity": r.Diversity,
        "transactional": r.Transactional,
        "suppression": r.Suppression,
        "holdout": r.Holdout,
        "send_time": r.SendTime,
        "store": r.StoreSettings,
    }
    for name, kind in simple.items():
        if name in sections:
            build[name] = kind(**sections[name])
    if "quiet_hours" in sections:
        build["quiet_hours"] = _quiet_hours(sections["quiet_hours"], checker)
    if "engagement" in sections:
        build["engagement"] = r.Engagement(**sections["engagement"])
    return r.Rules(**build)


def _check_distinct_names(caps: tuple[r.CapRule, ...], checker: _Checker) -> None:
    """Refuse two caps of one name: a decision's deciding rule would not say which held it."""
    first: dict[str, int] = {}
    for index, cap in enumerate(caps):
        if cap.name in first:
            message = (
                f"another cap is already named {cap.name!r} (caps[{first[cap.name]}]); "
                "give each cap its own name"
            )
            checker.problem(message, ("caps", index, "name"))
        first.setdefault(cap.name, index)


def _cap(values: dict[str, Any], per_text: str, index: int, checker: _Checker) -> r.CapRule:
    # The raw text matters: "7d" on a calendar means seven local days, "1w" a Monday-based week.
    unit = duration_unit(per_text)
    calendar = bool(values.get("calendar", False))
    if calendar and unit not in ("d", "w"):
        checker.problem(
            "a calendar window must be whole days or weeks, such as '1d' or '1w'",
            ("caps", index, "per"),
        )
    if values["per"].total_seconds() <= 0:
        checker.problem("the window must be longer than zero", ("caps", index, "per"))
    scope = values.get("campaign") or values.get("category") or "all"
    name = values.get("name") or f"cap:{scope}:{values['max']}/{per_text}"
    return r.CapRule(
        max=values["max"],
        per=values["per"],
        name=name,
        channel=values.get("channel", Channel.EMAIL),
        category=values.get("category"),
        campaign=values.get("campaign"),
        calendar=calendar,
        calendar_unit=unit if calendar else "",
    )


def _quiet_hours(values: dict[str, Any], checker: _Checker) -> r.QuietHours:
    if values["start"] == values["end"]:
        message = "start and end are equal: quiet hours would be empty"
        checker.problem(message, ("quiet_hours", "end"))
    return r.QuietHours(**values)


def _field_name(path: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for part in path:
        if isinstance(part, int):
            parts[-1] = f"{parts[-1]}[{part}]"
        else:
            parts.append(str(part))
    return ".".join(parts)
