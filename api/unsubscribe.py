"""Unsubscribe links: ``/u/<token>`` (RFC 8058 one-click) and ``/p/<token>`` (preferences).

These are pages for people and mailbox providers, not the JSON API: no key, no cookie, no
redirect. The signed token names the customer and campaign. A one-click POST takes effect at
once (state updated, event logged durably) and answers 200.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, render_template, request

from api.eventlog import EventLog
from api.metrics import EVENTS
from api.services import services
from fatigue.domain import EngagementEvent, EventType

bp = Blueprint("unsubscribe", __name__, template_folder="pages")


def _verify(token: str, purpose: str) -> tuple[Any, tuple[str, int] | None]:
    """Return the token's payload, or the error page to answer with."""
    from engine.render.links import InvalidToken

    signer = services().get("renderer").signer
    try:
        if purpose == "unsubscribe":
            return signer.verify_unsubscribe(token), None
        return signer.verify_preferences(token), None
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


def _record(kind: EventType, user_id: str, campaign_id: str) -> None:
    """Log the change durably, then apply it to fatigue state."""
    found = services()
    now = found.clock()
    log: EventLog = found.event_log
    log.append(
        [
            {
                "user_id": user_id,
                "item_id": None,
                "timestamp": now.isoformat(),
                "event": kind.value,
                "value": 1.0,
                "campaign_id": campaign_id,
                "decision_id": None,
                "category": None,
                "received_at": now.isoformat(),
                "via": "link",
            }
        ]
    )
    found.get("governor").record_event(
        EngagementEvent(type=kind, user_id=user_id, timestamp=now, campaign=campaign_id)
    )
    EVENTS.labels("accepted").inc()
