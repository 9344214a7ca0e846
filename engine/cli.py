"""``rapport train``, ``rapport evaluate`` and ``rapport recommend``.

Heavy imports (implicit, scipy) happen inside the commands so ``rapport --help`` stays instant.
"""

from __future__ import annotations

import csv
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import click

from fatigue.errors import RapportError

if TYPE_CHECKING:
    from engine.catalog import Catalog
    from engine.interactions import Interactions
    from engine.training import TrainingConfig

DEFAULT_MODEL_DIR = "var/model"
ALGORITHMS = ("als", "bpr", "itemknn", "popular")
RECOMMENDATION_COLUMNS = ("user_id", "item_id", "rank", "score", "relevance", "source")


def _tty() -> bool:
    return sys.stderr.isatty()


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn Rapport's own errors into a clean message and exit status 1, never a traceback."""
    try:
        yield
    except RapportError as exc:
        problems = getattr(exc, "problems", None)
        lines = [str(p) for p in problems] if problems else [str(exc)]
        for line in lines:
            click.echo(f"error: {line}", err=True)
        raise SystemExit(1) from None


def _data_options(function: Any) -> Any:
    options = [
        click.option(
            "--interactions",
            "interactions_path",
            required=True,
            type=click.Path(dir_okay=False),
            help="Interactions file (CSV, CSV.gz, JSONL).",
        ),
        click.option(
            "--columns",
            default=None,
            help="Map canonical columns to your headers: user_id=CustomerID,item_id=SKU.",
        ),
        click.option(
            "--default-event",
            default=None,
            help="Event type for files without an event column (e.g. purchase).",
        ),
        click.option(
            "--event-weight",
            "event_weights",
            multiple=True,
            metavar="EVENT=W",
            help="Weight of an event type (repeatable); adds new event types too.",
        ),
        click.option(
            "--half-life",
            "half_life",
            type=float,
            default=30.0,
            show_default=True,
            help="Recency decay half-life in days; 0 turns decay off.",
        ),
        click.option(
            "--value-scale",
            type=click.Choice(("ignore", "log", "linear")),
            default="ignore",
            show_default=True,
            help="How the value column (quantity) scales an interaction.",
        ),
        click.option(
            "--algorithm", type=click.Choice(ALGORITHMS), default="als", show_default=True
        ),
        click.option("--seed", type=int, default=42, show_default=True),
        click.option("--tune", is_flag=True, help="Search hyper-parameters on a validation split."),
        click.option(
            "--trials",
            type=int,
            default=30,
            show_default=True,
            help="Configurations tried by --tune.",
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def _config(
    algorithm: str, seed: int, event_weights: tuple[str, ...], half_life: float, value_scale: str
) -> TrainingConfig:
    from engine.interactions import DEFAULT_EVENT_WEIGHTS
    from engine.matrix import ValueScale, Weighting
    from engine.models import Algorithm, default_params
    from engine.training import TrainingConfig

    weights = dict(DEFAULT_EVENT_WEIGHTS)
    for spec in event_weights:
        event, sep, value = spec.partition("=")
        try:
            weights[event.strip()] = float(value)
        except ValueError:
            raise click.BadParameter(
                f"{spec!r}: expected EVENT=NUMBER", param_hint="--event-weight"
            ) from None
        if not sep or not event.strip():
            raise click.BadParameter(
                f"{spec!r}: expected EVENT=NUMBER", param_hint="--event-weight"
            )
    base = TrainingConfig(algorithm=Algorithm(algorithm), params=default_params(algorithm, seed))
    return replace(
        base,
        weighting=Weighting(weights, half_life or None, ValueScale(value_scale)),
    )


def _load(
    path: str, columns: str | None, default_event: str | None, config: TrainingConfig
) -> Interactions:
    from engine.interactions import load_interactions, parse_columns

    started = time.perf_counter()
    data = load_interactions(
        path, parse_columns(columns), config.weighting.event_weights, default_event
    )
    click.echo(
        f"loaded {len(data):,} interactions from {path} in {time.perf_counter() - started:.1f}s",
        err=True,
    )
    return data


def _tuned(
    data: Interactions, config: TrainingConfig, trials: int
) -> tuple[TrainingConfig, dict[str, Any]]:
    from engine.tuning import tune

    started = time.perf_counter()
    result = tune(data, config, trials=trials, seed=config.params.seed, show_progress=_tty())
    best = result.trials[0]
    click.echo(
        f"tuned {len(result.trials)} configurations in {time.perf_counter() - started:.0f}s "
        f"({result.validation}); best validation nDCG@10 {best.score:.4f}",
        err=True,
    )
    return result.best, result.as_dict()


@click.command()
@_data_options
@click.option(
    "--catalog",
    "catalog_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Catalog file; copied into the model so serving can filter and render.",
)
@click.option(
    "--model-dir",
    default=lambda: os.environ.get("RAPPORT_MODEL_DIR", DEFAULT_MODEL_DIR),
    show_default="$RAPPORT_MODEL_DIR or var/model",
    type=click.Path(file_okay=False),
)
def train(
    interactions_path: str,
    columns: str | None,
    default_event: str | None,
    event_weights: tuple[str, ...],
    half_life: float,
    value_scale: str,
    algorithm: str,
    seed: int,
    tune: bool,
    trials: int,
    catalog_path: str | None,
    model_dir: str,
) -> None:
    """Train a model and publish it as the new version in MODEL_DIR."""
    from engine.artifact import save_recommender
    from engine.catalog import load_catalog
    from engine.training import train as run_training

    with user_errors():
        config = _config(algorithm, seed, event_weights, half_life, value_scale)
        data = _load(interactions_path, columns, default_event, config)
        catalog: Catalog | None = load_catalog(catalog_path) if catalog_path else None
        tuning: dict[str, Any] = {}
        if tune:
            config, tuning = _tuned(data, config, trials)
        recommender = run_training(
            data,
            config,
            catalog,
            show_progress=_tty(),
            metrics={"tuning": tuning} if tuning else None,
        )
        version = save_recommender(recommender, model_dir, catalog_path)
    meta = recommender.meta
    window = meta["data_window"]
    click.echo(
        f"published {model_dir}/versions/{version} ({meta['algorithm']}, "
        f"{window['users']:,} customers x {window['items']:,} items, "
        f"trained in {meta['training_seconds']:.1f}s)"
    )


@click.command()
@_data_options
@click.option(
    "--test",
    "test_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Separate test file (same format).",
)
@click.option("--cutoff", default=None, help="Train before this date, test from it on.")
@click.option("--last-days", type=float, default=None, help="Test on the last N days.")
@click.option(
    "--random",
    "random_fraction",
    type=float,
    default=None,
    help="Random per-customer split: hold out this fraction of each customer's items.",
)
@click.option("--k", type=int, default=10, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def evaluate(
    interactions_path: str,
    columns: str | None,
    default_event: str | None,
    event_weights: tuple[str, ...],
    half_life: float,
    value_scale: str,
    algorithm: str,
    seed: int,
    tune: bool,
    trials: int,
    test_path: str | None,
    cutoff: str | None,
    last_days: float | None,
    random_fraction: float | None,
    k: int,
    as_json: bool,
) -> None:
    """Evaluate a model against the popularity baseline on a held-out split."""
    from engine.evaluation import evaluate as score
    from engine.models import Algorithm
    from engine.training import fit_recommender

    chosen = [o for o in (test_path, cutoff, last_days, random_fraction) if o is not None]
    if len(chosen) != 1:
        raise click.UsageError("give exactly one of --test, --cutoff, --last-days, --random")
    with user_errors():
        config = _config(algorithm, seed, event_weights, half_life, value_scale)
        data = _load(interactions_path, columns, default_event, config)
        split = _split(
            data, test_path, cutoff, last_days, random_fraction, columns, default_event, config
        )
        tuning: dict[str, Any] = {}
        if tune:
            config, tuning = _tuned(split.train, config, trials)
        rows = []
        for name, cfg in (
            (config.algorithm.value, config),
            ("popular (baseline)", replace(config, algorithm=Algorithm.POPULAR)),
        ):
            started = time.perf_counter()
            model = fit_recommender(split.train, cfg, show_progress=_tty())
            metrics = score(model, split, k, len(model.items))
            rows.append({"model": name, **metrics, "seconds": time.perf_counter() - started})
    _print_evaluation(rows, split.description, len(split.relevant), k, as_json, tuning)


def _split(
    data: Interactions,
    test_path: str | None,
    cutoff: str | None,
    last_days: float | None,
    random_fraction: float | None,
    columns: str | None,
    default_event: str | None,
    config: TrainingConfig,
) -> Any:
    from engine.evaluation import Split, _new_pairs, last_days_split, random_split, temporal_split

    if test_path is not None:
        test = _load(test_path, columns, default_event, config)
        return Split(data, _new_pairs(data, test), f"test file {test_path}")
    if cutoff is not None:
        return temporal_split(data, cutoff)
    if last_days is not None:
        return last_days_split(data, last_days)
    return random_split(data, float(random_fraction or 0.2), config.params.seed)


def _print_evaluation(
    rows: list[dict[str, Any]],
    description: str,
    users: int,
    k: int,
    as_json: bool,
    tuning: dict[str, Any],
) -> None:
    if as_json:
        click.echo(
            json.dumps(
                {
                    "split": description,
                    "test_customers": users,
                    "k": k,
                    "results": rows,
                    "tuning": tuning,
                },
                indent=2,
            )
        )
        return
    click.echo(f"split: {description}; {users:,} test customers; k = {k}")
    header = f"{'model':<20}" + "".join(
        f"{m + '@' + str(k) if m != 'coverage' else m:>13}"
        for m in ("precision", "recall", "ndcg", "map", "coverage")
    )
    click.echo(header + f"{'seconds':>10}")
    for row in rows:
        values = "".join(
            f"{row[m]:>13.4f}" for m in ("precision", "recall", "ndcg", "map", "coverage")
        )
        click.echo(f"{row['model']:<20}{values}{row['seconds']:>10.1f}")
    base, model = rows[1]["ndcg"], rows[0]["ndcg"]
    if base > 0:
        click.echo(f"nDCG@{k} vs popularity: {model / base:.2f}x")


@click.command()
@click.option(
    "--model-dir",
    default=lambda: os.environ.get("RAPPORT_MODEL_DIR", DEFAULT_MODEL_DIR),
    show_default="$RAPPORT_MODEL_DIR or var/model",
    type=click.Path(file_okay=False),
)
@click.option("--user", "user_ids", multiple=True, help="Customer id (repeatable).")
@click.option("--all-users", is_flag=True, help="Every customer the model knows.")
@click.option("--n", type=int, default=10, show_default=True)
@click.option(
    "--output",
    type=click.Path(dir_okay=False),
    default=None,
    help="CSV file to write (default: standard output).",
)
@click.option("--batch-size", type=int, default=2_000, show_default=True, hidden=True)
def recommend(
    model_dir: str,
    user_ids: tuple[str, ...],
    all_users: bool,
    n: int,
    output: str | None,
    batch_size: int,
) -> None:
    """Write top-N recommendations as CSV: user_id,item_id,rank,score,relevance,source."""
    from tqdm import tqdm

    from engine.serving import Filters, Recommender

    if bool(user_ids) == all_users:
        raise click.UsageError("give --user ID (repeatable) or --all-users")
    with user_errors():
        model = Recommender.load(model_dir)
        users = model.users.ids.tolist() if all_users else list(user_ids)
        with _open_output(output) as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(RECOMMENDATION_COLUMNS)
            batches = range(0, len(users), batch_size)
            for start in tqdm(batches, desc="recommending", unit="batch", disable=not _tty()):
                chunk = users[start : start + batch_size]
                found = model.recommend_many(chunk, n, Filters(exclude_history=True))
                for user in chunk:
                    writer.writerows(
                        (
                            user,
                            r.item_id,
                            r.rank,
                            f"{r.score:.6g}",
                            f"{r.relevance:.6f}",
                            r.source.value,
                        )
                        for r in found[user]
                    )
    if output:
        click.echo(f"wrote {len(users):,} customers' recommendations to {output}", err=True)


@contextmanager
def _open_output(path: str | None) -> Iterator[IO[str]]:
    if path is None:
        yield sys.stdout
        return
    target = Path(path)
    partial = target.with_name(f".{target.name}.partial")
    try:
        with open(partial, "w", encoding="utf-8", newline="") as handle:
            yield handle
        os.replace(partial, target)  # a reader never sees a half-written file
    finally:
        partial.unlink(missing_ok=True)


@click.command("demo-recommendations")
@click.option(
    "--model-dir",
    default=lambda: os.environ.get("RAPPORT_MODEL_DIR", DEFAULT_MODEL_DIR),
    show_default="$RAPPORT_MODEL_DIR or var/model",
    type=click.Path(file_okay=False),
)
@click.option("--n", type=int, default=5, show_default=True)
def demo_recommendations(model_dir: str, n: int) -> None:
    """Train the bundled demo model if needed and show a few customers' picks."""
    from engine.demo import DEMO_CUSTOMERS, ensure_demo_model

    with user_errors():
        model = ensure_demo_model(model_dir)
    click.echo(f"model {model.version}: {len(model.users):,} customers, {len(model.items):,} items")
    for user in (*DEMO_CUSTOMERS, "a-new-customer"):
        click.echo(f"\ncustomer {user}:")
        for rec in model.recommend(user, n):
            item = model.catalog.get(rec.item_id) if model.catalog else None
            title = item.title if item else rec.item_id
            click.echo(f"  {rec.rank}. {title:<40} relevance {rec.relevance:.3f}  ({rec.source})")


@click.group()
def datasets() -> None:
    """Convert public data sets into Rapport's canonical files."""


@datasets.command("online-retail")
@click.argument("source", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Directory for interactions.csv.gz and catalog.csv.",
)
@click.option("--customers", type=int, default=None, help="Keep only this many random customers.")
@click.option("--seed", type=int, default=7, show_default=True)
def online_retail(source: str, out_dir: str, customers: int | None, seed: int) -> None:
    """Convert the UCI Online Retail file (CC BY 4.0) into canonical interactions and catalog."""
    from engine.datasets import load_online_retail, sample_customers, write_canonical

    with user_errors():
        data = load_online_retail(source)
        if customers:
            data = sample_customers(data, customers, seed)
        interactions, catalog = write_canonical(data, out_dir)
    click.echo(
        f"wrote {len(data.interactions):,} purchases to {interactions} and "
        f"{len(data.catalog):,} items to {catalog}"
    )
