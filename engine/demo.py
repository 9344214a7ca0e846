"""The bundled demo: a model trained on the packaged Online Retail sample, built on first use."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from engine.artifact import current_version, save_recommender
from engine.catalog import load_catalog
from engine.interactions import load_interactions
from engine.serving import Recommender
from engine.training import TrainingConfig, train

DEMO_CUSTOMERS = ("12583", "13269", "12347")


def demo_data_dir() -> Path:
    """Return the folder holding the packaged demo interactions and catalog."""
    return Path(str(resources.files("engine") / "demo_data"))


def demo_files() -> tuple[Path, Path]:
    """Return the demo interactions and catalog paths."""
    folder = demo_data_dir()
    return folder / "interactions.csv.gz", folder / "catalog.csv"


def ensure_demo_model(model_dir: str | Path) -> Recommender:
    """Load the demo model from ``model_dir``, training and publishing it first if absent."""
    if current_version(model_dir) is None:
        interactions_path, catalog_path = demo_files()
        recommender = train(
            load_interactions(interactions_path), TrainingConfig(), load_catalog(catalog_path)
        )
        save_recommender(recommender, model_dir, catalog_path)
    return Recommender.load(model_dir)
