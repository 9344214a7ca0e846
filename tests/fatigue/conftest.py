from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from fatigue.clock import FrozenClock
from fatigue.governor import Governor
from fatigue.rules import load_rules
from fatigue.store import store_from_url
from fatigue.testing import CONTRACT_RULES

# The same tests run against every backend; Redis params carry the ``redis`` marker.
BACKENDS = [
    pytest.param("memory", id="memory"),
    pytest.param("redis", id="redis", marks=pytest.mark.redis),
]

CONTRACT = CONTRACT_RULES


def make_store(backend: str, request: pytest.FixtureRequest):
    if backend == "memory":
        return store_from_url("memory://")
    url = request.getfixturevalue("redis_url")
    # A fresh prefix per test isolates tests sharing one server without flushing others' keys.
    separator = "&" if "?" in url else "?"
    store = store_from_url(f"{url}{separator}prefix=t{uuid.uuid4().hex[:10]}:")
    request.addfinalizer(store.close)
    return store


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


@pytest.fixture
def store(backend, request):
    return make_store(backend, request)


@pytest.fixture
def clock():
    # A Monday noon in winter: London is on UTC.
    return FrozenClock(datetime(2026, 1, 12, 12, 0, tzinfo=UTC))


@pytest.fixture
def make_governor(store, clock):
    def build(text: str = CONTRACT) -> Governor:
        return Governor(load_rules(text), store, clock)

    return build
