"""The campaign registry: which campaigns platforms may name, and what each one is.

Without a registry (``RAPPORT_CAMPAIGNS_FILE`` unset) any campaign id is accepted as the request
describes it. With one, a compose request naming an unregistered campaign gets a 422 that says
which, and the registry supplies the category, kind, priority and template a request leaves
out; a request that contradicts the registry is refused rather than silently overridden, so a
platform sending a promotion as "transactional" cannot slip past the fatigue caps. A cap in the
rules scoped to a campaign or category no registered campaign has is reported (``check``, at
serve start; the validation endpoint): it would never apply. The file::

    [campaigns.weekly-picks]
    category = "recommendations"
    kind = "promotional"          # promotional, editorial or transactional
    priority = 1
    template = "picked-for-you"
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydantic
from flask import Blueprint

from api.auth import Role
from api.routing import operation
from api.schemas.compose import CampaignIn, CampaignKind, CampaignsResponse
from api.services import services
from fatigue.errors import ConfigurationError, Problem, ValidationError
from fatigue.rules import Rules
from fatigue.scopes import Registered, unreachable_caps

bp = Blueprint("campaigns", __name__)

_FIELDS = ("category", "kind", "priority", "template")


@dataclass(frozen=True)
class CampaignRegistry:
    """Registered campaigns by id; ``None`` means no registry: every campaign is accepted."""

    campaigns: Mapping[str, CampaignIn] | None = None
    source: str = ""

    @classmethod
    def load(cls, path: str | Path, source: str = "") -> CampaignRegistry:
        """Read a registry file (``""``: no registry); errors name the file and the field.

        ``source`` names the file in messages when ``path`` is a copy of it (``api.pinned``).
        """
        if not str(path):
            return cls()
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError as exc:
            raise ConfigurationError(f"{source or path}: campaign registry not found") from exc
        except (OSError, UnicodeDecodeError) as exc:
            message = f"{source or path}: cannot read the campaign registry: {exc}"
            raise ConfigurationError(message) from exc
        return cls.parse(text, Path(source or path))

    @classmethod
    def parse(cls, text: str, source: Path) -> CampaignRegistry:
        """Read a registry's TOML text; errors name ``source`` and the field."""
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigurationError(f"{source}: cannot read the campaign registry: {exc}") from exc
        table = data.get("campaigns")
        if not isinstance(table, dict) or set(data) - {"campaigns"}:
            raise ConfigurationError(f"{source}: expected only [campaigns.<id>] tables")
        entries = {name: _entry(source, name, entry) for name, entry in table.items()}
        return cls(entries, str(source))

    def registered(self) -> Registered | None:
        """Return what requests may name (ids and categories); None without a registry."""
        if self.campaigns is None:
            return None
        categories = {
            name: campaign.category if "category" in campaign.model_fields_set else ""
            for name, campaign in self.campaigns.items()
        }
        return Registered(categories, self.source or "the campaign registry")

    def unreachable(self, rules: Rules) -> list[Problem]:
        """Return a problem (file, line, field) for each cap no registered campaign can match."""
        registered = self.registered()
        return [] if registered is None else unreachable_caps(rules, registered)

    def check(self, rules: Rules) -> None:
        """Raise ValidationError listing every cap scope no registered campaign can match.

        ``rapport serve`` runs it at start with the rules it serves: a misspelt category
        would otherwise be a cap that silently never applies.
        """
        problems = self.unreachable(rules)
        if problems:
            raise ValidationError(problems)

    def resolve(self, campaign: CampaignIn, where: str) -> CampaignIn:
        """Return ``campaign`` completed from the registry; 422 if unknown or contradicting it."""
        if self.campaigns is None:
            return campaign
        known = self.campaigns.get(campaign.id)
        if known is None:
            names = ", ".join(sorted(self.campaigns)) or "none"
            message = f"unknown campaign {campaign.id!r} (registered: {names})"
            raise ValidationError(Problem(message, field=f"{where}.id"))
        given = campaign.model_fields_set
        conflicts = [
            Problem(
                f"campaign {campaign.id!r} is registered with {name} "
                f"{_shown(getattr(known, name))}, not {_shown(getattr(campaign, name))}",
                field=f"{where}.{name}",
            )
            for name in _FIELDS
            if name in given
            and name in known.model_fields_set
            and getattr(campaign, name) != getattr(known, name)
        ]
        if conflicts:
            raise ValidationError(conflicts)
        missing = {name: getattr(known, name) for name in known.model_fields_set - given}
        return campaign.model_copy(update=missing)


@operation(
    bp,
    "/v1/campaigns",
    "GET",
    roles=(Role.PLATFORM, Role.MARKETER, Role.ENGINEER),
    response=CampaignsResponse,
    summary="List the registered campaigns (none, and registry false, without a registry).",
)
def list_campaigns() -> CampaignsResponse:
    """Answer with the registry, sorted by campaign id."""
    registry: CampaignRegistry = services().get("campaigns")
    known = registry.campaigns
    return CampaignsResponse(
        registry=known is not None,
        campaigns=[known[name] for name in sorted(known)] if known is not None else [],
    )


def _entry(source: Path, name: str, entry: Any) -> CampaignIn:
    if not isinstance(entry, dict):
        raise ConfigurationError(f"{source}: [campaigns.{name}] must be a table")
    unknown = set(entry) - set(_FIELDS)
    if unknown:
        raise ConfigurationError(
            f"{source}: [campaigns.{name}] has unknown field(s) {', '.join(sorted(unknown))}; "
            f"known: {', '.join(_FIELDS)}"
        )
    try:
        return CampaignIn.model_validate({"id": name, **entry})
    except pydantic.ValidationError as exc:
        found = "; ".join(
            f"{'.'.join(map(str, error['loc']))}: {error['msg']}"
            for error in exc.errors(include_url=False)
        )
        raise ConfigurationError(f"{source}: [campaigns.{name}]: {found}") from exc


def _shown(value: Any) -> str:
    return repr(value.value if isinstance(value, CampaignKind) else value)
