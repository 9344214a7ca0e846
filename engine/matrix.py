"""From interactions to the sparse user x item confidence matrix the models learn from."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp

from engine.interactions import DEFAULT_EVENT_WEIGHTS, Interactions

SECONDS_PER_DAY = 86_400.0


class ValueScale(StrEnum):
    """How an interaction's ``value`` (a quantity or strength) scales its confidence."""

    IGNORE = "ignore"  # every event counts once, whatever the quantity
    LOG = "log"  # 1 + log(value), below 1 as 1: more units count, with diminishing returns
    LINEAR = "linear"  # value as given


@dataclass(frozen=True)
class Weighting:
    """How interactions become confidence: event weights, value scaling and recency decay.

    An interaction contributes ``event_weight * scale(value) * 0.5 ** (age / half_life)``. The
    default ignores quantities: on retail data a bulk order of 500 units says little more about
    taste than one unit, and measured worse (nDCG@10 0.109 with ``log`` against 0.118).
    """

    event_weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_EVENT_WEIGHTS))
    half_life_days: float | None = None
    value_scale: ValueScale = ValueScale.IGNORE

    def strengths(self, interactions: Interactions, reference_time: int) -> np.ndarray:
        """Return one confidence contribution per interaction."""
        lookup = np.vectorize(lambda e: self.event_weights.get(e, 0.0), otypes=[np.float64])
        strength = lookup(interactions.events) if len(interactions) else np.zeros(0)
        if self.value_scale is ValueScale.LOG:
            # A value under 1 (a fraction of a unit, an amount in a large currency unit) counts
            # as 1: 1 + log(0.25) is negative, which read a purchase as a dislike.
            strength = strength * (1.0 + np.log(np.maximum(interactions.values, 1.0)))
        elif self.value_scale is ValueScale.LINEAR:
            strength = strength * interactions.values
        if self.half_life_days:
            age_days = (reference_time - interactions.timestamps) / SECONDS_PER_DAY
            strength = strength * np.power(0.5, np.clip(age_days, 0, None) / self.half_life_days)
        return strength

    def as_dict(self) -> dict[str, object]:
        """Return a JSON-ready description (for meta.json)."""
        return {
            "event_weights": dict(self.event_weights),
            "half_life_days": self.half_life_days,
            "value_scale": self.value_scale.value,
        }


class IdMap:
    """A stable bijection between external string ids and matrix indices."""

    def __init__(self, ids: Sequence[str] | np.ndarray) -> None:
        self.ids = np.asarray(ids, dtype=str)
        self._index = {value: position for position, value in enumerate(self.ids.tolist())}

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, key: object) -> bool:
        return key in self._index

    def get(self, key: str) -> int | None:
        """Return the index of ``key``, or None when unknown."""
        return self._index.get(key)

    def indices(self, keys: Sequence[str] | np.ndarray) -> np.ndarray:
        """Return the index of every key, -1 for unknown ones."""
        # numpy's own strings hash several times slower than Python's: convert them first.
        found = self._index.get
        values = keys.tolist() if isinstance(keys, np.ndarray) else keys
        return np.fromiter((found(k, -1) for k in values), dtype=np.int64, count=len(values))

    @classmethod
    def from_values(cls, values: np.ndarray) -> IdMap:
        """Build a sorted map from the distinct values."""
        return cls(np.unique(values.astype(str)))


class Cells(NamedTuple):
    """Where each interaction falls in a users x items matrix (``keep``: both ids known)."""

    rows: np.ndarray
    cols: np.ndarray
    keep: np.ndarray

    @classmethod
    def of(cls, interactions: Interactions, users: IdMap, items: IdMap) -> Cells:
        """Look every interaction's ids up once (training builds three matrices from them)."""
        rows, cols = users.indices(interactions.user_ids), items.indices(interactions.item_ids)
        return cls(rows, cols, (rows >= 0) & (cols >= 0))


def build_matrix(
    interactions: Interactions,
    users: IdMap,
    items: IdMap,
    weighting: Weighting,
    reference_time: int | None = None,
    cells: Cells | None = None,
) -> sp.csr_matrix:
    """Sum each (user, item) pair's confidence into a CSR matrix; unknown ids are dropped."""
    reference = int(interactions.timestamps.max()) if reference_time is None else reference_time
    rows, cols, keep = cells or Cells.of(interactions, users, items)
    data = weighting.strengths(interactions, reference)[keep]
    matrix = sp.csr_matrix(
        (data.astype(np.float32), (rows[keep], cols[keep])), shape=(len(users), len(items))
    )
    matrix.sum_duplicates()
    matrix.eliminate_zeros()
    return matrix


def history_matrix(
    interactions: Interactions,
    users: IdMap,
    items: IdMap,
    events: set[str] | None = None,
    cells: Cells | None = None,
) -> sp.csr_matrix:
    """Return a binary user x item matrix of who did what (optionally only some events)."""
    rows, cols, keep = cells or Cells.of(interactions, users, items)
    if events is not None:
        keep = keep & np.isin(interactions.events, list(events))  # not in place: cells are shared
    ones = np.ones(int(keep.sum()), dtype=np.float32)
    matrix = sp.csr_matrix((ones, (rows[keep], cols[keep])), shape=(len(users), len(items)))
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix


def take_rows(matrix: sp.csr_matrix, rows: np.ndarray) -> sp.csr_matrix:
    """Return ``matrix[rows]`` for a CSR matrix, several times faster than scipy's indexing.

    Serving slices one customer's history per request; scipy's general fancy indexing spends
    about 100 microseconds validating what a few array operations can gather directly.
    """
    rows = np.asarray(rows, dtype=np.int64)
    starts, ends = matrix.indptr[rows], matrix.indptr[rows + 1]
    lengths = ends - starts
    indptr = np.zeros(len(rows) + 1, dtype=matrix.indptr.dtype)
    np.cumsum(lengths, out=indptr[1:])
    positions = np.repeat(starts - indptr[:-1], lengths) + np.arange(indptr[-1])
    return sp.csr_matrix(
        (matrix.data[positions], matrix.indices[positions], indptr),
        shape=(len(rows), matrix.shape[1]),
    )
