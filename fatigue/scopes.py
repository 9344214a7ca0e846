"""Cap scopes checked against a campaign registry: a misspelt scope is a cap that never applies.

The registry belongs to the API (``api/campaigns.py``: with one, a request naming an unregistered
campaign is refused, and a registered campaign's category is the registry's). The governor only
needs what it lets requests name, ``Registered``; ``rapport rules validate --campaigns``, the
validation endpoint and the server's start all check rules with ``unreachable_caps``.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from fatigue.errors import ConfigurationError, Problem
from fatigue.rules import Rules
from fatigue.toml_lines import key_lines, line_of


@dataclass(frozen=True)
class Registered:
    """The campaigns a registry lets requests name: id -> category ("": the request says)."""

    campaigns: Mapping[str, str]
    source: str = "the campaign registry"

    def categories(self) -> frozenset[str] | None:
        """Return every category a request may carry; None when a campaign takes any."""
        if any(not category for category in self.campaigns.values()):
            return None
        return frozenset(self.campaigns.values())


def read_registered(path: str | Path) -> Registered:
    """Read the ids and categories of a registry file's ``[campaigns.<id>]`` tables.

    Only what scopes need: ``CampaignRegistry.load`` (the server's reader) checks the rest.
    """
    source = Path(path)
    try:
        data = tomllib.loads(source.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(f"{source}: cannot read the campaign registry: {exc}") from exc
    table = data.get("campaigns")
    if not isinstance(table, dict):
        raise ConfigurationError(f"{source}: expected only [campaigns.<id>] tables")
    campaigns = {
        str(name): str(entry.get("category") or "") if isinstance(entry, dict) else ""
        for name, entry in table.items()
    }
    return Registered(campaigns, str(source))


def unreachable_caps(rules: Rules, registered: Registered) -> list[Problem]:
    """Return a problem for each cap scope no registered campaign can ever match.

    With a registry, a request naming an unregistered campaign is refused, and a registered
    campaign's category is the registry's (when it gives one): a cap scoped to any other
    category or campaign (a typo, ``"recomendations"``) would silently never apply.
    """
    lines = key_lines(rules.text) if rules.text else {}
    problems = []
    for index, cap in enumerate(rules.caps):
        for key, message in _cap_problems(cap.category, cap.campaign, registered):
            path = ("caps", index, key)
            line = line_of(rules.text, lines, path) if rules.text else None
            problems.append(Problem(message, rules.source, line, f"caps[{index}].{key}"))
    return problems


def _cap_problems(
    category: str | None, campaign: str | None, registered: Registered
) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    never = "this cap would never apply"
    if campaign is not None and campaign not in registered.campaigns:
        names = ", ".join(sorted(registered.campaigns)) or "none"
        message = f"campaign {campaign!r} is not in {registered.source} (registered: {names})"
        found.append(("campaign", f"{message}: {never}"))
    elif campaign is not None and category is not None:
        fixed = registered.campaigns[campaign]
        if fixed and fixed != category:
            message = (
                f"campaign {campaign!r} is registered with category {fixed!r}, not {category!r}"
            )
            found.append(("category", f"{message}: {never}"))
        return found
    categories = registered.categories()
    if category is not None and categories is not None and category not in categories:
        names = ", ".join(sorted(categories)) or "none"
        message = (
            f"no campaign in {registered.source} has category {category!r} (categories: {names})"
        )
        found.append(("category", f"{message}: {never}"))
    return found
