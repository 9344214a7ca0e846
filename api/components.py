"""How each heavy component is built from the settings: model, templates, governor."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Flask

from api.model import ModelHolder
from api.services import Services


def register(app: Flask) -> None:
    """Declare the lazily built components of ``app``'s services."""
    found: Services = app.extensions["rapport"]
    settings = found.settings
    found.register("model", lambda: _model(settings))


def _model(settings: dict[str, Any]) -> ModelHolder:
    from engine.serving import Recommender

    return ModelHolder(
        Path(settings["MODEL_DIR"]),
        Recommender.load,
        interval=float(settings["MODEL_RELOAD_INTERVAL"]),
    )
