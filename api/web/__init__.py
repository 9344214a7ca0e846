"""The web studio: marketers edit templates, engineers tune and replay fatigue rules.

Pages for people, served by the same Flask app as the JSON API and signed in with the same API
keys and roles. Views call the services the API uses (``app.extensions["rapport"]``): the
versioned template store, the renderer, the governor and the simulation, so each behaviour has
one implementation. The code editor is CodeMirror 6, bundled from npm into ``static/build/`` by
the install step; without that bundle the pages fall back to plain text areas.
"""

from __future__ import annotations

from datetime import timedelta

from flask import Blueprint, Flask, Request, g, redirect, url_for
from flask.blueprints import BlueprintSetupState
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface, SessionMixin
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
    if isinstance(state.app, Flask):
        state.app.session_interface = CookieOnlySessions()
    # Browsers ask every page's site for /favicon.ico (the unsubscribe pages too): one icon.
    state.app.add_url_rule("/favicon.ico", "favicon", _favicon)


def _favicon() -> Response:
    return bp.send_static_file("favicon.svg")


class CookieOnlySessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, skipping the signing work when no cookie came.

    Flask opens a session for every request and builds its signing serializer first; the API's
    requests never carry the studio's cookie, and that serializer was a twentieth of a compose.
    """

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        """Return an empty session without a cookie; otherwise verify it as Flask does."""
        if app.secret_key and not request.cookies.get(self.get_cookie_name(app)):
            return self.session_class()
        return super().open_session(app, request)

    def should_set_cookie(self, app: Flask, session: SessionMixin) -> bool:
        """Write the cookie as Flask does, except from background requests that changed nothing.

        A permanent session is re-sent with every answer. The editor's live check runs while a
        save redirects, and its answer, carrying the session as it was before the save, landed
        after the save's and took the "Saved version 2" message with it.
        """
        if g.get("background_request"):
            return bool(session.modified)
        return super().should_set_cookie(app, session)


def background_request() -> None:
    """Mark this request as one the page makes on its own (it must not rewrite the session)."""
    g.background_request = True


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
