"""Exact top-k by dot product for large batches of customers, pruned by block maxima.

Scoring 10,000 customers against 50,000 items is one 6.4 GFLOP matrix product that BLAS does
fast; implicit's top-k selection afterwards costs as much again. Here the items are cut into
blocks of 128: the k-th largest *block maximum* of a row is a lower bound of its k-th largest
score (k blocks each hold at least one score that high), so only the elements of blocks whose
maximum reaches that bound need looking at: about k of the ~400 blocks. The answer is exact,
ties go to the lower item index, and the batch takes about half the time on two cores.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

# Measured at 50k items x 64 factors on two cores: 128 x 128 selected 10,000 customers in
# 0.62 s, 256 x 256 in 0.74 s; smaller chunks keep each score block nearer the cache.
BLOCK = 128  # items per block: enough blocks (about 400 at 50k items) that few qualify
CHUNK = 128  # customers per matrix product: a 25 MB score block at 50k items
THREADS = min(os.cpu_count() or 1, 8)


class BlockTopK:
    """Top-k selection against one fixed set of item factors."""

    def __init__(self, item_factors: np.ndarray) -> None:
        items, factors = item_factors.shape
        self.items = items
        self.blocks = -(-items // BLOCK)
        padded = np.zeros((self.blocks * BLOCK, factors), dtype=np.float32)
        padded[:items] = item_factors
        self._transposed = np.ascontiguousarray(padded.T)

    def top(
        self, queries: np.ndarray, k: int, filter_items: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return the ``k`` best (ids, scores) per query row, best first; filtered items skipped.

        Rows run in parallel chunks, each a single-threaded BLAS product, so the caller should
        hold BLAS to one thread (threads of both kinds on the same cores only queue).
        """
        k = min(k, self.items)
        starts = range(0, len(queries), CHUNK)
        if len(starts) == 1:
            return self._chunk(queries, k, filter_items)
        with ThreadPoolExecutor(THREADS) as pool:
            parts = list(
                pool.map(lambda s: self._chunk(queries[s : s + CHUNK], k, filter_items), starts)
            )
        return np.vstack([p[0] for p in parts]), np.vstack([p[1] for p in parts])

    def _chunk(
        self, queries: np.ndarray, k: int, filter_items: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        scores = queries.astype(np.float32, copy=False) @ self._transposed
        scores[:, self.items :] = -np.inf
        if filter_items is not None and len(filter_items):
            scores[:, filter_items] = -np.inf
        rows = len(scores)
        if k > self.blocks:  # too few blocks to bound k scores (small catalogs, huge k)
            # The k-th largest score itself is the bound: every score reaching it qualifies.
            width = scores.shape[1]
            bound = np.partition(scores, width - k, axis=1)[:, width - k]
            row, col = np.nonzero(scores >= bound[:, None])
            return _best(scores, row, col, rows, k)
        by_block = scores.reshape(rows, self.blocks, BLOCK)
        block_max = by_block.max(axis=2)
        bound = np.partition(block_max, self.blocks - k, axis=1)[:, self.blocks - k]
        row_of, block_of = np.nonzero(block_max >= bound[:, None])
        hit, offset = np.nonzero(by_block[row_of, block_of] >= bound[row_of][:, None])
        return _best(scores, row_of[hit], block_of[hit] * BLOCK + offset, rows, k)


def _best(
    scores: np.ndarray, row: np.ndarray, col: np.ndarray, rows: int, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Order each row's qualifying (row, col) cells best first and keep its first ``k``."""
    value = scores[row, col]
    order = np.lexsort((col, -value, row))  # by row, best first, lower item id on ties
    row, col, value = row[order], col[order], value[order]
    first = np.searchsorted(row, np.arange(rows))
    take = first[:, None] + np.arange(k)
    return col[take], value[take]
