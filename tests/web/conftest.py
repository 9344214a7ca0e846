"""Fixtures for the web studio: the real app served on a loopback port, and headless Chromium.

Browser tests use Debian's ``/usr/bin/chromium`` through Playwright (its own browser download
is not used). Under CI=true a missing browser or Playwright fails those tests; elsewhere they
skip, saying what is missing.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server

from api import create_app
from api.auth import KeyRing, Role
from fatigue.clock import FrozenClock

CHROMIUM = os.environ.get("RAPPORT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def keys(settings: dict[str, Any]) -> dict[str, str]:
    """Keys made the way ``rapport keys create`` does: one per role, named after it."""
    keyring = KeyRing(Path(settings["API_KEYS_FILE"]))
    return {role.value: keyring.create(f"{role.value}-key", frozenset({role})) for role in Role}


@pytest.fixture
def app(settings: dict[str, Any], keys: dict[str, str], clock: FrozenClock) -> Any:
    """The real app: bundled templates and rules, the demo model, a memory:// store."""
    return create_app({**settings, "CLOCK": clock})


@pytest.fixture
def client(app: Any) -> Any:
    """Flask's test client for ``app``."""
    return app.test_client()


def closing_every_response(app: Any) -> Any:
    """``app`` with each response read whole and closed before werkzeug's server sends it.

    werkzeug's development server (3.1, ``serving.py`` ``execute``) drains the socket before it
    closes the response; when the browser resets the connection (a page closed mid-request),
    that drain raises and ``close()`` is skipped, so a file response such as the favicon is
    closed only by the garbage collector, whose ResourceWarning fails whichever test is running
    (filterwarnings = error). The studio streams nothing, so reading whole costs nothing here.
    """

    def closing(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        body = app(environ, start_response)
        try:
            return [b"".join(body)]
        finally:
            if hasattr(body, "close"):
                body.close()

    return closing


@pytest.fixture
def server(app: Any) -> Iterator[str]:
    """Serve ``app`` with werkzeug on a free loopback port in a thread; yield its base URL."""
    httpd = make_server("127.0.0.1", 0, closing_every_response(app), threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, name="studio-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}"
    finally:
        httpd.shutdown()
        thread.join(timeout=10)
        httpd.server_close()


def browser_unavailable(reason: str) -> None:
    """Skip a test that needs a browser part that is missing; under CI=true, fail it."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"the browser tests must run under CI=true: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Headless Debian Chromium driven by Playwright, shared by the session."""
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError:
        browser_unavailable("Playwright is not installed (pip install -e '.[test]')")
    if not os.access(CHROMIUM, os.X_OK):
        browser_unavailable(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as playwright:
        try:
            launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        except Error as exc:
            browser_unavailable(f"Chromium at {CHROMIUM} did not start: {exc}")
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Any, server: str) -> Iterator[Any]:
    """A fresh browser context and page (no cookies) against ``server``; downloads allowed."""
    context = browser.new_context(
        base_url=server, viewport={"width": 1400, "height": 1000}, accept_downloads=True
    )
    context.set_default_timeout(20_000)
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda exc: errors.append(str(exc)))
    opened.script_errors = errors
    try:
        yield opened
    finally:
        context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"
