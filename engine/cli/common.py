"""What the engine's commands share: options, error handling, loading and tuning."""

from __future__ import annotations

import functools
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from fatigue.errors import Problem, ValidationError

if TYPE_CHECKING:
    from engine.interactions import Interactions
    from engine.training import TrainingConfig

DEFAULT_MODEL_DIR = "var/model"
ALGORITHMS = ("als", "bpr", "itemknn", "popular")


def is_terminal() -> bool:
    """Return whether progress bars have a terminal to draw on."""
    return sys.stderr.isatty()


def _finite(ctx: click.Context, param: click.Parameter, value: float) -> float:
    """Refuse NaN and infinity, which a range check lets through (NaN compares false)."""
    if not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a finite number")
    return value


def data_options(function: Any) -> Any:
    """Add the options every data-reading command shares, passed on as one ``DataOptions``."""
    options = [
        click.option(
            "--interactions",
            "interactions_path",
            required=True,
            multiple=True,
            type=click.Path(),
            help="Interactions file (CSV, CSV.gz, JSONL), or an event log directory (its "
            "interactions-*.jsonl); repeat to train on several, e.g. history plus the log.",
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
            type=click.FloatRange(min=0),
            callback=_finite,
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
            type=click.IntRange(min=1, max=1000),
            default=30,
            show_default=True,
            help="Configurations tried by --tune.",
        ),
    ]

    @functools.wraps(function)
    def wrapper(**kwargs: Any) -> Any:
        shared = {name: kwargs.pop(name) for name in DATA_OPTION_NAMES}
        return function(DataOptions(**shared), **kwargs)

    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper


@dataclass(frozen=True)
class DataOptions:
    """The options of every command that reads interactions and trains."""

    interactions_path: tuple[str, ...]
    columns: str | None
    default_event: str | None
    event_weights: tuple[str, ...]
    half_life: float
    value_scale: str
    algorithm: str
    seed: int
    tune: bool
    trials: int

    def config(self) -> TrainingConfig:
        """Return the training configuration these options describe."""
        return training_config(
            self.algorithm, self.seed, self.event_weights, self.half_life, self.value_scale
        )

    def load(self, config: TrainingConfig, path: str | None = None) -> Interactions:
        """Load ``path`` (the --interactions files by default) with these options."""
        paths = (path,) if path else self.interactions_path
        return load_data(paths, self.columns, self.default_event, config)

    def tuned(
        self, data: Interactions, config: TrainingConfig
    ) -> tuple[TrainingConfig, dict[str, Any]]:
        """Return ``config`` tuned on ``data`` when --tune was given, else as it is."""
        return tune_config(data, config, self.trials) if self.tune else (config, {})


DATA_OPTION_NAMES = tuple(DataOptions.__dataclass_fields__)


def training_config(
    algorithm: str, seed: int, event_weights: tuple[str, ...], half_life: float, value_scale: str
) -> TrainingConfig:
    """Build the training configuration from command-line options."""
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
        if not math.isfinite(weights[event.strip()]) or weights[event.strip()] <= 0:
            raise click.BadParameter(
                f"{spec!r}: a weight must be a positive number (leave an event out of the "
                "file to ignore it)",
                param_hint="--event-weight",
            )
    base = TrainingConfig(algorithm=Algorithm(algorithm), params=default_params(algorithm, seed))
    return replace(
        base,
        weighting=Weighting(weights, half_life or None, ValueScale(value_scale)),
    )


def load_data(
    paths: Sequence[str], columns: str | None, default_event: str | None, config: TrainingConfig
) -> Interactions:
    """Load interaction files (a directory: its event log), saying how many and how long."""
    from engine.interactions import load_interactions, parse_columns

    started = time.perf_counter()
    files = [file for path in paths for file in interaction_files(Path(path))]
    data = load_interactions(
        files, parse_columns(columns), config.weighting.event_weights, default_event
    )
    named = ", ".join(paths)
    click.echo(
        f"loaded {len(data):,} interactions from {named} ({len(files)} file(s)) in "
        f"{time.perf_counter() - started:.1f}s",
        err=True,
    )
    return data


def interaction_files(path: Path) -> list[Path]:
    """``path`` itself, or for a directory (``EVENT_LOG_DIR``) its daily interaction logs."""
    if not path.is_dir():
        return [path]
    found = sorted(path.glob("interactions-*.jsonl"))
    if not found:
        raise ValidationError(Problem("no interactions-*.jsonl files in this directory", str(path)))
    return found


def tune_config(
    data: Interactions, config: TrainingConfig, trials: int
) -> tuple[TrainingConfig, dict[str, Any]]:
    """Run --tune and return the best configuration and a summary."""
    from engine.tuning import tune

    started = time.perf_counter()
    result = tune(data, config, trials=trials, seed=config.params.seed, show_progress=is_terminal())
    best = result.trials[0]
    click.echo(
        f"tuned {len(result.trials)} configurations in {time.perf_counter() - started:.0f}s "
        f"({result.validation}); best validation nDCG@10 {best.score:.4f}",
        err=True,
    )
    return result.best, result.as_dict()


model_dir_option = click.option(
    "--model-dir",
    default=lambda: os.environ.get("RAPPORT_MODEL_DIR", DEFAULT_MODEL_DIR),
    show_default="$RAPPORT_MODEL_DIR or var/model",
    type=click.Path(file_okay=False),
    help="Model directory (versions plus the CURRENT pointer).",
)
