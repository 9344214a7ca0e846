"""Links in emails: unsubscribe (``/u``), preferences (``/p``) and tracked clicks (``/c``).

``/u/<token>`` is RFC 8058 one-click; ``/c/<token>`` records a click on an item and redirects.

These are pages for people and mailbox providers, not the JSON API: no key and no cookie, and
the unsubscribe links never redirect. The signed token names the customer and campaign. A
one-click POST takes effect at once (state updated, event logged durably) and answers 200; if
the store cannot take it, it is kept in the pending file and applied when the store is back
(``api.pending``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, redirect, render_template, request
from werkzeug.wrappers import Response

from api.events import interaction_row, log_record
from api.metrics import EVENTS, STORE_ERRORS, StorePart
from api.pending import engagement_of
from api.routing import FORM, HTML, operation
from api.schemas.events import EventIn, EventKind
from api.schemas.links import PreferenceChoice, PreferencesForm
from api.services import services, settle_pending
from fatigue.domain import EventType
from fatigue.errors import StoreError

bp = Blueprint("unsubscribe", __name__, template_folder="pages")
log = logging.getLogger(__name__)
# What a link may answer besides its page, each an HTML page for the person who followed it.
_BAD_LINK = {400: "The link is damaged or was not made here", 410: "The link has expired"}
_NOT_KEPT = {503: "Nothing could record the change just now; try again in a minute"}


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


@operation(
    bp, "/u/<token>", "GET", roles=(), response_media=HTML, extra_responses=_BAD_LINK,
    summary="The unsubscribe link's confirmation page (a GET changes nothing).",
)  # fmt: skip
def unsubscribe_page(token: str) -> tuple[str, int]:
    """Show a one-button confirmation page (mail scanners fetch links; GET changes nothing)."""
    _payload, error = _verify(token, "unsubscribe")
    if error:
        return error
    return render_template("unsubscribe.html", token=token, done=False), 200


@operation(
    bp, "/u/<token>", "POST", roles=(), response_media=HTML,
    extra_responses={**_BAD_LINK, **_NOT_KEPT},
    summary="RFC 8058 one-click unsubscribe: no key, no cookie, no redirect; 200 when done.",
)  # fmt: skip
def unsubscribe_one_click(token: str) -> tuple[str, int]:
    """Unsubscribe from all marketing email at once (RFC 8058 one-click)."""
    payload, error = _verify(token, "unsubscribe")
    if error:
        return error
    if not _record(EventType.UNSUBSCRIBE, payload.user_id, payload.campaign_id):
        return _not_recorded()
    return render_template("unsubscribe.html", token=token, done=True), 200


@operation(
    bp, "/p/<token>", "GET", roles=(), response_media=HTML, extra_responses=_BAD_LINK,
    summary="The preferences page: whether the customer is subscribed, and a button to change it.",
)  # fmt: skip
def preferences_page(token: str) -> tuple[str, int]:
    """Show whether the customer is subscribed, with a button to change it."""
    payload, error = _verify(token, "preferences")
    if error:
        return error
    settle_pending()
    state = services().get("governor").explain(payload.user_id)
    return render_template("preferences.html", subscribed="all" not in state.suppression), 200


@operation(
    bp, "/p/<token>", "POST", roles=(), body=PreferencesForm, request_media=FORM,
    parse_body=False, response_media=HTML, extra_responses={**_BAD_LINK, **_NOT_KEPT},
    summary="The preferences page's form: unsubscribe from, or resubscribe to, marketing email.",
)  # fmt: skip
def preferences_update(token: str) -> tuple[str, int]:
    """Apply the choice posted from the preferences page: ``unsubscribe`` or ``resubscribe``."""
    payload, error = _verify(token, "preferences")
    if error:
        return error
    choice = request.form.get("choice", "")
    if choice not in set(PreferenceChoice):
        return render_template("link_error.html", message="choose subscribe or unsubscribe"), 400
    if not _record(EventType(choice), payload.user_id, payload.campaign_id):
        return _not_recorded()
    return render_template("preferences.html", subscribed=choice == "resubscribe", saved=True), 200


@operation(
    bp, "/c/<token>", "GET", roles=(), status=302, response_media=HTML,
    extra_responses=_BAD_LINK,
    summary="A tracked link to an item: records the click, then redirects to the item's page.",
)  # fmt: skip
def tracked_click(token: str) -> Response | tuple[str, int]:
    """Record a click on an item (engagement, and an interaction for training), then redirect."""
    payload, error = _verify(token, "click")
    if error:
        return error
    url = str(payload.url or "")
    if urlsplit(url).scheme not in ("http", "https"):
        return render_template("link_error.html", message="this link has no destination"), 400
    # The customer is sent on even if nothing could record the click: the link must work.
    _record(EventType.CLICK, payload.user_id, payload.campaign_id, payload.item_id)
    return redirect(url, code=302)


def _not_recorded() -> tuple[str, int]:
    """Neither the store nor any file took the change: say so, rather than claim it is done."""
    message = "We could not record your choice just now. Please try again in a minute."
    return render_template("link_error.html", message=message), 503


def _record(kind: EventType, user_id: str, campaign_id: str, item_id: str | None = None) -> bool:
    """Log a link's event and apply it; return whether it was kept (applied, or pending).

    Nobody retries a link, so each step is tried whatever the others did: the store (the
    effect), the event log (the record), and when the store fails, the pending file that is
    applied as soon as the store answers again (``api.pending``).
    """
    found = services()
    moment = found.clock()
    # Shaped as /v1/events shapes a reported event (event id included); not validated again:
    # the ids come from a token this server signed, and an unsubscribe must never be refused.
    event = EventIn.model_construct(
        type=EventKind(kind.value), user_id=user_id, timestamp=moment, item_id=item_id,
        campaign_id=campaign_id, decision_id=None, category=None, value=None,
    )  # fmt: skip
    record = {**log_record(event, moment.isoformat()), "via": "link"}
    _kept("event log", record, lambda: found.event_log.append([record]))
    if item_id:
        _kept(
            "interaction log",
            record,
            lambda: found.interaction_log.append([interaction_row(record)]),
        )
    governor = found.get("governor")
    if _kept("state store", record, lambda: governor.record_event(engagement_of(record))):
        EVENTS.labels("accepted").inc()
        return True
    return _kept("pending events", record, lambda: found.pending_events.append([record]))


# Each place a link's event is written, as the log says it and as the metric counts it.
_PARTS = {
    "event log": StorePart.EVENT_LOG,
    "interaction log": StorePart.EVENT_LOG,
    "state store": StorePart.STATE_STORE,
    "pending events": StorePart.PENDING_FILE,
}


def _kept(where: str, record: Mapping[str, Any], write: Callable[[], object]) -> bool:
    """Run ``write``; on a store or log failure say so (with the event) and return False."""
    try:
        write()
    except StoreError as exc:
        STORE_ERRORS.labels(_PARTS[where]).inc()
        log.error("link event not written to the %s (%s): %s", where, exc, json.dumps(record))
        return False
    return True
