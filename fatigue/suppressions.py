"""Suppressions in words: why and since when a customer gets no mail of a kind."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

#: Why a scope was suppressed, by the event that did it (the store keeps the event's type).
_SUPPRESSED_BY = {
    "unsubscribe": "unsubscribed from",
    "complaint": "marked an email as spam, which stops",
    "bounce_hard": "a hard bounce stopped",
    "bounce_soft": "soft bounces in a row stopped",
}


def _scope_words(scope: str) -> str:
    if scope in ("all", "complaint"):  # a complaint stops marketing; receipts still go
        return "all marketing email"
    if scope.startswith("category:"):
        return f"email in the category {scope.removeprefix('category:')}"
    return "all email to this address"  # "address" (a hard bounce): nothing more is sent


def _parsed(detail: str) -> dict[str, Any] | None:
    try:
        found = json.loads(detail)
    except ValueError:
        return None
    return found if isinstance(found, dict) else None  # else written before details were JSON


def _since(found: dict[str, Any]) -> datetime | None:
    stamp = found.get("ts")
    if isinstance(stamp, bool) or not isinstance(stamp, int | float):  # True is 1970 otherwise
        return None
    return datetime.fromtimestamp(stamp, UTC)


def describe_suppression(scope: str, detail: str) -> str:
    """Say why and since when ``scope`` is suppressed, from the JSON the store keeps."""
    found = _parsed(detail)
    if found is None:  # written before details were JSON: show it as it is
        return f"{_scope_words(scope)} suppressed: {detail}" if detail else _scope_words(scope)
    reason = str(found.get("reason", ""))
    sentence = f"{_SUPPRESSED_BY.get(reason, reason or 'suppressed:')} {_scope_words(scope)}"
    if (moment := _since(found)) is not None:
        sentence += f" on {moment:%Y-%m-%d %H:%M} UTC"
    if found.get("campaign"):
        sentence += f" (campaign {found['campaign']})"
    return sentence


def suppression_entry(scope: str, detail: str) -> dict[str, Any]:
    """Return one suppressed scope as fields: scope, reason, since, campaign and in words."""
    found = _parsed(detail) or {}
    since = _since(found)
    return {
        "scope": scope,
        "reason": str(found["reason"]) if found.get("reason") is not None else None,
        "since": since.isoformat() if since is not None else None,
        "campaign": str(found["campaign"]) if found.get("campaign") else None,
        "description": describe_suppression(scope, detail),
    }
