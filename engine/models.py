"""The recommendation models behind one interface: implicit ALS, BPR, item-kNN and popularity.

Each model learns from a user x item confidence matrix and serves from plain numpy arrays, so a
model trained elsewhere (a bigger machine, Spark ALS) serves the same way once its factors are in
the artifact. implicit is imported lazily: loading the CLI should not pay for it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp


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
    """Limit BLAS to one thread, after loading every BLAS library implicit will use.

    threadpoolctl only limits libraries already loaded, and implicit pulls in scipy's own
    OpenBLAS on import, so import first.
    """
    import implicit.cpu.als
    import implicit.cpu.bpr  # noqa: F401
    import scipy.linalg  # noqa: F401
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1, "blas")


def default_params(algorithm: Algorithm | str, seed: int = 42) -> ModelParams:
    """Return measured starting points: ALS and BPR want regularization on different scales.

    implicit's ALS regularization is not scaled by interaction count, so useful values are
    around 1-50 (20 measured best on Online Retail); BPR's SGD wants about 0.01.
    """
    if Algorithm(algorithm) is Algorithm.BPR:
        return ModelParams(factors=64, regularization=0.01, learning_rate=0.05, iterations=20,
                           seed=seed)
    return ModelParams(seed=seed)


Scored = tuple[np.ndarray, np.ndarray]
# Users scored per matrix product: 1,024 x 50,000 items is a 200 MB score block; all 10,000 of a
# batch at once would be 2 GB, and slower for leaving the cache.
CHUNK_USERS = 1_024  # (item indices, scores), shape (users, n) each


class Model(ABC):
    """A trained recommender over matrix indices (ids are mapped by the caller)."""

    algorithm: ClassVar[Algorithm]
    supports_fold_in: ClassVar[bool] = False

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


def _drop_self(ids: np.ndarray, scores: np.ndarray, item: int, n: int) -> Scored:
    keep = ids != item
    return ids[keep][:n], scores[keep][:n]


class _FactorModel(Model):
    """Shared serving for matrix-factorisation models held by an implicit object."""

    def __init__(self, params: ModelParams | None = None) -> None:
        super().__init__(params)
        self._model: Any = None

    @abstractmethod
    def _new_implicit(self) -> Any:
        """Create the untrained implicit model."""

    def fit(self, user_items: sp.csr_matrix, show_progress: bool = False) -> None:
        """Train the implicit model on the confidence matrix."""
        # implicit parallelises over users itself; a second BLAS thread pool underneath only
        # fights it for the same cores (implicit checks, and warns, when the model is created).
        with single_threaded_blas():
            self._model = self._new_implicit()
            self._model.fit(user_items, show_progress=show_progress)

    def recommend(
        self,
        users: np.ndarray,
        user_items: sp.csr_matrix,
        exclude: sp.csr_matrix,
        n: int,
        filter_items: np.ndarray | None = None,
    ) -> Scored:
        """Rank items by factor dot product for known users, a bounded chunk at a time."""
        parts = [
            self._model.recommend(
                users[start : start + CHUNK_USERS], exclude[start : start + CHUNK_USERS], N=n,
                filter_already_liked_items=True, filter_items=filter_items,
            )
            for start in range(0, len(users), CHUNK_USERS)
        ]
        ids = np.vstack([np.atleast_2d(p[0]) for p in parts])
        return ids, np.vstack([np.atleast_2d(p[1]) for p in parts])

    def similar_items(self, item: int, n: int) -> Scored:
        """Return items whose factors point the same way (cosine)."""
        ids, scores = self._model.similar_items(item, N=n + 1)
        return _drop_self(np.asarray(ids), np.asarray(scores), item, n)

    def arrays(self) -> dict[str, np.ndarray]:
        """Return user and item factors."""
        return {"user_factors": self._model.user_factors, "item_factors": self._model.item_factors}

    def load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Restore factors into a fresh implicit model."""
        with single_threaded_blas():
            self._model = self._new_implicit()
        self._model.user_factors = np.ascontiguousarray(arrays["user_factors"], dtype=np.float32)
        self._model.item_factors = np.ascontiguousarray(arrays["item_factors"], dtype=np.float32)

    @property
    def item_count(self) -> int:
        """Number of item factor rows."""
        return int(self._model.item_factors.shape[0])

    @property
    def user_factors(self) -> np.ndarray:
        """The learned user factors."""
        return np.asarray(self._model.user_factors)


class ALSModel(_FactorModel):
    """implicit's alternating least squares (Hu, Koren & Volinsky 2008); folds in new users."""

    algorithm = Algorithm.ALS
    supports_fold_in = True

    def _new_implicit(self) -> Any:
        from implicit.cpu.als import AlternatingLeastSquares

        p = self.params
        return AlternatingLeastSquares(
            factors=p.factors,
            regularization=p.regularization,
            alpha=p.alpha,
            iterations=p.iterations,
            random_state=p.seed,
        )

    def fold_in(
        self,
        confidence: sp.csr_matrix,
        exclude: sp.csr_matrix,
        n: int,
        filter_items: np.ndarray | None = None,
    ) -> Scored:
        """Solve each new user's factors against the fixed item factors, then rank."""
        from implicit.cpu.topk import topk

        factors = self._model.recalculate_user(np.arange(confidence.shape[0]), confidence)
        ids, scores = topk(
            self._model.item_factors,
            np.atleast_2d(factors),
            n,
            filter_query_items=exclude,
            filter_items=filter_items,
        )
        return ids, scores


class BPRModel(_FactorModel):
    """implicit's Bayesian personalised ranking (Rendle et al. 2009)."""

    algorithm = Algorithm.BPR

    def _new_implicit(self) -> Any:
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        p = self.params
        return BayesianPersonalizedRanking(
            factors=p.factors,
            learning_rate=p.learning_rate,
            regularization=p.regularization,
            iterations=p.iterations * 5,
            random_state=p.seed,
        )


class ItemKNNModel(Model):
    """implicit's item-item nearest neighbours on BM25-weighted interactions."""

    algorithm = Algorithm.ITEMKNN
    supports_fold_in = True

    def __init__(self, params: ModelParams | None = None) -> None:
        super().__init__(params)
        self._model: Any = None

    def _new_implicit(self) -> Any:
        from implicit.nearest_neighbours import BM25Recommender

        return BM25Recommender(K=self.params.neighbours)

    def fit(self, user_items: sp.csr_matrix, show_progress: bool = False) -> None:
        """Learn the item-item similarity matrix from BM25-weighted interactions."""
        from implicit.nearest_neighbours import ItemItemRecommender, bm25_weight

        self._model = self._new_implicit()
        # Same as BM25Recommender.fit, but hands implicit the CSR it expects (it warns on COO).
        weighted = bm25_weight(user_items.T, self._model.K1, self._model.B).T.tocsr()
        ItemItemRecommender.fit(self._model, weighted, show_progress=show_progress)

    def recommend(
        self,
        users: np.ndarray,
        user_items: sp.csr_matrix,
        exclude: sp.csr_matrix,
        n: int,
        filter_items: np.ndarray | None = None,
    ) -> Scored:
        """Item-kNN scores from each user's own confidence rows."""
        return self.fold_in(user_items, exclude, n, filter_items)

    def fold_in(
        self,
        confidence: sp.csr_matrix,
        exclude: sp.csr_matrix,
        n: int,
        filter_items: np.ndarray | None = None,
    ) -> Scored:
        """Score items by similarity to what each row's user touched."""
        scores = np.asarray((confidence @ self._model.similarity).todense(), dtype=np.float32)
        return _top_from_dense(scores, exclude, n, filter_items)

    def similar_items(self, item: int, n: int) -> Scored:
        """Return the nearest neighbours in the similarity matrix."""
        ids, scores = self._model.similar_items(item, N=n + 1)
        return _drop_self(np.asarray(ids), np.asarray(scores), item, n)

    def arrays(self) -> dict[str, np.ndarray]:
        """Return the similarity matrix in CSR parts."""
        m = self._model.similarity.tocsr()
        return {
            "data": m.data,
            "indices": m.indices,
            "indptr": m.indptr,
            "shape": np.array(m.shape),
        }

    def load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Rebuild the similarity matrix."""
        from implicit.nearest_neighbours import NearestNeighboursScorer

        matrix = sp.csr_matrix(
            (arrays["data"], arrays["indices"], arrays["indptr"]), shape=tuple(arrays["shape"])
        )
        self._model = self._new_implicit()
        self._model.similarity = matrix
        self._model.scorer = NearestNeighboursScorer(matrix)

    @property
    def item_count(self) -> int:
        """Number of rows of the similarity matrix."""
        return int(self._model.similarity.shape[0])


class PopularityModel(Model):
    """Everyone gets the most popular items they have not had yet: the baseline to beat."""

    algorithm = Algorithm.POPULAR
    supports_fold_in = True

    def __init__(self, params: ModelParams | None = None) -> None:
        super().__init__(params)
        self.popularity = np.zeros(0, dtype=np.float32)

    def fit(self, user_items: sp.csr_matrix, show_progress: bool = False) -> None:
        """Count distinct customers per item."""
        binary = user_items.copy()
        binary.data[:] = 1.0
        counts = np.asarray(binary.sum(axis=0)).ravel()
        self.popularity = (counts / max(float(user_items.shape[0]), 1.0)).astype(np.float32)

    def recommend(
        self,
        users: np.ndarray,
        user_items: sp.csr_matrix,
        exclude: sp.csr_matrix,
        n: int,
        filter_items: np.ndarray | None = None,
    ) -> Scored:
        """Rank by popularity share, skipping each user's excluded items."""
        return self.fold_in(user_items, exclude, n, filter_items)

    def fold_in(
        self,
        confidence: sp.csr_matrix,
        exclude: sp.csr_matrix,
        n: int,
        filter_items: np.ndarray | None = None,
    ) -> Scored:
        """Popularity needs no history, so new users are served the same way."""
        return ranked_by_score(self.popularity, exclude, n, filter_items)

    def similar_items(self, item: int, n: int) -> Scored:
        """Popularity knows no similarity: return the most popular other items."""
        ids, scores = ranked_by_score(self.popularity, sp.csr_matrix((1, self.item_count)), n + 1)
        return _drop_self(ids[0], scores[0], item, n)

    def arrays(self) -> dict[str, np.ndarray]:
        """Return the popularity vector."""
        return {"popularity": self.popularity}

    def load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Restore the popularity vector."""
        self.popularity = np.asarray(arrays["popularity"], dtype=np.float32)

    @property
    def item_count(self) -> int:
        """Length of the popularity vector."""
        return int(self.popularity.shape[0])


def ranked_by_score(
    item_scores: np.ndarray,
    exclude: sp.csr_matrix,
    n: int,
    filter_items: np.ndarray | None = None,
) -> Scored:
    """Rank one global score vector for every row of ``exclude`` (implicit's fast top-k)."""
    from implicit.cpu.topk import topk

    factors = np.ascontiguousarray(item_scores.reshape(-1, 1), dtype=np.float32)
    query = np.ones((exclude.shape[0], 1), dtype=np.float32)
    return topk(factors, query, n, filter_query_items=exclude, filter_items=filter_items)


def _top_from_dense(
    scores: np.ndarray, exclude: sp.csr_matrix, n: int, filter_items: np.ndarray | None
) -> Scored:
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


MODEL_CLASSES: dict[Algorithm, type[Model]] = {
    Algorithm.ALS: ALSModel,
    Algorithm.BPR: BPRModel,
    Algorithm.ITEMKNN: ItemKNNModel,
    Algorithm.POPULAR: PopularityModel,
}


def create_model(algorithm: Algorithm | str, params: ModelParams | None = None) -> Model:
    """Instantiate the model class for ``algorithm``."""
    return MODEL_CLASSES[Algorithm(algorithm)](params)
