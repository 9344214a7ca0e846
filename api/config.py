"""Configuration: built-in defaults, then a TOML file, then ``RAPPORT_*`` environment variables.

Every setting has a default that works on a laptop (``memory://`` state, the bundled demo model
and templates), so ``rapport serve`` starts with no configuration at all. Later sources win:
defaults < the file named by ``RAPPORT_CONFIG`` < ``RAPPORT_<NAME>`` variables < the mapping
passed to ``create_app`` (tests).
"""

from __future__ import annotations

import difflib
import logging
import math
import os
import tomllib
from collections.abc import Mapping
from email.utils import getaddresses
from pathlib import Path
from typing import Any

from api import pinned
from fatigue.errors import ConfigurationError, Problem, ValidationError

log = logging.getLogger(__name__)

MIB = 1024 * 1024

DEFAULTS: dict[str, Any] = {
    # Where fatigue state lives: memory:// (one process, development) or redis://host:port/db.
    "STORE_URL": "memory://",
    # A model directory (versions plus the CURRENT pointer); `rapport demo` trains one here.
    "MODEL_DIR": "var/model",
    # The versioned template store, seeded with the bundled templates on first use.
    "TEMPLATES_DIR": "var/templates",
    # A fatigue rules TOML file; empty means the governor's defaults.
    "RULES": "",
    # TOML registry of the campaigns platforms may name (api/campaigns.py); empty: any campaign.
    "CAMPAIGNS_FILE": "",
    # JSON file of hashed API keys, written by ``rapport keys create``.
    "API_KEYS_FILE": "var/api-keys.json",
    # Append-only JSON Lines log of engagement events, read by the next training run.
    "EVENT_LOG_DIR": "var/events",
    # Signs unsubscribe links; ``rapport serve`` makes one per run when none is configured.
    "SECRET_KEY": "",
    # Base of the links Rapport puts in emails (unsubscribe); the server's own URL by default.
    "PUBLIC_URL": "http://localhost:8000",
    # The From address of every email, e.g. "Shop <news@shop.example>"; the raw MIME message
    # (include_mime) needs one, and RFC 5322 requires it.
    "SENDER": "",
    # An address for List-Unsubscribe's mailto beside the one-click link (RFC 2369); optional.
    "UNSUBSCRIBE_MAILTO": "",
    # Route item links through /c/<token>, recording each click before redirecting ("true").
    "TRACK_CLICKS": False,
    # Ordinary JSON bodies; the NDJSON batch endpoint has its own, larger limit.
    "MAX_CONTENT_LENGTH": 1 * MIB,
    "MAX_BATCH_BYTES": 256 * MIB,
    "MAX_BATCH_RECIPIENTS": 200_000,
    "MAX_EVENTS_PER_REQUEST": 10_000,
    # One events request: room for that many events of several hundred bytes each.
    "MAX_EVENTS_BYTES": 8 * MIB,
    # Helper processes one batch stream is spread over (1: composed in the worker itself).
    # ``rapport serve`` sets cores // workers when that is 2 or more (api/serve.py).
    "BATCH_PROCESSES": 1,
    # Seconds between cheap checks of the model pointer for a newly published version.
    "MODEL_RELOAD_INTERVAL": 2.0,
}

_INTEGER_SETTINGS = {
    "MAX_CONTENT_LENGTH",
    "MAX_BATCH_BYTES",
    "MAX_BATCH_RECIPIENTS",
    "MAX_EVENTS_PER_REQUEST",
    "MAX_EVENTS_BYTES",
    "BATCH_PROCESSES",
}
_NUMBER_SETTINGS = {"MODEL_RELOAD_INTERVAL"}
_BOOLEAN_SETTINGS = {"TRACK_CLICKS"}
# Variables Rapport sets or reads besides the settings: the configuration file and the copies
# a server pinned (api/pinned.py), and the browser the studio's tests drive (docs/studio.md).
_OTHER_VARIABLES = frozenset(
    {pinned.CONFIG, pinned.CONFIG_ORIGINAL, *pinned.PINNED.values(), "RAPPORT_CHROMIUM"}
)
_warned: set[str] = set()  # each unknown variable is named once per process


def load_settings(
    environ: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Merge defaults, the ``RAPPORT_CONFIG`` file, ``RAPPORT_*`` variables and ``overrides``."""
    env = os.environ if environ is None else environ
    settings = dict(DEFAULTS)
    config_file = env.get("RAPPORT_CONFIG", "")
    original = env.get("RAPPORT_CONFIG_ORIGINAL", "")  # set beside a copy rapport serve pinned
    if config_file and original and not Path(config_file).is_file():
        log.warning("the pinned copy %s is gone: reading %s itself", config_file, original)
        config_file = original
    if config_file:
        settings.update(read_config_file(Path(config_file)))
    for name in DEFAULTS:
        value = env.get(f"RAPPORT_{name}")
        if value is not None:
            settings[name] = _coerce(name, value, f"environment variable RAPPORT_{name}")
    _warn_unknown_variables(env)
    if overrides:
        settings.update(overrides)
    return settings


def _warn_unknown_variables(env: Mapping[str, str]) -> None:
    """Name a ``RAPPORT_*`` variable no setting reads (a typo would otherwise go unnoticed).

    Warned, not refused as the file's unknown keys are: the environment is shared with other
    software, and a deployment may set a variable a newer version reads.
    """
    known = [f"RAPPORT_{name}" for name in DEFAULTS]
    for variable in sorted(env):
        if (
            not variable.startswith("RAPPORT_")
            or variable in _OTHER_VARIABLES
            or variable[len("RAPPORT_") :] in DEFAULTS
            or variable in _warned
        ):
            continue
        _warned.add(variable)
        close = difflib.get_close_matches(variable, known, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        log.warning("environment variable %s is not a Rapport setting: ignored%s", variable, hint)


def config_file_variables(environ: Mapping[str, str]) -> dict[str, str]:
    """Return the ``RAPPORT_CONFIG`` file's settings as the ``RAPPORT_*`` variables they stand for.

    Commands outside the server (``train``, ``recommend``, ``templates``) read the variables;
    with these set from the file they find the model, templates and secret the server uses.
    """
    path = environ.get("RAPPORT_CONFIG", "")
    if not path:
        return {}
    settings = read_config_file(Path(path))
    return {f"RAPPORT_{name}": _as_variable(value) for name, value in settings.items()}


def _as_variable(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def read_config_file(path: Path) -> dict[str, Any]:
    """Read a TOML settings file whose keys are the setting names in lower case."""
    try:
        with path.open("rb") as handle:
            raw = tomllib.load(handle)
    except FileNotFoundError as exc:
        raise ConfigurationError(f"{path}: configuration file not found (RAPPORT_CONFIG)") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ValidationError(Problem(str(exc), source=str(path))) from exc
    problems: list[Problem] = []
    settings: dict[str, Any] = {}
    for key, value in raw.items():
        name = key.upper()
        if name not in DEFAULTS:
            known = ", ".join(sorted(n.lower() for n in DEFAULTS))
            problems.append(Problem(f"unknown setting (known: {known})", str(path), field=key))
            continue
        try:
            settings[name] = _typed(name, value)
        except (TypeError, ValueError) as exc:
            message = f"{value!r} is not a valid {key} ({exc})"
            problems.append(Problem(message, str(path), field=key))
    if problems:
        raise ValidationError(problems)
    return settings


def _coerce(name: str, value: Any, where: str) -> Any:
    """Turn a raw setting into its type; the error names ``where`` it came from when it cannot."""
    try:
        return _typed(name, value)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(
            f"{where}: {value!r} is not a valid {name.lower()} ({exc})"
        ) from exc


def _typed(name: str, value: Any) -> Any:
    if name in _BOOLEAN_SETTINGS:
        return flag(value)
    if name in _INTEGER_SETTINGS:
        if isinstance(value, bool) or not str(value).strip().isdigit():
            raise ValueError("expected a whole number")
        number = int(value)
        if number <= 0:
            raise ValueError("must be positive")
        return number
    if name in _NUMBER_SETTINGS:
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            raise ValueError("expected a number") from None
        if not math.isfinite(seconds) or seconds < 0:  # NaN would switch hot reload off
            raise ValueError("must be a finite number, 0 or more")
        return seconds
    if not isinstance(value, str):
        raise TypeError("expected a string")
    return value


_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off", ""}


def flag(value: Any) -> bool:
    """Read a yes/no setting: TOML's true/false, or the usual words (a typo is refused)."""
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in _TRUE | _FALSE:
        return word in _TRUE
    raise ValueError("expected true or false")


def mailbox_setting(settings: Mapping[str, Any], name: str) -> str:
    """Read an address setting (``SENDER``, ``UNSUBSCRIBE_MAILTO``); ``""`` when unset.

    ``"Shop <news@shop.example>"`` or a bare address; anything that is not one address is a
    ConfigurationError naming the variable, rather than a broken header in every email.
    """
    value = str(settings.get(name) or "").strip()
    if not value:
        return ""
    found = getaddresses([value.removeprefix("mailto:")])
    address = found[0][1] if len(found) == 1 else ""
    local, at, domain = address.rpartition("@")
    if not (local and at and domain) or any(c in address for c in ' ,<>"\r\n'):
        raise ConfigurationError(
            f"RAPPORT_{name} {value!r} is not one email address "
            "(write it as news@shop.example or 'Shop <news@shop.example>')"
        )
    return value
