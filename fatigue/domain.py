"""Domain values the governor reasons about, as plain immutable data.

The engine turns its recommendations into ``Candidate`` objects; the governor never imports the
recommender.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

import orjson

from fatigue.identity import encoded_once, filled


class ContentKind(StrEnum):
    """What a piece of content (or a campaign) is; Rapport only picks non-transactional content."""

    PROMOTIONAL = "promotional"
    EDITORIAL = "editorial"
    TRANSACTIONAL = "transactional"


@dataclass(frozen=True)
class Candidate:
    """One item the engine proposes for a customer, with what the governor needs to judge it."""

    item_id: str
    relevance: float
    score: float = 0.0
    source: str = "cf"
    category: str = ""
    kind: ContentKind = ContentKind.PROMOTIONAL
    published_at: datetime | None = None
    expires_at: datetime | None = None
    in_stock: bool = True

    @classmethod
    def joined(
        cls, item_id: str, relevance: float, score: float, source: str, facts: Mapping[str, Any]
    ) -> Candidate:
        """Build a candidate from a pick and its catalog ``facts`` (every field after source).

        The generated ``__init__`` of a frozen dataclass sets each field through
        ``object.__setattr__``; composing builds some 30 candidates per recipient, and filling
        the instance's ``__dict__`` at once is four times faster. Same fields, same value.
        """
        candidate = object.__new__(cls)
        candidate.__dict__.update(
            facts, item_id=item_id, relevance=relevance, score=score, source=source
        )
        return candidate


class Channel(StrEnum):
    """Where a message goes; email now, others later."""

    EMAIL = "email"
    SMS = "sms"
    PUSH = "push"


class Action(StrEnum):
    """What the governor decided for one request."""

    SEND = "send"
    DEFER = "defer"
    SUPPRESS = "suppress"


class EventType(StrEnum):
    """What the platform reports back about a message or a customer."""

    SENT = "sent"
    DELIVERED = "delivered"
    OPEN = "open"
    MACHINE_OPEN = "machine_open"
    CLICK = "click"
    PURCHASE = "purchase"
    UNSUBSCRIBE = "unsubscribe"
    RESUBSCRIBE = "resubscribe"
    COMPLAINT = "complaint"
    BOUNCE_HARD = "bounce_hard"
    BOUNCE_SOFT = "bounce_soft"
    SEND_FAILED = "send_failed"


#: Events that prove a human read the mail; machine opens (privacy proxies) do not count.
ENGAGEMENT_EVENTS = frozenset({EventType.OPEN, EventType.CLICK, EventType.PURCHASE})


@dataclass(frozen=True)
class Recipient:
    """The customer a message is for, as the platform sends it with each request."""

    user_id: str
    email: str = ""
    first_name: str = ""
    locale: str = ""
    timezone: str = ""
    attributes: Mapping[str, object] = field(default_factory=dict)

    @classmethod
    def made(
        cls,
        user_id: str,
        email: str,
        first_name: str,
        locale: str,
        timezone: str,
        attributes: Mapping[str, object],
    ) -> Recipient:
        """Build a recipient with every field given: the same object as ``Recipient(...)`` makes.

        One is made per batch line: filling the instance's ``__dict__`` at once takes a third
        of the frozen ``__init__``'s time (as ``Decision.made``).
        """
        return filled(
            cls,
            dict(
                user_id=user_id, email=email, first_name=first_name, locale=locale,
                timezone=timezone, attributes=attributes,
            ),
        )  # fmt: skip


@dataclass(frozen=True)
class Campaign:
    """A campaign competing for a customer's inbox."""

    id: str
    category: str = ""
    kind: ContentKind = ContentKind.PROMOTIONAL
    priority: float = 1.0
    channel: Channel = Channel.EMAIL
    #: The fewest items its email can show (its template says): fewer chosen, and it is not
    #: sent, transactional or not.
    min_items: int = 0
    #: The most items its email shows (None: as many as the rules' diversity allows). No more
    #: are chosen, so the no-repeat rule records as sent only what the customer saw.
    max_items: int | None = None


@dataclass(frozen=True)
class MessageRequest:
    """A request to message one customer about one campaign, or several competing ones."""

    campaigns: tuple[Campaign, ...]
    idempotency_key: str | None = None
    deferrable: bool = False
    dry_run: bool = False
    #: A digest of what the caller asked for beyond the campaigns (recipient, template, data):
    #: remembered with the key's decision, so a key reused for another request is refused
    #: rather than replayed (a send rendered to another address). "" checks nothing.
    request_digest: str = ""

    def __post_init__(self) -> None:
        if not self.campaigns:
            raise ValueError("a MessageRequest needs at least one campaign")

    @classmethod
    def made(
        cls,
        campaigns: tuple[Campaign, ...],
        idempotency_key: str | None,
        deferrable: bool,
        dry_run: bool,
        request_digest: str,
    ) -> MessageRequest:
        """Build a request with every field given: the same object as ``MessageRequest(...)``.

        One is made per batch recipient: filling the instance's ``__dict__`` at once takes a
        third of the frozen ``__init__``'s time (as ``Decision.made``); the same check is made.
        """
        if not campaigns:
            raise ValueError("a MessageRequest needs at least one campaign")
        return filled(
            cls,
            dict(
                campaigns=campaigns, idempotency_key=idempotency_key, deferrable=deferrable,
                dry_run=dry_run, request_digest=request_digest,
            ),
        )  # fmt: skip

    @classmethod
    def single(cls, campaign: Campaign, **options: Any) -> MessageRequest:
        """Build a request for one campaign."""
        return cls(campaigns=(campaign,), **options)


@dataclass(frozen=True)
class Reason:
    """One rule's verdict: whether it passed, its counter and limit, and whether it decided."""

    rule: str
    passed: bool
    detail: str = ""
    counter: float | None = None
    limit: float | None = None
    deciding: bool = False

    @classmethod
    def made(
        cls,
        rule: str,
        passed: bool,
        detail: str,
        counter: float | None,
        limit: float | None,
        deciding: bool,
    ) -> Reason:
        """Build a reason with every field given: the same object as ``Reason(...)`` makes.

        For the reasons made per decision (a customer's holdout position, the deciding rule):
        filling the instance's ``__dict__`` at once takes a third of the frozen ``__init__``'s
        time (as ``Decision.made``).
        """
        return filled(
            cls,
            dict(
                rule=rule, passed=passed, detail=detail, counter=counter, limit=limit,
                deciding=deciding,
            ),
        )  # fmt: skip


@dataclass(frozen=True)
class Decision:
    """The governor's immutable answer to one request."""

    action: Action
    user_id: str
    decision_id: str
    decided_at: datetime
    send_at: datetime | None = None
    items: tuple[Candidate, ...] = ()
    reasons: tuple[Reason, ...] = ()
    campaign: str | None = None
    idempotency_key: str | None = None
    dry_run: bool = False
    request_digest: str = ""  # the request's (``MessageRequest.request_digest``)

    @classmethod
    def made(
        cls,
        *,
        action: Action,
        user_id: str,
        decision_id: str,
        decided_at: datetime,
        send_at: datetime | None,
        items: tuple[Candidate, ...],
        reasons: tuple[Reason, ...],
        campaign: str | None,
        idempotency_key: str | None,
        dry_run: bool,
        request_digest: str,
    ) -> Decision:
        """Build a decision with every field given: the same object as ``Decision(...)`` makes.

        The generated ``__init__`` of a frozen dataclass sets each field through
        ``object.__setattr__``; one decision is made per request, and filling the instance's
        ``__dict__`` at once takes a third of the time (as ``Candidate.joined`` does).
        """
        return filled(
            cls,
            dict(
                action=action, user_id=user_id, decision_id=decision_id, decided_at=decided_at,
                send_at=send_at, items=items, reasons=reasons, campaign=campaign,
                idempotency_key=idempotency_key, dry_run=dry_run, request_digest=request_digest,
            ),
        )  # fmt: skip

    @property
    def deciding(self) -> Reason | None:
        """Return the reason that decided the action, if any rule did."""
        # A loop, not ``next`` over a generator: asked twice per batch recipient (metrics and
        # the decision log), and a send's ten or so reasons are all looked at.
        for reason in self.reasons:
            if reason.deciding:
                return reason
        return None

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (ISO-8601 times, enum values as strings).

        A new dict each call, but its lists of items and reasons are shared between calls:
        replace them rather than change them.
        """
        made = self.__dict__.get("_as_dict")
        if made is None:
            made = self.__dict__["_as_dict"] = self._data(_isoformat, _item_dicts, _reason_dicts)
        return dict(made)

    def to_json(self) -> str:
        """Return ``to_dict()`` as compact JSON (made once per decision)."""
        # A decision is serialised more than once (decision log, idempotency memo); it is
        # immutable, so each form is kept in the instance's ``__dict__`` once made (not by
        # ``cached_property``, which takes a lock at every first use on Python 3.11; two
        # threads making the same text at once both make the same text). The JSON is written
        # from the datetimes themselves: orjson writes them exactly as ``isoformat`` does
        # (tests/fatigue/test_domain.py), faster.
        text: str | None = self.__dict__.get("_as_json")
        if text is None:
            data = self._data(_same, _items_json, _reasons_json)
            text = self.__dict__["_as_json"] = orjson.dumps(data).decode()
        return text

    def _data(
        self,
        moment: Callable[[datetime | None], Any],
        items: Callable[[tuple[Candidate, ...]], Any],
        reasons: Callable[[tuple[Reason, ...]], Any],
    ) -> dict[str, Any]:
        return {
            "action": self.action._value_,  # not ``.value``, a Python-level enum property
            "user_id": self.user_id,
            "decision_id": self.decision_id,
            "decided_at": moment(self.decided_at),
            "send_at": moment(self.send_at),
            "campaign": self.campaign,
            "idempotency_key": self.idempotency_key,
            "dry_run": self.dry_run,
            "request_digest": self.request_digest,
            "items": items(self.items),
            "reasons": reasons(self.reasons),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Decision:
        """Rebuild a decision from ``to_dict`` output."""
        send_at = data.get("send_at")
        return cls(
            action=Action(data["action"]),
            user_id=data["user_id"],
            decision_id=data["decision_id"],
            decided_at=datetime.fromisoformat(data["decided_at"]),
            send_at=datetime.fromisoformat(send_at) if send_at else None,
            campaign=data.get("campaign"),
            idempotency_key=data.get("idempotency_key"),
            dry_run=bool(data.get("dry_run", False)),
            request_digest=str(data.get("request_digest") or ""),  # none in older decisions
            items=tuple(candidate_from_dict(item) for item in data.get("items", ())),
            reasons=tuple(Reason(**reason) for reason in data.get("reasons", ())),
        )


@dataclass(frozen=True)
class EngagementEvent:
    """Something the platform observed: a send, an open, a click, an unsubscribe, a bounce."""

    type: EventType
    user_id: str
    timestamp: datetime
    decision_id: str | None = None
    campaign: str | None = None
    category: str | None = None
    timezone: str | None = None
    #: Identifies a report of this event: the store applies each id once (retries repeat it).
    event_id: str | None = None


def _isoformat(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _same(moment: datetime | None) -> datetime | None:
    return moment


def candidate_to_dict(
    item: Candidate, moment: Callable[[datetime | None], Any] = _isoformat
) -> dict[str, Any]:
    """Return a JSON-ready dict of a candidate (``moment`` writes its times)."""
    # Spelled out rather than ``asdict``, whose deep copies dominate a decision's cost.
    return {
        "item_id": item.item_id,
        "relevance": item.relevance,
        "score": item.score,
        "source": item.source,
        "category": item.category,
        "kind": item.kind.value,
        "published_at": moment(item.published_at),
        "expires_at": moment(item.expires_at),
        "in_stock": item.in_stock,
    }


def reason_to_dict(reason: Reason) -> dict[str, Any]:
    """Return a JSON-ready dict of a reason."""
    return {
        "rule": reason.rule,
        "passed": reason.passed,
        "detail": reason.detail,
        "counter": reason.counter,
        "limit": reason.limit,
        "deciding": reason.deciding,
    }


def _candidate_data(item: Candidate) -> dict[str, Any]:
    return candidate_to_dict(item, _same)


# Written once per object: a batch chunk's new customers are offered the same candidates, and
# most reasons are shared between decisions (their builders are cached).
_candidate_json = encoded_once(_candidate_data)
reason_json = encoded_once(reason_to_dict)


def _item_list(items: tuple[Candidate, ...]) -> list[orjson.Fragment]:
    return list(map(_candidate_json, items))


#: A chunk's new customers get the very same items tuple (one shared selection): its whole list
#: is written once, not looked up item by item for every decision.
_shared_items_json = encoded_once(_item_list)


def _items_json(items: tuple[Candidate, ...]) -> Any:
    # Only a tuple can be kept by identity: a list handed in anyway could change later.
    return _shared_items_json(items) if items.__class__ is tuple else _item_list(items)


def _reasons_json(reasons: tuple[Reason, ...]) -> list[orjson.Fragment]:
    return reason_json.many(reasons)


def _item_dicts(items: tuple[Candidate, ...]) -> list[dict[str, Any]]:
    return list(map(candidate_to_dict, items))


def _reason_dicts(reasons: tuple[Reason, ...]) -> list[dict[str, Any]]:
    return list(map(reason_to_dict, reasons))


def candidate_from_dict(data: Mapping[str, Any]) -> Candidate:
    """Rebuild a candidate from ``candidate_to_dict`` output."""
    values = dict(data)
    values["kind"] = ContentKind(values.get("kind", ContentKind.PROMOTIONAL))
    for name in ("published_at", "expires_at"):
        moment = values.get(name)
        values[name] = datetime.fromisoformat(moment) if moment else None
    return Candidate(**values)
