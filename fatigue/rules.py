"""The rules engineers tune, as frozen data loaded from a validated TOML file.

Every section is optional and a missing section turns its rule off; see ``docs/fatigue.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import time, timedelta
from enum import StrEnum
from functools import cached_property
from importlib import resources
from pathlib import Path

from fatigue.domain import Channel, ContentKind
from fatigue.errors import ConfigurationError, Problem, ValidationError, decode_utf8


class StoreErrorPolicy(StrEnum):
    """What the governor does when the store cannot be reached."""

    DEFER = "defer"
    RAISE = "raise"
    SEND_TRANSACTIONAL = "send_transactional"


class DiversityStrategy(StrEnum):
    """How the governor spreads the chosen items across categories."""

    CAP = "cap"
    MMR = "mmr"


@dataclass(frozen=True)
class CapRule:
    """At most ``max`` messages per ``per``, optionally scoped to a category or campaign."""

    max: int
    per: timedelta
    name: str
    channel: Channel = Channel.EMAIL
    category: str | None = None
    campaign: str | None = None
    calendar: bool = False
    calendar_unit: str = ""


@dataclass(frozen=True)
class Cooldown:
    """A minimum gap after any non-transactional message."""

    after_any: timedelta


@dataclass(frozen=True)
class QuietHours:
    """Local hours in which nothing non-urgent is sent; requests are deferred to the end."""

    start: time
    end: time
    default_timezone: str = "UTC"
    transactional: bool = False


@dataclass(frozen=True)
class Relevance:
    """Send only if ``min_items`` candidates reach ``min_relevance``."""

    min_relevance: float
    min_items: int = 1


@dataclass(frozen=True)
class Timeliness:
    """Age and repetition limits on content (expired and out-of-stock items are never picked)."""

    max_age_editorial: timedelta | None = None
    no_repeat: timedelta | None = None


@dataclass(frozen=True)
class Diversity:
    """How many items one email holds and how they spread across categories."""

    max_items: int | None = None
    max_per_category: int | None = None
    strategy: DiversityStrategy = DiversityStrategy.CAP
    mmr_lambda: float = 0.7


@dataclass(frozen=True)
class Engagement:
    """Lower the cadence after ``reduce_after`` ignored messages; sunset after more."""

    reduce_after: int
    reduced_max: int
    reduced_per: timedelta
    sunset_after: int | None = None


@dataclass(frozen=True)
class Transactional:
    """How transactional requests relate to the caps."""

    count_toward_caps: bool = False


@dataclass(frozen=True)
class Suppression:
    """Tunable parts of suppression; unsubscribes, complaints and hard bounces always apply."""

    soft_bounce_threshold: int | None = None


@dataclass(frozen=True)
class Holdout:
    """A deterministic share of customers who never receive the held-out kinds of mail."""

    percent: float
    salt: str = "rapport"
    kinds: tuple[ContentKind, ...] = (ContentKind.PROMOTIONAL,)


@dataclass(frozen=True)
class SendTime:
    """Send-time optimisation for deferrable requests."""

    default_hour: int = 10
    min_events: int = 3
    audience_min_events: int = 20


@dataclass(frozen=True)
class StoreSettings:
    """Store-related behaviour: failure policy and how long keys and the decision log live."""

    on_store_error: StoreErrorPolicy = StoreErrorPolicy.DEFER
    retry_after: timedelta = timedelta(minutes=5)
    idempotency_ttl: timedelta = timedelta(days=2)
    engagement_ttl: timedelta = timedelta(days=400)
    decision_log_ttl: timedelta = timedelta(days=30)


@dataclass(frozen=True)
class Rules:
    """A complete, validated rule set."""

    caps: tuple[CapRule, ...] = ()
    cooldown: Cooldown | None = None
    quiet_hours: QuietHours | None = None
    relevance: Relevance | None = None
    timeliness: Timeliness | None = None
    diversity: Diversity | None = None
    engagement: Engagement | None = None
    transactional: Transactional = field(default_factory=Transactional)
    suppression: Suppression = field(default_factory=Suppression)
    holdout: Holdout | None = None
    send_time: SendTime | None = None
    store: StoreSettings = field(default_factory=StoreSettings)
    source: str = "<rules>"
    #: The TOML these rules were read from, so what is shown is what is in force.
    text: str = field(default="", repr=False, compare=False)

    @property
    def default_timezone(self) -> str:
        """Return the zone used for recipients without one."""
        return self.quiet_hours.default_timezone if self.quiet_hours else "UTC"

    @cached_property
    def history_horizon(self) -> timedelta:
        """Return how far back send history matters (the longest window, plus a day)."""
        spans = [cap.per for cap in self.caps]
        if self.cooldown:
            spans.append(self.cooldown.after_any)
        if self.engagement:
            spans.append(self.engagement.reduced_per)
        # A calendar week can start up to 7 days before its nominal length ends.
        longest = max(spans, default=timedelta(days=1))
        return longest + timedelta(days=8)


DEFAULT_RULES_SOURCE = "fatigue/default_rules.toml"


def described_source(rules: Rules) -> str:
    """Return where ``rules`` were read from, in words for the people reading them."""
    if rules.source == DEFAULT_RULES_SOURCE:
        return f"bundled defaults ({DEFAULT_RULES_SOURCE})"
    return rules.source


def load_rules(path_or_text: str | Path, source: str = "") -> Rules:
    """Load and validate a rule file (a path, or TOML text); raise ValidationError listing all.

    ``source`` names the rules in messages and ``described_source`` when the path is a copy
    of the operator's file (``rapport serve`` pins one for its workers).
    """
    from fatigue.rules_schema import parse_rules

    text, read_from = _read(path_or_text)
    rules, problems = parse_rules(text, source or read_from)
    if problems or rules is None:
        raise ValidationError(problems)
    return rules


def validate(path_or_text: str | Path) -> list[Problem]:
    """Return every problem in a rule file (an empty list when it is valid)."""
    from fatigue.rules_schema import parse_rules

    try:
        text, source = _read(path_or_text)
    except ConfigurationError as exc:
        return [Problem(str(exc), source=str(path_or_text))]
    except ValidationError as exc:
        return exc.problems
    return parse_rules(text, source)[1]


def default_rules() -> Rules:
    """Return the rule set bundled with the package (``fatigue/default_rules.toml``)."""
    from fatigue.rules_schema import parse_rules

    text = resources.files("fatigue").joinpath("default_rules.toml").read_text("utf-8")
    rules, problems = parse_rules(text, DEFAULT_RULES_SOURCE)
    if problems or rules is None:
        raise ValidationError(problems)
    return rules


def _read(path_or_text: str | Path) -> tuple[str, str]:
    if isinstance(path_or_text, str) and _looks_like_toml(path_or_text):
        return path_or_text, "<rules>"
    path = Path(path_or_text)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"cannot read rule file {path}: {exc.strerror}") from exc
    return decode_utf8(data, str(path)), str(path)


def _looks_like_toml(text: str) -> bool:
    return "\n" in text or "=" in text or "[" in text or not text.strip()
