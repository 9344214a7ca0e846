"""Item-item nearest neighbours on BM25-weighted interactions (implicit)."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from engine.models.base import (
    Algorithm,
    ModelParams,
    RowScoredModel,
    Scored,
    drop_self,
    top_from_dense,
)

# Rows of dense scores held at once: a 10,000-customer batch against 50,000 items scored whole
# would be 2 GB of float64 before ranking; in chunks of this many cells it stays near 16 MB.
DENSE_CELLS = 2_000_000


class ItemKNNModel(RowScoredModel):
    """implicit's item-item nearest neighbours on BM25-weighted interactions."""

    algorithm = Algorithm.ITEMKNN

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

    def fold_in(
        self,
        confidence: sp.csr_matrix,
        exclude: sp.csr_matrix,
        n: int,
        filter_items: np.ndarray | None = None,
    ) -> Scored:
        """Score items by similarity to what each row's user touched, a chunk of rows at a time."""
        step = max(1, DENSE_CELLS // max(self.item_count, 1))
        parts = [
            top_from_dense(self._scores(confidence[start : start + step]),
                           exclude[start : start + step], n, filter_items)
            for start in range(0, confidence.shape[0], step) or [0]
        ]  # fmt: skip
        return np.vstack([ids for ids, _ in parts]), np.vstack([scores for _, scores in parts])

    def _scores(self, confidence: sp.csr_matrix) -> np.ndarray:
        return np.asarray((confidence @ self._model.similarity).toarray(), dtype=np.float32)

    def similar_items(self, item: int, n: int) -> Scored:
        """Return the nearest neighbours in the similarity matrix."""
        ids, scores = self._model.similar_items(item, N=n + 1)
        return drop_self(np.asarray(ids), np.asarray(scores), item, n)

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
