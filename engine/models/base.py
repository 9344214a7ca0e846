"""The model interface, its parameters and shared ranking helpers.

Each model learns from a user x item confidence matrix and serves from plain numpy arrays, so a
model trained elsewhere (a bigger machine, Spark ALS) serves the same way once its factors are in
the artifact. implicit is imported lazily: loading the CLI should not pay for it.
"""

from __future__ import annotations

import contextlib
import functools
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from engine.models.topk import BlockTopK


class Algorithm(StrEnum):
    """The model families Rapport can train."""

    ALS = "als"
    BPR = "bpr"
    ITEMKNN = "itemknn"
    POPULAR = "popular"


@dataclass(frozen=True)
class ModelParams:
    """Hyper-parameters; each algorithm reads the ones that concern it."""

    factors: int = 128
    regularization: float = 20.0
    alpha: float = 2.0
    iterations: int = 15
    learning_rate: float = 0.01
    neighbours: int = 100
    seed: int = 42

    def as_dict(self) -> dict[str, Any]:
        """Return the parameters as a JSON-ready dict."""
        return asdict(self)


def single_threaded_blas() -> Any:
    """Limit BLAS to one thread (a context manager), over every library implicit uses."""
    if _PINNED:
        return contextlib.nullcontext()
    return _threads().limit(limits=1, user_api="blas")


_PINNED: list[Any] = []  # the limit holding this process's BLAS and OpenMP at one thread


def pin_single_threaded() -> None:
    """Hold BLAS and OpenMP at one thread for the rest of this process.

    For serving processes, one per core: threads under a worker only queue behind its
    siblings, and setting the limit around every single-customer top-k instead cost 50-90 us
    of each compose (threadpoolctl calls into three libraries on entry and again on exit).
    """
    if not _PINNED:
        _PINNED.append(_threads().limit(limits=1))


def default_params(algorithm: Algorithm | str, seed: int = 42) -> ModelParams:
    """Return measured starting points: ALS and BPR want regularization on different scales.

    implicit's ALS regularization is not scaled by interaction count, so useful values are
    around 1-50 (20 measured best on Online Retail); BPR's SGD wants about 0.01.
    """
    if Algorithm(algorithm) is Algorithm.BPR:
        return ModelParams(
            factors=64, regularization=0.01, learning_rate=0.05, iterations=20, seed=seed
        )
    return ModelParams(seed=seed)


Scored = tuple[np.ndarray, np.ndarray]  # (item indices, scores), shape (users, n) each
# Users scored per matrix product: 1,024 x 50,000 items is a 200 MB score block; all 10,000 of a
# batch at once would be 2 GB, and slower for leaving the cache.
CHUNK_USERS = 1_024
# implicit marks filtered items with -finfo(float32).max, not -inf: anything this low was filtered.
FILTERED = -1e30
HEAVY_HISTORY = 200  # customers excluding more items than this are filtered row by row
SMALL_BATCH = 16  # requests this small are scored on one thread


@functools.cache
def _threads() -> Any:
    """One controller over every BLAS/OpenMP library implicit uses, created once.

    threadpoolctl only sees libraries already loaded, and implicit pulls in scipy's own
    OpenBLAS on import, so import first.
    """
    import implicit.cpu.als
    import implicit.cpu.bpr  # noqa: F401
    import scipy.linalg  # noqa: F401
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


class Model(ABC):
    """A trained recommender over matrix indices (ids are mapped by the caller)."""

    algorithm: ClassVar[Algorithm]
    supports_fold_in: ClassVar[bool] = False
    scores_from_history: ClassVar[bool] = False  # recommend() reads the customers' rows

    def __init__(self, params: ModelParams | None = None) -> None:
        self.params = params or ModelParams()

    @abstractmethod
    def fit(self, user_items: sp.csr_matrix, show_progress: bool = False) -> None:
        """Learn from a user x item confidence matrix."""

    @abstractmethod
    def recommend(
        self,
        users: np.ndarray,
        user_items: sp.csr_matrix,
        exclude: sp.csr_matrix,
        n: int,
        filter_items: np.ndarray | None = None,
    ) -> Scored:
        """Return the top ``n`` items for known users (rows of ``user_items``), minus exclusions."""

    def fold_in(
        self,
        confidence: sp.csr_matrix,
        exclude: sp.csr_matrix,
        n: int,
        filter_items: np.ndarray | None = None,
    ) -> Scored:
        """Top ``n`` items for users unknown at training time, from their confidence rows."""
        raise NotImplementedError(f"{self.algorithm} cannot fold in new users")

    @abstractmethod
    def similar_items(self, item: int, n: int) -> Scored:
        """Return the ``n`` items most similar to ``item`` (itself excluded)."""

    @abstractmethod
    def arrays(self) -> dict[str, np.ndarray]:
        """Return the learned state as named arrays (saved as ``.npz``)."""

    @abstractmethod
    def load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Restore the learned state saved by ``arrays``."""

    @property
    @abstractmethod
    def item_count(self) -> int:
        """Number of items the model knows."""


class RowScoredModel(Model):
    """A model that scores any customer from their own interaction row, known or new."""

    supports_fold_in: ClassVar[bool] = True
    scores_from_history: ClassVar[bool] = True

    def recommend(
        self,
        users: np.ndarray,
        user_items: sp.csr_matrix,
        exclude: sp.csr_matrix,
        n: int,
        filter_items: np.ndarray | None = None,
    ) -> Scored:
        """Score known customers exactly as new ones: from their confidence rows."""
        return self.fold_in(user_items, exclude, n, filter_items)


def top_excluding(
    item_factors: np.ndarray,
    queries: np.ndarray,
    exclude: sp.csr_matrix,
    n: int,
    filter_items: np.ndarray | None = None,
    block: BlockTopK | None = None,
) -> Scored:
    """Top ``n`` items by dot product for each query row, skipping that row's ``exclude`` items.

    implicit's ``topk`` filters per-row exclusions with one scipy row slice per customer, which
    costs more than the scoring itself in a 10,000-customer batch. Instead ask it for ``n`` plus
    the most any row excludes, then drop the excluded ids with one vectorised lookup. Rows with
    very long histories would make every row's heap long, so they take implicit's own path.
    Large batches select with ``block`` (see ``engine.models.topk``) when the model gives one.
    """
    from implicit.cpu.topk import topk

    if len(queries) <= SMALL_BATCH or block is None:
        # A thread pool cannot speed up one customer's scoring, and when another process holds
        # a core its threads wait for time slices: single-customer latency went from 0.9 ms to
        # 8 ms under load. One thread for small requests; every core for big batches.
        threads = 1 if len(queries) <= SMALL_BATCH else 0
        pinned = _PINNED or not threads
        with contextlib.nullcontext() if pinned else _threads().limit(limits=1):
            return _top_excluding(topk, item_factors, queries, exclude, n, filter_items, threads)
    with single_threaded_blas():  # the block selection runs its own threads
        return _top_excluding(topk, item_factors, queries, exclude, n, filter_items, 0, block)


def _top_excluding(
    topk: Any,
    item_factors: np.ndarray,
    queries: np.ndarray,
    exclude: sp.csr_matrix,
    n: int,
    filter_items: np.ndarray | None,
    threads: int,
    block: BlockTopK | None = None,
) -> Scored:
    counts = np.diff(exclude.indptr)
    heavy = counts > HEAVY_HISTORY
    if heavy.any():
        light = (
            _top_excluding(
                topk,
                item_factors,
                queries[~heavy],
                exclude[~heavy],
                n,
                filter_items,
                threads,
                block,
            )
            if not heavy.all()
            else (np.zeros((0, n), np.int32), np.zeros((0, n), np.float32))
        )
        slow = topk(
            item_factors,
            queries[heavy],
            n,
            filter_query_items=exclude[heavy],
            filter_items=filter_items,
            num_threads=threads,
        )
        return _merge_rows(heavy, light, slow)
    k = min(n + int(counts.max(initial=0)), item_factors.shape[0])
    if block is not None:
        ids, scores = block.top(queries, k, filter_items)
    else:
        ids, scores = topk(item_factors, queries, k, filter_items=filter_items, num_threads=threads)
    return _without_excluded(ids, scores, exclude, n, item_factors.shape[0])


def _without_excluded(
    ids: np.ndarray, scores: np.ndarray, exclude: sp.csr_matrix, n: int, width: int
) -> Scored:
    """Keep each row's first ``n`` ranked ids that its ``exclude`` row does not hold."""
    if len(ids) == 1:  # one customer: a set lookup beats np.isin's sorting by ~50 us
        return _drop_excluded_one(ids[0], scores[0], exclude.indices, n)
    counts = np.diff(exclude.indptr)
    owners = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    keys = np.arange(len(ids), dtype=np.int64)[:, None] * np.int64(width) + ids
    drop = np.isin(keys, owners * np.int64(width) + exclude.indices) | (ids < 0)
    order = np.argsort(drop, axis=1, kind="stable")[:, :n]
    ids, scores = np.take_along_axis(ids, order, 1), np.take_along_axis(scores, order, 1)
    scores[np.take_along_axis(drop, order, 1)] = -np.inf  # fewer than n left: mark the rest
    return ids, scores


def _drop_excluded_one(ids: np.ndarray, scores: np.ndarray, excluded: np.ndarray, n: int) -> Scored:
    banned = set(excluded.tolist())
    keep = [i for i, item in enumerate(ids.tolist()) if item >= 0 and item not in banned][:n]
    top_ids = np.zeros((1, n), dtype=ids.dtype)
    top_scores = np.full((1, n), -np.inf, dtype=scores.dtype)
    top_ids[0, : len(keep)], top_scores[0, : len(keep)] = ids[keep], scores[keep]
    return top_ids, top_scores


def _merge_rows(mask: np.ndarray, light: Scored, heavy: Scored) -> Scored:
    ids = np.empty((len(mask), light[0].shape[1]), dtype=light[0].dtype)
    scores = np.empty((len(mask), light[0].shape[1]), dtype=light[1].dtype)
    ids[~mask], scores[~mask] = light
    ids[mask], scores[mask] = heavy
    return ids, scores


def drop_self(ids: np.ndarray, scores: np.ndarray, item: int, n: int) -> Scored:
    """Remove ``item`` from a similar-items answer and keep ``n``."""
    keep = ids != item
    return ids[keep][:n], scores[keep][:n]


def ranked_by_score(
    item_scores: np.ndarray,
    exclude: sp.csr_matrix,
    n: int,
    filter_items: np.ndarray | None = None,
) -> Scored:
    """Rank one global score vector for every row of ``exclude``, skipping each row's items.

    Every row shares one order, so the vector's head is ranked once and each row keeps its
    first ``n`` items not excluded (implicit's top-k ran a product over every row and item to
    find the same order). ``filter_items`` are ranked out for every row.
    """
    scores = np.array(item_scores, dtype=np.float32).ravel()
    # Past the item count implicit padded with item 0 at score 0, which read as a real pick.
    n = min(n, len(scores))
    if filter_items is not None and len(filter_items):
        scores[filter_items] = -np.inf
    k = min(len(scores), n + int(np.diff(exclude.indptr).max(initial=0)))
    if k == 0:
        empty = np.zeros((exclude.shape[0], 0))
        return empty.astype(np.int32), empty.astype(np.float32)
    # Every item scoring at least the k-th best, so items tied at the cut are all considered
    # and the lower index wins among them (argpartition keeps an arbitrary few of them).
    cut = scores[np.argpartition(-scores, k - 1)[k - 1]]
    head = np.flatnonzero(scores >= cut)
    head = head[np.lexsort((head, -scores[head]))][:k].astype(np.int32)
    head_scores = scores[head]
    head[~np.isfinite(head_scores)] = -1  # filtered: dropped like implicit's padding
    rows = exclude.shape[0]
    ids = np.broadcast_to(head, (rows, k))
    return _without_excluded(ids, np.broadcast_to(head_scores, (rows, k)), exclude, n, len(scores))


def top_from_dense(
    scores: np.ndarray, exclude: sp.csr_matrix, n: int, filter_items: np.ndarray | None
) -> Scored:
    """Top ``n`` of a dense score matrix, after excluding each row's items and ``filter_items``."""
    scores = np.atleast_2d(scores)
    for row in range(scores.shape[0]):
        scores[row, exclude.indices[exclude.indptr[row] : exclude.indptr[row + 1]]] = -np.inf
    if filter_items is not None and len(filter_items):
        scores[:, filter_items] = -np.inf
    n = min(n, scores.shape[1])
    top = np.argpartition(-scores, n - 1, axis=1)[:, :n] if n else np.zeros((len(scores), 0), int)
    top_scores = np.take_along_axis(scores, top, axis=1)
    order = np.argsort(-top_scores, axis=1, kind="stable")
    return np.take_along_axis(top, order, axis=1), np.take_along_axis(top_scores, order, axis=1)
