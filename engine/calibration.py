"""Calibrated relevance: turning a model's raw score into a probability of engagement.

Raw scores (a factor dot product, a popularity share) have no common scale, so a threshold on
them means nothing. Rapport fits Platt scaling, a logistic curve ``p = 1 / (1 + exp(-(a * s + b)))``
per recommendation source, on held-out data: at training time the newest slice of the history is
held back, a model of the same kind is trained on the rest, its top candidates for every
held-out customer are scored, and each is labelled 1 if the customer interacted with that item
in the held-back slice. The fitted curve then estimates "the probability that this customer
engages with this item within a period as long as the held-back slice". Platt scaling is
monotone (the slope is constrained to be non-negative), so it never changes the ranking, only
what a score means.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit


@dataclass(frozen=True)
class PlattCalibrator:
    """A fitted logistic curve from raw score to probability."""

    slope: float
    intercept: float
    samples: int = 0
    positives: int = 0

    def __call__(self, scores: np.ndarray) -> np.ndarray:
        """Map raw scores to probabilities in [0, 1]."""
        z = self.slope * np.asarray(scores, dtype=np.float64) + self.intercept
        return 1.0 / (1.0 + np.exp(-np.clip(z, -500, 500)))

    def as_dict(self) -> dict[str, float | int]:
        """Return the curve as JSON-ready numbers."""
        return {
            "slope": self.slope,
            "intercept": self.intercept,
            "samples": self.samples,
            "positives": self.positives,
        }

    @classmethod
    def from_dict(cls, data: dict[str, float | int]) -> PlattCalibrator:
        """Rebuild a curve saved with ``as_dict``."""
        return cls(
            float(data["slope"]),
            float(data["intercept"]),
            int(data.get("samples", 0)),
            int(data.get("positives", 0)),
        )


def fit_platt(scores: np.ndarray, labels: np.ndarray, iterations: int = 50) -> PlattCalibrator:
    """Fit ``slope`` and ``intercept`` by Newton's method on the log loss.

    Labels are smoothed as in Platt (1999), ``(N+ + 1) / (N+ + 2)`` and ``1 / (N- + 2)``, so a
    perfectly separable sample does not send the slope to infinity.
    """
    x = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    positives, negatives = float(y.sum()), float(len(y) - y.sum())
    if len(x) == 0 or positives == 0:
        return PlattCalibrator(0.0, -10.0, len(x), int(positives))
    target = np.where(y > 0, (positives + 1) / (positives + 2), 1 / (negatives + 2))
    # Standardise for a well-conditioned Hessian, then map the result back.
    mean, std = x.mean(), x.std() or 1.0
    z = (x - mean) / std
    a, b = 0.0, float(np.log((positives + 1) / (negatives + 1)))
    loss = _log_loss(a, b, z, target)
    for _ in range(iterations):
        p = expit(a * z + b)
        w = np.maximum(p * (1 - p), 1e-12)
        gradient = np.array([np.dot(p - target, z), np.sum(p - target)])
        hessian = np.array([[np.dot(w, z * z), np.dot(w, z)], [np.dot(w, z), w.sum()]])
        step = np.linalg.solve(hessian + 1e-9 * np.eye(2), gradient)
        # Heavy-tailed scores (item-kNN's reach the thousands) make full Newton steps overshoot
        # and diverge: halve the step until the loss falls.
        scale = 1.0
        while scale > 1e-10:
            tried = _log_loss(a - scale * step[0], b - scale * step[1], z, target)
            if tried <= loss:
                break
            scale /= 2
        else:
            break  # no step lowers the loss: at the minimum, to rounding
        a, b, loss = a - scale * step[0], b - scale * step[1], tried
        if np.abs(scale * step).max() < 1e-9:
            break
    if a < 0:
        # A higher score must never mean a lower probability: relevance keeps the model's order.
        # When the data say otherwise the score carries no usable signal, so fall back to the
        # base rate (slope 0).
        a, b = 0.0, float(np.log((positives + 1) / (negatives + 1)))
    return PlattCalibrator(float(a / std), float(b - a * mean / std), len(x), int(positives))


def _log_loss(a: float, b: float, z: np.ndarray, target: np.ndarray) -> float:
    margin = a * z + b  # log(1 + e^-m) and log(1 + e^m), without overflow
    return float(np.sum(target * np.logaddexp(0, -margin) + (1 - target) * np.logaddexp(0, margin)))


def brier_score(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Mean squared error of probabilities against 0/1 outcomes (lower is better)."""
    p, y = np.asarray(probabilities, dtype=np.float64), np.asarray(labels, dtype=np.float64)
    return float(np.mean((p - y) ** 2)) if len(p) else 0.0
