from __future__ import annotations

import numpy as np

from engine.calibration import PlattCalibrator, brier_score, fit_platt


def test_recovers_a_known_logistic_curve() -> None:
    rng = np.random.default_rng(0)
    scores = rng.normal(0.0, 1.0, 40_000)
    truth = 1 / (1 + np.exp(-(2.0 * scores - 3.0)))
    labels = rng.random(len(scores)) < truth
    curve = fit_platt(scores, labels)
    assert abs(curve.slope - 2.0) < 0.15 and abs(curve.intercept + 3.0) < 0.15
    assert brier_score(curve(scores), labels) < brier_score(
        np.full(len(labels), labels.mean()), labels
    )


def test_output_is_a_probability_and_keeps_the_order() -> None:
    curve = PlattCalibrator(5.0, -1.0)
    values = curve(np.array([-1e6, -1.0, 0.0, 1.0, 1e6]))
    assert 0.0 <= values[0] < 1e-100 and values[-1] == 1.0
    assert np.all(np.diff(values) >= 0)


def test_a_score_that_predicts_backwards_falls_back_to_the_base_rate() -> None:
    scores = np.linspace(0, 1, 1000)
    labels = scores < 0.1  # higher score, less engagement
    curve = fit_platt(scores, labels)
    assert curve.slope == 0.0
    assert abs(curve(np.array([0.5]))[0] - labels.mean()) < 0.01


def test_no_positives_means_near_zero_relevance() -> None:
    curve = fit_platt(np.arange(10.0), np.zeros(10))
    assert curve(np.array([100.0]))[0] < 1e-4


def test_round_trips_through_json_numbers() -> None:
    curve = PlattCalibrator(1.5, -2.0, 10, 3)
    assert PlattCalibrator.from_dict(curve.as_dict()) == curve


def test_heavy_tailed_scores_still_fit_the_observed_rate() -> None:
    """Item-kNN scores reach the thousands: full Newton steps diverged to relevance ~0 for all."""
    rng = np.random.default_rng(0)
    scores = rng.lognormal(0.0, 3.0, 20_000)
    labels = (rng.random(20_000) < 0.02 + 0.05 * (scores > np.median(scores))).astype(float)
    curve = fit_platt(scores, labels)
    assert curve.slope >= 0
    assert abs(curve(scores).mean() - labels.mean()) < 0.002  # a fit's mean is the base rate
    assert curve(np.array([np.median(scores) * 10]))[0] > 0.01
