"""The store contract: what the governor keeps per customer, behind one abstract class.

Stores are deliberately dumb: the governor works out in Python everything that does not depend
on the customer's state (content, holdout, windows, quiet hours) and hands the store a
``DecideCall``. The store, atomically and in one round trip (a lock in memory, one ``EVALSHA`` on
Redis), reads the customer, records the first ``SendAttempt`` whose caps, cooldown and suppression
checks pass, remembers the decision under the idempotency key and returns the state it read; the
governor then explains the outcome rule by rule from that state. ``commit`` is the second step
for the few decisions that cannot be settled that way (see ``docs/fatigue.md``). Times are epoch
seconds taken from the governor's injected clock.
"""

from __future__ import annotations

import base64
import json
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NamedTuple

import orjson

from fatigue.random_ids import random_hex
from fatigue.store.later import Later

if TYPE_CHECKING:
    from fatigue.basis import Basis

HOURS = 24
#: How many decisions the decision log keeps per customer (the newest win).
DECISION_LOG_SIZE = 50
DECISION_LOG_TTL = 86400 * 30

# The records built for every decision (queries, send records, checks, attempts, states) are
# typed NamedTuples rather than frozen dataclasses: just as immutable, and several times cheaper
# to build, which matters on the decision path. Longer-lived values stay frozen dataclasses.


class SendRecord(NamedTuple):
    """One recorded send: what the caps, the cooldown and the no-repeat window count."""

    decision_id: str
    at: float
    channel: str
    category: str
    campaign: str
    kind: str
    counts: bool = True
    items: tuple[str, ...] = ()

    def to_member(self) -> str:
        """Encode as the compact JSON the Redis sorted set and the Lua scripts share."""
        data = {
            "d": self.decision_id,
            "ch": self.channel,
            "cat": self.category,
            "cmp": self.campaign,
            "k": self.kind,
            "c": 1 if self.counts else 0,
            "i": self.items,
        }
        return compact_json(data)  # stored text: the same bytes as ever

    @classmethod
    def from_member(cls, member: str | bytes, at: float) -> SendRecord:
        """Decode ``to_member`` output recorded at ``at``."""
        data: dict[str, Any] = read_json(member)
        return cls(
            decision_id=data["d"],
            at=at,
            channel=data["ch"],
            category=data["cat"],
            campaign=data["cmp"],
            kind=data["k"],
            counts=bool(data["c"]),
            items=tuple(data["i"]),
        )


def compact_json(data: Any) -> str:
    r"""Return ``json.dumps(data, separators=(",", ":"))`` of data without floats, fast.

    Encoded for every offered send, so orjson writes it: for text below U+007F (control
    characters included) it writes the very bytes json does. From there json escapes
    (``\uXXXX``) and orjson does not, and a lone surrogate orjson refuses: those take json's
    path, so stored text keeps its spelling. (Floats are spelled differently: keep them out.)
    """
    try:
        encoded = orjson.dumps(data)
    except orjson.JSONEncodeError:
        return json.dumps(data, separators=(",", ":"))
    if encoded.isascii() and b"\x7f" not in encoded:
        return encoded.decode()
    return json.dumps(data, separators=(",", ":"))


def read_json(text: str | bytes) -> Any:
    """Parse JSON as ``json.loads`` does, by orjson when it can: read for every decision.

    Both give the same values for any text whose integers fit in 64 bits, as all this package
    writes do (Lua's cjson writes at most 14 digits). What orjson refuses and json reads (NaN,
    an escaped lone surrogate, UTF-16) json reads as ever.
    """
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


class StateQuery(NamedTuple):
    """Which customer to read, how far back, and (deciding) which idempotency key to check."""

    user_id: str
    now: float
    since: float
    idempotency_key: str | None = None


class UserState(NamedTuple):
    """Everything the governor needs about one customer, read in one round trip."""

    user_id: str
    sends: tuple[SendRecord, ...] = ()
    items: Mapping[str, float] = MappingProxyType({})
    suppression: Mapping[str, str] = MappingProxyType({})
    ignored: int = 0
    soft_bounces: int = 0
    last_engaged: float | None = None
    #: The customer's opens and clicks by UTC hour (``sendtime`` shifts them into their zone).
    hours: tuple[int, ...] = (0,) * HOURS
    #: Everyone's opens and clicks by local hour (each event's zone, else the default zone).
    audience_hours: tuple[int, ...] = (0,) * HOURS
    #: The customer's hours as written before they were kept in UTC: local hours of the rules'
    #: default zone (Redis fields ``h0``..``h23``; see docs/fatigue.md, Send time).
    legacy_hours: tuple[int, ...] = (0,) * HOURS


class CapCheck(NamedTuple):
    """A cap as the atomic check sees it: window start, limit and scope."""

    since: float
    inclusive: bool
    limit: int
    channel: str
    category: str | None = None
    campaign: str | None = None
    #: The cap applies only once the customer has ignored this many messages (reduced cadence).
    min_ignored: int = 0

    def in_scope(self, record: SendRecord) -> bool:
        """Return whether ``record`` is the kind of send this cap counts, at any time."""
        return (
            record.counts
            and record.channel == self.channel
            and (self.category is None or record.category == self.category)
            and (self.campaign is None or record.campaign == self.campaign)
        )

    def matches(self, record: SendRecord) -> bool:
        """Return whether ``record`` counts toward this cap inside its window."""
        inside = record.at >= self.since if self.inclusive else record.at > self.since
        return inside and self.in_scope(record)


class SendAttempt(NamedTuple):
    """A send to record if, at that instant, every cap, the cooldown and suppression allow it."""

    user_id: str
    record: SendRecord
    caps: tuple[CapCheck, ...] = ()
    cooldown_since: float | None = None
    blocking_scopes: tuple[str, ...] = ()
    idempotency_key: str | None = None
    replay: str = ""
    #: Refuse when the customer has ignored this many messages in a row (sunset).
    sunset_at: int | None = None
    history_ttl: int = 86400 * 40
    idempotency_ttl: int = 86400 * 2
    engagement_ttl: int = 86400 * 400


class CommitStatus(StrEnum):
    """How a commit ended."""

    RECORDED = "recorded"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"


@dataclass(frozen=True)
class CommitResult:
    """The outcome of one ``SendAttempt``; ``replay`` holds the earlier decision on a duplicate."""

    status: CommitStatus
    replay: str | None = None
    detail: str = ""
    kept: Replay | None = None


class DecideCall(NamedTuple):
    """One decision's whole store interaction: read, check the offers, record, remember.

    ``offers`` are sends in order of preference: the first whose checks pass is recorded.
    ``guard_items``: when one was sent after ``repeat_since`` the content was chosen on a wrong
    assumption, so nothing is recorded or remembered (status ``stale``). ``basis`` (None for
    none) is remembered under the idempotency key together with the state read, so a retry can
    rebuild the decision.
    """

    query: StateQuery
    decision_id: str
    offers: tuple[SendAttempt, ...] = ()
    guard_items: tuple[str, ...] = ()
    repeat_since: float | None = None
    basis: Basis | None = None
    #: Whether the open-hour histograms (the customer's and the audience's) are needed.
    audience: bool = False
    history_ttl: int = 86400 * 40
    idempotency_ttl: int = 86400 * 2
    engagement_ttl: int = 86400 * 400


class DecideStatus(StrEnum):
    """How a ``DecideCall`` ended."""

    RECORDED = "recorded"  # offer ``offer`` was recorded (and the decision remembered)
    CHECKED = "checked"  # no offer passed, or there were none; the state read is conclusive
    STALE = "stale"  # a guard item was sent recently: the content must be chosen again
    REPLAY = "replay"  # another decision holds the idempotency key


@dataclass(frozen=True)
class Replay:
    """A remembered decision: its JSON, or its basis and the state it was decided on."""

    decision_id: str
    payload: str = ""
    state: UserState | None = None
    offer: int | None = None
    basis: Basis | None = None


class DecideReply(NamedTuple):
    """What a ``DecideCall`` found: the state before any record, and what happened."""

    status: DecideStatus
    state: UserState | None = None
    offer: int | None = None
    replay: Replay | None = None


@dataclass(frozen=True)
class DecisionMemo:
    """A finished decision's JSON to keep under its idempotency key for ``ttl`` seconds."""

    user_id: str
    idempotency_key: str
    decision_id: str
    payload: str
    at: float
    ttl: int


@dataclass(frozen=True)
class EventChange:
    """The state change one engagement event causes, applied atomically per customer.

    Events arrive late and twice (platforms batch them; a client retries a batch after a 503),
    so a change is applied at most once per ``event_id`` within ``EVENT_MEMORY`` seconds, and by
    the event's own time: an engagement older than the last one changes no counter, and a
    resubscribe older than an unsubscribe (``lift``) leaves it in place.
    """

    user_id: str
    at: float
    engaged: bool = False
    #: The UTC hour of an open or click, for the customer's histogram.
    hour: int | None = None
    #: Its local hour, for the audience's histogram (defaults to ``hour``).
    audience_hour: int | None = None
    soft_bounce: bool = False
    reset_soft_bounces: bool = False
    soft_bounce_threshold: int | None = None
    #: (scope, detail) pairs; write details with ``suppression_detail`` (its ``ts`` orders them).
    suppress: tuple[tuple[str, str], ...] = ()
    lift: tuple[str, ...] = ()
    engagement_ttl: int = 86400 * 400
    event_id: str | None = None
    #: When the change is applied (the governor passes its clock's time). Event ids are
    #: remembered ``EVENT_MEMORY`` from then, not from the event's own time: an event older than
    #: the memory would else be forgotten as soon as a newer one applied, and a retried batch
    #: would apply it again.
    applied_at: float = field(default_factory=time.time)

    @property
    def audience_slot(self) -> int | None:
        """Return the audience histogram's hour this change counts (None: none)."""
        return self.hour if self.audience_hour is None else self.audience_hour


#: How long a store remembers the ids of the events it applied (retries come within hours).
EVENT_MEMORY = 7 * 86400
#: Soft bounces a store keeps the times of (since the latest delivery); any threshold is lower.
MAX_SOFT_BOUNCES = 20


def suppression_detail(reason: str, at: float, campaign: str | None = None) -> str:
    """Return the JSON kept for a suppressed scope: why, when (ISO and ``ts`` seconds), where."""
    when = datetime.fromtimestamp(at, UTC).isoformat()
    detail: dict[str, Any] = {"reason": reason, "at": when, "ts": at}
    if campaign is not None:
        detail["campaign"] = campaign
    return json.dumps(detail)


def suppression_time(detail: str) -> float:
    """Return when a suppression was recorded (0 for details written without a ``ts``)."""
    try:
        found = json.loads(detail)
        return float(found["ts"]) if isinstance(found, dict) and "ts" in found else 0.0
    except (ValueError, TypeError):
        return 0.0


class LoggedDecision(NamedTuple):
    """One decision for the per-customer decision log: its customer and ``Decision.to_json()``."""

    user_id: str
    decision: str


def newest_unique(decisions: Sequence[Mapping[str, Any]], limit: int) -> list[dict[str, Any]]:
    """Keep the first (newest) entry of each decision id, at most ``limit`` of them.

    A retried request replays its decision and the composer logs it again; the reader shows it
    once rather than making every writer check the log first.
    """
    seen: set[Any] = set()
    kept: list[dict[str, Any]] = []
    for decision in decisions:
        key = decision.get("decision_id")
        if key is not None and key in seen:
            continue
        seen.add(key)
        kept.append(dict(decision))
        if len(kept) >= limit:
            break
    return kept


def stored_replay(value: str | bytes) -> tuple[str, str]:
    """Split a stored ``"<decision id> <JSON>"`` into its parts (an id of ``""`` for old values)."""
    text = value.decode() if isinstance(value, bytes) else value
    if text.startswith("{"):
        return "", text
    decision_id, _, payload = text.partition(" ")
    return decision_id, payload


def new_decision_id(user_id: str) -> str:
    """Return a unique decision id that also names its customer, so release needs nothing else."""
    owner = base64.urlsafe_b64encode(user_id.encode()).decode().rstrip("=")
    return f"d{random_hex()}.{owner}"


def decision_owner(decision_id: str) -> str | None:
    """Return the customer a decision id names, or None when it is not one of ours."""
    _, dot, owner = decision_id.partition(".")
    if not dot or not decision_id.startswith("d"):
        return None
    try:
        return base64.urlsafe_b64decode(owner + "=" * (-len(owner) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        return None


class FatigueStore(ABC):
    """Per-customer fatigue state: send history, engagement, suppression, idempotency."""

    #: Whether state survives a restart of the process (suppression is legal state).
    durable: bool = False

    @abstractmethod
    def load(self, queries: Sequence[StateQuery]) -> list[UserState]:
        """Read the state of several customers in one round trip."""

    @abstractmethod
    def decide(self, calls: Sequence[DecideCall]) -> list[DecideReply]:
        """Run each call atomically, in order; one round trip (one script per call) in all."""

    def decide_later(self, calls: Sequence[DecideCall]) -> Later[list[DecideReply]]:
        """Start ``decide``: the caller reads the replies from ``result()`` (errors too).

        A store whose round trips cost real waiting (Redis) sends the calls now and reads the
        replies when asked, so the caller's own work overlaps the store's; calls are still run
        in the order they were sent. This default decides at once.
        """
        return Later.now(lambda: self.decide(calls))

    @abstractmethod
    def commit(self, attempts: Sequence[SendAttempt]) -> list[CommitResult]:
        """Atomically check and record each send; one round trip for the batch."""

    @abstractmethod
    def remember(self, memos: Sequence[DecisionMemo]) -> list[Replay | None]:
        """Keep each decision under its key unless another holds it (then return that one)."""

    @abstractmethod
    def release(self, decision_id: str) -> bool:
        """Forget a recorded send that failed; return whether one was found."""

    @abstractmethod
    def apply(self, change: EventChange) -> bool:
        """Apply an event's change to engagement and suppression state (see ``EventChange``).

        Return False when the event was applied before (same ``event_id``), changing nothing.
        """

    @abstractmethod
    def log_decisions(self, entries: Sequence[LoggedDecision], ttl: int = DECISION_LOG_TTL) -> None:
        """Append decisions to their customers' logs, in one round trip for the batch.

        Each log keeps its newest ``DECISION_LOG_SIZE`` entries and expires ``ttl`` seconds
        after its last one (the memory store keeps them for the life of the process).
        """

    @abstractmethod
    def recent_decisions(self, user_id: str, limit: int = 20) -> list[dict[str, Any]]:
        """Return the customer's logged decisions, newest first, each decision once."""

    @abstractmethod
    def ping(self) -> None:
        """Raise StoreError when the store cannot be reached."""

    @abstractmethod
    def identity(self) -> str | None:
        """Return the store's identity, written once and kept as long as its state (or None).

        A server that lost its data (restarted without persistence, flushed) has none: the
        API compares it with the identity its event log was applied to (``api.store_state``).
        """

    @abstractmethod
    def claim_identity(self, candidate: str, replace: bool = False) -> str:
        """Return the store's identity, ``candidate`` if it had none (or ``replace``)."""

    def close(self) -> None:
        """Release connections; the default has nothing to release."""
        return None
