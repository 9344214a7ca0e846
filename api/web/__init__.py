"""The web studio: marketers edit templates, engineers tune and replay fatigue rules.

Pages for people, served by the same Flask app as the JSON API and signed in with the same API
keys and roles. Views call the services the API uses (``app.extensions["rapport"]``): the
versioned template store, the renderer, the governor and the simulation, so each behaviour has
one implementation. The code editor is CodeMirror 6, bundled from npm into ``static/build/`` by
the install step; without that bundle the pages fall back to plain text areas.
"""

from __future__ import annotations

from datetime import timedelta

from flask import Blueprint, redirect, url_for
from flask.blueprints import BlueprintSetupState
from werkzeug.wrappers import Response

bp = Blueprint(
    "web",
    __name__,
    url_prefix="/studio",
    template_folder="pages",
    static_folder="static",
    static_url_path="/static",
)


@bp.record_once
def _configure(state: BlueprintSetupState) -> None:
    """Harden the session cookie the studio signs people in with (the API never reads it)."""
    config = state.app.config
    if config.get("SESSION_COOKIE_NAME") == "session":  # Flask's default: name it for people
        config["SESSION_COOKIE_NAME"] = "rapport_studio"
    config["SESSION_COOKIE_HTTPONLY"] = True
    # Lax keeps the cookie off cross-site POSTs; the CSRF token covers the rest.
    config["SESSION_COOKIE_SAMESITE"] = config.get("SESSION_COOKIE_SAMESITE") or "Lax"
    if str(config.get("PUBLIC_URL", "")).startswith("https://"):
        config["SESSION_COOKIE_SECURE"] = True
    config["PERMANENT_SESSION_LIFETIME"] = timedelta(hours=8)
    config.setdefault("STUDIO_CODE_EDITOR", True)


@bp.get("/")
def home() -> Response:
    """Send people to the part of the studio their roles open."""
    from api.auth import Role
    from api.web.session import login_required

    key = login_required()
    if key.allows((Role.MARKETER,)):
        return redirect(url_for("web.templates_list"))
    return redirect(url_for("web.rules_page"))


# Each page module adds its routes to ``bp``; importing them here registers them once.
from api.web import console, drafts, errors, session, studio  # noqa: E402

__all__ = ["bp", "console", "drafts", "errors", "session", "studio"]
