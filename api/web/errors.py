"""Error pages for the studio: every failure becomes a readable page (or JSON for scripts).

The app's own handlers answer problem+json, which suits API clients but not a person; these
blueprint handlers take precedence for the studio's routes. Nothing here shows a traceback.
"""

from __future__ import annotations

import logging

from flask import abort, jsonify, render_template, request
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from api.auth import KeysUnreadable
from api.web import bp
from api.web.console import oversized_simulation
from api.web.drafts import oversized_editor
from api.web.session import (
    CsrfFailure,
    LoginRequired,
    RoleRequired,
    current_key,
    login_redirect,
    referring_page,
)
from fatigue.errors import ConfigurationError, NotFoundError, StoreError, ValidationError

log = logging.getLogger(__name__)
SIGNED_OUT = "You were signed out; sign in again."
KEPT = "Nothing was changed; the template editor keeps your unsaved edits in this tab."


def wants_json() -> bool:
    """Return whether the caller is the studio's own script rather than a page load."""
    return request.is_json or request.accept_mimetypes.best == "application/json"


def error_page(
    status: int, title: str, detail: str, back: str | None = None
) -> tuple[Response | str, int]:
    """Answer with the error page (linking ``back`` if given), or a small JSON body for scripts."""
    if wants_json():
        return jsonify(title=title, detail=detail, status=status), status
    page = render_template(
        "studio/error.html", title=title, detail=detail, status=status, back=back
    )
    return page, status


@bp.errorhandler(LoginRequired)
def _login(_exc: LoginRequired) -> Response | tuple[Response | str, int]:
    if wants_json():
        return error_page(401, "Signed out", SIGNED_OUT)
    if request.method in ("GET", "HEAD"):
        return login_redirect()
    # A form posted after the session ended: sign in here, then back to the page it came from.
    notice = f"{SIGNED_OUT} {KEPT}"
    return render_template("studio/login.html", notice=notice, next=referring_page()), 401


@bp.errorhandler(RoleRequired)
def _role(exc: RoleRequired) -> tuple[Response | str, int]:
    return error_page(403, "Not for this key", str(exc))


@bp.errorhandler(CsrfFailure)
def _csrf(exc: CsrfFailure) -> tuple[Response | str, int]:
    if exc.stale and current_key() is not None:
        # Signed in, from this site, with another token: the page predates a new sign-in.
        detail = (
            "This page was opened before you signed in again, so its security token is out "
            f"of date. {KEPT} Go back and reload the page."
        )
        return error_page(400, "This page is out of date", detail, back=referring_page())
    return error_page(400, "Please try again", f"{exc}. Reload the page and submit it again.")


@bp.errorhandler(NotFoundError)
def _not_found(exc: NotFoundError) -> tuple[Response | str, int]:
    return error_page(404, "Not found", str(exc))


@bp.errorhandler(ValidationError)
def _invalid(exc: ValidationError) -> tuple[Response | str, int]:
    return error_page(422, "That did not work", str(exc))


@bp.errorhandler(StoreError)
def _store(exc: StoreError) -> tuple[Response | str, int]:
    log.error("state store failure: %s", exc, exc_info=exc)
    return error_page(503, "State store unavailable", "The fatigue store cannot be reached.")


@bp.errorhandler(KeysUnreadable)
def _keys_unreadable(exc: KeysUnreadable) -> tuple[Response | str, int]:
    # No line per page: the key ring logged the file's fault once, and /readyz names it.
    return error_page(503, "Sign-in unavailable", "The API keys file cannot be read just now.")


@bp.errorhandler(ConfigurationError)
def _configuration(exc: ConfigurationError) -> tuple[Response | str, int]:
    log.error("configuration error: %s", exc)
    return error_page(500, "Server misconfigured", str(exc))


@bp.errorhandler(HTTPException)
def _http(exc: HTTPException) -> tuple[Response | str, int]:
    code = exc.code or 500
    if code == 413:
        return _too_large((request.max_content_length or 0) // 1024)
    return error_page(code, exc.name, exc.description or exc.name)


def _too_large(limit_kib: int) -> tuple[Response | str, int]:
    """Name the limit, on the page the work was sent from when it is the editor or simulate."""
    if wants_json():  # the editor's live preview
        detail = f"The draft is larger than the server accepts ({limit_kib} KiB); make it smaller."
        return error_page(413, "Too large", detail)
    page = oversized_editor(limit_kib) or oversized_simulation(limit_kib)
    if page is not None:
        return page, 413
    detail = f"That is larger than the server accepts ({limit_kib} KiB)."
    return error_page(413, "Too large", detail)


@bp.errorhandler(Exception)
def _unexpected(exc: Exception) -> tuple[Response | str, int]:
    log.exception("studio error", exc_info=exc)
    return error_page(500, "Something went wrong", "The error was logged; please try again.")


@bp.route("/<path:_anything>", methods=["GET", "POST"])
def unknown_page(_anything: str) -> Response:
    """Answer unknown studio URLs with the studio's own 404 page."""
    abort(404)
