"""The services one app uses, built from its settings and kept in ``app.extensions["rapport"]``.

Heavy parts (the model, the template store, the governor and its store) are built on first use
under a lock, so ``rapport --help`` and the auth tests stay fast, and ``/readyz`` reports exactly
what failed to load. ``warm()`` builds them all up front for a serving process.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from flask import Flask, current_app

from api.auth import KeyRing
from api.eventlog import EventLog
from api.pending import PendingEvents
from fatigue.clock import Clock, utc_now

T = TypeVar("T")
log = logging.getLogger(__name__)


class Services:
    """Everything a request needs, shared by the app's threads; one instance per app."""

    def __init__(self, settings: Mapping[str, Any], clock: Clock = utc_now) -> None:
        self.settings = dict(settings)
        self.clock = clock
        self.keyring = KeyRing(Path(self.settings["API_KEYS_FILE"]))
        self.event_log = EventLog(Path(self.settings["EVENT_LOG_DIR"]), clock)
        self.interaction_log = EventLog(Path(self.settings["EVENT_LOG_DIR"]), clock, "interactions")
        self.pending_events = PendingEvents(Path(self.settings["EVENT_LOG_DIR"]), clock)
        self._built: dict[str, Any] = {}
        self._lock = threading.RLock()
        self._factories: dict[str, Callable[[], Any]] = {}
        self._failures: dict[str, str] = {}  # the last failure /readyz logged, per check
        # Checked by /readyz like the components: a broken keys file fails every request, an
        # event log nothing can be written to fails every event.
        self.register("api_keys", lambda: Probe(self.keyring.check))
        self.register("event_log", lambda: Probe(self.event_log.check))

    def register(self, name: str, factory: Callable[[], Any]) -> None:
        """Declare how to build the component ``name`` on first use."""
        self._factories[name] = factory

    def provide(self, name: str, component: Any) -> None:
        """Install an already-built component (tests inject real parts built differently)."""
        with self._lock:
            self._built[name] = component

    def get(self, name: str) -> Any:
        """Return the component ``name``, building it once if needed."""
        component = self._built.get(name)
        if component is not None:
            return component
        with self._lock:
            if name not in self._built:
                self._built[name] = self._factories[name]()
            return self._built[name]

    def status(self) -> dict[str, str]:
        """Build every component and report ``ok`` or the error that stopped each one."""
        checks: dict[str, str] = {}
        for name in self._factories:
            try:
                component = self.get(name)
                probe = getattr(component, "ping", None)
                if callable(probe):
                    probe()
                checks[name] = "ok"
            except Exception as exc:  # readiness reports any failure; it must not raise
                # Anyone may ask /readyz: the kind of failure is shown, its detail (paths,
                # hosts) goes to the log, once per change rather than at every poll.
                checks[name] = f"failed ({type(exc).__name__}; details in the server log)"
                detail = f"{type(exc).__name__}: {exc}"
                if self._failures.get(name) != detail:
                    log.error("not ready: %s: %s", name, detail)
                self._failures[name] = detail
            else:
                if self._failures.pop(name, None) is not None:
                    log.warning("ready again: %s", name)  # the end of what was logged above
        return checks

    def warm(self) -> None:
        """Build every registered component now (a serving process does this before traffic).

        A component with a ``warm`` method of its own then fills its caches (the renderer
        compiles the published templates), so the first requests do not pay for it.
        """
        for name in self._factories:
            component = self.get(name)
            fill = getattr(component, "warm", None)
            if callable(fill):
                fill()


class Probe:
    """A readiness check that is not a component: ``ping`` runs ``check`` (which raises)."""

    def __init__(self, check: Callable[[], object]) -> None:
        self.ping = check


def secret_key(settings: Mapping[str, Any]) -> tuple[str, bool]:
    """Return the configured secret, or a random one; the flag says it was generated.

    A generated key signs links that stop working when the process restarts; the renderer
    warns about it when it is built (not here, so ``rapport --help`` stays quiet).
    """
    configured = str(settings.get("SECRET_KEY") or "")
    if configured:
        return configured, False
    return secrets.token_urlsafe(32), True


def services(app: Flask | None = None) -> Services:
    """Return the current app's services."""
    target = app or current_app
    found: Services = target.extensions["rapport"]
    return found


def settle_pending() -> None:
    """Apply the link events the store missed (see ``api.pending``) before deciding on state."""
    found = services()
    found.pending_events.settle(found.get("governor").record_event)
