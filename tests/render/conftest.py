"""Fixtures for the rendering tests: a frozen clock, a link signer and a renderer."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from engine.render.library import BundledLibrary
from engine.render.links import LinkConfig, LinkSigner
from engine.render.renderer import Renderer
from fatigue.clock import FrozenClock

SECRET = "test-secret-key-0123456789"
BASE_URL = "https://mail.example.com"


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(datetime(2026, 3, 2, 9, 30, tzinfo=UTC))


@pytest.fixture
def signer(clock: FrozenClock) -> LinkSigner:
    return LinkSigner(SECRET, clock=clock)


@pytest.fixture
def links() -> LinkConfig:
    return LinkConfig(BASE_URL, unsubscribe_mailto="unsubscribe@mail.example.com")


@pytest.fixture
def bundle() -> BundledLibrary:
    return BundledLibrary()


@pytest.fixture
def renderer(bundle: BundledLibrary, signer: LinkSigner, links: LinkConfig, clock) -> Renderer:
    return Renderer(bundle, signer, links, clock=clock, sender="Shop <news@shop.example.com>")
