"""How the Redis store lays out its calls as the Lua scripts' ``ARGV`` (see each header)."""

from __future__ import annotations

from typing import Any

import orjson

from fatigue.store.base import DecideCall, SendAttempt


def commit_args(attempt: SendAttempt) -> list[Any]:
    """Lay out ``commit.lua``'s ARGV (see the script's header)."""
    args: list[Any] = [
        repr(attempt.record.at),
        attempt.record.to_member(),
        attempt.replay if attempt.idempotency_key is not None else "",
        attempt.history_ttl,
        attempt.idempotency_ttl,
        attempt.engagement_ttl,
        "" if attempt.cooldown_since is None else repr(attempt.cooldown_since),
        "" if attempt.sunset_at is None else attempt.sunset_at,
        len(attempt.blocking_scopes),
        *attempt.blocking_scopes,
    ]
    return _caps_args(attempt, args)


def _caps_args(attempt: SendAttempt, args: list[Any]) -> list[Any]:
    args.append(len(attempt.caps))
    for cap in attempt.caps:
        args += [
            repr(cap.since),
            int(cap.inclusive),
            cap.limit,
            cap.channel,
            cap.category or "",
            cap.campaign or "",
            cap.min_ignored,
        ]
    return args


def decide_args(call: DecideCall) -> list[Any]:
    """Lay out ``decide.lua``'s ARGV (see the script's header): the call as one JSON array."""
    query = call.query
    key = query.idempotency_key
    repeat = call.repeat_since
    payload = [
        repr(query.since),
        call.decision_id,
        0 if key is None else 1,
        call.idempotency_ttl,
        call.history_ttl,
        call.engagement_ttl,
        False if repeat is None else repeat,
        list(call.guard_items),
        [
            [
                offer.record.to_member(),
                False if offer.cooldown_since is None else offer.cooldown_since,
                False if offer.sunset_at is None else offer.sunset_at,
                offer.blocking_scopes,
                [
                    [c.since, c.inclusive, c.limit, c.channel, c.category or "", c.campaign or "",
                     c.min_ignored]
                    for c in offer.caps
                ],
            ]
            for offer in call.offers
        ],
    ]  # fmt: skip
    basis = call.basis.to_json() if call.basis is not None and key is not None else ""
    return [repr(query.now), orjson.dumps(payload), basis]
