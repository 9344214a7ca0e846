"""The Flask API and CLI: how platforms, marketers and engineers use Rapport."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask

log = logging.getLogger(__name__)


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the Flask application (the application-factory pattern).

    ``config`` overrides every other source of settings (see ``api.config``); it may also hold
    ``CLOCK``, a callable returning the current aware datetime, for tests and simulations.
    """
    from api import components, docs, health, metrics, problems, request_ids, web
    from api.config import load_settings
    from api.services import Services, secret_key

    overrides = dict(config or {})
    clock = overrides.pop("CLOCK", None)
    settings = load_settings(overrides=overrides)
    app = Flask(__name__)
    app.config.update(settings)
    app.config["SECRET_KEY"], app.config["SECRET_KEY_GENERATED"] = secret_key(settings)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["rapport"] = Services(app.config, clock) if clock else Services(app.config)
    components.register(app)

    problems.register_error_handlers(app)
    request_ids.install(app)  # first: every later hook and handler can name the request
    metrics.instrument(app)
    for blueprint in (health.bp, docs.bp, web.bp, *_api_blueprints()):
        app.register_blueprint(blueprint)
    return app


def _api_blueprints() -> list[Any]:
    """Return the /v1 blueprints, one per area (imported here so the CLI stays fast)."""
    from api import campaigns, compose, events, recommendations, rules, templates, unsubscribe

    return [compose.bp, campaigns.bp, recommendations.bp, events.bp, templates.bp, rules.bp,
            unsubscribe.bp]  # fmt: skip
