from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from engine.interactions import Interactions
from engine.matrix import IdMap, ValueScale, Weighting, build_matrix, history_matrix, take_rows

DAY = 86_400


def test_take_rows_matches_scipy_indexing() -> None:
    rng = np.random.default_rng(0)
    matrix = sp.random(50, 40, density=0.2, format="csr", random_state=1, dtype=np.float32)
    for rows in ([3], [0, 49, 3, 3], list(rng.integers(0, 50, 20)), []):
        expected = matrix[np.array(rows, dtype=np.int64)]
        got = take_rows(matrix, np.array(rows))
        assert got.shape == expected.shape
        np.testing.assert_array_equal(got.toarray(), expected.toarray())


def test_weighting_combines_event_weight_value_and_decay() -> None:
    data = Interactions.from_records(
        [
            ("u", "a", 100 * DAY, "purchase", 4.0),
            ("u", "b", 70 * DAY, "view", 1.0),
            ("u", "a", 40 * DAY, "purchase", 1.0),
        ]
    )
    weights = {"purchase": 1.0, "view": 0.5}
    flat = Weighting(weights).strengths(data, 100 * DAY)
    np.testing.assert_allclose(flat, [1.0, 0.5, 1.0])
    decayed = Weighting(weights, half_life_days=30).strengths(data, 100 * DAY)
    np.testing.assert_allclose(decayed, [1.0, 0.25, 0.25])
    logged = Weighting(weights, value_scale=ValueScale.LOG).strengths(data, 100 * DAY)
    np.testing.assert_allclose(logged, [1 + np.log(4), 0.5, 1.0])
    linear = Weighting(weights, value_scale=ValueScale.LINEAR).strengths(data, 100 * DAY)
    np.testing.assert_allclose(linear, [4.0, 0.5, 1.0])


def test_log_scaling_never_turns_a_small_value_into_a_dislike() -> None:
    values = [0.25, float(np.exp(-1)), 1.0, 5.0]
    data = Interactions.from_records(
        [("u", f"i{n}", 0, "purchase", v) for n, v in enumerate(values)]
    )
    logged = Weighting({"purchase": 1.0}, value_scale=ValueScale.LOG).strengths(data, 0)
    assert (logged > 0).all()  # 1 + log(0.25) was -0.39: a purchase read as negative feedback
    np.testing.assert_allclose(logged, [1.0, 1.0, 1.0, 1 + np.log(5)])


def test_build_matrix_sums_pairs_and_drops_unknown_ids() -> None:
    data = Interactions.from_records(
        [
            ("u1", "a", 0, "purchase", 1.0),
            ("u1", "a", 0, "purchase", 1.0),
            ("u2", "b", 0, "view", 1.0),
            ("ghost", "a", 0, "purchase", 1.0),
        ]
    )
    users, items = IdMap(["u1", "u2"]), IdMap(["a", "b"])
    matrix = build_matrix(data, users, items, Weighting({"purchase": 1.0, "view": 0.1}))
    np.testing.assert_allclose(matrix.toarray(), [[2.0, 0.0], [0.0, 0.1]], rtol=1e-6)
    bought = history_matrix(data, users, items, {"purchase"})
    np.testing.assert_array_equal(bought.toarray(), [[1, 0], [0, 0]])


def test_id_map() -> None:
    ids = IdMap.from_values(np.array(["b", "a", "b"], dtype=object))
    assert list(ids.ids) == ["a", "b"] and ids.get("b") == 1 and ids.get("z") is None
    assert ids.indices(["b", "z"]).tolist() == [1, -1] and "a" in ids and len(ids) == 2


@pytest.mark.parametrize("customers", [1, 3])
@pytest.mark.parametrize("history", [0, 5, 250])
def test_exclusion_holds_for_short_and_very_long_histories(history: int, customers: int) -> None:
    """Customers past HEAVY_HISTORY take implicit's own filtering path; both must exclude."""
    from engine.models.base import top_excluding

    rng = np.random.default_rng(history)
    items = rng.normal(size=(400, 8)).astype(np.float32)
    queries = rng.normal(size=(customers, 8)).astype(np.float32)
    rows = [rng.choice(400, size=history, replace=False) for _ in range(customers)]
    exclude = sp.csr_matrix(
        (
            np.ones(customers * history, np.float32),
            (np.repeat(np.arange(customers), history), np.concatenate(rows)),
        ),
        shape=(customers, 400),
    )
    ids, _ = top_excluding(items, queries, exclude, 10)
    for row in range(customers):
        assert not set(ids[row]) & set(rows[row])
        full = items @ queries[row]
        full[rows[row]] = -np.inf
        np.testing.assert_array_equal(ids[row], np.argsort(-full, kind="stable")[:10])
