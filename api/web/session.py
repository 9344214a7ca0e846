"""Signing in with an API key, the session cookie, roles per page, and CSRF tokens.

The session cookie is signed (not encrypted), so it holds only the digest the keys file
already stores, never the key itself; each request looks the digest up again, so a key removed
from the file signs its holder out. Every unsafe request must carry the session's CSRF token
(a form field or the ``X-CSRF-Token`` header) and, when the browser sends one, a same-origin
``Origin``.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from flask import current_app, g, redirect, render_template, request, session, url_for
from werkzeug.wrappers import Response

from api.auth import ApiKey, KeyRing, Role
from api.services import services
from api.web import bp

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
STUDIO_ROLES = (Role.MARKETER, Role.ENGINEER)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: The only unsafe request made without a signed-in key: signing in.
SIGNED_OUT_ENDPOINTS = frozenset({"web.login"})


class LoginRequired(Exception):
    """No valid session: pages redirect to the login form, JSON endpoints answer 401."""


class RoleRequired(Exception):
    """Signed in, but the key lacks every role the page accepts."""

    def __init__(self, key: ApiKey, accepted: Sequence[Role]) -> None:
        wanted = " or ".join(role.value for role in accepted)
        super().__init__(f"The key {key.name!r} does not have the {wanted} role this page needs.")


class CsrfFailure(Exception):
    """An unsafe request without the session's CSRF token, or from another origin."""

    def __init__(self, message: str, *, stale: bool = False) -> None:
        super().__init__(message)
        self.stale = stale  # from this site, but not with this session's token


def csrf_token() -> str:
    """Return this session's CSRF token, creating it on first use."""
    token = session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return token


def current_key() -> ApiKey | None:
    """Return the key this session signed in with, if it is still in the keys file."""
    if "key" in g:
        found: ApiKey | None = g.key
        return found
    digest = session.get("key")
    key = None
    if isinstance(digest, str):
        keyring: KeyRing = services().keyring
        for candidate in keyring.current():
            # No early exit, as in KeyRing.authenticate: timing must not tell which matched.
            if hmac.compare_digest(digest, candidate.digest):
                key = candidate
    g.key = key
    return key


def login_required(accepted: Sequence[Role] = STUDIO_ROLES) -> ApiKey:
    """Return the signed-in key, or raise ``LoginRequired`` / ``RoleRequired``."""
    key = current_key()
    if key is None:
        raise LoginRequired()
    if not key.allows(accepted):
        raise RoleRequired(key, accepted)
    return key


@bp.before_request
def _check_csrf() -> None:
    """Refuse unsafe requests without this session's token or from another origin."""
    if request.method in SAFE_METHODS:
        return
    origin = request.headers.get("Origin")
    if origin and origin != request.host_url.rstrip("/"):
        raise CsrfFailure("the request came from another site")
    # Signed in before the token: a session that ended took its token with it, and "sign in
    # again" is what helps then, not "the security token expired".
    if request.endpoint not in SIGNED_OUT_ENDPOINTS and current_key() is None:
        raise LoginRequired()
    sent = request.headers.get(CSRF_HEADER) or request.form.get(CSRF_FIELD, "")
    expected = session.get("csrf")
    if not isinstance(expected, str) or not hmac.compare_digest(sent, expected):
        raise CsrfFailure("the form's security token is missing or has expired", stale=True)


@bp.app_context_processor
def _page_globals() -> dict[str, object]:
    """Give every page the CSRF token, the signed-in key and its roles."""
    if request.blueprint != "web":
        return {}
    key = current_key()
    return {
        "csrf_token": csrf_token,
        "signed_in": key,
        "is_marketer": key is not None and key.allows((Role.MARKETER,)),
        "is_engineer": key is not None and key.allows((Role.ENGINEER,)),
        "code_editor": code_editor_ready() and request.args.get("plain") != "1",
        "when": when,
    }


def code_editor_ready() -> bool:
    """Return whether the CodeMirror bundle was built (``npm run build``) and is switched on."""
    enabled = bool(current_app.config.get("STUDIO_CODE_EDITOR", True))
    return enabled and (Path(bp.static_folder or "") / "build" / "editor.js").is_file()


def when(moment: datetime) -> str:
    """Format a moment for people: UTC, to the minute."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


@bp.get("/login")
def login_form() -> str:
    """Show the sign-in form."""
    return render_template("studio/login.html", next=_safe_next(request.args.get("next")))


@bp.post("/login")
def login() -> Response | tuple[str, int]:
    """Sign in with an API key that has the marketer, engineer or admin role."""
    token = request.form.get("api_key", "").strip()
    target = _safe_next(request.form.get("next"))
    keyring: KeyRing = services().keyring
    key = keyring.authenticate(token) if token else None
    error = None
    if key is None:
        error = "That API key is not known. Check it, or ask for one (`rapport keys create`)."
    elif not key.allows(STUDIO_ROLES):
        error = f"The key {key.name!r} has no marketer, engineer or admin role."
    if error or key is None:
        return render_template("studio/login.html", error=error, next=target), 401
    # A new session on sign-in: a token planted before it (session fixation) is discarded.
    session.clear()
    session.permanent = True
    session["key"] = key.digest
    csrf_token()
    return redirect(target or url_for("web.home"), code=303)


@bp.post("/logout")
def logout() -> Response:
    """Sign out and forget the session."""
    session.clear()
    return redirect(url_for("web.login_form"), code=303)


def _safe_next(target: str | None) -> str | None:
    """Keep a post-login redirect only when it stays inside the studio (no open redirect)."""
    if not target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/studio/"):
        return None
    return target


def referring_page() -> str | None:
    """Return the studio page an unsafe request came from (same origin only), to go back to."""
    referrer = urlsplit(request.referrer or "")
    if f"{referrer.scheme}://{referrer.netloc}" != request.host_url.rstrip("/"):
        return None
    return _safe_next(referrer.path + (f"?{referrer.query}" if referrer.query else ""))


def login_redirect() -> Response:
    """Redirect to the login form, coming back here afterwards."""
    path = request.full_path.rstrip("?") if request.method == "GET" else None
    return redirect(url_for("web.login_form", next=path), code=303)


# Email previews are shown in a sandboxed srcdoc frame, which inherits this policy: their
# inline styles and remote images and fonts load, their scripts never run.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline' https:",
        "img-src 'self' data: https: http:",
        "font-src 'self' data: https:",
        "connect-src 'self'",
        "frame-ancestors 'none'",
        "form-action 'self'",
        "base-uri 'none'",
        "object-src 'none'",
    ]
)


@bp.after_request
def _security_headers(response: Response) -> Response:
    """Send the studio's security headers; signed-in pages are never cached."""
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if request.endpoint != "web.static":
        response.headers["Cache-Control"] = "no-store"
    return response
