from __future__ import annotations

import numpy as np
import pytest

from engine.models.topk import BLOCK, BlockTopK


def brute_force(items: np.ndarray, queries: np.ndarray, k: int, banned: np.ndarray) -> np.ndarray:
    scores = queries @ items.T
    scores[:, banned] = -np.inf
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


@pytest.mark.parametrize("items_count", [3_000, 5 * BLOCK, 7])
@pytest.mark.parametrize("k", [1, 5, 40])
def test_block_selection_is_exact(items_count: int, k: int) -> None:
    rng = np.random.default_rng(items_count + k)
    items = rng.normal(size=(items_count, 6)).astype(np.float32)
    queries = rng.normal(size=(700, 6)).astype(np.float32)  # several chunks, run in threads
    banned = rng.choice(items_count, size=min(5, items_count - 1), replace=False)
    ids, scores = BlockTopK(items).top(queries, k, banned)
    expected = brute_force(items, queries, min(k, items_count), banned)
    np.testing.assert_array_equal(ids, expected)
    finite = np.where(np.isfinite(scores), scores, -1e30)  # banned items may fill the tail
    assert np.all(np.diff(finite, axis=1) <= 0)


@pytest.mark.parametrize("k", [4, 40])  # bounded by block maxima; more than the 5 blocks
def test_ties_go_to_the_lower_item_id(k: int) -> None:
    items = np.ones((600, 2), dtype=np.float32)  # every item scores the same
    ids, _ = BlockTopK(items).top(np.ones((3, 2), np.float32), k)
    np.testing.assert_array_equal(ids, [list(range(k))] * 3)


def test_large_batches_through_the_recommender_match_single_requests(interactions) -> None:  # type: ignore[no-untyped-def]
    from engine.serving import Filters
    from engine.training import train

    from .conftest import small_config

    model = train(interactions, small_config())
    users = [str(u) for u in model.users.ids]  # 60 customers: the batch (block) path
    batch = model.recommend_many(users, 5, Filters(exclude_history=True))
    for user in users:
        alone = model.recommend(user, 5, Filters(exclude_history=True))
        assert [r.item_id for r in batch[user]] == [r.item_id for r in alone]
