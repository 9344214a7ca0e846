"""Engine benchmarks: quality on Online Retail, training and tuning time, serving latency, memory.

Run: .venv/bin/python bench/bench_engine.py [--skip-quality] [--retail PATH]

Quality and training use the UCI Online Retail file from ../shared/data (the temporal split of
its README: train before 2011-11-09, test on new pairs after). Serving uses a synthetic
50,000-item, 64-factor ALS model so the latency target is measured at the size it names.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
import tracemalloc
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from tables import table

from engine.artifact import load_recommender, save_recommender
from engine.evaluation import evaluate, temporal_split
from engine.interactions import load_interactions
from engine.matrix import IdMap, Weighting
from engine.models import Algorithm, ALSModel, ModelParams
from engine.serving import Recommender
from engine.training import TrainingConfig, fit_recommender, fit_trending_baseline, train
from engine.tuning import tune

DEFAULT_RETAIL = Path(__file__).resolve().parents[2] / "shared" / "data" / "online_retail.csv.gz"
CUTOFF = "2011-11-09"


def canonical_retail(source: Path, workdir: Path) -> Path:
    """Convert the raw UCI file once into canonical interactions."""
    from engine.datasets import load_online_retail, write_canonical

    interactions, _ = write_canonical(load_online_retail(source), workdir)
    return interactions


def quality_and_training(path: Path) -> None:
    """nDCG on the temporal split (baselines, default, tuned) and training/tuning times."""
    data = load_interactions(path)
    split = temporal_split(data, CUTOFF)
    base = TrainingConfig()
    rows: list[list[object]] = []
    results = {}
    for name, fit, config in (
        ("popularity", fit_recommender, replace(base, algorithm=Algorithm.POPULAR)),
        ("trending (14 days)", fit_trending_baseline, base),
        ("item-kNN (BM25)", fit_recommender, replace(base, algorithm=Algorithm.ITEMKNN)),
        ("ALS, defaults", fit_recommender, base),
    ):
        started = time.perf_counter()
        model = fit(split.train, config)
        fit_seconds = time.perf_counter() - started
        results[name] = evaluate(model, split, 10, len(model.items))
        rows.append(
            [
                name,
                f"{results[name]['ndcg']:.4f}",
                f"{results[name]['precision']:.4f}",
                f"{results[name]['recall']:.4f}",
                f"{results[name]['map']:.4f}",
                f"{results[name]['coverage']:.3f}",
                f"{fit_seconds:.2f}",
            ]
        )
    started = time.perf_counter()
    tuned = tune(split.train, base, trials=30, seed=42)
    tune_seconds = time.perf_counter() - started
    model = fit_recommender(split.train, tuned.best)
    results["ALS, --tune"] = evaluate(model, split, 10, len(model.items))
    r = results["ALS, --tune"]
    rows.append(
        [
            "ALS, --tune",
            f"{r['ndcg']:.4f}",
            f"{r['precision']:.4f}",
            f"{r['recall']:.4f}",
            f"{r['map']:.4f}",
            f"{r['coverage']:.3f}",
            f"{tune_seconds:.1f} (tuning)",
        ]
    )
    for baseline in ("popularity", "trending (14 days)"):
        for row in rows:
            row.append(f"{float(row[1]) / results[baseline]['ndcg']:.2f}x")
    columns = ["model", "nDCG@10", "P@10", "R@10", "MAP@10", "coverage", "seconds"]
    table(
        f"Quality: Online Retail, train < {CUTOFF}, {len(split.relevant):,} test customers, k=10",
        [*columns, "vs popularity", "vs trending"],
        rows,
    )

    timings = []
    for label, config in (("ALS fit only (all purchases)", base),):
        started = time.perf_counter()
        fit_recommender(data, config)
        timings.append([label, len(data), f"{time.perf_counter() - started:.2f}"])
    started = time.perf_counter()
    train(data, base)
    timings.append(
        [
            "train = calibration + fit (all purchases)",
            len(data),
            f"{time.perf_counter() - started:.2f}",
        ]
    )
    started = time.perf_counter()
    load_interactions(path)
    timings.append(["load canonical CSV.gz", len(data), f"{time.perf_counter() - started:.2f}"])
    timings.append(["tune, 30 trials (training part)", len(split.train), f"{tune_seconds:.1f}"])
    table(
        "Training time (target: <= 5 s without tuning, tuning <= 180 s)",
        ["step", "interactions", "seconds"],
        timings,
    )


def synthetic_recommender(items: int, users: int, factors: int, seed: int = 0) -> Recommender:
    """An ALS model with random factors at the size the latency target names."""
    rng = np.random.default_rng(seed)
    model = ALSModel(ModelParams(factors=factors))
    model.load_arrays(
        {
            "user_factors": rng.normal(size=(users, factors)).astype(np.float32),
            "item_factors": rng.normal(size=(items, factors)).astype(np.float32),
        }
    )
    per_user = 20
    rows = np.repeat(np.arange(users), per_user)
    cols = rng.integers(0, items, size=users * per_user)
    history = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(users, items))
    history.sum_duplicates()
    history.data[:] = 1.0
    popular = rng.random(items).astype(np.float32)
    return Recommender(
        model=model,
        users=IdMap([f"u{i}" for i in range(users)]),
        items=IdMap([f"i{i}" for i in range(items)]),
        user_items=history,
        excluded=history,
        history=history,
        popular=popular,
        trending=popular,
        calibrators={},
        weighting=Weighting(),
        meta=replace(TrainingConfig(), params=model.params).as_dict(),
    )


def serving(items: int = 50_000, users: int = 100_000, factors: int = 64) -> None:
    """Single-customer latency percentiles, batch throughput, and serving memory."""
    recommender = synthetic_recommender(items, users, factors)
    rng = np.random.default_rng(1)
    sample = [f"u{i}" for i in rng.integers(0, users, size=3_000)]
    for user in sample[:200]:  # warm caches and lazy imports
        recommender.recommend(user, 10)
    latencies = []
    for user in sample:
        started = time.perf_counter()
        recommender.recommend(user, 10)
        latencies.append(time.perf_counter() - started)
    ms = np.array(latencies) * 1000
    batch_users = [f"u{i}" for i in rng.integers(0, users, size=10_000)]
    started = time.perf_counter()
    recommender.recommend_many(batch_users, 10)
    batch_seconds = time.perf_counter() - started
    loop_started = time.perf_counter()
    for user in batch_users[:1_000]:
        recommender.recommend(user, 10)
    loop_rate = 1_000 / (time.perf_counter() - loop_started)
    table(
        f"Serving: {items:,} items, {users:,} customers, {factors} factors, n=10 "
        "(target: p99 < 1 ms; 10,000 in a batch < 1 s)",
        ["measure", "value"],
        [
            ["p50 one customer (ms)", f"{np.percentile(ms, 50):.3f}"],
            ["p90 one customer (ms)", f"{np.percentile(ms, 90):.3f}"],
            ["p99 one customer (ms)", f"{np.percentile(ms, 99):.3f}"],
            ["batch of 10,000 customers (s)", f"{batch_seconds:.3f}"],
            ["batch rate vs one-by-one loop", f"{10_000 / batch_seconds / loop_rate:.1f}x"],
        ],
    )
    memory(recommender)


def memory(recommender: Recommender) -> None:
    """Peak memory while loading the serving model from disk, and its resident arrays."""
    with tempfile.TemporaryDirectory() as directory:
        save_recommender(recommender, directory)
        tracemalloc.start()
        loaded = load_recommender(Path(directory))
        current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    arrays = sum(a.nbytes for a in loaded.model.arrays().values())
    matrices = sum(
        m.data.nbytes + m.indices.nbytes + m.indptr.nbytes
        for m in (loaded.user_items, loaded.excluded, loaded.history)
    )
    table(
        "Serving model memory (50k items, 100k customers, 64 factors)",
        ["measure", "MiB"],
        [
            ["factors", f"{arrays / 2**20:.1f}"],
            ["history matrices", f"{matrices / 2**20:.1f}"],
            ["held after load (tracemalloc)", f"{current / 2**20:.1f}"],
            ["peak during load (tracemalloc)", f"{peak / 2**20:.1f}"],
        ],
    )


def main() -> None:
    """Run every engine benchmark and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--retail", type=Path, default=DEFAULT_RETAIL)
    parser.add_argument("--skip-quality", action="store_true")
    args = parser.parse_args()
    print(
        f"# Engine benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, "
        f"{platform.processor() or platform.machine()}, Python {platform.python_version()}"
    )
    if not args.skip_quality:
        if args.retail.is_file():
            with tempfile.TemporaryDirectory() as workdir:
                quality_and_training(canonical_retail(args.retail, Path(workdir)))
        else:
            print(f"\n(quality skipped: {args.retail} not found)")
    serving()


if __name__ == "__main__":
    main()
