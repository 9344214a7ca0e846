"""Error pages for the studio: every failure becomes a readable page (or JSON for scripts).

The app's own handlers answer problem+json, which suits API clients but not a person; these
blueprint handlers take precedence for the studio's routes. Nothing here shows a traceback.
"""

from __future__ import annotations

import logging

from flask import abort, jsonify, render_template, request
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from api.web import bp
from api.web.session import CsrfFailure, LoginRequired, RoleRequired, login_redirect
from fatigue.errors import ConfigurationError, NotFoundError, StoreError, ValidationError

log = logging.getLogger(__name__)


def wants_json() -> bool:
    """Return whether the caller is the studio's own script rather than a page load."""
    return request.is_json or request.accept_mimetypes.best == "application/json"


def error_page(status: int, title: str, detail: str) -> tuple[Response | str, int]:
    """Answer with the error page, or a small JSON body for scripts."""
    if wants_json():
        return jsonify(title=title, detail=detail, status=status), status
    return render_template("studio/error.html", title=title, detail=detail, status=status), status


@bp.errorhandler(LoginRequired)
def _login(_exc: LoginRequired) -> Response | tuple[Response | str, int]:
    if wants_json():
        return error_page(401, "Signed out", "Your session has ended; sign in again.")
    return login_redirect()


@bp.errorhandler(RoleRequired)
def _role(exc: RoleRequired) -> tuple[Response | str, int]:
    return error_page(403, "Not for this key", str(exc))


@bp.errorhandler(CsrfFailure)
def _csrf(exc: CsrfFailure) -> tuple[Response | str, int]:
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


@bp.errorhandler(ConfigurationError)
def _configuration(exc: ConfigurationError) -> tuple[Response | str, int]:
    log.error("configuration error: %s", exc)
    return error_page(500, "Server misconfigured", str(exc))


@bp.errorhandler(HTTPException)
def _http(exc: HTTPException) -> tuple[Response | str, int]:
    code = exc.code or 500
    if code == 413:
        limit = request.max_content_length or 0
        detail = f"That upload is larger than the server accepts ({limit // 1024} KiB)."
        return error_page(413, "Too large", detail)
    return error_page(code, exc.name, exc.description or exc.name)


@bp.errorhandler(Exception)
def _unexpected(exc: Exception) -> tuple[Response | str, int]:
    log.exception("studio error", exc_info=exc)
    return error_page(500, "Something went wrong", "The error was logged; please try again.")


@bp.route("/<path:_anything>", methods=["GET", "POST"])
def unknown_page(_anything: str) -> Response:
    """Answer unknown studio URLs with the studio's own 404 page."""
    abort(404)
