"""Fixtures shared by the whole suite: a real Redis server."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

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
    try:
        server = private_redis()
        started = server.__enter__()
    except RedisUnavailable as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"Redis is required under CI=true: {exc}")
        pytest.skip(f"Redis not available: {exc}")
    try:
        yield started
    finally:
        server.__exit__(None, None, None)
