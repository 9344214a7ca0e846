"""The popularity baseline: everyone gets the most popular items they have not had yet."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from engine.models.base import (
    Algorithm,
    ModelParams,
    RowScoredModel,
    Scored,
    drop_self,
    ranked_by_score,
)


class PopularityModel(RowScoredModel):
    """Everyone gets the most popular items they have not had yet: the baseline to beat."""

    algorithm = Algorithm.POPULAR

    def __init__(self, params: ModelParams | None = None) -> None:
        super().__init__(params)
        self.popularity = np.zeros(0, dtype=np.float32)

    def fit(self, user_items: sp.csr_matrix, show_progress: bool = False) -> None:
        """Count distinct customers per item."""
        self.popularity = popularity_share(user_items)

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
        return drop_self(ids[0], scores[0], item, n)

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


def popularity_share(user_items: sp.csr_matrix) -> np.ndarray:
    """Return, per item, the share of customers who interacted with it at all."""
    binary = user_items.copy()
    binary.data[:] = 1.0
    counts = np.asarray(binary.sum(axis=0)).ravel()
    return (counts / max(float(user_items.shape[0]), 1.0)).astype(np.float32)
