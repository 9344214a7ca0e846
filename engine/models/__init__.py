"""The recommendation models behind one interface: implicit ALS, BPR, item-kNN and popularity.

The package mirrors implicit's own split. Each model learns from a user x item confidence matrix
and serves from plain numpy arrays, so a model trained elsewhere (a bigger machine, Spark ALS)
serves the same way once its factors are in the artifact. implicit is imported lazily: loading
the CLI should not pay for it.
"""

from __future__ import annotations

from engine.models.base import (
    CHUNK_USERS,
    FILTERED,
    Algorithm,
    Model,
    ModelParams,
    Scored,
    default_params,
    pin_single_threaded,
    ranked_by_score,
    single_threaded_blas,
)
from engine.models.factorization import ALSModel, BPRModel
from engine.models.neighbours import ItemKNNModel
from engine.models.popularity import PopularityModel, popularity_share

MODEL_CLASSES: dict[Algorithm, type[Model]] = {
    Algorithm.ALS: ALSModel,
    Algorithm.BPR: BPRModel,
    Algorithm.ITEMKNN: ItemKNNModel,
    Algorithm.POPULAR: PopularityModel,
}


def create_model(algorithm: Algorithm | str, params: ModelParams | None = None) -> Model:
    """Instantiate the model class for ``algorithm``."""
    return MODEL_CLASSES[Algorithm(algorithm)](params)


__all__ = [
    "CHUNK_USERS",
    "FILTERED",
    "MODEL_CLASSES",
    "ALSModel",
    "Algorithm",
    "BPRModel",
    "ItemKNNModel",
    "Model",
    "ModelParams",
    "PopularityModel",
    "Scored",
    "create_model",
    "default_params",
    "pin_single_threaded",
    "popularity_share",
    "ranked_by_score",
    "single_threaded_blas",
]
