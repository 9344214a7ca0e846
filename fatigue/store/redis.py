"""The Redis store: shared by every worker process, durable when Redis runs with AOF.

Key layout (``<prefix>`` comes from the URL's ``prefix`` query parameter)::

    <prefix>fatigue:{<user>}:sends        zset  send record JSON -> epoch seconds   (TTL)
    <prefix>fatigue:{<user>}:items        zset  item id -> epoch seconds last sent  (TTL)
    <prefix>fatigue:{<user>}:engagement   hash  ignored, soft_bounces, last_engaged, h0..h23 (TTL)
    <prefix>fatigue:{<user>}:suppression  hash  scope -> detail JSON                (no TTL)
    <prefix>fatigue:{<user>}:idem:<key>   str   decision JSON replayed on a retry   (TTL)
    <prefix>fatigue:audience:hours        hash  h0..h23 across every customer

The ``{<user>}`` hash tag keeps one customer's keys in one Redis Cluster slot, so each Lua
script only touches keys of one slot.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from fatigue.errors import StoreError
from fatigue.store.base import (
    HOURS,
    CommitResult,
    CommitStatus,
    EventChange,
    FatigueStore,
    SendAttempt,
    SendRecord,
    StateQuery,
    UserState,
    decision_owner,
)

_PARTS = ("sends", "items", "suppression", "engagement")


def _script(name: str) -> str:
    return resources.files("fatigue.store").joinpath("lua", name).read_text("utf-8")


class RedisStore(FatigueStore):
    """``redis://host:port/db?prefix=app:`` (and ``rediss://``, ``unix://``)."""

    durable = True

    def __init__(self, url: str, **options: Any) -> None:
        import redis

        self._redis_errors: tuple[type[BaseException], ...] = (redis.RedisError,)
        clean_url, self.prefix = _split_prefix(url)
        options.setdefault("socket_timeout", 5.0)
        options.setdefault("socket_connect_timeout", 2.0)
        self.client = redis.Redis.from_url(clean_url, **options)
        self._load = self.client.register_script(_script("load.lua"))
        self._commit = self.client.register_script(_script("commit.lua"))
        self._release = self.client.register_script(_script("release.lua"))
        self._apply = self.client.register_script(_script("apply.lua"))

    def key(self, user_id: str | None, part: str) -> str:
        """Return the full key name; every key goes through here."""
        if user_id is None:
            return f"{self.prefix}fatigue:{part}"
        return f"{self.prefix}fatigue:{{{user_id}}}:{part}"

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except self._redis_errors as exc:
            raise StoreError(f"redis store failed: {exc}") from exc

    def load(self, queries: Sequence[StateQuery]) -> list[UserState]:
        """Read several customers' state in one pipelined round trip."""
        with self._errors():
            pipe = self.client.pipeline(transaction=False)
            pipe.hgetall(self.key(None, "audience:hours"))
            for query in queries:
                keys = self._keys(query.user_id, query.idempotency_key)
                args = [repr(query.since), "0" if query.idempotency_key is None else "1"]
                self._load(keys=keys, args=args, client=pipe)
            replies = pipe.execute()
        audience = _hours(replies[0])
        return [
            self._state(query, reply, audience)
            for query, reply in zip(queries, replies[1:], strict=True)
        ]

    def _state(self, query: StateQuery, reply: list[Any], audience: tuple[int, ...]) -> UserState:
        sends, items, suppression_flat, engagement_flat, replay = reply
        suppression = _pairs(suppression_flat)
        engagement = _pairs(engagement_flat)
        return UserState(
            user_id=query.user_id,
            sends=tuple(
                SendRecord.from_member(sends[i], float(sends[i + 1]))
                for i in range(0, len(sends), 2)
            ),
            items={_text(items[i]): float(items[i + 1]) for i in range(0, len(items), 2)},
            suppression={_text(k): _text(v) for k, v in suppression.items()},
            ignored=int(engagement.get(b"ignored", 0)),
            soft_bounces=int(engagement.get(b"soft_bounces", 0)),
            last_engaged=float(engagement[b"last_engaged"])
            if b"last_engaged" in engagement
            else None,
            hours=_hours(engagement),
            audience_hours=audience,
            replay=_text(replay) if replay else None,
        )

    def commit(self, attempts: Sequence[SendAttempt]) -> list[CommitResult]:
        """Run the check-and-record script for each attempt, pipelined in one round trip."""
        with self._errors():
            pipe = self.client.pipeline(transaction=False)
            for attempt in attempts:
                self._commit(
                    keys=self._commit_keys(attempt), args=_commit_args(attempt), client=pipe
                )
            replies = pipe.execute()
        return [_result(_text(status), _text(detail)) for status, detail in replies]

    def _commit_keys(self, attempt: SendAttempt) -> list[str]:
        return self._keys(attempt.user_id, attempt.idempotency_key)

    def _keys(self, user: str, idempotency_key: str | None) -> list[str]:
        idem = self.key(user, f"idem:{idempotency_key or ''}")
        return [self.key(user, part) for part in _PARTS] + [idem]

    def release(self, decision_id: str) -> bool:
        """Forget a recorded send that failed."""
        user = decision_owner(decision_id)
        if user is None:
            return False
        keys = [self.key(user, part) for part in ("sends", "items", "engagement")]
        with self._errors():
            return bool(self._release(keys=keys, args=[decision_id]))

    def apply(self, change: EventChange) -> None:
        """Apply an event's change; the audience histogram rides in the same pipeline."""
        user = change.user_id
        args: list[Any] = [
            change.at,
            change.engagement_ttl,
            int(change.engaged),
            "" if change.hour is None else change.hour,
            int(change.soft_bounce),
            int(change.reset_soft_bounces),
            change.soft_bounce_threshold or "",
            _soft_detail(change.at),
            len(change.lift),
            *change.lift,
        ]
        for scope, detail in change.suppress:
            args += [scope, detail]
        with self._errors():
            pipe = self.client.pipeline(transaction=False)
            keys = [self.key(user, "engagement"), self.key(user, "suppression")]
            self._apply(keys=keys, args=args, client=pipe)
            if change.hour is not None:
                pipe.hincrby(self.key(None, "audience:hours"), f"h{change.hour}", 1)
            pipe.execute()

    def ping(self) -> None:
        """Raise StoreError when Redis does not answer."""
        with self._errors():
            self.client.ping()

    def close(self) -> None:
        """Close the connection pool."""
        self.client.close()


def _commit_args(attempt: SendAttempt) -> list[Any]:
    args: list[Any] = [
        repr(attempt.record.at),
        attempt.record.to_member(),
        attempt.replay if attempt.idempotency_key is not None else "",
        attempt.history_ttl,
        attempt.idempotency_ttl,
        attempt.engagement_ttl,
        "" if attempt.cooldown_since is None else repr(attempt.cooldown_since),
        len(attempt.blocking_scopes),
        *attempt.blocking_scopes,
        len(attempt.caps),
    ]
    for cap in attempt.caps:
        args += [
            repr(cap.since),
            int(cap.inclusive),
            cap.limit,
            cap.channel,
            cap.category or "",
            cap.campaign or "",
        ]
    return args


def _result(status: str, detail: str) -> CommitResult:
    if status == CommitStatus.DUPLICATE:
        return CommitResult(CommitStatus.DUPLICATE, replay=detail)
    return CommitResult(CommitStatus(status), detail=detail)


def _split_prefix(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    prefix = next((value for name, value in query if name == "prefix"), "")
    rest = urlencode([(name, value) for name, value in query if name != "prefix"])
    return urlunsplit(parts._replace(query=rest)), prefix


def _pairs(flat: list[bytes]) -> dict[bytes, bytes]:
    return {flat[i]: flat[i + 1] for i in range(0, len(flat), 2)}


def _hours(mapping: dict[bytes, bytes]) -> tuple[int, ...]:
    return tuple(int(mapping.get(f"h{hour}".encode(), 0)) for hour in range(HOURS))


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else value


def _soft_detail(at: float) -> str:
    return f'{{"reason":"bounce_soft","at":{at!r}}}'
