"""Links in emails: unsubscribe (``/u``), preferences (``/p``) and tracked clicks (``/c``).

``/u/<token>`` is RFC 8058 one-click; ``/c/<token>`` records a click on an item and redirects.

These are pages for people and mailbox providers, not the JSON API: no key and no cookie, and
the unsubscribe links never redirect. The signed token names the customer and campaign. A
one-click POST takes effect at once (state updated, event logged durably) and answers 200.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, redirect, render_template, request
from werkzeug.wrappers import Response

from api.eventlog import EventLog
from api.events import interaction_row, log_record
from api.metrics import EVENTS
from api.schemas.events import EventIn, EventKind
from api.services import services
from fatigue.domain import EngagementEvent, EventType

bp = Blueprint("unsubscribe", __name__, template_folder="pages")


def _verify(token: str, purpose: str) -> tuple[Any, tuple[str, int] | None]:
    """Return the token's payload, or the error page to answer with."""
    from engine.render.links import InvalidToken

    signer = services().get("renderer").signer
    verify = {"unsubscribe": signer.verify_unsubscribe, "preferences": signer.verify_preferences,
              "click": signer.verify_click}[purpose]  # fmt: skip
    try:
        return verify(token), None
    except InvalidToken as exc:
        status = 410 if exc.expired else 400
        return None, (render_template("link_error.html", message=str(exc)), status)


@bp.get("/u/<token>")
def unsubscribe_page(token: str) -> tuple[str, int]:
    """Show a one-button confirmation page (mail scanners fetch links; GET changes nothing)."""
    _payload, error = _verify(token, "unsubscribe")
    if error:
        return error
    return render_template("unsubscribe.html", token=token, done=False), 200


@bp.post("/u/<token>")
def unsubscribe_one_click(token: str) -> tuple[str, int]:
    """Unsubscribe from all marketing email at once (RFC 8058 one-click)."""
    payload, error = _verify(token, "unsubscribe")
    if error:
        return error
    _record(EventType.UNSUBSCRIBE, payload.user_id, payload.campaign_id)
    return render_template("unsubscribe.html", token=token, done=True), 200


@bp.get("/p/<token>")
def preferences_page(token: str) -> tuple[str, int]:
    """Show whether the customer is subscribed, with a button to change it."""
    payload, error = _verify(token, "preferences")
    if error:
        return error
    state = services().get("governor").explain(payload.user_id)
    return render_template("preferences.html", subscribed="all" not in state.suppression), 200


@bp.post("/p/<token>")
def preferences_update(token: str) -> tuple[str, int]:
    """Apply the choice posted from the preferences page: ``unsubscribe`` or ``resubscribe``."""
    payload, error = _verify(token, "preferences")
    if error:
        return error
    choice = request.form.get("choice", "")
    if choice not in ("unsubscribe", "resubscribe"):
        return render_template("link_error.html", message="choose subscribe or unsubscribe"), 400
    _record(EventType(choice), payload.user_id, payload.campaign_id)
    return render_template("preferences.html", subscribed=choice == "resubscribe", saved=True), 200


@bp.get("/c/<token>")
def tracked_click(token: str) -> Response | tuple[str, int]:
    """Record a click on an item (engagement, and an interaction for training), then redirect."""
    payload, error = _verify(token, "click")
    if error:
        return error
    url = str(payload.url or "")
    if urlsplit(url).scheme not in ("http", "https"):
        return render_template("link_error.html", message="this link has no destination"), 400
    _record(EventType.CLICK, payload.user_id, payload.campaign_id, payload.item_id)
    return redirect(url, code=302)


def _record(kind: EventType, user_id: str, campaign_id: str, item_id: str | None = None) -> None:
    """Log the event durably (and the interaction, for a click on an item), then apply it."""
    found = services()
    moment = found.clock()
    # Shaped as /v1/events shapes a reported event (event id included); not validated again:
    # the ids come from a token this server signed, and an unsubscribe must never be refused.
    event = EventIn.model_construct(
        type=EventKind(kind.value), user_id=user_id, timestamp=moment, item_id=item_id,
        campaign_id=campaign_id, decision_id=None, category=None, value=None,
    )  # fmt: skip
    log: EventLog = found.event_log
    log.append([{**log_record(event, moment.isoformat()), "via": "link"}])
    if item_id:
        found.interaction_log.append([interaction_row(event)])
    found.get("governor").record_event(
        EngagementEvent(type=kind, user_id=user_id, timestamp=moment, campaign=campaign_id)
    )
    EVENTS.labels("accepted").inc()
