"""How each heavy component is built from the settings: model, templates, governor."""

from __future__ import annotations

from flask import Flask


def register(app: Flask) -> None:
    """Declare the lazily built components of ``app``'s services."""
