"""Training: interactions in, a serving ``Recommender`` out (calibrated on held-out data)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np

from engine.calibration import PlattCalibrator, fit_platt
from engine.catalog import Catalog
from engine.evaluation import new_pairs
from engine.interactions import Interactions
from engine.matrix import (
    SECONDS_PER_DAY,
    Cells,
    IdMap,
    Weighting,
    build_matrix,
    history_matrix,
)
from engine.models import FILTERED, Algorithm, ModelParams, create_model, popularity_share
from engine.serving import Recommender, Source
from fatigue.errors import ValidationError

Progress = Callable[[str], None]


@dataclass(frozen=True)
class TrainingConfig:
    """Everything that decides what a training run produces."""

    algorithm: Algorithm = Algorithm.ALS
    params: ModelParams = field(default_factory=ModelParams)
    weighting: Weighting = field(default_factory=lambda: Weighting(half_life_days=30.0))
    exclude_events: frozenset[str] = frozenset({"purchase"})
    trending_days: float = 14.0
    calibration_days: float = 30.0  # length of the held-back slice the calibration learns from
    calibration_candidates: int = 50
    calibration_customers: int = 20_000  # most customers scored for the curves (a sample past it)

    def as_dict(self) -> dict[str, Any]:
        """Return a JSON-ready description (for meta.json)."""
        return {
            "algorithm": self.algorithm.value,
            "params": self.params.as_dict(),
            "weighting": self.weighting.as_dict(),
            "exclude_events": sorted(self.exclude_events),
            "trending_days": self.trending_days,
            "calibration_days": self.calibration_days,
        }


def fit_recommender(
    interactions: Interactions,
    config: TrainingConfig,
    catalog: Catalog | None = None,
    show_progress: bool = False,
) -> Recommender:
    """Fit the model on every interaction; no calibration (see ``train``)."""
    if not len(interactions):
        raise ValidationError("no interactions to train on")
    users = IdMap.from_values(interactions.user_ids)
    items = _item_map(interactions, catalog)
    reference = int(interactions.timestamps.max())
    cells = Cells.of(interactions, users, items)
    user_items = build_matrix(interactions, users, items, config.weighting, reference, cells)
    if not user_items.nnz:
        raise ValidationError(
            "nothing to learn from: every interaction weighs 0 under the event weights and the "
            f"recency half-life, counted back from the newest one ({_when(reference)})"
        )
    model = create_model(config.algorithm, config.params)
    model.fit(user_items, show_progress=show_progress)
    return Recommender(
        model=model,
        users=users,
        items=items,
        user_items=user_items,
        excluded=history_matrix(interactions, users, items, set(config.exclude_events), cells),
        history=history_matrix(interactions, users, items, cells=cells),
        popular=popularity_share(user_items),
        trending=_trending(interactions, items, config, reference),
        calibrators={},
        weighting=config.weighting,
        catalog=catalog,
    )


def fit_popularity_baseline(
    interactions: Interactions, config: TrainingConfig, show_progress: bool = False
) -> Recommender:
    """Fit the popularity baseline: everyone gets the items most customers ever touched."""
    popular = replace(config, algorithm=Algorithm.POPULAR)
    return fit_recommender(interactions, popular, show_progress=show_progress)


def fit_trending_baseline(
    interactions: Interactions, config: TrainingConfig, show_progress: bool = False
) -> Recommender:
    """Fit the baseline that ranks by recency: the cold start's trending vector, for everyone.

    All-time popularity is a weak bar on seasonal retail data; what the engine itself offers a
    customer it knows nothing about (``trending_days`` of recency-weighted interactions) is the
    bar a model must clear to be worth its factors. It serves as the popularity model does,
    minus each customer's history, with the trending vector in place of the popularity one.
    """
    baseline = fit_popularity_baseline(interactions, config, show_progress)
    baseline.model.load_arrays({"popularity": baseline.trending})
    return baseline


def train(
    interactions: Interactions,
    config: TrainingConfig,
    catalog: Catalog | None = None,
    show_progress: bool = False,
    metrics: dict[str, Any] | None = None,
) -> Recommender:
    """Calibrate on a held-back slice, fit on everything, and describe the run in ``meta``."""
    started = time.perf_counter()
    calibrators, calibration_info = calibrate(interactions, config, catalog)
    recommender = fit_recommender(interactions, config, catalog, show_progress)
    recommender.calibrators = calibrators
    first, last = interactions.window()
    recommender.meta = {
        **config.as_dict(),
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "training_seconds": round(time.perf_counter() - started, 3),
        "data_window": {
            "start": first.isoformat(),
            "end": last.isoformat(),
            "interactions": len(interactions),
            "users": len(recommender.users),
            "items": len(recommender.items),
        },
        "calibration_fit": calibration_info,
        "metrics": metrics or {},
    }
    return recommender


def calibrate(
    interactions: Interactions, config: TrainingConfig, catalog: Catalog | None = None
) -> tuple[dict[Source, PlattCalibrator], dict[str, Any]]:
    """Fit one Platt curve per source on the newest ``calibration_days`` of history."""
    cutoff = int(interactions.timestamps.max() - config.calibration_days * SECONDS_PER_DAY)
    before = interactions.select(interactions.timestamps < cutoff)
    after = interactions.select(interactions.timestamps >= cutoff)
    if len(before) == 0 or len(after) == 0:
        return {}, {"skipped": "history too short to hold back a calibration slice"}
    probe = fit_recommender(before, config, catalog)
    # The probe offers what serving offers (only "already had" items are excluded, so a
    # viewed item comes back), and such an item bought in the slice is a hit.
    had = before.select(np.isin(before.events, sorted(config.exclude_events)))
    truth = new_pairs(before, after, had)
    if not truth:
        return {}, {"skipped": "no held-back customer was known before the slice"}
    # Every customer known before the slice, not only those who came back during it: relevance
    # is the chance of an interaction within the slice's length for whoever is asked about, and
    # most known customers never return. Fitting on returners alone read ~2.5x too high.
    users = _calibration_customers(probe, config)
    k = config.calibration_candidates
    curves: dict[Source, PlattCalibrator] = {}
    personal = probe.recommend_many(users, k)
    pairs = {u: [(r.item_id, r.score) for r in recs] for u, recs in personal.items()}
    curves[Source.CF] = _fit_source(pairs, truth)
    curves[Source.SIMILAR] = curves[Source.CF]
    for source, vector in ((Source.POPULAR, probe.popular), (Source.TRENDING, probe.trending)):
        ranked = _global_ranking(probe, users, vector, k)
        curves[source] = _fit_source(ranked, truth)
    info = {
        "cutoff": datetime.fromtimestamp(cutoff, UTC).isoformat(),
        "customers": len(users),
        "returning_customers": sum(user in truth for user in users),
        **{s.value: c.as_dict() for s, c in curves.items()},
    }
    return curves, info


def _fit_source(
    ranked: dict[str, list[tuple[str, float]]], truth: dict[str, frozenset[str]]
) -> PlattCalibrator:
    scores, labels = [], []
    for user, recs in ranked.items():
        for item, score in recs:
            scores.append(score)
            labels.append(item in truth.get(user, ()))
    return fit_platt(np.array(scores), np.array(labels, dtype=float))


def _calibration_customers(probe: Recommender, config: TrainingConfig) -> list[str]:
    """Every known customer, or a seeded sample of ``calibration_customers`` of them."""
    users = [str(user) for user in probe.users.ids]
    limit = config.calibration_customers
    if len(users) <= limit:
        return users
    chosen = np.random.default_rng(config.params.seed).choice(len(users), limit, replace=False)
    return [users[i] for i in sorted(chosen)]


def _global_ranking(
    probe: Recommender, users: list[str], vector: np.ndarray, k: int
) -> dict[str, list[tuple[str, float]]]:
    from engine.models import ranked_by_score

    rows = probe.users.indices(users)
    ids, scores = ranked_by_score(vector, probe.excluded[rows], k)
    return {
        user: [
            (str(probe.items.ids[i]), float(s))
            for i, s in zip(ids[n], scores[n], strict=True)
            if i >= 0 and s > FILTERED
        ]
        for n, user in enumerate(users)
    }


def _item_map(interactions: Interactions, catalog: Catalog | None) -> IdMap:
    ids = np.unique(interactions.item_ids.astype(str))
    if catalog is not None:  # items nobody touched yet: a recent view of one can still fold in
        ids = np.union1d(ids, np.array(list(catalog), dtype=str))
    return IdMap(ids)


def _trending(
    interactions: Interactions, items: IdMap, config: TrainingConfig, reference: int
) -> np.ndarray:
    """Recency-weighted interaction counts over the last ``trending_days``."""
    recent = interactions.select(
        interactions.timestamps >= reference - config.trending_days * SECONDS_PER_DAY
    )
    weighting = replace(config.weighting, half_life_days=config.trending_days / 2)
    strengths = weighting.strengths(recent, reference)
    cols = items.indices(recent.item_ids)
    keep = cols >= 0
    totals = np.bincount(cols[keep], weights=strengths[keep], minlength=len(items))
    return (totals / max(totals.sum(), 1e-12)).astype(np.float32)


def _when(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")
