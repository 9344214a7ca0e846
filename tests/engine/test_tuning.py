from __future__ import annotations

from engine.interactions import Interactions
from engine.models import Algorithm
from engine.tuning import tune

from .conftest import DAY, small_config


def test_tuning_keeps_the_best_validation_score_and_tries_the_default(
    interactions: Interactions,
) -> None:
    base = small_config()
    result = tune(interactions, base, trials=5, validation_days=15, seed=3)
    scores = [t.score for t in result.trials]
    assert len(result.trials) == 5 and scores == sorted(scores, reverse=True)
    assert result.best == result.trials[0].config
    assert base in [t.config for t in result.trials]
    assert result.as_dict()["best_ndcg"] == round(scores[0], 5)


def test_tuning_searches_weights_and_decay(interactions: Interactions) -> None:
    result = tune(interactions, small_config(), trials=8, validation_days=15, seed=4)
    configs = [t.config for t in result.trials]
    assert len({c.params.factors for c in configs}) > 1
    assert len({c.weighting.half_life_days for c in configs}) > 1
    assert len({tuple(sorted(c.weighting.event_weights.items())) for c in configs}) > 1


def test_tuning_only_sees_the_data_it_is_given(interactions: Interactions) -> None:
    """evaluate passes only the training part; tuning then cuts validation from inside it."""
    from engine.tuning import validation_splits

    end = int(interactions.timestamps.max())
    early = interactions.select(interactions.timestamps < end - 20 * DAY)
    early_end = int(early.timestamps.max())
    for split in validation_splits(early, 10, folds=2):
        assert int(split.train.timestamps.max()) < early_end - 9 * DAY
        later = interactions.select(interactions.timestamps >= early_end + 1)
        later_pairs = set(zip(later.user_ids.tolist(), later.item_ids.tolist(), strict=True))
        early_pairs = set(zip(early.user_ids.tolist(), early.item_ids.tolist(), strict=True))
        validated = {(user, item) for user, items in split.relevant.items() for item in items}
        assert validated <= early_pairs  # every validation answer comes from the given data
        assert not validated & (later_pairs - early_pairs)


def test_popularity_has_nothing_to_tune(interactions: Interactions) -> None:
    result = tune(
        interactions, small_config(algorithm=Algorithm.POPULAR), trials=10, validation_days=15
    )
    assert len(result.trials) == 1


def test_two_folds_validate_on_consecutive_windows(interactions: Interactions) -> None:
    from engine.tuning import validation_splits

    newest, older = validation_splits(interactions, 10, folds=2)
    assert int(older.train.timestamps.max()) < int(newest.train.timestamps.max())
    result = tune(interactions, small_config(), trials=2, validation_days=10, folds=2)
    assert result.validation.startswith("mean of 2 fold(s)")


def test_too_little_history_to_validate_is_a_clear_error() -> None:
    import pytest

    from fatigue.errors import ValidationError

    one_day = Interactions.from_records([("u", "a", 0, "purchase", 1.0)])
    with pytest.raises(ValidationError):
        tune(one_day, small_config(), trials=1, validation_days=30)
