from __future__ import annotations

import math

import numpy as np
import pytest

from engine.evaluation import evaluate, random_split, ranking_metrics, temporal_split
from engine.interactions import Interactions
from engine.models import Algorithm
from engine.training import fit_recommender, fit_trending_baseline
from fatigue.errors import ValidationError

from .conftest import DAY, START, small_config


def test_metric_definitions_on_a_hand_worked_example() -> None:
    # Customer 1: relevant {a, b, c}; top-4 hits at ranks 1 and 3.
    # Customer 2: relevant {z}; no hit.
    result = ranking_metrics(
        [["a", "x", "b", "y"], ["q", "r", "s", "t"]],
        [frozenset("abc"), frozenset("z")],
        k=4,
        item_count=20,
    )
    assert result["precision"] == pytest.approx((2 / 4 + 0) / 2)
    assert result["recall"] == pytest.approx((2 / 3 + 0) / 2)
    dcg = 1 / math.log2(2) + 1 / math.log2(4)
    idcg = 1 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4)
    assert result["ndcg"] == pytest.approx((dcg / idcg + 0) / 2)
    assert result["map"] == pytest.approx(((1 / 1 + 2 / 3) / 3 + 0) / 2)
    assert result["coverage"] == pytest.approx(8 / 20)


def test_ideal_dcg_is_capped_at_k() -> None:
    result = ranking_metrics([["a", "b"]], [frozenset("abcdef")], k=2, item_count=6)
    assert result["ndcg"] == pytest.approx(1.0)


def test_temporal_split_keeps_only_new_pairs_of_known_customers() -> None:
    before, after = 1_700_000_100, 1_700_000_300  # the cutoff below must be plausible seconds
    data = Interactions.from_records(
        [
            ("u1", "a", before, "purchase", 1.0),
            ("u1", "b", before, "purchase", 1.0),
            ("u2", "a", before, "purchase", 1.0),
            ("u1", "a", after, "purchase", 1.0),  # repeat: not new
            ("u1", "b", after, "view", 1.0),  # repeat
            ("u2", "b", after, "purchase", 1.0),  # new
            ("u3", "a", after, "purchase", 1.0),  # unknown customer
            ("u2", "zz", after, "purchase", 1.0),  # unknown item
        ]
    )
    split = temporal_split(data, "1700000200")
    assert split.relevant == {"u2": frozenset({"b"})}
    assert len(split.train) == 3


def test_cutoff_outside_the_data_is_a_clear_error(interactions: Interactions) -> None:
    with pytest.raises(ValidationError, match="leaves no training or no test data"):
        temporal_split(interactions, "2001-01-01")
    with pytest.raises(ValidationError, match="is not a date"):
        temporal_split(interactions, "next tuesday")


def test_random_split_is_deterministic_and_disjoint(interactions: Interactions) -> None:
    one, two = random_split(interactions, 0.25, seed=5), random_split(interactions, 0.25, seed=5)
    assert one.relevant == two.relevant and one.relevant
    train_pairs = set(zip(one.train.user_ids.tolist(), one.train.item_ids.tolist(), strict=True))
    for user, items in one.relevant.items():
        assert not {(user, i) for i in items} & train_pairs


def test_a_personal_model_beats_popularity_on_taste_groups(interactions: Interactions) -> None:
    split = random_split(interactions, 0.3, seed=1)
    config = small_config()
    als = evaluate(fit_recommender(split.train, config), split, k=5)
    popular = evaluate(
        fit_recommender(split.train, config.__class__(algorithm=Algorithm.POPULAR)), split, k=5
    )
    assert als["ndcg"] > popular["ndcg"] * 1.5


def test_the_trending_baseline_is_the_cold_start_ranking_minus_each_customers_history(
    interactions: Interactions,
) -> None:
    """The second bar ``evaluate`` sets: what the engine offers someone it knows nothing about."""
    config = small_config()
    baseline = fit_trending_baseline(interactions, config)
    model = fit_recommender(interactions, config)
    np.testing.assert_array_equal(baseline.trending, model.trending)
    cold = model.recommend("someone-new", 5)
    assert {r.source.value for r in cold} == {"trending"}
    assert baseline.recommend_ids(["someone-new"], 5) == [[r.item_id for r in cold]]
    order = [str(baseline.items.ids[i]) for i in np.lexsort((np.arange(30), -model.trending))]
    users = ["u0-00", "u1-07", "u2-19"]
    for user, picks in zip(users, baseline.recommend_ids(users, 8), strict=True):
        had = set(interactions.item_ids[interactions.user_ids == user].tolist())
        assert picks == [item for item in order if item not in had][:8], user


def test_last_days_split(interactions: Interactions) -> None:
    from engine.evaluation import last_days_split

    split = last_days_split(interactions, 10)
    assert int(split.train.timestamps.max()) < START + 60 * DAY - 9 * DAY
