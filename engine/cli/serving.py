"""``rapport recommend`` and the demo's first look at a trained model."""

from __future__ import annotations

import contextlib
import csv
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING

import click

from engine.cli.common import (
    is_terminal,
    model_dir_option,
)
from fatigue.errors import user_errors

if TYPE_CHECKING:
    from engine.serving import Filters, Recommender

RECOMMENDATION_COLUMNS = ("user_id", "item_id", "rank", "score", "relevance", "source")


@click.command()
@model_dir_option
@click.option("--user", "user_ids", multiple=True, help="Customer id (repeatable).")
@click.option("--all-users", is_flag=True, help="Every customer the model knows.")
@click.option("--n", type=click.IntRange(min=1, max=1000), default=10, show_default=True)
@click.option(
    "--output",
    type=click.Path(dir_okay=False),
    default=None,
    help="CSV file to write (default: standard output).",
)
@click.option(
    "--include-unavailable",
    is_flag=True,
    help="Keep items out of stock, expired or missing from the model's catalog.",
)
@click.option(
    "--batch-size", type=click.IntRange(min=1), default=2_000, show_default=True, hidden=True
)
def recommend(
    model_dir: str,
    user_ids: tuple[str, ...],
    all_users: bool,
    n: int,
    output: str | None,
    include_unavailable: bool,
    batch_size: int,
) -> None:
    """Write top-N recommendations as CSV: user_id,item_id,rank,score,relevance,source.

    Left out: everything in the customer's history and, as the API leaves them out when the
    model was trained with a catalog, items out of stock or expired now or missing from that
    catalog (--include-unavailable keeps these).
    """
    from tqdm import tqdm

    from engine.serving import Recommender

    if bool(user_ids) == all_users:
        raise click.UsageError("give --user ID (repeatable) or --all-users")
    if any(not user.strip() for user in user_ids):  # else the anonymous picks, unasked
        raise click.BadParameter("a customer id cannot be blank", param_hint="--user")
    with user_errors():
        model = Recommender.load(model_dir)
        filters = _filters(model, include_unavailable)
        users = model.users.ids.tolist() if all_users else list(user_ids)
        with _open_output(output) as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(RECOMMENDATION_COLUMNS)
            batches = range(0, len(users), batch_size)
            for start in tqdm(
                batches, desc="recommending", unit="batch", disable=not is_terminal()
            ):
                chunk = users[start : start + batch_size]
                found = model.recommend_many(chunk, n, filters)
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


def _filters(model: Recommender, include_unavailable: bool) -> Filters:
    """Rule out the whole history and, by the API's own check, what cannot be offered now."""
    from engine.serving import Filters

    if include_unavailable:
        return Filters(exclude_history=True)
    from engine.compose import AVAILABILITY

    blocked = AVAILABILITY.blocked(model, datetime.now(UTC))
    return Filters(exclude_items=blocked, exclude_history=True)


@contextmanager
def _open_output(path: str | None) -> Iterator[IO[str]]:
    if path is None:
        yield sys.stdout
        return
    target = Path(path)
    partial = target.with_name(f".{target.name}.partial")
    try:
        try:
            handle = open(partial, "w", encoding="utf-8", newline="")  # noqa: SIM115
        except OSError as exc:  # name the file asked for, not the hidden one written first
            raise OSError(exc.errno, exc.strerror, str(target)) from exc
        with handle:
            yield handle
        os.replace(partial, target)  # a reader never sees a half-written file
    finally:
        with contextlib.suppress(OSError):  # never there, or its folder was never writable
            partial.unlink()
