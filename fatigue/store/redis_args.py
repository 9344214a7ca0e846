"""How the Redis store lays out its calls as the Lua scripts' ``ARGV`` (see each header)."""

from __future__ import annotations

import functools
from typing import Any

import orjson

from fatigue.identity import ByIdentity
from fatigue.store.base import CapCheck, DecideCall, SendAttempt


def offer_layout(attempt: SendAttempt) -> list[Any]:
    """Lay out one offered send as ``sends.lua`` reads it (both scripts take offers so)."""
    record = attempt.record
    return [
        record.to_member(),
        False if attempt.cooldown_since is None else _float_text(attempt.cooldown_since),
        False if attempt.sunset_at is None else attempt.sunset_at,
        attempt.blocking_scopes,
        _caps_layout(attempt.caps),
        _zadd_order(record.items),
        record.kind != "transactional",  # as the memory store counts ignored sends
    ]


def _zadd_order(items: tuple[str, ...]) -> list[str]:
    """Return ``items`` in the order that costs ``ZADD`` least: greatest first.

    A small sorted set (a listpack) finds each new member's place from its start, reading every
    score on the way as text (strtod): members of one score added greatest first each stop at
    the first of them, added in ascending order each walked past all the others (15 reads
    instead of 5 for six items). Code point order is the UTF-8 byte order Redis compares by;
    the set stored is the same either way.
    """
    return sorted(items, reverse=True)


def _cap_fields(caps: tuple[CapCheck, ...]) -> list[Any]:
    """Lay the caps out as one flat list, seven values a cap (``CAP_FIELDS`` in sends.lua).

    ``since`` as text: the script reads it only when there are sends to count.
    """
    fields: list[Any] = []
    for c in caps:
        fields += (repr(c.since), c.inclusive, c.limit, c.channel, c.category or "",
                   c.campaign or "", c.min_ignored)  # fmt: skip
    return fields


def _encoded_caps(caps: tuple[CapCheck, ...]) -> orjson.Fragment:
    return orjson.Fragment(orjson.dumps(_cap_fields(caps)))


#: The governor works the checks out once per campaign, zone and moment (``Plan.frame``), so a
#: batch offers the very same tuple for most recipients: encoded once (orjson writes a fragment
#: as it is: the same bytes as the rows encoded in place).
_caps_layout = ByIdentity(_encoded_caps)
#: ``repr`` of the round's times: the governor gives every call of a round the same float
#: objects (``governor.Stamps``), and a float's repr costs more than finding it again.
_float_text: ByIdentity[float, str] = ByIdentity(repr)


#: TTLs as the text redis.call is given (the scripts pass them on as they come: see
#: ``record_send`` in sends.lua); a few values per store, each written once.
_int_text = functools.lru_cache(maxsize=64)(str)


@functools.lru_cache(maxsize=64)
def _oldest_text(at: float, history_ttl: int) -> str:
    """Return the score at and below which a send recorded ``at`` forgets sends and items.

    ``repr`` reads back as the very double Lua's ``tonumber(score) - history_ttl`` is; the
    scripts once wrote it with ``%.17g`` themselves. Every call of a round shares its time.
    """
    return repr(at - history_ttl)


def commit_args(attempt: SendAttempt) -> list[Any]:
    """Lay out ``commit.lua``'s ARGV (see the script's header): the call as one JSON array."""
    record = attempt.record
    windows = [cap.since for cap in attempt.caps]
    if attempt.cooldown_since is not None:
        windows.append(attempt.cooldown_since)
    payload = [
        offer_layout(attempt),
        repr(min(windows, default=record.at)),  # the oldest send any check looks at
        record.decision_id,
        attempt.replay if attempt.idempotency_key is not None else False,
        _int_text(attempt.history_ttl),
        _int_text(attempt.idempotency_ttl),
        _int_text(attempt.engagement_ttl),
        _oldest_text(record.at, attempt.history_ttl),
    ]
    return [repr(record.at), orjson.dumps(payload)]


def decide_args(call: DecideCall) -> list[Any]:
    """Lay out ``decide.lua``'s ARGV (see the script's header): the call as one JSON array.

    The guard items come apart, in an argument of their own: the script decodes them only for
    a customer with an items key (decoding 30 strings into a Lua table cost Redis more than
    15,000 instructions, for nothing when the customer was never sent anything).
    """
    query = call.query
    key = query.idempotency_key
    repeat = call.repeat_since
    payload = [
        _float_text(query.since),
        call.decision_id,
        0 if key is None else 1,
        _int_text(call.idempotency_ttl),
        _int_text(call.history_ttl),
        _int_text(call.engagement_ttl),
        False if repeat is None else _float_text(repeat),
        len(call.guard_items),
        list(map(offer_layout, call.offers)),
        _oldest_text(query.now, call.history_ttl),
    ]
    kept = ""
    if call.basis is not None and key is not None:
        kept = f'{call.decision_id} {{"b":{call.basis.to_json()}'
    return [_float_text(query.now), orjson.dumps(payload), kept, orjson.dumps(call.guard_items)]
