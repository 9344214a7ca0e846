"""Fixtures shared by the whole suite: a real Redis, the demo model and the app's settings."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from fatigue.clock import FrozenClock
from fatigue.testing import RedisUnavailable, private_redis


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """Return $REDIS_URL, or start a private redis-server for the session.

    Under CI=true a Redis that cannot start fails the tests that need it; elsewhere they skip.
    """
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    with own_redis_server() as started:
        yield started


@contextmanager
def own_redis_server() -> Iterator[str]:
    """Start a private redis-server; under CI=true fail if it cannot start, elsewhere skip."""
    try:
        server = private_redis()
        url = server.__enter__()
    except RedisUnavailable as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"Redis is required under CI=true: {exc}")
        pytest.skip(f"Redis not available: {exc}")
    try:
        yield url
    finally:
        server.__exit__(None, None, None)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo model, trained once per test session from the packaged sample."""
    from engine.demo import ensure_demo_model

    directory = tmp_path_factory.mktemp("demo-model")
    ensure_demo_model(directory)
    return directory


@pytest.fixture
def settings(tmp_path: Path, model_dir: Path) -> dict[str, Any]:
    """App settings that keep every file the app writes inside the test's own directory."""
    return {
        "API_KEYS_FILE": str(tmp_path / "keys.json"),
        "EVENT_LOG_DIR": str(tmp_path / "events"),
        "TEMPLATES_DIR": str(tmp_path / "templates"),
        "SECRET_KEY": "test-secret-key-for-links",
        "PUBLIC_URL": "http://localhost",
        "MODEL_DIR": str(model_dir),
        "SENDER": "Shop <news@shop.example.com>",
    }


@pytest.fixture
def clock() -> FrozenClock:
    """The app's clock: Monday 23 November 2026, noon UTC (outside the default quiet hours)."""
    return FrozenClock(datetime(2026, 11, 23, 12, 0, tzinfo=UTC))
