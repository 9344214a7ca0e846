"""Matrix factorisation: implicit's ALS (with fold-in of new users) and BPR."""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import numpy as np
import scipy.sparse as sp

from engine.models.base import (
    CHUNK_USERS,
    Algorithm,
    Model,
    ModelParams,
    Scored,
    drop_self,
    single_threaded_blas,
    top_excluding,
)
from engine.models.topk import BlockTopK


class _FactorModel(Model):
    """Shared serving for matrix-factorisation models held by an implicit object."""

    def __init__(self, params: ModelParams | None = None) -> None:
        super().__init__(params)
        self._model: Any = None
        self._block: BlockTopK | None = None

    @property
    def block(self) -> BlockTopK:
        """The batch selector over the current item factors, built on first use."""
        if self._block is None:
            self._block = BlockTopK(np.asarray(self._model.item_factors, dtype=np.float32))
        return self._block

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
        self._block = None

    def recommend(
        self,
        users: np.ndarray,
        user_items: sp.csr_matrix,
        exclude: sp.csr_matrix,
        n: int,
        filter_items: np.ndarray | None = None,
    ) -> Scored:
        """Rank items by factor dot product for known users, a bounded chunk at a time."""
        item_factors = self._model.item_factors
        if len(users) <= CHUNK_USERS:  # one chunk: slicing the CSR matrix alone cost ~100 us
            return top_excluding(
                item_factors, self._model.user_factors[users], exclude, n, filter_items, self.block
            )
        parts = [
            top_excluding(
                item_factors,
                self._model.user_factors[users[start : start + CHUNK_USERS]],
                exclude[start : start + CHUNK_USERS],
                n,
                filter_items,
                self.block,
            )
            for start in range(0, len(users), CHUNK_USERS)
        ]
        return np.vstack([p[0] for p in parts]), np.vstack([p[1] for p in parts])

    def similar_items(self, item: int, n: int) -> Scored:
        """Return items whose factors point the same way (cosine)."""
        ids, scores = self._model.similar_items(item, N=n + 1)
        return drop_self(np.asarray(ids), np.asarray(scores), item, n)

    def arrays(self) -> dict[str, np.ndarray]:
        """Return user and item factors."""
        return {"user_factors": self._model.user_factors, "item_factors": self._model.item_factors}

    def load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Restore factors into a fresh implicit model."""
        with single_threaded_blas():
            self._model = self._new_implicit()
        self._model.user_factors = np.ascontiguousarray(arrays["user_factors"], dtype=np.float32)
        self._model.item_factors = np.ascontiguousarray(arrays["item_factors"], dtype=np.float32)
        self._block = None

    @property
    def item_count(self) -> int:
        """Number of item factor rows."""
        return int(self._model.item_factors.shape[0])


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
        factors = self._model.recalculate_user(np.arange(confidence.shape[0]), confidence)
        return top_excluding(
            self._model.item_factors, np.atleast_2d(factors), exclude, n, filter_items
        )


#: implicit's BPR keeps an item bias in the last factor column (index ``factors``: implicit
#: 0.7 allocates ``factors + 1`` columns), and every user factor row holds a constant 1 there,
#: so a score is the taste dot product plus the item's bias.
BIAS_COLUMN = -1


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
            # Hogwild SGD: implicit's threads update shared factors in whatever order they get
            # the cores, so two seeded multi-threaded runs differ (by up to 0.14 in a factor on
            # Online Retail). One thread makes ``--seed`` reproduce the model bit for bit.
            num_threads=1,
        )

    supports_fold_in = True

    def fold_in(
        self,
        confidence: sp.csr_matrix,
        exclude: sp.csr_matrix,
        n: int,
        filter_items: np.ndarray | None = None,
    ) -> Scored:
        """Stand a new customer in for the confidence-weighted mean of their items' factors.

        BPR has no closed-form user solve like ALS, so a new customer is treated as "someone
        like these items" (item similarity in factor space), which needs no retraining. The
        bias coordinate is then set to 1, as every trained customer's is (see ``BIAS_COLUMN``):
        averaged, it would hold the mean bias of their items, and so weigh popularity by chance.
        """
        weights = confidence.multiply(1.0 / np.maximum(confidence.sum(axis=1), 1e-9)).tocsr()
        queries = np.asarray(weights @ self._model.item_factors, dtype=np.float32)
        queries[:, BIAS_COLUMN] = 1.0
        return top_excluding(self._model.item_factors, queries, exclude, n, filter_items)
