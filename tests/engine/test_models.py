"""One behaviour suite that every model passes (like implicit's RecommenderBase tests)."""

from __future__ import annotations

import contextlib
from dataclasses import replace

import numpy as np
import pytest
import scipy.sparse as sp

from engine.matrix import IdMap, Weighting, build_matrix, history_matrix
from engine.models import Algorithm, Model, ModelParams, create_model

from .conftest import ITEMS_PER_GROUP

ALS_PARAMS = ModelParams(
    factors=8, regularization=0.5, alpha=5.0, iterations=20, neighbours=20, seed=1
)
BPR_PARAMS = ModelParams(factors=8, regularization=0.01, learning_rate=0.05, iterations=20, seed=1)


def params_for(algorithm: Algorithm) -> ModelParams:
    return BPR_PARAMS if algorithm is Algorithm.BPR else ALS_PARAMS


@pytest.fixture(scope="module")
def matrices(interactions):  # type: ignore[no-untyped-def]
    users, items = (
        IdMap.from_values(interactions.user_ids),
        IdMap.from_values(interactions.item_ids),
    )
    confidence = build_matrix(interactions, users, items, Weighting())
    return users, items, confidence, history_matrix(interactions, users, items)


@pytest.mark.parametrize("algorithm", list(Algorithm), ids=[a.value for a in Algorithm])
class TestEveryModel:
    @pytest.fixture
    def model(self, algorithm: Algorithm, matrices) -> Model:  # type: ignore[no-untyped-def]
        model = create_model(algorithm, params_for(algorithm))
        model.fit(matrices[2])
        return model

    def test_recommends_n_ranked_items_never_already_had(self, model: Model, matrices) -> None:  # type: ignore[no-untyped-def]
        _, items, confidence, history = matrices
        rows = np.arange(confidence.shape[0])
        ids, scores = model.recommend(rows, confidence[rows], history[rows], 3)
        assert ids.shape == (len(rows), 3)
        for row in rows:
            assert not set(ids[row]) & set(history[row].indices)
            assert list(scores[row]) == sorted(scores[row], reverse=True)
        assert model.item_count == len(items)

    def test_filter_items_are_never_returned(self, model: Model, matrices) -> None:  # type: ignore[no-untyped-def]
        _, _, confidence, history = matrices
        banned = np.arange(0, 30, 2)
        ids, _ = model.recommend(np.arange(5), confidence[:5], history[:5], 5, banned)
        assert not set(ids.ravel()) & set(banned)

    def test_similar_items_excludes_the_item_itself(self, model: Model) -> None:
        ids, scores = model.similar_items(3, 4)
        assert 3 not in ids and len(ids) == 4 and len(scores) == 4

    def test_arrays_round_trip_gives_identical_recommendations(
        self, model: Model, algorithm: Algorithm, matrices
    ) -> None:  # type: ignore[no-untyped-def]
        _, _, confidence, history = matrices
        restored = create_model(algorithm, params_for(algorithm))
        restored.load_arrays({k: np.array(v) for k, v in model.arrays().items()})
        rows = np.arange(10)
        before = model.recommend(rows, confidence[rows], history[rows], 4)
        after = restored.recommend(rows, confidence[rows], history[rows], 4)
        np.testing.assert_array_equal(before[0], after[0])
        np.testing.assert_allclose(before[1], after[1], rtol=1e-5)

    def test_fold_in_when_supported(self, model: Model) -> None:
        if not model.supports_fold_in:
            with pytest.raises(NotImplementedError):
                model.fold_in(sp.csr_matrix((1, 30)), sp.csr_matrix((1, 30)), 3)
            return
        row = sp.csr_matrix((np.ones(2, np.float32), ([0, 0], [0, 1])), shape=(1, 30))
        ids, _ = model.fold_in(row, row, 3)
        assert ids.shape == (1, 3) and not {0, 1} & set(ids[0])


@pytest.mark.parametrize("algorithm", [Algorithm.ALS, Algorithm.ITEMKNN, Algorithm.BPR])
def test_personal_models_learn_the_taste_groups(algorithm: Algorithm, matrices) -> None:  # type: ignore[no-untyped-def]
    """Users only ever buy in their own group, so most top picks must come from it."""
    users, items, confidence, history = matrices
    model = create_model(algorithm, params_for(algorithm))
    model.fit(confidence)
    rows = np.arange(confidence.shape[0])
    ids, _ = model.recommend(rows, confidence, history, 2)
    own_group = [int(users.ids[r][1]) for r in rows]
    picked_groups = np.array(
        [[int(items.ids[i].split("-")[1]) // ITEMS_PER_GROUP for i in row] for row in ids]
    )
    share = np.mean(picked_groups == np.array(own_group)[:, None])
    assert share > 0.8, share


def test_popularity_ranks_by_distinct_customers() -> None:
    confidence = sp.csr_matrix(np.array([[5, 1, 0], [0, 1, 0], [0, 1, 1]], dtype=np.float32))
    model = create_model(Algorithm.POPULAR)
    model.fit(confidence)
    np.testing.assert_allclose(model.arrays()["popularity"], [1 / 3, 1.0, 1 / 3])
    ids, _ = model.recommend(np.array([0]), confidence[[0]], sp.csr_matrix((1, 3)), 3)
    assert ids[0][0] == 1


@pytest.mark.parametrize("rows", [1, 7])
@pytest.mark.parametrize("seed", range(12))
def test_one_score_vector_is_ranked_for_every_row_as_a_full_sort_would(
    rows: int, seed: int
) -> None:
    """Each row: the n best items (ties by lower index) minus its exclusions and the filter.

    Eight distinct scores over 200 items: items tie at the cut of the ranked head, where
    argpartition kept an arbitrary few of them (seed 10 failed before the cut took all ties).
    """
    from engine.models import ranked_by_score

    generator = np.random.default_rng(seed)
    items, n = 200, 10
    scores = generator.integers(0, 8, items).astype(np.float32)
    exclude = sp.random(rows, items, density=0.1, format="csr", random_state=seed, dtype=np.float32)
    filtered = np.array(sorted(generator.choice(items, 30, replace=False)))
    ids, got = ranked_by_score(scores, exclude, n, filtered)
    assert ids.shape == got.shape == (rows, n)
    order = np.lexsort((np.arange(items), -scores))
    for row in range(rows):
        banned = set(exclude[row].indices) | set(filtered.tolist())
        expected = [int(i) for i in order if int(i) not in banned][:n]
        assert ids[row].tolist() == expected
        np.testing.assert_array_equal(got[row], scores[expected])


def test_a_ranking_with_fewer_items_left_than_asked_marks_the_rest_filtered() -> None:
    from engine.models import FILTERED, ranked_by_score

    scores = np.array([0.5, 0.9, 0.1, 0.7], dtype=np.float32)
    exclude = sp.csr_matrix(np.array([[0, 1, 0, 0], [0, 0, 0, 0]], dtype=np.float32))
    ids, got = ranked_by_score(scores, exclude, 9, np.array([3]))
    assert ids.shape == (2, 4)
    assert ids[0, :2].tolist() == [0, 2] and (got[0, 2:] <= FILTERED).all()
    assert ids[1, :3].tolist() == [1, 0, 2] and got[1, 3] <= FILTERED


@pytest.mark.parametrize("algorithm", [Algorithm.ALS, Algorithm.ITEMKNN, Algorithm.BPR])
def test_folding_in_a_new_customer_follows_their_items(algorithm: Algorithm, matrices) -> None:  # type: ignore[no-untyped-def]
    _, items, confidence, _ = matrices
    model = create_model(algorithm, params_for(algorithm))
    model.fit(confidence)
    group_two = [items.get("i-20"), items.get("i-21"), items.get("i-22")]
    row = sp.csr_matrix((np.ones(3, np.float32), ([0, 0, 0], group_two)), shape=(1, len(items)))
    ids, _ = model.fold_in(row, row, 4)
    picked = [int(items.ids[i].split("-")[1]) // ITEMS_PER_GROUP for i in ids[0]]
    assert picked.count(2) >= 3, picked


def test_item_knn_scores_a_large_batch_in_chunks_with_the_same_answer(
    matrices, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """A batch wider than one chunk of dense scores is ranked chunk by chunk, identically."""
    from engine.models import neighbours

    _, items, confidence, history = matrices
    model = create_model(Algorithm.ITEMKNN, ALS_PARAMS)
    model.fit(confidence)
    rows = np.arange(confidence.shape[0])
    whole = model.recommend(rows, confidence, history, 4)
    monkeypatch.setattr(neighbours, "DENSE_CELLS", 3 * len(items))  # three rows per chunk
    chunked = model.recommend(rows, confidence, history, 4)
    assert len(rows) > 3
    np.testing.assert_array_equal(whole[0], chunked[0])
    np.testing.assert_array_equal(whole[1], chunked[1])
    empty = model.fold_in(confidence[:0], history[:0], 4)
    assert empty[0].shape == (0, 4)


def test_a_pinned_serving_process_runs_every_thread_pool_at_one_thread() -> None:
    """``rapport serve`` workers pin once; top-k then stops setting limits per request."""
    from engine.models import base

    controller = base._threads()
    base.pin_single_threaded()
    try:
        assert {pool["num_threads"] for pool in controller.info()} == {1}
        pinned = base._PINNED[0]
        base.pin_single_threaded()  # a second call (a reload) keeps the one limit
        assert len(base._PINNED) == 1 and base._PINNED[0] is pinned
        assert isinstance(base.single_threaded_blas(), contextlib.nullcontext)
    finally:
        base._PINNED.pop().restore_original_limits()
    assert not isinstance(base.single_threaded_blas(), contextlib.nullcontext)


def test_implicit_bpr_keeps_the_item_bias_where_fold_in_sets_it(matrices) -> None:  # type: ignore[no-untyped-def]
    """Trained customers carry a constant 1 in the bias column; an upgrade moving it breaks this."""
    from engine.models.factorization import BIAS_COLUMN

    model = create_model(Algorithm.BPR, BPR_PARAMS)
    model.fit(matrices[2])
    user_factors = model.arrays()["user_factors"]
    assert user_factors.shape[1] == BPR_PARAMS.factors + 1
    np.testing.assert_array_equal(user_factors[:, BIAS_COLUMN], 1.0)


def test_bpr_fold_in_scores_taste_plus_item_bias_as_for_a_trained_customer() -> None:
    """The mean of the customer's items stands in for their taste, not for their bias weight.

    Averaged, the bias coordinate was the customer's items' mean bias (here -2): an unpopular
    item's buyer had every item's popularity counted backwards.
    """
    model = create_model(Algorithm.BPR, BPR_PARAMS)
    item_factors = np.array(
        [[1.0, 0.0, -2.0], [0.5, 0.0, -1.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]], dtype=np.float32
    )
    model.load_arrays({"user_factors": np.ones((1, 3), np.float32), "item_factors": item_factors})
    bought = sp.csr_matrix(([3.0], ([0], [0])), shape=(1, 4), dtype=np.float32)
    ids, scores = model.fold_in(bought, bought, 3)
    # taste (1, 0) with a trained customer's constant 1: item 2 scores 0 + 1, item 1 0.5 - 1
    assert ids[0].tolist() == [2, 3, 1]
    np.testing.assert_allclose(scores[0], [1.0, 0.0, -0.5])


@pytest.mark.parametrize("algorithm", [Algorithm.ALS, Algorithm.BPR], ids=["als", "bpr"])
def test_a_seed_reproduces_the_factors_bit_for_bit(algorithm: Algorithm, matrices) -> None:  # type: ignore[no-untyped-def]
    """``--seed`` promises the same model again; implicit's multi-threaded BPR broke it."""
    runs = []
    for seed in (1, 1, 1, 2):
        model = create_model(algorithm, replace(params_for(algorithm), seed=seed))
        model.fit(matrices[2])
        runs.append(model.arrays())
    for again in runs[1:3]:
        for name in ("user_factors", "item_factors"):
            np.testing.assert_array_equal(again[name], runs[0][name])
    assert not np.array_equal(runs[3]["item_factors"], runs[0]["item_factors"])  # seeded
