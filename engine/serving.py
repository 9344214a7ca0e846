"""Serving recommendations: filters, cold start, provenance and calibrated relevance.

``Recommender`` is what a trained model looks like at serving time: the model, the id maps, each
customer's history (for exclusions and item-kNN scoring), popularity and trending vectors for
the cold start, and one calibration curve per source. Training builds one; ``Recommender.load``
reads one from a model directory.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from engine.calibration import PlattCalibrator
from engine.catalog import Catalog
from engine.interactions import Interactions
from engine.matrix import IdMap, Weighting, take_rows
from engine.models import FILTERED, Algorithm, Model, ranked_by_score
from fatigue.domain import Candidate, ContentKind
from fatigue.errors import NotFoundError, Problem, ValidationError
from fatigue.identity import same_objects

MAX_N = 1_000
COLD_CACHE_SIZE = 256  # distinct (n, filters) combinations of cold-start picks kept
BLOCKED_CACHE_SIZE = 64  # distinct filters whose blocked rows are kept
# Known customers whose picks (and their joined candidates) are kept per loaded model, about
# 16 KB each with 30 picks: 32 MB a worker at most. A customer is composed for again and again
# (campaigns, retries, previews); their picks cost a third of a single compose, and change only
# with the model or the filters.
PICKS_CACHE_SIZE = 2048
# What ``Candidate`` assumes of an item the catalog does not describe.
_NO_FACTS: dict[str, Any] = {
    "category": "", "kind": ContentKind.PROMOTIONAL, "published_at": None, "expires_at": None,
    "in_stock": True,
}  # fmt: skip


class Source(StrEnum):
    """Where a recommended item came from."""

    CF = "cf"  # the customer's own learned taste
    SIMILAR = "similar"  # folded in from a few recent interactions of a customer new to the model
    POPULAR = "popular"  # most customers bought it
    TRENDING = "trending"  # many customers bought it recently


@dataclass(frozen=True, slots=True)
class Recommendation:
    """One recommended item: rank 1 is best; relevance is a calibrated probability."""

    item_id: str
    rank: int
    score: float
    relevance: float
    source: Source

    def as_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {
            "item_id": self.item_id,
            "rank": self.rank,
            "score": self.score,
            "relevance": self.relevance,
            "source": self.source.value,
        }


@dataclass(frozen=True)
class RecentInteraction:
    """An interaction the model has not seen, used to fold in a customer without retraining."""

    item_id: str
    event: str = "view"
    value: float = 1.0


@dataclass(frozen=True)
class Filters:
    """What a caller rules out on top of the customer's history."""

    exclude_items: frozenset[str] = frozenset()
    include_categories: frozenset[str] | None = None
    exclude_categories: frozenset[str] = frozenset()
    exclude_history: bool = False  # True: everything the customer ever did, not just purchases

    @classmethod
    def build(
        cls,
        exclude_items: Iterable[str] = (),
        include_categories: Iterable[str] | None = None,
        exclude_categories: Iterable[str] = (),
        exclude_history: bool = False,
    ) -> Filters:
        """Build from any iterables."""
        return cls(
            frozenset(exclude_items),
            None if include_categories is None else frozenset(include_categories),
            frozenset(exclude_categories),
            exclude_history,
        )


@dataclass
class Recommender:
    """A trained model ready to serve; see the module docstring."""

    model: Model
    users: IdMap
    items: IdMap
    user_items: sp.csr_matrix  # confidence, users x items
    excluded: sp.csr_matrix  # binary, the configured "already had it" events
    history: sp.csr_matrix  # binary, every event
    popular: np.ndarray
    trending: np.ndarray
    calibrators: Mapping[Source, PlattCalibrator]
    weighting: Weighting
    meta: dict[str, Any] = field(default_factory=dict)
    catalog: Catalog | None = None
    version: str = ""
    _cold: dict[tuple[int, bytes], tuple[Recommendation, ...]] = field(
        default_factory=dict, repr=False, compare=False
    )
    _facts: dict[str, dict[str, Any]] | None = field(default=None, repr=False, compare=False)
    _categories: dict[str, np.ndarray] | None = field(default=None, repr=False, compare=False)
    _blocked: dict[Filters, np.ndarray] = field(default_factory=dict, repr=False, compare=False)
    _joined: dict[int, tuple[tuple[Recommendation, ...], list[Candidate]]] = field(
        default_factory=dict, repr=False, compare=False
    )
    _picks: dict[tuple[str, int, Filters], tuple[Recommendation, ...]] = field(
        default_factory=dict, repr=False, compare=False
    )
    _active: np.ndarray | None = field(default=None, repr=False, compare=False)

    @classmethod
    def load(cls, model_dir: str | Path, version: str | None = None) -> Recommender:
        """Load the published (or a named) version from a model directory."""
        from engine.artifact import load_recommender

        return load_recommender(Path(model_dir), version)

    # -- single customer -------------------------------------------------------------------

    def recommend(
        self,
        user_id: str,
        n: int = 10,
        filters: Filters | None = None,
        recent: Sequence[RecentInteraction] = (),
    ) -> list[Recommendation]:
        """Recommend ``n`` items for one customer, known, new with recent activity, or cold."""
        return self.recommend_many([user_id], n, filters, {user_id: recent} if recent else None)[
            user_id
        ]

    def recommend_many(
        self,
        user_ids: Sequence[str],
        n: int = 10,
        filters: Filters | None = None,
        recent: Mapping[str, Sequence[RecentInteraction]] | None = None,
    ) -> dict[str, list[Recommendation]]:
        """Recommend for many customers at once (batched through the model)."""
        _check_n(n)
        filters, recent = filters or Filters(), recent or {}
        kept = {
            user_id: list(found)
            for user_id in user_ids
            if not recent.get(user_id)
            and (found := self._picks.get((user_id, n, filters))) is not None
        }
        if len(kept) == len(set(user_ids)):
            return kept
        missing = [user_id for user_id in user_ids if user_id not in kept]
        result = self._recommend_anew(missing, n, filters, recent)
        result.update(kept)
        return result

    def _recommend_anew(
        self,
        user_ids: Sequence[str],
        n: int,
        filters: Filters,
        recent: Mapping[str, Sequence[RecentInteraction]],
    ) -> dict[str, list[Recommendation]]:
        blocked = self._blocked_items(filters)
        rows = self.users.indices(list(user_ids))
        folded: dict[str, list[Recommendation]] = {}
        for user_id, row in zip(user_ids, rows.tolist(), strict=True):
            if recent.get(user_id):
                found = self._folded(recent[user_id], row, n, blocked, filters)
                if found is not None:
                    folded[user_id] = found
        active = self._active_users()
        unfolded = [i for i, row in enumerate(rows) if row >= 0 and user_ids[i] not in folded]
        known = [i for i in unfolded if active[rows[i]]]
        faded = [i for i in unfolded if not active[rows[i]]]
        result = self._recommend_known(user_ids, rows[known], known, n, filters, blocked)
        result.update(self._recommend_faded(user_ids, rows[faded], faded, n, filters, blocked))
        self._keep_picks([user_ids[i] for i in unfolded if not recent.get(user_ids[i])],
                         result, n, filters)  # fmt: skip
        result.update(folded)
        for user_id in user_ids:
            if user_id not in result:
                result[user_id] = list(self._cold_start(n, blocked))
        return result

    def _keep_picks(
        self,
        user_ids: Sequence[str],
        found: Mapping[str, list[Recommendation]],
        n: int,
        filters: Filters,
    ) -> None:
        """Remember these known customers' picks (no recent activity: it would change them).

        The cold start is not kept: it is already one shared list, and a batch of new customers
        must not push the known ones out. Whole-cache clearing, as the other caches here: no
        lock, and a reader meanwhile simply recomputes.
        """
        for user_id in user_ids:
            if len(self._picks) >= PICKS_CACHE_SIZE:
                self._picks.clear()
            self._picks[(user_id, n, filters)] = tuple(found[user_id])

    def recommend_ids(self, user_ids: Sequence[str], n: int) -> list[list[str]]:
        """Return only new item ids (the evaluation protocol: the whole history is excluded)."""
        found = self.recommend_many(user_ids, n, Filters(exclude_history=True))
        return [[r.item_id for r in found[u]] for u in user_ids]

    def similar_items(self, item_id: str, n: int = 10) -> list[Recommendation]:
        """Items most similar to ``item_id``; relevance is not calibrated here (0)."""
        _check_n(n)
        index = self.items.get(item_id)
        if index is None:
            raise NotFoundError(f"item {item_id!r} is not in the model")
        ids, scores = self.model.similar_items(index, n)
        return [
            Recommendation(str(self.items.ids[i]), rank, float(s), 0.0, Source.SIMILAR)
            for rank, (i, s) in enumerate(zip(ids, scores, strict=True), start=1)
        ]

    def candidates(self, recommendations: Sequence[Recommendation]) -> list[Candidate]:
        """Turn recommendations into the plain data the governor judges (catalog joined).

        Picks that are the very objects joined before (the cold start's shared list, a known
        customer's kept picks) are joined once.
        """
        if recommendations:
            found = self._joined.get(id(recommendations[0]))
            if found is not None and same_objects(found[0], recommendations):
                return list(found[1])
        facts = self._catalog_facts()
        joined, missing = Candidate.joined, _NO_FACTS
        built = [
            joined(rec.item_id, rec.relevance, rec.score, rec.source.value,
                   facts.get(rec.item_id, missing))
            for rec in recommendations
        ]  # fmt: skip
        if recommendations:
            if len(self._joined) >= PICKS_CACHE_SIZE + COLD_CACHE_SIZE:
                self._joined.clear()
            # Holding the picks keeps their ids from being reused by other objects.
            self._joined[id(recommendations[0])] = (tuple(recommendations), built)
        return list(built)

    def _active_users(self) -> np.ndarray:
        """Return which known customers have any weight left (computed once per model).

        A history decayed to nothing (years old) scores every item 0 and its "personal" picks
        would be arbitrary: such customers get the cold start's picks instead, minus what they
        had (``_recommend_faded``).
        """
        if self._active is None:
            weights = np.asarray(self.user_items.sum(axis=1)).ravel()
            self._active = weights > 0
        return self._active

    def _catalog_facts(self) -> dict[str, dict[str, Any]]:
        # Built once per loaded model: the catalog is immutable once the model is published.
        if self._facts is None:
            self._facts = {
                item.item_id: {
                    "category": item.category,
                    "kind": item.kind,
                    "published_at": item.published_at,
                    "expires_at": item.expires_at,
                    "in_stock": item.in_stock,
                }
                for item in (self.catalog or {}).values()
            }
        return self._facts

    # -- internals ---------------------------------------------------------------------------

    def _recommend_known(
        self,
        user_ids: Sequence[str],
        rows: np.ndarray,
        positions: list[int],
        n: int,
        filters: Filters,
        blocked: np.ndarray,
    ) -> dict[str, list[Recommendation]]:
        if not positions:
            return {}
        exclude = take_rows(self.history if filters.exclude_history else self.excluded, rows)
        # Factor models score from their own user factors; only row-scored models read history.
        confidence = take_rows(self.user_items, rows) if self.model.scores_from_history else exclude
        ids, scores = self.model.recommend(rows, confidence, exclude, n, blocked)
        source = self._personal_source(Source.CF)
        return self._finish_rows(user_ids, positions, ids, scores, exclude, source, n, blocked)

    def _finish_rows(
        self,
        user_ids: Sequence[str],
        positions: list[int],
        ids: np.ndarray,
        scores: np.ndarray,
        exclude: sp.csr_matrix,
        source: Source,
        n: int,
        blocked: np.ndarray,
    ) -> dict[str, list[Recommendation]]:
        """Calibrate ranked rows in one pass; a row short of ``n`` is topped up by ``_finish``."""
        ids, scores = np.atleast_2d(ids), np.atleast_2d(scores)
        valid = np.asarray((ids >= 0) & (scores > FILTERED), dtype=bool)
        complete = np.asarray(valid.all(axis=1), dtype=bool)
        rows_out = self._calibrated_rows(
            np.where(valid, ids, 0), np.where(valid, scores, 0.0), source
        )
        found: dict[str, list[Recommendation]] = {}
        for offset, position in enumerate(positions):
            if complete[offset]:
                found[user_ids[position]] = rows_out[offset]
                continue
            excluded = exclude.indices[exclude.indptr[offset] : exclude.indptr[offset + 1]]
            found[user_ids[position]] = self._finish(
                ids[offset], scores[offset], source, n, blocked, excluded
            )
        return found

    def _personal_source(self, source: Source) -> Source:
        """Return what a personal pick is: ``source``, unless the model is the popularity baseline.

        Its picks are the popularity ranking minus the customer's history, which is exactly
        what the popular curve was fitted on.
        """
        return Source.POPULAR if self.model.algorithm is Algorithm.POPULAR else source

    def _calibrated_rows(
        self, ids: np.ndarray, scores: np.ndarray, source: Source, start_rank: int = 1
    ) -> list[list[Recommendation]]:
        """Calibrate and name a whole batch of rows at once; per-row numpy calls dominate else."""
        curve = self.calibrators.get(source) or self.calibrators.get(Source.CF)
        relevance = curve(scores) if curve is not None else np.zeros(scores.shape)
        names: list[list[str]] = self.items.ids[ids].tolist()
        values: list[list[float]] = scores.tolist()
        chances: list[list[float]] = np.round(relevance, 6).tolist()
        return [
            [
                Recommendation(item, rank, score, chance, source)
                for rank, (item, score, chance) in enumerate(zip(*row, strict=True), start_rank)
            ]
            for row in zip(names, values, chances, strict=True)
        ]

    def _folded(
        self,
        recent: Sequence[RecentInteraction],
        row: int,
        n: int,
        blocked: np.ndarray,
        filters: Filters,
    ) -> list[Recommendation] | None:
        """Fold in ``recent`` activity, on top of the history of a customer the model knows.

        None when nothing recent is in the model (or the model cannot fold in): the customer
        then gets what they would without it.
        """
        confidence = self._recent_row(recent)
        if not confidence.nnz or not self.model.supports_fold_in:
            return None
        # Only what the model excludes from history (purchases by default) stays out: a viewed
        # item may come back, which is what a browse follow-up is for.
        excluded_events = set(self.meta.get("exclude_events", ("purchase",)))
        exclude = self._recent_row([r for r in recent if r.event in excluded_events])
        exclude.data[:] = 1.0
        if row >= 0:  # what they did before training still counts, and what they had stays out
            rows = np.array([row])
            had = self.history if filters.exclude_history else self.excluded
            confidence = confidence + take_rows(self.user_items, rows)
            exclude = exclude + take_rows(had, rows)
            exclude.data[:] = 1.0
        ids, scores = self.model.fold_in(confidence, exclude, n, blocked)
        source = self._personal_source(Source.SIMILAR)
        return self._finish(ids[0], scores[0], source, n, blocked, exclude.indices)

    def _cold_ranking(self, n: int) -> tuple[Source, np.ndarray]:
        """Return what the cold start ranks by: trending when it holds ``n`` items, else popular."""
        if np.count_nonzero(self.trending) >= n:
            return Source.TRENDING, self.trending
        return Source.POPULAR, self.popular

    def _recommend_faded(
        self,
        user_ids: Sequence[str],
        rows: np.ndarray,
        positions: list[int],
        n: int,
        filters: Filters,
        blocked: np.ndarray,
    ) -> dict[str, list[Recommendation]]:
        """Recommend the cold start's picks, minus what they had, to customers whose history faded.

        A history decayed to nothing scores every item 0 (see ``_active_users``), but it is
        still theirs: the shared cold-start list offered them the very items they had bought
        (78 of 4,335 customers with a 2-day half-life on Online Retail).
        """
        if not positions:
            return {}
        exclude = take_rows(self.history if filters.exclude_history else self.excluded, rows)
        source, vector = self._cold_ranking(n)
        ids, scores = ranked_by_score(vector, exclude, n, blocked)
        return self._finish_rows(user_ids, positions, ids, scores, exclude, source, n, blocked)

    def _cold_start(self, n: int, blocked: np.ndarray) -> tuple[Recommendation, ...]:
        """Trending (or popular) picks: the same for every new customer, so computed once."""
        key = (n, blocked.tobytes())
        cached = self._cold.get(key)
        if cached is None:
            if len(self._cold) >= COLD_CACHE_SIZE:
                self._cold.clear()
            empty = sp.csr_matrix((1, len(self.items)), dtype=np.float32)
            source, vector = self._cold_ranking(n)
            ids, scores = ranked_by_score(vector, empty, n, blocked)
            cached = tuple(self._finish(ids[0], scores[0], source, n, blocked, empty.indices))
            self._cold[key] = cached
        return cached

    def _recent_row(self, recent: Sequence[RecentInteraction]) -> sp.csr_matrix:
        weights = self.weighting.event_weights
        unknown = [
            Problem(
                f"unknown event {r.event!r} (this model weighs: {', '.join(sorted(weights))})",
                field=f"recent.{n}.event",
            )
            for n, r in enumerate(recent)
            if r.event not in weights
        ]
        if unknown:  # it would weigh nothing: a typo must not pass for a signal
            raise ValidationError(unknown)
        known = [r for r in recent if r.item_id in self.items]
        cols = self.items.indices([r.item_id for r in known])
        recent_as_interactions = Interactions.from_records(
            ("", r.item_id, 0, r.event, r.value) for r in known
        )
        data = self.weighting.strengths(recent_as_interactions, 0)  # recent: no decay
        row = sp.csr_matrix(
            (data.astype(np.float32), (np.zeros(len(known), int), cols)), shape=(1, len(self.items))
        )
        row.sum_duplicates()
        row.eliminate_zeros()
        return row

    def _finish(
        self,
        ids: np.ndarray,
        scores: np.ndarray,
        source: Source,
        n: int,
        blocked: np.ndarray,
        excluded: np.ndarray,
    ) -> list[Recommendation]:
        keep = (ids >= 0) & (scores > FILTERED)
        ids, scores = ids[keep], scores[keep]
        recs = self._calibrated_rows(ids[None], scores[None], source)[0]
        if len(recs) < n:  # filters ate the personal list: top it up with what most people buy
            taken = np.concatenate([blocked, ids, excluded]).astype(np.int64)
            extra_ids, extra_scores = ranked_by_score(
                self.popular, sp.csr_matrix((1, len(self.items))), n - len(recs), np.unique(taken)
            )
            extra_ids, extra_scores = extra_ids[0], extra_scores[0]
            ok = (extra_ids >= 0) & (extra_scores > FILTERED)
            # One row of picks: ``[None, ok]`` keeps the batch axis the calibration expects.
            recs += self._calibrated_rows(
                extra_ids[None, ok], extra_scores[None, ok], Source.POPULAR, len(recs) + 1
            )[0]
        return recs

    def _blocked_items(self, filters: Filters) -> np.ndarray:
        """Return the model rows ``filters`` rule out for everyone (kept per distinct filters).

        Composition asks with the same filters (the minute's unavailable items) for every
        request; turning their ids into rows each time cost more than a customer's top-k.
        """
        found = self._blocked.get(filters)
        if found is None:
            if len(self._blocked) >= BLOCKED_CACHE_SIZE:
                self._blocked.clear()
            found = self._blocked[filters] = self._blocked_rows(filters)
        return found

    def _blocked_rows(self, filters: Filters) -> np.ndarray:
        if self.catalog is None and (
            filters.include_categories is not None or filters.exclude_categories
        ):
            raise ValidationError("category filters need a model trained with --catalog")
        # Items no one has touched (catalog entries the model has no signal on) are offered by
        # no source: a popularity of 0 is not a pick, and a factor score for them is noise.
        untouched = np.flatnonzero(self.popular <= 0)
        parts = [self.items.indices(sorted(filters.exclude_items)), untouched]
        if filters.include_categories is not None:
            wanted = self._category_rows(filters.include_categories)
            parts.append(np.setdiff1d(np.arange(len(self.items)), wanted, assume_unique=True))
        if filters.exclude_categories:
            parts.append(self._category_rows(filters.exclude_categories))
        blocked = np.concatenate(parts).astype(np.int64)
        return np.unique(blocked[blocked >= 0])

    def _category_rows(self, categories: Iterable[str]) -> np.ndarray:
        """Model rows of the catalog items in ``categories`` (index built once per model)."""
        if self._categories is None:
            by_category: dict[str, list[str]] = {}
            for item in (self.catalog or {}).values():
                by_category.setdefault(item.category, []).append(item.item_id)
            self._categories = {
                name: np.unique(self.items.indices(ids)) for name, ids in by_category.items()
            }
        found = [self._categories.get(name, np.zeros(0, np.int64)) for name in categories]
        rows = np.concatenate(found) if found else np.zeros(0, np.int64)
        return np.unique(rows[rows >= 0])

    @property
    def trained_at(self) -> datetime | None:
        """When the model was trained, from its metadata."""
        stamp = self.meta.get("trained_at")
        return datetime.fromisoformat(stamp) if stamp else None


def _check_n(n: int) -> None:
    if not 1 <= n <= MAX_N:
        raise ValidationError(f"n must be between 1 and {MAX_N}, got {n}")
