"""Content rules: timeliness, relevance and diversity decide which candidates go in one email."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from operator import attrgetter
from typing import NamedTuple

from fatigue.domain import Candidate, ContentKind, Reason
from fatigue.identity import same_objects
from fatigue.rules import Diversity, DiversityStrategy, Rules


class Selection(NamedTuple):
    """The items chosen for one campaign and the reasons behind the choice."""

    items: tuple[Candidate, ...]
    reasons: tuple[Reason, ...]
    relevant: bool
    relevance: float
    #: With a no-repeat window: the items that passed every other filter (whose send history
    #: could change the choice).
    considered: tuple[str, ...] = ()


def select(
    candidates: Sequence[Candidate],
    rules: Rules,
    now: datetime,
    sent: Mapping[str, float],
    required: bool = True,
    at_least: int = 0,
    at_most: int | None = None,
) -> Selection:
    """Filter, rank and diversify candidates; ``sent`` maps item ids to when they were sent.

    With ``required=False`` (transactional mail) too few relevant items do not fail the rule.
    ``at_least`` is what the email's template cannot do without, required for any mail;
    ``at_most`` is the most the email shows: no more are chosen, so what the no-repeat rule
    records as sent is what the customer saw.
    """
    global _last_selection
    last = _last_selection
    if (
        not sent
        and last is not None
        and last.rules is rules
        and last.now is now
        and last.flags == (required, at_least, at_most)
        and same_objects(last.candidates, candidates)
    ):
        return last.selection
    selection = _select(candidates, rules, now, sent, required, at_least, at_most)
    if not sent:
        _last_selection = _LastSelection(
            tuple(candidates), rules, now, (required, at_least, at_most), selection
        )
    return selection


class _LastSelection(NamedTuple):
    candidates: tuple[Candidate, ...]
    rules: Rules
    now: datetime
    flags: tuple[bool, int, int | None]
    selection: Selection


# Every new customer of a batch chunk is offered the very same cold-start candidates at the
# chunk's one moment, with nothing sent before: the same selection, chosen once. Only the last
# call is kept (one tuple, replaced whole: safe between threads).
_last_selection: _LastSelection | None = None


def _select(
    candidates: Sequence[Candidate],
    rules: Rules,
    now: datetime,
    sent: Mapping[str, float],
    required: bool,
    at_least: int,
    at_most: int | None = None,
) -> Selection:
    relevance = rules.relevance
    floor = relevance.min_relevance if relevance is not None else float("-inf")
    eligible, timeliness, considered = _timely(candidates, rules, now, sent, floor)
    _rank(eligible)
    chosen, diversity = _diversify(eligible, rules, at_most)
    reasons = [timeliness]
    relevant = True
    if relevance is not None:
        needed = relevance.min_items
        # The rule asks that ``needed`` candidates reach the floor and are chosen; an email
        # showing fewer (``at_most``) needs only as many of them chosen as it shows.
        shown = needed if at_most is None else min(needed, at_most)
        relevant = (len(eligible) >= needed and len(chosen) >= shown) or not required
        # Relevance counts what reaches the floor; if diversity then keeps too few, it decides.
        reasons.append(_relevance_reason(len(eligible), needed, relevance.min_relevance, required))
        if not relevant and len(eligible) >= needed and diversity is not None:
            diversity = _too_few_diverse(len(chosen), shown, rules.diversity)
    if diversity is not None:
        reasons.append(diversity)
    if at_least:
        cap = rules.diversity.max_items if rules.diversity is not None else None
        reasons.append(_template_reason(len(chosen), at_least, cap))
        relevant = relevant and len(chosen) >= at_least
    mean = sum(map(_relevance, chosen)) / len(chosen) if chosen else 0.0
    return Selection(tuple(chosen), tuple(reasons), relevant, mean, considered)


# Reasons are immutable, so the few distinct ones are built once and shared between decisions.
@lru_cache(maxsize=1024)
def _relevance_reason(count: int, needed: int, floor: float, required: bool) -> Reason:
    wanted = f"{needed} needed" if required else "none needed (transactional)"
    detail = f"{count} item(s) reach relevance {floor:g}; {wanted}"
    return Reason("relevance", count >= needed or not required, detail, count, needed)


@lru_cache(maxsize=1024)
def _template_reason(chosen: int, needed: int, cap: int | None) -> Reason:
    detail = f"{chosen} item(s) chosen; the email's template shows at least {needed}"
    if cap is not None and cap < needed:  # no customer can ever get this email: say why
        detail += f", more than diversity.max_items ({cap}) lets any email have"
    return Reason("template", chosen >= needed, detail, counter=chosen, limit=needed)


@lru_cache(maxsize=1024)
def _timeliness_reason(detail: str, kept: int, total: int) -> Reason:
    text = f"excluded {detail}" if detail else "no item excluded"
    return Reason("timeliness", True, text, counter=kept, limit=total)


@lru_cache(maxsize=1024)
def _too_few_diverse(kept: int, needed: int, diversity: Diversity | None) -> Reason:
    limits = []
    if diversity is not None and diversity.max_per_category is not None:
        limits.append(f"at most {diversity.max_per_category} per category")
    if diversity is not None and diversity.max_items is not None:
        limits.append(f"at most {diversity.max_items} in all")
    detail = f"kept {kept} item(s) ({', '.join(limits) or 'diversity'}); {needed} needed"
    return Reason("diversity", False, detail, counter=kept, limit=needed)


@lru_cache(maxsize=1024)
def _diversity_reason(chosen: int, categories: int, top: int, limit: int | None) -> Reason:
    detail = f"{chosen} item(s) from {categories} categor(ies), at most {top} per one"
    return Reason("diversity", True, detail, counter=top, limit=limit)


def _rank(items: list[Candidate]) -> None:
    """Sort by relevance, highest first; on a tie the fresher item wins."""
    if any(map(_published_at, items)):
        # Two stable sorts: freshness first, then relevance, so ties stay fresh-first. Undated
        # items rank last in their own order (as a key of -inf would put them): only the dated
        # ones need the Python key, and most candidates carry no date.
        dated = [item for item in items if item.published_at]
        dated.sort(key=_published, reverse=True)
        items[:] = dated + [item for item in items if not item.published_at]
    items.sort(key=_relevance, reverse=True)  # attrgetter: the sort stays in C


_relevance = attrgetter("relevance")
_item_id = attrgetter("item_id")
_published_at = attrgetter("published_at")
# Reading an enum member off its class costs ten times a global in Python 3.11, and these are
# read for every candidate.
_PROMOTIONAL = ContentKind.PROMOTIONAL
_EDITORIAL = ContentKind.EDITORIAL
_TRANSACTIONAL = ContentKind.TRANSACTIONAL


def _published(item: Candidate) -> float:
    return item.published_at.timestamp() if item.published_at else float("-inf")


def _timely(
    candidates: Sequence[Candidate],
    rules: Rules,
    now: datetime,
    sent: Mapping[str, float],
    floor: float,
) -> tuple[list[Candidate], Reason, tuple[str, ...]]:
    timeliness = rules.timeliness
    max_age = timeliness.max_age_editorial if timeliness else None
    no_repeat = timeliness.no_repeat if timeliness else None
    oldest = now - max_age if max_age else None
    excluded: dict[str, int] = {}
    kept: list[Candidate] = []
    keep = kept.append  # some 30 candidates per recipient: the loop's lookups add up
    promotional = _PROMOTIONAL
    for item in candidates:
        if item.relevance < floor:
            continue  # counted by the relevance rule, not as stale content
        if item.kind is promotional and item.expires_at is None and item.in_stock:
            keep(item)  # the usual item: no other filter can apply before no-repeat
        elif why := _stale(item, now, oldest):
            excluded[why] = excluded.get(why, 0) + 1
        else:
            keep(item)
    considered: tuple[str, ...] = ()
    if no_repeat:
        considered = tuple(map(_item_id, kept))
        if sent:
            since = (now - no_repeat).timestamp()
            fresh = [item for item in kept if sent.get(item.item_id, -1.0) <= since]
            if len(fresh) < len(kept):
                excluded["sent recently"] = len(kept) - len(fresh)
                kept = fresh
    detail = ", ".join(f"{n} {why}" for why, n in sorted(excluded.items())) if excluded else ""
    return kept, _timeliness_reason(detail, len(kept), len(candidates)), considered


def _stale(item: Candidate, now: datetime, oldest: datetime | None) -> str:
    """Return why an item may not be picked whatever was sent before (``""``: it may)."""
    if item.kind is _TRANSACTIONAL:
        return "transactional"
    if item.expires_at is not None and item.expires_at <= now:
        return "expired"
    if not item.in_stock:
        return "out of stock"
    if (
        oldest is not None
        and item.kind is _EDITORIAL
        and item.published_at is not None
        and item.published_at < oldest
    ):
        return "too old"
    return ""


def _diversify(
    items: list[Candidate], rules: Rules, at_most: int | None
) -> tuple[list[Candidate], Reason | None]:
    diversity = rules.diversity
    if diversity is None:
        return items[:at_most], None
    limits = [limit for limit in (diversity.max_items, at_most) if limit]
    limit = min(limits) if limits else len(items)
    # Both strategies count the chosen items per category as they go: no second count.
    per_category: Mapping[str, int]
    if diversity.strategy == DiversityStrategy.MMR:
        chosen, per_category = _mmr(items, limit, diversity.mmr_lambda, diversity.max_per_category)
    else:
        chosen, per_category = _capped(items, limit, diversity.max_per_category)
    top = max(per_category.values(), default=0)
    return chosen, _diversity_reason(
        len(chosen), len(per_category), top, diversity.max_per_category
    )


def _capped(
    items: list[Candidate], limit: int, per_category: int | None
) -> tuple[list[Candidate], dict[str, int]]:
    """Keep items in rank order, at most ``per_category`` of a category; return their counts."""
    counts: dict[str, int] = {}  # a plain dict: Counter's missing-key lookups run in Python
    chosen: list[Candidate] = []
    for item in items:
        if len(chosen) >= limit:
            break
        category = item.category
        count = counts.get(category, 0)
        if per_category is not None and count >= per_category:
            continue
        counts[category] = count + 1
        chosen.append(item)
    return chosen, counts


def _mmr(
    items: list[Candidate], limit: int, trade_off: float, per_category: int | None
) -> tuple[list[Candidate], Counter[str]]:
    """Maximal marginal relevance with category overlap as the similarity; and the counts."""
    pool = list(items)
    chosen: list[Candidate] = []
    counts: Counter[str] = Counter()
    while pool and len(chosen) < limit:
        # Similarity to the chosen set: 1 when its category is already present, else 0.
        best = max(
            pool,
            key=lambda item: (
                trade_off * item.relevance
                - (1 - trade_off) * (1.0 if counts[item.category] else 0.0)
            ),
        )
        pool.remove(best)
        if per_category is not None and counts[best.category] >= per_category:
            continue
        counts[best.category] += 1
        chosen.append(best)
    return chosen, counts
