"""Composition: recommend, then let the governor decide, then render the email.

This module joins the engine's two halves (the recommender and the renderer) with the governor
from ``fatigue``; the API calls it, and it never imports the API. The governor receives plain
``Candidate`` data and never sees the recommender.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import lru_cache
from typing import Any

import orjson

from engine.decision_log import DecisionLogWriter
from engine.render.library import EMAIL_ITEMS
from engine.render.links import Campaign as LinkCampaign
from engine.render.links import safe_url
from engine.render.prepared import PreparedTemplate
from engine.render.renderer import RenderContext, RenderedEmail, Renderer
from engine.serving import Filters, RecentInteraction, Recommender
from fatigue.clock import Clock, utc_now
from fatigue.domain import Action, Campaign, Decision, MessageRequest, Recipient
from fatigue.errors import Problem, StoreError, ValidationError
from fatigue.identity import ByIdentity, filled
from fatigue.store.base import LoggedDecision


class Availability:
    """The items that cannot be offered now (out of stock, expired, not in the catalog).

    Recomputed at most once a minute. Scanning the whole catalog per request would cost more
    than recommending; stock and expiry change on a scale of minutes, so one scan per minute
    per model serves every request.
    """

    def __init__(self, granularity: int = 60) -> None:
        self._granularity = granularity
        # One tuple per kind, replaced whole, so concurrent readers never pair a key with
        # another's set.
        self._state: dict[bool, tuple[tuple[int, str, int], frozenset[str]]] = {}

    def blocked(
        self, recommender: Recommender, now: datetime, *, in_email: bool = False
    ) -> frozenset[str]:
        """Return the ids unavailable at ``now`` (to the minute) in ``recommender``'s catalog.

        ``in_email`` also blocks items with no http(s) link: an email would show them as a
        button and an image leading nowhere (``href=""`` opens the webmail page itself).
        """
        minute = int(now.timestamp()) // self._granularity
        key = (id(recommender), recommender.version, minute)
        state = self._state.get(in_email)
        if state is not None and state[0] == key:
            return state[1]
        catalog = recommender.catalog
        blocked: frozenset[str] = frozenset()
        if catalog is not None:
            # An item the catalog does not describe has no title, link or image to show.
            unknown = (item for item in recommender.items.ids.tolist() if item not in catalog)
            blocked = frozenset(catalog.unavailable(now)).union(unknown)
            if in_email:
                blocked |= {item_id for item_id, item in catalog.items() if not safe_url(item.url)}
        if state is not None and state[1] == blocked:
            # The same set as the last minute's: hand out the same object. The filters built
            # from it key the model's caches (kept picks), which then hold one set, not one a
            # minute, and compare it by identity instead of item by item.
            blocked = state[1]
        self._state[in_email] = (key, blocked)
        return blocked


AVAILABILITY = Availability()


def recommendations(
    recommender: Recommender,
    user_id: str,
    n: int,
    filters: Mapping[str, Any] | None = None,
    recent: Sequence[Mapping[str, Any]] = (),
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    """Recommend for one customer and join each pick with its catalog entry.

    ``filters`` holds ``exclude_items``, ``include_categories``, ``exclude_categories``,
    ``exclude_history`` and ``available_only`` (items out of stock or expired at ``now`` are
    dropped).
    """
    options = dict(filters or {})
    available_only = bool(options.pop("available_only", True))
    excluded = set(options.get("exclude_items", ()))
    if available_only and now is not None:
        excluded |= AVAILABILITY.blocked(recommender, now)
    chosen = Filters.build(
        exclude_items=excluded,
        include_categories=options.get("include_categories"),
        exclude_categories=options.get("exclude_categories", ()),
        exclude_history=bool(options.get("exclude_history", False)),
    )
    interactions = [RecentInteraction(**dict(item)) for item in recent]
    picks = recommender.recommend(user_id, n, chosen, interactions)
    catalog = recommender.catalog
    return [
        {
            **pick.as_dict(),
            "item": catalog[pick.item_id].as_template_dict()
            if catalog is not None and pick.item_id in catalog
            else None,
        }
        for pick in picks
    ]


@dataclass(frozen=True)
class ComposeInput:
    """One recipient, the competing campaigns and the template each would use."""

    recipient: Recipient
    campaigns: tuple[Campaign, ...]
    templates: Mapping[str, str]  # campaign id -> template name
    idempotency_key: str
    dry_run: bool = False
    items: int = EMAIL_ITEMS
    # May wait for the customer's best hour (the rules' ``[send_time]``) rather than go now.
    deferrable: bool = False

    def digest(self) -> str:
        """Return a digest of what decides and fills the email, for the idempotency key.

        A retry repeats it; a key reused for another address, template or data does not, and
        the governor refuses it. ``dry_run`` is left out (a dry run remembers nothing).
        """
        recipient = self.recipient
        content = (
            recipient.user_id, recipient.email, recipient.first_name, recipient.locale,
            recipient.timezone, dict(recipient.attributes), sorted(self.templates.items()),
            self.items, dict(self.data), self.deferrable,
        )  # fmt: skip
        try:
            encoded = orjson.dumps(content, option=orjson.OPT_SORT_KEYS, default=repr)
        except TypeError:  # an integer past 64 bits, which orjson does not write
            encoded = json.dumps(content, sort_keys=True, default=repr).encode()
        return hashlib.blake2b(encoded, digest_size=12).hexdigest()

    data: Mapping[str, Any] = field(default_factory=dict)  # extra template variables

    @classmethod
    def made(
        cls,
        recipient: Recipient,
        campaigns: tuple[Campaign, ...],
        templates: Mapping[str, str],
        idempotency_key: str,
        dry_run: bool,
        items: int,
        deferrable: bool,
        data: Mapping[str, Any],
    ) -> ComposeInput:
        """Build an input with every field given: the same object as ``ComposeInput(...)`` makes.

        One is made per batch line: filling the instance's ``__dict__`` at once takes a third
        of the frozen ``__init__``'s time (as ``Decision.made``).
        """
        return filled(
            cls,
            dict(
                recipient=recipient, campaigns=campaigns, templates=templates,
                idempotency_key=idempotency_key, dry_run=dry_run, items=items,
                deferrable=deferrable, data=data,
            ),
        )  # fmt: skip


@dataclass(frozen=True)
class Composition:
    """The governor's decision and, when it is ``send``, the rendered email."""

    decision: Decision
    email: RenderedEmail | None = None


#: Recipients whose decisions the store makes while the ones before them render: a batch's
#: round trips overlap its rendering instead of adding to it (one stream over HTTP on two
#: cores: 2,674-2,802 recipients/s unsliced, 2,907-3,066 in slices of 32). Two slices to a
#: chunk of 128: with two streams the cores are busy anyway, and each slice is a round trip
#: (slices of 64: 4,947-5,340 recipients/s against 4,634-5,154 in slices of 32 in the same
#: minutes, bench/bench_api_http.py's client).
DECIDE_SLICE = 64


class Composer:
    """Recommend, decide, render: the pipeline behind ``/v1/compose`` and the batch endpoint.

    ``recommender`` is a callable so a hot-reloaded model is picked up between requests; one
    composition uses one model from start to end.
    """

    def __init__(
        self,
        recommender: Callable[[], Recommender],
        governor: Any,
        renderer: Renderer,
        clock: Clock = utc_now,
        pool: int = 30,
        on_log_error: Callable[[StoreError], None] | None = None,
        background_log: bool = False,
    ) -> None:
        self._recommender = recommender
        self.governor = governor
        self.renderer = renderer
        self.clock = clock
        self.pool = pool  # candidates offered to the governor, which picks ``items`` of them
        # Told about a failed decision-log write (the API counts it as a store error).
        self.log_writer = DecisionLogWriter(governor.store, self._log_ttl, on_log_error)
        # Servers write the log from the writer's thread; otherwise it is written in the call.
        self.background_log = background_log

    def prepare(self, requests: Sequence[ComposeInput]) -> dict[str, PreparedTemplate]:
        """Fetch each template the requests name once (``NotFoundError`` before any decision).

        One lookup per call, not per recipient: the published version is read once for a
        whole chunk, and every recipient in it gets the same version.
        """
        names = {name for request in requests for name in request.templates.values()}
        return {name: self.renderer.prepared(name) for name in sorted(names)}

    def compose(self, request: ComposeInput) -> Composition:
        """Compose for one recipient."""
        return self.compose_many([request])[0]

    def compose_many(self, requests: Sequence[ComposeInput]) -> list[Composition]:
        """Compose for several recipients: one model call, a governor round trip per slice.

        Slices of ``DECIDE_SLICE``: each is decided while the one before it renders.
        """
        templates = self.prepare(requests)
        _check_item_counts(requests, templates)
        model = self._recommender()
        users = list(dict.fromkeys(request.recipient.user_id for request in requests))
        blocked = AVAILABILITY.blocked(model, self.clock(), in_email=True)
        picks = model.recommend_many(users, self.pool, Filters(exclude_items=blocked))
        jobs = [
            (
                request.recipient,
                MessageRequest.made(
                    campaigns=_showing_items(request, templates),
                    idempotency_key=request.idempotency_key,
                    deferrable=request.deferrable,
                    dry_run=request.dry_run,
                    request_digest=request.digest() if request.idempotency_key else "",
                ),
                model.candidates(picks[request.recipient.user_id]),
            )
            for request in requests
        ]
        compositions: list[Composition] = []
        decisions: list[Decision] = []
        deciding = self.governor.decide_many_later(jobs[:DECIDE_SLICE])
        try:
            for start in range(0, len(jobs), DECIDE_SLICE):
                decided = deciding.result()
                # The store decides the next slice while this one renders; it is sent after this
                # one's replies are read, so a customer twice in the call is decided in order.
                following = jobs[start + DECIDE_SLICE : start + 2 * DECIDE_SLICE]
                if following:
                    deciding = self.governor.decide_many_later(following)
                mine = requests[start : start + DECIDE_SLICE]
                for request, decision in zip(mine, decided, strict=True):
                    compositions.append(self._finish(model, request, decision, templates))
                decisions += decided
        finally:
            deciding.cancel()  # read already, unless a render failed: nobody will read it then
        # Logged once rendered: a send whose email failed was released, and never happened.
        self.log_decisions(decisions)
        return compositions

    def log_decisions(self, decisions: Sequence[Decision]) -> None:
        """Append the real decisions (not dry runs) to their customers' logs, in one call.

        The log explains past decisions; it never decides one. A failed write is logged and
        reported, and the decisions stand as made.
        """
        # A decision the store-error policy made means the store just failed: writing to it
        # again would only wait out another timeout.
        entries = [
            LoggedDecision(decision.user_id, decision.to_json())
            for decision in decisions
            if not decision.dry_run and not _store_failed(decision)
        ]
        if not entries:
            return
        if self.background_log:
            self.log_writer.submit(entries)
        else:
            self.log_writer.write(entries)

    def recent_decisions(self, user_id: str, limit: int = 20) -> list[dict[str, Any]]:
        """Return the customer's logged decisions, newest first, including those just made here."""
        self.log_writer.flush()
        return self.governor.store.recent_decisions(user_id, limit=limit)

    def _log_ttl(self) -> int:
        return int(self.governor.rules.store.decision_log_ttl.total_seconds())

    def _finish(
        self,
        model: Recommender,
        request: ComposeInput,
        decision: Decision,
        templates: Mapping[str, PreparedTemplate],
    ) -> Composition:
        """Render when the decision is ``send``; release the counted send if rendering fails."""
        if decision.action is not Action.SEND:
            return Composition(decision)
        try:
            email = self._render(model, request, decision, templates)
        except Exception:
            # The send was counted against the caps; a mail that was never made must not be.
            if not decision.dry_run:
                self.governor.release(decision.decision_id)
            raise
        return Composition(decision, email)

    def _render(
        self,
        model: Recommender,
        request: ComposeInput,
        decision: Decision,
        templates: Mapping[str, PreparedTemplate],
    ) -> RenderedEmail:
        """Render the deciding campaign's template with the chosen items."""
        campaign = _deciding_campaign(request.campaigns, decision.campaign)
        # No more than the request shows, even for a decision made before the governor chose
        # that many itself and replayed now by its idempotency key.
        items = _item_variables(model.catalog, decision.items[: request.items])
        context = RenderContext(
            recipient=recipient_variables(request.recipient),
            items=items,
            campaign=_link_campaign(campaign),
            extra={**request.data, "decision_id": decision.decision_id},
        )
        return self.renderer.render_prepared(templates[request.templates[campaign.id]], context)


def _deciding_campaign(campaigns: tuple[Campaign, ...], deciding: str | None) -> Campaign:
    """Return the campaign the decision names (the first when it names none)."""
    wanted = deciding or campaigns[0].id
    for campaign in campaigns:  # a loop: a generator is a new function object per email
        if campaign.id == wanted:
            return campaign
    raise ValueError(f"the decision names campaign {wanted!r}, which the request does not")


#: A request's campaigns are shared by a batch's lines (``api.compose`` resolves each set
#: once): their link campaign, a frozen dataclass set field by field, is made once each.
_link_campaign: ByIdentity[Campaign, LinkCampaign] = ByIdentity(
    lambda campaign: LinkCampaign(campaign.id, campaign.id)
)


def _item_variables(
    catalog: Mapping[str, Any] | None, chosen: Sequence[Any]
) -> list[dict[str, Any]]:
    """Return what templates see as ``items``: each catalog entry with its relevance and source.

    The catalog is a Python ``Mapping``: asking whether it is empty, then whether it holds the
    item, then for the item was four Python calls an item; it is asked once per email and each
    item looked up once. ``as_template_dict`` hands out a copy, filled in place: the same keys
    in the same order as merging it into a new dict.
    """
    known = catalog if catalog else None
    items: list[dict[str, Any]] = []
    for item in chosen:
        entry = None
        if known is not None:
            try:
                entry = known[item.item_id]
            except KeyError:  # as ``in`` answers for a Mapping
                entry = None
        data = entry.as_template_dict() if entry is not None else {"item_id": item.item_id}
        data["relevance"] = item.relevance
        data["source"] = item.source
        items.append(data)
    return items


def _check_item_counts(
    requests: Sequence[ComposeInput], templates: Mapping[str, PreparedTemplate]
) -> None:
    """Refuse a request rendering fewer items than its template shows (it could never send).

    Or none at all: with no item to show, a send would be an empty email.
    """
    problems = [
        Problem(f"items must be at least 1 (got {request.items})", field="items")
        for request in requests
        if request.items < 1
    ]
    problems += [
        Problem(
            f"template {name!r} shows at least {least} items; this request renders at most "
            f"{request.items}",
            field="items",
        )
        for request in requests
        for name in sorted(set(request.templates.values()))
        if (least := templates[name].template.min_items) > request.items >= 1
    ]
    if problems:
        raise ValidationError(problems)


def _showing_items(
    request: ComposeInput, templates: Mapping[str, PreparedTemplate]
) -> tuple[Campaign, ...]:
    """Return the request's campaigns, each with the fewest and most items its email shows.

    The governor then refuses to send an email its template could not fill (a transactional
    campaign's template showing recommendations, when none is relevant), saying why, and
    chooses no more items than the email shows: the no-repeat rule records what was seen.
    """
    counts = [
        (template.min_items, template.shown(request.items))
        for template in (templates[request.templates[c.id]].template for c in request.campaigns)
    ]
    return tuple(
        _with_item_counts(campaign, least, most)
        for campaign, (least, most) in zip(request.campaigns, counts, strict=True)
    )


# Cached so that every recipient of a batch offers the governor the same campaign objects.
@lru_cache(maxsize=1024)
def _with_item_counts(campaign: Campaign, least: int, most: int) -> Campaign:
    if campaign.min_items == least and campaign.max_items == most:
        return campaign
    return replace(campaign, min_items=least, max_items=most)


def _store_failed(decision: Decision) -> bool:
    deciding = decision.deciding
    return deciding is not None and deciding.rule == "store"


def recipient_variables(recipient: Recipient) -> dict[str, Any]:
    """Return what templates see as ``recipient``: its attributes, then the named fields."""
    return {
        **dict(recipient.attributes),
        "user_id": recipient.user_id,
        "email": recipient.email,
        "first_name": recipient.first_name,
        "locale": recipient.locale,
        "timezone": recipient.timezone,
    }
