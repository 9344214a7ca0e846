"""How each heavy component is built from the settings: model, templates, governor, composer."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path
from typing import Any

from flask import Flask

from api.campaigns import CampaignRegistry
from api.config import flag, mailbox_setting
from api.metrics import STORE_ERRORS, StorePart
from api.model import ModelHolder
from api.pinned import pinned_path
from api.services import Probe, Services
from api.store_state import check_store_state
from fatigue.errors import RapportError

log = logging.getLogger(__name__)


def register(app: Flask) -> None:
    """Declare the lazily built components of ``app``'s services."""
    found: Services = app.extensions["rapport"]
    settings = dict(app.config)
    found.register("model", lambda: _model(settings))
    found.register("store", lambda: _store(settings))
    found.register("governor", lambda: _governor(found))
    found.register("templates", lambda: _templates(found, settings))
    found.register("renderer", lambda: _renderer(found, settings))
    found.register("preview_renderer", lambda: _preview_renderer(found, settings))
    found.register("composer", lambda: _composer(found))
    found.register("campaigns", lambda: campaigns_from(settings))
    found.register("batch_pool", lambda: _batch_pool(found))
    # After "store": its readiness ping measures the skew this reads (no second round trip).
    found.register("clock", lambda: Probe(lambda: check_clock(found.get("store"))))
    events = Path(settings["EVENT_LOG_DIR"])
    found.register(
        "store_state", lambda: Probe(lambda: check_store_state(found.get("store"), events))
    )


#: How far this host's clock may be from the state store's before /readyz fails (seconds).
MAX_CLOCK_SKEW = 60.0


class ClockSkew(RapportError):
    """This host's clock is far from the state store's: decisions would be stamped wrong."""


def check_clock(store: Any) -> None:
    """Raise ``ClockSkew`` when this host's clock is more than a minute from the store's.

    Sends, caps and cooldowns are stamped with this host's time: after a jump ahead, sends are
    recorded in the future and their customers capped for as long, and after a jump back the
    platforms' events are refused as from the future. Nothing else notices. The skew is the
    one the store's own readiness ping measured; a memory store shares the process's clock,
    and a store that did not answer is reported by the store's check.
    """
    skew = getattr(store, "clock_skew", None)
    if skew is not None and abs(skew) > MAX_CLOCK_SKEW:
        way = "ahead of" if skew > 0 else "behind"
        raise ClockSkew(
            f"this host's clock is {abs(skew):,.0f} s {way} the state store's (Redis TIME); "
            "decisions and events are stamped with it: fix its time (NTP)"
        )


def _model(settings: dict[str, Any]) -> ModelHolder:
    from engine.serving import Recommender

    return ModelHolder(
        Path(settings["MODEL_DIR"]),
        Recommender.load,
        interval=float(settings["MODEL_RELOAD_INTERVAL"]),
    )


def _store(settings: dict[str, Any]) -> Any:
    from fatigue.store import store_from_url

    return store_from_url(settings["STORE_URL"])


def rules_from(settings: dict[str, Any]) -> Any:
    """Load the configured rule file (its pinned copy under ``rapport serve``), or the defaults."""
    from fatigue.rules import default_rules, load_rules

    path = pinned_path(settings, "RULES")
    if path is None:
        return default_rules()
    return load_rules(path, source=str(settings["RULES"]))


def campaigns_from(settings: dict[str, Any]) -> CampaignRegistry:
    """Load the campaign registry (its pinned copy under ``rapport serve``), if configured."""
    path = pinned_path(settings, "CAMPAIGNS_FILE")
    return CampaignRegistry.load(path or "", source=str(settings["CAMPAIGNS_FILE"]))


def _governor(found: Services) -> Any:
    from fatigue.governor import Governor

    return Governor(rules_from(found.settings), found.get("store"), found.clock)


def _templates(found: Services, settings: dict[str, Any]) -> Any:
    from engine.render.library import BundledLibrary
    from engine.render.store_files import FileTemplateStore

    # Seeded with the bundled templates, so a fresh directory serves them as version 1.
    return FileTemplateStore(settings["TEMPLATES_DIR"], seed=BundledLibrary(), clock=found.clock)


def _renderer(found: Services, settings: dict[str, Any]) -> Any:
    from engine.render.links import LinkConfig, LinkSigner
    from engine.render.renderer import Renderer

    if settings.get("SECRET_KEY_GENERATED"):
        log.warning(
            "RAPPORT_SECRET_KEY is not set: using a random key, so unsubscribe links made now "
            "stop working when this process restarts"
        )
    signer = LinkSigner(settings["SECRET_KEY"], clock=found.clock)
    links = LinkConfig(
        settings["PUBLIC_URL"],
        unsubscribe_mailto=mailbox_setting(settings, "UNSUBSCRIBE_MAILTO") or None,
        track_clicks=flag(settings["TRACK_CLICKS"]),
    )
    sender = mailbox_setting(settings, "SENDER") or None
    return Renderer(found.get("templates"), signer, links, clock=found.clock, sender=sender)


#: Appended to the secret for preview links: a key nothing verifies with, so a test email's
#: unsubscribe, preference and click links can never act on the customer it was rendered for.
PREVIEW_KEY_SUFFIX = ":preview-links-do-nothing"


def _preview_renderer(found: Services, settings: dict[str, Any]) -> Any:
    """Build the renderer for previews and test emails: the real one, but with dead links."""
    from engine.render.links import LinkSigner

    signer = LinkSigner(settings["SECRET_KEY"] + PREVIEW_KEY_SUFFIX, clock=found.clock)
    return found.get("renderer").with_signer(signer)


def _composer(found: Services) -> Any:
    from engine.compose import Composer

    holder: ModelHolder = found.get("model")
    return Composer(
        lambda: holder.model,
        found.get("governor"),
        found.get("renderer"),
        found.clock,
        # A lost log entry still shows in metrics.
        on_log_error=lambda exc: STORE_ERRORS.labels(StorePart.DECISION_LOG).inc(),
        background_log=True,
    )


def _batch_pool(found: Services) -> Any:
    """Helpers for batch streams, or None: one process asked for, or state only this one has."""
    from api.batch_pool import BatchPool
    from api.config import DEFAULTS
    from fatigue.store import in_memory

    processes = int(found.settings["BATCH_PROCESSES"])
    if processes <= 1:
        return None
    if in_memory(str(found.settings["STORE_URL"])):
        log.warning("BATCH_PROCESSES=%d ignored: memory:// state cannot be shared", processes)
        return None
    try:
        pickle.dumps(found.clock)  # helpers get a copy of the clock
    except (pickle.PicklingError, AttributeError, TypeError):
        log.warning("BATCH_PROCESSES=%d ignored: the clock cannot be sent to helpers", processes)
        return None
    settings = {name: found.settings[name] for name in DEFAULTS}
    return BatchPool(settings, processes, found.clock)
