"""Helpers the studio tests share: screenshots, signing in, reading a page's CSRF token."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "web"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def screenshot(page: Any, name: str) -> Path:
    """Save a full-page screenshot as a test artefact and return its path."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def sign_in(page: Any, key: str) -> None:
    """Sign in through the login form."""
    page.goto("/studio/login")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()


def csrf_of(html: str) -> str:
    """Return the CSRF token embedded in a page."""
    found = CSRF.search(html)
    assert found, "the page has no CSRF token"
    return found.group(1)
