"""Deterministic small data sets for the engine tests."""

from __future__ import annotations

import csv
import random
from dataclasses import replace
from pathlib import Path

import pytest

from engine.catalog import Catalog, CatalogItem
from engine.interactions import Interactions
from engine.matrix import Weighting
from engine.models import ModelParams
from engine.training import TrainingConfig

GROUPS = 3
ITEMS_PER_GROUP = 10
USERS_PER_GROUP = 20
DAY = 86_400
START = 1_700_000_000  # 2023-11-14T22:13:20Z


def item_group(item_id: str) -> int:
    return int(item_id.split("-")[1]) // ITEMS_PER_GROUP


def make_interactions(seed: int = 3, days: int = 60) -> Interactions:
    """Users buy within their own taste group; each user skips a few of their group's items."""
    rng = random.Random(seed)
    records = []
    for group in range(GROUPS):
        items = [f"i-{group * ITEMS_PER_GROUP + k:02d}" for k in range(ITEMS_PER_GROUP)]
        for u in range(USERS_PER_GROUP):
            user = f"u{group}-{u:02d}"
            for item in rng.sample(items, 6):
                stamp = START + rng.randrange(days * DAY)
                event = rng.choice(("view", "add_to_cart", "purchase"))
                records.append((user, item, stamp, event, 1.0))
    records.sort(key=lambda r: r[2])
    return Interactions.from_records(records)


def small_config(**overrides: object) -> TrainingConfig:
    params = ModelParams(factors=8, regularization=0.5, alpha=5.0, iterations=20, seed=1)
    config = TrainingConfig(
        params=params,
        weighting=Weighting(half_life_days=None),
        calibration_days=10.0,
        calibration_candidates=10,
    )
    return replace(config, **overrides)  # type: ignore[arg-type]


def make_catalog() -> Catalog:
    items = {}
    for index in range(GROUPS * ITEMS_PER_GROUP):
        item_id = f"i-{index:02d}"
        items[item_id] = CatalogItem(
            item_id=item_id,
            title=f"Item {index}",
            category=f"cat{index // ITEMS_PER_GROUP}",
            price=1.0 + index,
            in_stock=index != 5,
        )
    return Catalog(items)


def write_interactions_csv(path: Path, data: Interactions) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["user_id", "item_id", "timestamp", "event", "value"])
        for row in zip(
            data.user_ids, data.item_ids, data.timestamps, data.events, data.values, strict=True
        ):
            writer.writerow(row)
    return path


def write_catalog_csv(path: Path, catalog: Catalog) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["item_id", "title", "category", "price", "in_stock"])
        for item in catalog.values():
            writer.writerow(
                [
                    item.item_id,
                    item.title,
                    item.category,
                    item.price,
                    "true" if item.in_stock else "false",
                ]
            )
    return path


@pytest.fixture(scope="session")
def interactions() -> Interactions:
    return make_interactions()


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return make_catalog()


@pytest.fixture
def interactions_csv(tmp_path: Path, interactions: Interactions) -> Path:
    return write_interactions_csv(tmp_path / "interactions.csv", interactions)


@pytest.fixture
def catalog_csv(tmp_path: Path, catalog: Catalog) -> Path:
    return write_catalog_csv(tmp_path / "catalog.csv", catalog)
