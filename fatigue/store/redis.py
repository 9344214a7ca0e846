"""The Redis store: shared by every worker process, durable when Redis runs with AOF.

Key layout (``<prefix>`` comes from the URL's ``prefix`` query parameter)::

    <prefix>fatigue:{<user>}:sends        zset  send record JSON -> epoch seconds   (TTL)
    <prefix>fatigue:{<user>}:items        zset  item id -> epoch seconds last sent  (TTL)
    <prefix>fatigue:{<user>}:engagement   hash  ignored, soft_bounces (+ times, last_delivered),
                                                last_engaged, u0..u23 (UTC hours; h0..h23
                                                written before: default-zone hours)   (TTL)
    <prefix>fatigue:{<user>}:suppression  hash  scope -> detail JSON                (no TTL)
    <prefix>fatigue:{<user>}:lifted       hash  scope -> when last lifted           (no TTL)
    <prefix>fatigue:{<user>}:idem:<key>   str   "<decision id> <JSON>" for retries  (TTL)
    <prefix>fatigue:{<user>}:decisions    list  decision JSON, newest first, last 50 (TTL)
    <prefix>fatigue:{<user>}:events       zset  applied event id -> event time, 7 days (TTL)
    <prefix>fatigue:audience:hours        hash  h0..h23 (local hours) across every customer
    <prefix>fatigue:ready                 str   written by readiness checks          (10 s TTL)

The ``{<user>}`` hash tag keeps one customer's keys in one Redis Cluster slot, so each Lua
script only touches keys of one slot. Scripts run by ``EVALSHA``, pipelined by the store itself
(``RedisStore._exchange``: not redis-py's ``Script`` objects, whose pipelines ask ``SCRIPT
EXISTS`` first, a second round trip, nor its pipelines, which cost more than the scripts' own
work); a server that lost its script cache answers ``NOSCRIPT`` and those calls are loaded and
re-run.

Every call takes milliseconds, so a Redis that does not answer within ``SOCKET_TIMEOUT`` is
taken as failing: a hung server (stopped, swapping) held every request for the client's
timeout, and liveness probes queued behind them. After such a call the store is not asked for a
second (``fail_fast.FailFast``), then one call tries it. The URL's ``socket_timeout`` and
``socket_connect_timeout`` query parameters override both defaults.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from fatigue.errors import ConfigurationError, StoreError
from fatigue.store.base import (
    DECISION_LOG_SIZE,
    DECISION_LOG_TTL,
    EVENT_MEMORY,
    HOURS,
    MAX_SOFT_BOUNCES,
    CommitResult,
    CommitStatus,
    DecideCall,
    DecideReply,
    DecideStatus,
    DecisionMemo,
    EventChange,
    FatigueStore,
    LoggedDecision,
    Replay,
    SendAttempt,
    SendRecord,
    StateQuery,
    UserState,
    decision_owner,
    newest_unique,
    read_json,
    stored_replay,
    suppression_detail,
)
from fatigue.store.fail_fast import FailFast
from fatigue.store.later import Later
from fatigue.store.redis_args import commit_args, decide_args

_PARTS = ("sends", "items", "suppression", "engagement")
_PART_SIZES = tuple(len(part.encode()) for part in _PARTS)
log = logging.getLogger(__name__)
Call = tuple["_Script", list[str], list[Any]]
#: Seconds to wait for a reply (``?socket_timeout=`` in the URL overrides it).
SOCKET_TIMEOUT = 1.0
#: Seconds to wait for a new connection (``?socket_connect_timeout=`` overrides it).
CONNECT_TIMEOUT = 2.0
#: How long the key a readiness check writes lives.
READY_TTL_MS = 10_000


class _Script:
    """A Lua script from ``fatigue/store/lua`` and its SHA1, as ``EVALSHA`` names it.

    Redis scripts cannot load one another, so a script that shares functions with another is
    sent with the shared file (``after``) in front of it, and every script gets the constants
    it shares with the memory store from Python, so the two cannot drift apart.
    """

    def __init__(self, name: str, after: str | None = None) -> None:
        parts = [after, name] if after else [name]
        folder = resources.files("fatigue.store").joinpath("lua")
        constants = f"local MAX_SOFT_BOUNCES = {MAX_SOFT_BOUNCES}\n"
        self.text = constants + "".join(folder.joinpath(p).read_text("utf-8") for p in parts)
        self.sha = hashlib.sha1(self.text.encode(), usedforsecurity=False).hexdigest()


class RedisStore(FatigueStore):
    """``redis://host:port/db?prefix=app:`` (and ``rediss://``, ``unix://``)."""

    durable = True

    def __init__(self, url: str, **options: Any) -> None:
        import hiredis
        import redis
        from redis.exceptions import NoScriptError

        self._redis_errors: tuple[type[BaseException], ...] = (redis.RedisError,)
        self._silent: tuple[type[BaseException], ...] = (redis.ConnectionError, redis.TimeoutError)
        self._refused: tuple[type[BaseException], ...] = (redis.AuthenticationError,)
        self._no_script = NoScriptError
        self._error_reply = redis.ResponseError
        self._pack: Callable[[tuple[Any, ...]], bytes] = hiredis.pack_command
        clean_url, self.prefix = _split_prefix(url)
        options.setdefault("socket_timeout", SOCKET_TIMEOUT)  # the URL's own values win
        options.setdefault("socket_connect_timeout", CONNECT_TIMEOUT)
        self.client = redis.Redis.from_url(clean_url, **options)
        _check_connection_options(self.client.connection_pool, url)
        self._load = _Script("load.lua")
        self._decide = _Script("decide.lua", after="sends.lua")
        self._commit = _Script("commit.lua", after="sends.lua")
        self._remember = _Script("remember.lua")
        self._release = _Script("release.lua")
        self._apply = _Script("apply.lua")
        self._fail_fast = FailFast()

    def key(self, user_id: str | None, part: str) -> str:
        """Return the full key name; every key goes through here."""
        if user_id is None:
            return f"{self.prefix}fatigue:{part}"
        return f"{self.prefix}fatigue:{{{user_id}}}:{part}"

    @contextmanager
    def _errors(self, ask: bool = True) -> Iterator[None]:
        """Turn Redis errors into ``StoreError``; refuse at once while Redis is not answering.

        ``ask=False`` where the call was asked already (``_exchange_later`` checks when it
        sends): a second check would take the one trial call for itself and refuse it.
        """
        if ask and (why := self._fail_fast.refusal()) is not None:
            raise StoreError(f"redis store not answering ({why})")
        try:
            yield
        except self._redis_errors as exc:
            if isinstance(exc, self._silent) and not isinstance(exc, self._refused):
                self._fail_fast.failed(f"{type(exc).__name__}: {exc}")
            raise StoreError(self._failure(exc)) from exc
        else:
            self._fail_fast.answered()

    def _failure(self, exc: BaseException) -> str:
        """Say what Redis did: not answer, or answer with an error (out of memory, read-only)."""
        kind = type(exc).__name__
        if isinstance(exc, self._refused):  # a ConnectionError, yet it answered: "no"
            return f"redis store refused the credentials ({kind}: {exc})"
        if isinstance(exc, self._silent):
            return f"redis store not answering ({kind}: {exc})"
        return f"redis store answered with an error ({kind}: {exc})"

    def load(self, queries: Sequence[StateQuery]) -> list[UserState]:
        """Read several customers' state in one pipelined round trip."""
        calls: list[Call] = [
            (self._load, [self.key(query.user_id, part) for part in _PARTS], [repr(query.since)])
            for query in queries
        ]
        audience, replies = self._run(calls, audience=True)
        return [
            self._state(query, reply, audience)
            for query, reply in zip(queries, replies, strict=True)
        ]

    def _run(
        self, calls: Sequence[Call], audience: bool = False, packed: list[bytes] | None = None
    ) -> tuple[Any, list[Any]]:
        """Run scripts by EVALSHA (after one HGETALL of the audience when asked): one round trip.

        ``packed`` holds the calls' commands when the caller packed them itself (the very bytes
        ``hiredis.pack_command`` writes). Only a server that lost its script cache costs more:
        those calls load and run again.
        """
        return self._run_later(calls, audience, packed).result()

    def _run_later(
        self, calls: Sequence[Call], audience: bool = False, packed: list[bytes] | None = None
    ) -> Later[tuple[Any, list[Any]]]:
        """``_run``, its commands sent now and its replies read from the answer's ``result()``."""
        pack = self._pack
        commands = [pack(("HGETALL", self.key(None, "audience:hours")))] if audience else []
        if packed is None:
            for script, keys, args in calls:
                commands.append(pack(("EVALSHA", script.sha, len(keys), *keys, *args)))
        else:
            commands += packed
        exchange = self._exchange_later(commands)

        def read() -> tuple[Any, list[Any]]:
            with self._errors(ask=False):
                replies = exchange.result()
                self._fail_fast.answered()  # before any script is loaded and run again
                head = _hours(_fields(_checked(replies.pop(0)))) if audience else None
                missing = [n for n, r in enumerate(replies) if isinstance(r, self._no_script)]
                for script in {calls[n][0] for n in missing}:
                    self.client.script_load(script.text)
                if missing:
                    _, again = self._run([calls[n] for n in missing])
                    for n, reply in zip(missing, again, strict=True):
                        replies[n] = reply
                return head, [_checked(reply) for reply in replies]

        return Later(read, exchange.cancel)

    def _exchange_later(
        self, commands: Sequence[bytes], replies: int | None = None
    ) -> Later[list[Any]]:
        """Send ``commands`` in one write now; read every reply, errors as values, when asked.

        ``replies`` says how many replies to read when an item of ``commands`` holds several
        commands (one per item otherwise).

        A pipeline: redis-py's own spends about 30,000 instructions a command on bookkeeping
        this store never uses (a command stack, options and callbacks per command, each argument
        looked at again in Python), and a batch sends four commands per customer (its decide,
        three for its log entry): with two, this saved 73,000 instructions per customer. The
        bytes sent are the same (packed as redis-py packs them with ``hiredis``: see ``_run``),
        on a connection of the client's pool, held until
        the replies are read or the answer is cancelled. Under the client's retry policy, as
        redis-py's pipeline does: a send that fails is sent again, and if reading fails the
        connection is closed and the whole exchange sent again. Every reply is read before any
        error is raised, so a pooled connection is never left with replies unread; whatever the
        retry policy gives up on or does not cover (a reply that cannot be parsed, an interrupt)
        closes the connection, so the next exchange on it never reads this one's answers.
        """
        if (why := self._fail_fast.refusal()) is not None:
            return Later.failed(StoreError(f"redis store not answering ({why})"))
        pool = self.client.connection_pool
        try:
            connection = pool.get_connection()  # connects a new connection: that may fail too
        except Exception as exc:  # raised from result(), inside the caller's error handling
            return Later.failed(exc)
        payload = [b"".join(commands)]  # one write for the whole exchange, not one per command

        def closed() -> None:
            connection.disconnect()
            pool.release(connection)

        try:
            connection.retry.call_with_retry(
                lambda: connection.send_packed_command(payload),
                lambda _error: connection.disconnect(),
            )
        except Exception as exc:  # raised from result(), inside the caller's error handling
            closed()
            return Later.failed(exc)
        except BaseException:
            closed()
            raise
        retrying = False  # the first attempt reads what was sent; a retry sends it all again

        def attempt() -> list[Any]:
            nonlocal retrying
            if retrying:
                connection.send_packed_command(payload)
            retrying = True
            return self._read_replies(connection, len(commands) if replies is None else replies)

        def read() -> list[Any]:
            try:
                return connection.retry.call_with_retry(
                    attempt, lambda _error: connection.disconnect()
                )
            except BaseException:
                connection.disconnect()
                raise
            finally:
                pool.release(connection)

        return Later(read, closed)

    def _exchange(self, commands: Sequence[bytes], replies: int | None = None) -> list[Any]:
        """Send ``commands`` and read every reply (see ``_exchange_later``)."""
        return self._exchange_later(commands, replies).result()

    def _read_replies(self, connection: Any, count: int) -> list[Any]:
        replies: list[Any] = []
        for _ in range(count):
            try:
                replies.append(connection.read_response())
            except self._error_reply as error:  # an error reply: the others are still read
                replies.append(error)
        return replies

    def _state(self, query: StateQuery, reply: list[Any], audience: tuple[int, ...]) -> UserState:
        sends, items, suppression_flat, engagement_flat = reply
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
            hours=_hours(engagement, _UTC_KEYS),
            audience_hours=audience,
            legacy_hours=_hours(engagement, _HOUR_KEYS),
        )

    def decide(self, calls: Sequence[DecideCall]) -> list[DecideReply]:
        """Run ``decide.lua`` once per call, every call in one pipelined round trip."""
        return self.decide_later(calls).result()

    def decide_later(self, calls: Sequence[DecideCall]) -> Later[list[DecideReply]]:
        """Send ``decide``'s calls now; the replies are read from the answer's ``result()``."""
        scripts: list[Call] = []
        packed: list[bytes] = []
        template = _decide_template(self._decide.sha)
        for call in calls:
            query = call.query
            base = self.key(query.user_id, "")  # the customer's keys differ only after it
            idempotency = query.idempotency_key or ""
            args = decide_args(call)
            scripts.append((self._decide, _customer_keys(base, idempotency), args))
            packed.append(_decide_command(template, base, idempotency, args))
        running = self._run_later(
            scripts, audience=any(call.audience for call in calls), packed=packed
        )

        def replies() -> list[DecideReply]:
            audience, found = running.result()
            return [_decided(c, reply, audience) for c, reply in zip(calls, found, strict=True)]

        return Later(replies, running.cancel)

    def remember(self, memos: Sequence[DecisionMemo]) -> list[Replay | None]:
        """Run ``remember.lua`` for each memo, pipelined."""
        calls: list[Call] = [
            (
                self._remember,
                [self.key(memo.user_id, f"idem:{memo.idempotency_key}")],
                [memo.decision_id, memo.payload, memo.ttl],
            )
            for memo in memos
        ]
        _, replies = self._run(calls)
        return [
            _replay(memo.user_id, reply) if reply else None
            for memo, reply in zip(memos, replies, strict=True)
        ]

    def commit(self, attempts: Sequence[SendAttempt]) -> list[CommitResult]:
        """Run the check-and-record script for each attempt, pipelined in one round trip."""
        calls: list[Call] = [
            (
                self._commit,
                self._keys(attempt.user_id, attempt.idempotency_key),
                commit_args(attempt),
            )
            for attempt in attempts
        ]
        _, replies = self._run(calls)
        return [
            _result(attempt.user_id, _text(status), detail)
            for attempt, (status, detail) in zip(attempts, replies, strict=True)
        ]

    def _keys(self, user: str, idempotency_key: str | None) -> list[str]:
        return _customer_keys(self.key(user, ""), idempotency_key or "")

    def release(self, decision_id: str) -> bool:
        """Forget a recorded send that failed."""
        user = decision_owner(decision_id)
        if user is None:
            return False
        keys = [self.key(user, part) for part in ("sends", "items", "engagement")]
        _, [found] = self._run([(self._release, keys, [decision_id])])
        return bool(found)

    def apply(self, change: EventChange) -> bool:
        """Apply an event's change once (``apply.lua``), then count its hour for the audience."""
        user = change.user_id
        args: list[Any] = [
            change.at,
            change.engagement_ttl,
            int(change.engaged),
            "" if change.hour is None else change.hour,
            int(change.soft_bounce),
            int(change.reset_soft_bounces),
            change.soft_bounce_threshold or "",
            suppression_detail("bounce_soft", change.at) if change.soft_bounce else "",
            change.event_id or "",
            EVENT_MEMORY,
            repr(change.applied_at),
            len(change.lift),
            *change.lift,
        ]
        for scope, detail in change.suppress:
            args += [scope, detail]
        parts = ("engagement", "suppression", "sends", "events", "lifted")
        _, [applied] = self._run([(self._apply, [self.key(user, part) for part in parts], args)])
        slot = change.audience_slot
        if applied and slot is not None:
            # Another slot on Redis Cluster, so not inside the script. The event is applied and
            # logged: failing it now would only make the client send it again. A lost increment
            # blurs the audience histogram, never a cap.
            try:
                with self._errors():
                    self.client.hincrby(self.key(None, "audience:hours"), f"h{slot}", 1)
            except StoreError as exc:
                log.warning("audience open-hour count not incremented: %s", exc)
        return bool(applied)

    def log_decisions(self, entries: Sequence[LoggedDecision], ttl: int = DECISION_LOG_TTL) -> None:
        """Push each decision onto its customer's list, trim it and renew its TTL: one pipeline.

        Plain ``LPUSH``, ``LTRIM`` and ``EXPIRE``, not a script: a script's arguments become Lua
        strings, each hashed byte by byte as it is made, and a 2-3 KB decision cost Redis about
        28,000 instructions that way (64,000 a script call, 21,000 the three commands); reading
        two more replies costs this client about 18,000. The log is never read by a decision, so
        it needs no atomicity with the caps.
        """
        if not entries:
            return
        # hiredis formats each length with glibc's sprintf: 12,800 instructions a command; the
        # three filled in one template, the same bytes (tested), cost less than one of those.
        template = _log_template(str(DECISION_LOG_SIZE - 1), str(ttl))
        packed: list[bytes] = []
        for user_id, decision in entries:
            key, text = self.key(user_id, "decisions").encode(), decision.encode()
            size = len(key)
            packed.append(template % (size, key, len(text), text, size, key, size, key))
        with self._errors(ask=False):
            for reply in self._exchange(packed, len(_LOG_COMMANDS) * len(packed)):
                _checked(reply)

    def recent_decisions(self, user_id: str, limit: int = 20) -> list[dict[str, Any]]:
        """Read the customer's decision list (newest first) in one ``LRANGE``."""
        with self._errors():
            logged = self.client.lrange(self.key(user_id, "decisions"), 0, DECISION_LOG_SIZE - 1)
        return newest_unique([json.loads(text) for text in logged], limit)

    def ping(self) -> None:
        """Raise StoreError unless Redis answers and takes a write; note the clock skew.

        A Redis out of memory (``noeviction``) or a read-only replica after a failover answers
        ``PING`` while every decision that writes fails, so readiness writes a short-lived key.
        The same round trip reads Redis ``TIME`` into ``clock_skew`` (see there).
        """
        with self._errors():
            pipe = self.client.pipeline(transaction=False)
            pipe.set(self.key(None, "ready"), b"1", px=READY_TTL_MS)
            pipe.time()
            before = time.time()
            _, (seconds, micros) = pipe.execute()
            after = time.time()
        self.clock_skew = (before + after) / 2 - (seconds + micros / 1e6)

    def identity(self) -> str | None:
        """Read the identity key (no TTL: it goes only with the server's data)."""
        with self._errors():
            held = self.client.get(self.key(None, "identity"))
        return _text(held) if held is not None else None

    def claim_identity(self, candidate: str, replace: bool = False) -> str:
        """``SET`` (``NX`` unless ``replace``) the identity key, then read what it holds."""
        key = self.key(None, "identity")
        with self._errors():
            pipe = self.client.pipeline(transaction=False)
            pipe.set(key, candidate, nx=not replace)
            pipe.get(key)
            _, held = pipe.execute()
        return _text(held)

    #: How many seconds this host's clock was ahead of the Redis server's (negative: behind)
    #: at the last ``ping``, to within the round trip; None before one. Decisions, caps and
    #: cooldowns are stamped with this host's time: a host whose clock jumped records sends in
    #: the future (their customers capped for the jump) or refuses platforms' events as from
    #: the future, and nothing else would notice.
    clock_skew: float | None = None

    def close(self) -> None:
        """Close the connection pool."""
        self.client.close()


def _decided(call: DecideCall, reply: list[Any], audience: tuple[int, ...] | None) -> DecideReply:
    """Read ``decide.lua``'s reply: status, offer and the state read (or the stored value)."""
    found, number, payload = reply
    status = _DECIDE_STATUSES.get(found) or DecideStatus(_text(found))
    if status == DecideStatus.REPLAY:
        return DecideReply(status, replay=_replay(call.query.user_id, payload))
    state = _user_state(call.query.user_id, read_json(payload), call.guard_items, audience)
    offer = number - 1 if status == DecideStatus.RECORDED else None
    return DecideReply(status, state, offer)


# Looking a member up by value through the enum's call costs several times a dict's lookup.
# Keyed by bytes as well: replies are bytes unless the client decodes them.
_DECIDE_STATUSES: dict[str | bytes, DecideStatus] = {
    **{status.value: status for status in DecideStatus},
    **{status.value.encode(): status for status in DecideStatus},
}


def _replay(user_id: str, stored: bytes | str) -> Replay:
    """Parse a stored ``"<decision id> <JSON>"``: a decision, or a basis with its state."""
    decision_id, payload = stored_replay(stored)
    if not payload.startswith('{"b":'):
        return Replay(decision_id, payload)
    from fatigue.basis import Basis

    kept = json.loads(payload)
    state = _user_state(user_id, kept["s"], (), None)
    offer = kept["r"] - 1 if kept["r"] else None
    return Replay(decision_id, "", state, offer, Basis.from_data(kept["b"]))


def _user_state(
    user_id: str, parts: Sequence[Any], guard: Sequence[str], audience: tuple[int, ...] | None
) -> UserState:
    """Build the state ``decide.lua`` read (JSON-decoded); hours only when ``audience`` is read."""
    rows, suppression_flat, engagement_flat, scores = map(_list, parts)
    # Some 30 guard items per decision, and most were never sent (``false``): skip the loop.
    items = (
        {item: float(score) for item, score in zip(guard, scores, strict=False) if score}
        if any(scores)
        else {}
    )
    if not rows and not suppression_flat and not engagement_flat:
        # Nothing recent, suppressed or engaged (every new customer): nothing else to read.
        return UserState(
            user_id, (), items, {}, 0, 0, None, _NO_HOURS, audience or _NO_HOURS, _NO_HOURS
        )
    engagement = {_text(k): v for k, v in _pairs(engagement_flat).items()}
    last = engagement.get("last_engaged")
    return UserState(
        user_id=user_id,
        sends=tuple(
            SendRecord.from_member(rows[i], float(rows[i + 1])) for i in range(0, len(rows), 2)
        ),
        items=items,
        suppression={_text(k): _text(v) for k, v in _pairs(suppression_flat).items()},
        ignored=int(engagement.get("ignored", 0)),
        soft_bounces=int(engagement.get("soft_bounces", 0)),
        last_engaged=float(last) if last is not None else None,
        hours=_hours(engagement, _UTC_NAMES) if audience is not None else _NO_HOURS,
        audience_hours=audience or _NO_HOURS,
        legacy_hours=_hours(engagement, _HOUR_NAMES) if audience is not None else _NO_HOURS,
    )


_NO_HOURS = (0,) * HOURS


#: What ``log_decisions`` sends for each entry, in order.
_LOG_COMMANDS = ("LPUSH", "LTRIM", "EXPIRE")


@functools.lru_cache(maxsize=16)
def _log_template(last: str, seconds: str) -> bytes:
    """One entry's ``LPUSH``, ``LTRIM 0 <last>`` and ``EXPIRE <seconds>`` in RESP, to fill.

    Filled with the key's length and bytes, the decision's, then the key's twice more.
    """
    push = b"*3\r\n$5\r\nLPUSH\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n"
    trim = b"*4\r\n$5\r\nLTRIM\r\n$%%d\r\n%%b\r\n$1\r\n0\r\n$%d\r\n%b\r\n" % (
        len(last),
        last.encode(),
    )
    expire = b"*3\r\n$6\r\nEXPIRE\r\n$%%d\r\n%%b\r\n$%d\r\n%b\r\n" % (
        len(seconds),
        seconds.encode(),
    )
    return push + trim + expire


@functools.lru_cache(maxsize=4)
def _decide_template(sha: str) -> bytes:
    """``EVALSHA`` of ``decide.lua`` in RESP, its keys' shared start and arguments to fill."""
    head = b"*12\r\n$7\r\nEVALSHA\r\n$%d\r\n%b\r\n$1\r\n%d\r\n" % (
        len(sha),
        sha.encode(),
        len(_PARTS) + 1,
    )
    keys = b"".join(b"$%%d\r\n%%b%b\r\n" % part.encode() for part in _PARTS)
    return head + keys + b"$%d\r\n%bidem:%b\r\n" + b"$%d\r\n%b\r\n" * 4


def _decide_command(template: bytes, base: str, idempotency: str, args: list[Any]) -> bytes:
    """One ``decide.lua`` call packed as ``hiredis.pack_command`` packs it (tested).

    hiredis formats each length with glibc's sprintf (about 19,000 instructions a command);
    one template filled once, the customer's key start encoded once, costs a third of it.
    """
    now, payload, basis, guard = args
    start, idem, now_text, basis_text = (
        base.encode(),
        idempotency.encode(),
        now.encode(),
        basis.encode(),
    )
    size = len(start)
    sends, items, suppression, engagement = _PART_SIZES
    return template % (
        size + sends,
        start,
        size + items,
        start,
        size + suppression,
        start,
        size + engagement,
        start,
        size + 5 + len(idem),
        start,
        idem,
        len(now_text),
        now_text,
        len(payload),
        payload,
        len(basis_text),
        basis_text,
        len(guard),
        guard,
    )


def _list(value: Any) -> list[Any]:
    # cjson writes an empty Lua table as {}; a reply is a list either way.
    return value if isinstance(value, list) else []


def _checked(reply: Any) -> Any:
    if isinstance(reply, Exception):
        raise reply
    return reply


def _result(user_id: str, status: str, detail: bytes | str) -> CommitResult:
    if status == CommitStatus.DUPLICATE:
        kept = _replay(user_id, detail)
        return CommitResult(CommitStatus.DUPLICATE, replay=kept.payload, kept=kept)
    return CommitResult(CommitStatus(status), detail=_text(detail))


def _check_connection_options(pool: Any, url: str) -> None:
    """Refuse a URL whose options no connection takes, or whose timeouts are not positive.

    redis-py hands a query parameter it does not know to each connection it makes, so a typo
    (``?prefx=``) failed every request, with a traceback, once the server was serving.
    """
    import difflib

    from redis.connection import URL_QUERY_ARGUMENT_PARSERS

    from fatigue.store import masked_url

    shown = masked_url(url)
    try:
        pool.connection_class(**pool.connection_kwargs)  # the object only: no socket yet
    except TypeError as exc:
        found = re.search(r"keyword argument '([^']+)'", str(exc))
        name = found.group(1) if found else str(exc)
        known = ["prefix", *URL_QUERY_ARGUMENT_PARSERS]
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(known)})"
        raise ConfigurationError(f"store URL {shown!r}: unknown option {name!r}{hint}") from None
    for name in ("socket_timeout", "socket_connect_timeout"):
        seconds = pool.connection_kwargs.get(name)
        if seconds is not None and not seconds > 0:
            raise ConfigurationError(
                f"store URL {shown!r}: {name} must be more than 0 seconds (got {seconds})"
            )


def _split_prefix(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    prefix = next((value for name, value in query if name == "prefix"), "")
    rest = urlencode([(name, value) for name, value in query if name != "prefix"])
    return urlunsplit(parts._replace(query=rest)), prefix


def _customer_keys(base: str, idempotency: str) -> list[str]:
    """Return a decision's five keys from the customer's key start (they differ only after it)."""
    return [*map(base.__add__, _PARTS), f"{base}idem:{idempotency}"]


def _fields(reply: dict[bytes, bytes] | list[bytes]) -> dict[bytes, bytes]:
    """Return an ``HGETALL`` reply as a dict: RESP3 answers a map, RESP2 a flat list."""
    return reply if isinstance(reply, dict) else _pairs(reply)


def _pairs(flat: list[bytes]) -> dict[bytes, bytes]:
    return {flat[i]: flat[i + 1] for i in range(0, len(flat), 2)}


def _hours(mapping: Mapping[Any, Any], names: Sequence[Any] | None = None) -> tuple[int, ...]:
    """Read 24 hour counts, ``h0``..``h23`` unless ``names`` says which fields, from a hash.

    The audience hash (bytes keys from redis-py) holds local hours in ``h<n>``; a customer's
    engagement hash holds UTC hours in ``u<n>``, and may still hold ``h<n>`` written before
    (local hours of the default zone, ``UserState.legacy_hours``). Keys read from JSON are str.
    """
    return tuple(int(mapping.get(name, 0)) for name in names or _HOUR_KEYS)


_HOUR_NAMES = tuple(f"h{hour}" for hour in range(HOURS))
_HOUR_KEYS = tuple(name.encode() for name in _HOUR_NAMES)
_UTC_NAMES = tuple(f"u{hour}" for hour in range(HOURS))
_UTC_KEYS = tuple(name.encode() for name in _UTC_NAMES)


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else value
