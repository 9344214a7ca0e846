"""Offline evaluation: splits, ranking metrics, and the popularity baseline beside every model.

Metrics use the common definitions, with binary relevance and the top ``k`` recommendations:
precision@k = hits / k; recall@k = hits / |relevant|; nDCG@k = DCG / ideal DCG with gains
``1 / log2(rank + 1)`` and the ideal list holding ``min(k, |relevant|)`` hits; MAP@k = the sum of
precision at each hit / |relevant|; coverage = distinct items recommended / items in the model.
Each is averaged over the test customers. ``relevant`` is a customer's new items in the test
period that the model could have recommended (items seen in training).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

import numpy as np

from engine.interactions import Interactions, parse_timestamp
from fatigue.errors import ValidationError

METRICS = ("precision", "recall", "ndcg", "map", "coverage")


class Ranker(Protocol):
    """Anything that can rank items for customers."""

    def recommend_ids(self, user_ids: Sequence[str], n: int) -> list[list[str]]:
        """Return the top ``n`` item ids for each customer."""
        ...


@dataclass(frozen=True)
class Split:
    """Training interactions and, per test customer, the items they went on to want."""

    train: Interactions
    relevant: Mapping[str, frozenset[str]]
    description: str


def temporal_split(interactions: Interactions, cutoff: datetime | str) -> Split:
    """Train before ``cutoff``; test on new (customer, item) pairs from then on."""
    moment = cutoff if isinstance(cutoff, datetime) else _parse_cutoff(cutoff)
    stamp = int(moment.timestamp())
    train = interactions.select(interactions.timestamps < stamp)
    test = interactions.select(interactions.timestamps >= stamp)
    if not len(train) or not len(test):
        window = interactions.window()
        raise ValidationError(
            f"cutoff {moment.isoformat()} leaves no training or no test data "
            f"(data runs {window[0].isoformat()} to {window[1].isoformat()})"
        )
    return Split(train, new_pairs(train, test), f"temporal, cutoff {moment.date().isoformat()}")


MAX_DAYS = 36_500  # a hundred years: anything longer is a typo


def last_days_split(interactions: Interactions, days: float) -> Split:
    """Temporal split whose test period is the last ``days`` of the data."""
    if not 0 < days <= MAX_DAYS:  # also refuses NaN
        raise ValidationError(f"--last-days must be more than 0 and at most {MAX_DAYS}, got {days}")
    end = interactions.window()[1]
    return temporal_split(interactions, end - timedelta(days=days))


def random_split(interactions: Interactions, test_fraction: float = 0.2, seed: int = 42) -> Split:
    """Hold out a random ``test_fraction`` of each customer's distinct items."""
    if not 0 < test_fraction < 1:
        raise ValidationError(f"test fraction must be between 0 and 1, got {test_fraction}")
    rng = random.Random(seed)
    pairs = sorted(
        set(zip(interactions.user_ids.tolist(), interactions.item_ids.tolist(), strict=True))
    )
    by_user: dict[str, list[str]] = {}
    for user, item in pairs:
        by_user.setdefault(user, []).append(item)
    held: set[tuple[str, str]] = set()
    for user, items in by_user.items():
        if len(items) >= 2:
            count = max(1, round(len(items) * test_fraction))
            held.update((user, item) for item in rng.sample(items, count))
    mask = np.fromiter(
        (
            (u, i) not in held
            for u, i in zip(interactions.user_ids, interactions.item_ids, strict=True)
        ),
        dtype=bool,
        count=len(interactions),
    )
    train = interactions.select(mask)
    known_items = set(train.item_ids.tolist())
    relevant: dict[str, set[str]] = {}
    for user, item in held:
        if item in known_items:
            relevant.setdefault(user, set()).add(item)
    return Split(
        train,
        {u: frozenset(v) for u, v in relevant.items()},
        f"random per customer, {test_fraction:.0%} held out, seed {seed}",
    )


def _parse_cutoff(text: str) -> datetime:
    try:
        return datetime.fromtimestamp(parse_timestamp(text), UTC)
    except (ValueError, OverflowError, OSError):  # OverflowError/OSError: past year 9999
        raise ValidationError(f"cutoff {text!r} is not a date (expected e.g. 2011-11-09)") from None


def new_pairs(
    train: Interactions, test: Interactions, had: Interactions | None = None
) -> dict[str, frozenset[str]]:
    """Per customer known in ``train``: the items (known in ``train``) new to them in ``test``.

    New: not in ``had`` (by default all of ``train``). Calibration passes only the events that
    make an item "already had" (purchases): a viewed item the customer buys later is a hit of
    the browse follow-up the API offers, not an old pair.
    """
    had = train if had is None else had
    seen = set(zip(had.user_ids.tolist(), had.item_ids.tolist(), strict=True))
    users, items = set(train.user_ids.tolist()), set(train.item_ids.tolist())
    relevant: dict[str, set[str]] = {}
    for user, item in zip(test.user_ids.tolist(), test.item_ids.tolist(), strict=True):
        if user in users and item in items and (user, item) not in seen:
            relevant.setdefault(user, set()).add(item)
    return {user: frozenset(found) for user, found in relevant.items()}


def ranking_metrics(
    recommended: Sequence[Sequence[str]],
    relevant: Sequence[frozenset[str]],
    k: int,
    item_count: int,
) -> dict[str, float]:
    """Average precision, recall, nDCG and MAP at ``k``, plus catalog coverage."""
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    totals = dict.fromkeys(("precision", "recall", "ndcg", "map"), 0.0)
    shown: set[str] = set()
    for recs, truth in zip(recommended, relevant, strict=True):
        top = list(recs[:k])
        shown.update(top)
        hits = np.array([item in truth for item in top], dtype=float)
        found = hits.sum()
        totals["precision"] += found / k
        totals["recall"] += found / len(truth)
        ideal = discounts[: min(k, len(truth))].sum()
        totals["ndcg"] += float(hits @ discounts[: len(hits)]) / ideal
        precision_at = np.cumsum(hits) / np.arange(1, len(hits) + 1)
        totals["map"] += float((precision_at * hits).sum()) / len(truth)
    users = max(len(relevant), 1)
    result = {name: value / users for name, value in totals.items()}
    result["coverage"] = len(shown) / max(item_count, 1)
    return result


def evaluate(ranker: Ranker, split: Split, k: int = 10, item_count: int = 0) -> dict[str, float]:
    """Score ``ranker`` on ``split``'s test customers."""
    users = sorted(split.relevant)
    if not users:
        raise ValidationError("the split has no test customers with new items")
    recommended = ranker.recommend_ids(users, k)
    return ranking_metrics(recommended, [split.relevant[u] for u in users], k, item_count)
