"""Suppressions in words: why and since when a customer gets no mail of a kind."""

from __future__ import annotations

import json
from datetime import UTC, datetime

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


def describe_suppression(scope: str, detail: str) -> str:
    """Say why and since when ``scope`` is suppressed, from the JSON the store keeps."""
    try:
        found = json.loads(detail)
    except ValueError:
        found = None
    if not isinstance(found, dict):  # written before details were JSON: show it as it is
        return f"{_scope_words(scope)} suppressed: {detail}" if detail else _scope_words(scope)
    reason = str(found.get("reason", ""))
    sentence = f"{_SUPPRESSED_BY.get(reason, reason or 'suppressed:')} {_scope_words(scope)}"
    if isinstance(found.get("ts"), int | float):
        moment = datetime.fromtimestamp(found["ts"], UTC)
        sentence += f" on {moment:%Y-%m-%d %H:%M} UTC"
    if found.get("campaign"):
        sentence += f" (campaign {found['campaign']})"
    return sentence
