"""``rapport train`` and ``rapport evaluate``."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import click

from engine.cli.common import (
    DataOptions,
    data_options,
    is_terminal,
    model_dir_option,
)
from fatigue.errors import user_errors

FADED_WEIGHT = 1e-3  # a customer's total weight, in purchases, below which history has faded
# The baselines ``evaluate`` prints under the model: all-time popularity, and the cold start's
# own ranking (recent interactions), which is the harder of the two on seasonal data.
POPULAR_ROW = "popular (baseline)"
TRENDING_ROW = "trending (baseline)"

if TYPE_CHECKING:
    from engine.catalog import Catalog
    from engine.interactions import Interactions
    from engine.serving import Recommender
    from engine.training import TrainingConfig


@click.command()
@data_options
@click.option(
    "--catalog",
    "catalog_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Catalog file; copied into the model so serving can filter and render.",
)
@model_dir_option
@click.option(
    "--force",
    is_flag=True,
    help="Publish even a model most of whose customers' history has faded to nothing.",
)
def train(
    options: DataOptions,
    catalog_path: str | None,
    model_dir: str,
    force: bool,
) -> None:
    """Train a model and publish it as the new version in MODEL_DIR."""
    from engine.artifact import check_writable, save_recommender
    from engine.catalog import load_catalog
    from engine.training import train as run_training

    with user_errors():
        check_writable(model_dir)
        data = options.load(options.config())
        catalog: Catalog | None = load_catalog(catalog_path) if catalog_path else None
        if catalog is not None:
            _say_what_the_catalog_misses(catalog, data, catalog_path or "")
        config, tuning = options.tuned(data, options.config())
        recommender = run_training(
            data,
            config,
            catalog,
            show_progress=is_terminal(),
            metrics={"tuning": tuning} if tuning else None,
        )
        faded = _faded_history(recommender, config)
        if faded and _ends_long_before_its_newest(data, config) and not force:
            # An old file beside a fresh log: published, it would serve next to nothing, so
            # the model that serves now stays. (Churn alone fades customers too: a warning.)
            raise click.ClickException(f"not published: {faded}; --force publishes it anyway")
        version = save_recommender(recommender, model_dir, catalog_path)
    meta = recommender.meta
    window = meta["data_window"]
    click.echo(
        f"published {model_dir}/versions/{version} ({meta['algorithm']}, "
        f"{window['users']:,} customers x {window['items']:,} items, "
        f"trained in {meta['training_seconds']:.1f}s)"
    )
    if faded:
        click.echo(f"warning: {faded}", err=True)
    skipped = (meta.get("calibration_fit") or {}).get("skipped")
    if skipped:  # every relevance is then 0, and a min_relevance rule suppresses every email
        click.echo(
            f"warning: relevance not calibrated ({skipped}): every recommendation's relevance "
            f"is 0, so a fatigue rule with min_relevance above 0 suppresses every email; train "
            f"on more than {meta.get('calibration_days', 30):g} days of history",
            err=True,
        )


def _faded_history(recommender: Recommender, config: TrainingConfig) -> str:
    """Say whether most customers' history weighs nothing: an old file beside a fresh event log.

    Recency decay counts back from the newest interaction, so one day of new events makes a
    years-old history weigh about 0 (ten half-lives leave a thousandth); those customers' picks
    then rest on next to nothing, or are cold starts once the weights underflow. "" when not.
    """
    import numpy as np

    weights = np.asarray(recommender.user_items.sum(axis=1)).ravel()
    faded, known = int(np.count_nonzero(weights < FADED_WEIGHT)), len(weights)
    if not (known and faded > known / 2 and config.weighting.half_life_days):
        return ""
    newest = recommender.meta["data_window"]["end"]
    return (
        f"{faded:,} of {known:,} customers' history weighs almost nothing at a "
        f"{config.weighting.half_life_days:g}-day half-life counted back from the newest "
        f"interaction ({newest}); train on current history or with --half-life 0"
    )


#: Half-lives between the newest interaction and all but the newest 1% of them, past which
#: the history is an old file beside a few fresh events rather than a shop's ongoing one.
GAP_HALF_LIVES = 5.0


def _ends_long_before_its_newest(data: Interactions, config: TrainingConfig) -> bool:
    """Whether 99% of the interactions are far older than the newest (an old file + a new log).

    A shop's own long history fades many customers too (those who left), but its interactions
    run up to the present; a stale file beside one day of events does not.
    """
    import numpy as np

    half_life = config.weighting.half_life_days
    if not half_life or not len(data):
        return False
    gap_days = (float(data.timestamps.max()) - float(np.quantile(data.timestamps, 0.99))) / 86400
    return gap_days > GAP_HALF_LIVES * half_life


def _say_what_the_catalog_misses(catalog: Catalog, data: Interactions, path: str) -> None:
    """Warn when the catalog and the interactions hardly share an item id (a wrong file or column).

    Items nobody touched are kept (a recent view of a new product still folds in), so a catalog
    that matches nothing would otherwise pass without a word, and its titles be nowhere.
    """
    seen = set(data.item_ids.astype(str).tolist())
    matched = sum(1 for item_id in catalog if item_id in seen)
    if matched < len(catalog) / 2:
        click.echo(
            f"warning: {path}: {matched:,} of {len(catalog):,} catalog items appear in the "
            "interactions; check that both files use the same item ids",
            err=True,
        )


@click.command()
@data_options
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
@click.option("--k", type=click.IntRange(min=1, max=1000), default=10, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def evaluate(
    options: DataOptions,
    test_path: str | None,
    cutoff: str | None,
    last_days: float | None,
    random_fraction: float | None,
    k: int,
    as_json: bool,
) -> None:
    """Evaluate a model against the popularity and trending baselines on a held-out split."""
    from engine.evaluation import evaluate as score
    from engine.training import fit_popularity_baseline, fit_recommender, fit_trending_baseline

    chosen = [o for o in (test_path, cutoff, last_days, random_fraction) if o is not None]
    if len(chosen) != 1:
        raise click.UsageError("give exactly one of --test, --cutoff, --last-days, --random")
    with user_errors():
        data = options.load(options.config())
        split = _split(options, data, test_path, cutoff, last_days, random_fraction)
        config, tuning = options.tuned(split.train, options.config())
        rows = []
        for name, fit in (
            (config.algorithm.value, fit_recommender),
            (POPULAR_ROW, fit_popularity_baseline),
            (TRENDING_ROW, fit_trending_baseline),
        ):
            started = time.perf_counter()
            model = fit(split.train, config, show_progress=is_terminal())
            metrics = score(model, split, k, len(model.items))
            rows.append({"model": name, **metrics, "seconds": time.perf_counter() - started})
    _print_evaluation(rows, split.description, len(split.relevant), k, as_json, tuning)


def _split(
    options: DataOptions,
    data: Interactions,
    test_path: str | None,
    cutoff: str | None,
    last_days: float | None,
    random_fraction: float | None,
) -> Any:
    from engine.evaluation import Split, last_days_split, new_pairs, random_split, temporal_split

    if test_path is not None:
        test = options.load(options.config(), test_path)
        return Split(data, new_pairs(data, test), f"test file {test_path}")
    if cutoff is not None:
        return temporal_split(data, cutoff)
    if last_days is not None:
        return last_days_split(data, last_days)
    # `or` read --random 0 as "not given" and evaluated a 20% split; 0 is refused as 1 is.
    return random_split(data, 0.2 if random_fraction is None else random_fraction, options.seed)


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
    model = rows[0]["ndcg"]
    for row, against in zip(rows[1:], ("popularity", "trending"), strict=True):
        if row["ndcg"] > 0:
            click.echo(f"nDCG@{k} vs {against}: {model / row['ndcg']:.2f}x")
