"""``rapport datasets``: public data sets into canonical files."""

from __future__ import annotations

import click

from fatigue.errors import user_errors


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
