"""Fixtures for the API tests: an app on temporary paths, a test client, and one key per role."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from api import create_app
from api.auth import KeyRing, Role
from fatigue.clock import FrozenClock


@pytest.fixture
def role_keys(settings: dict[str, Any]) -> dict[Role, str]:
    """One API key per role, created the way ``rapport keys create`` does."""
    keyring = KeyRing(Path(settings["API_KEYS_FILE"]))
    return {role: keyring.create(f"key-{role.value}", frozenset({role})) for role in Role}


STORES = [
    pytest.param("memory", id="memory"),
    pytest.param("redis", id="redis", marks=pytest.mark.redis),
]
#: Runs a test once on memory:// and once on a real Redis (what production runs).
ON_EVERY_STORE = pytest.mark.parametrize("store_url", STORES, indirect=True)


@pytest.fixture
def store_url(request: pytest.FixtureRequest) -> str:
    """memory://, or a real Redis under a prefix of the test's own for tests ``ON_EVERY_STORE``."""
    if getattr(request, "param", "memory") == "memory":
        return "memory://"
    url = request.getfixturevalue("redis_url")
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}prefix=t{uuid.uuid4().hex[:10]}:"


@pytest.fixture
def app(
    settings: dict[str, Any], role_keys: dict[Role, str], clock: FrozenClock, store_url: str
) -> Any:
    """An app on the demo model, the bundled templates and rules, and ``store_url``."""
    return create_app({**settings, "STORE_URL": store_url, "CLOCK": clock})


@pytest.fixture
def client(app: Any) -> Any:
    """Flask's test client for ``app``."""
    return app.test_client()


@pytest.fixture
def auth(role_keys: dict[Role, str]) -> Any:
    """``auth(role)`` gives the Authorization header of that role's key."""
    return lambda role: {"Authorization": f"Bearer {role_keys[Role(role)]}"}


def compose_body(user_id: str = "12347", key: str = "k-1", **changes: Any) -> dict[str, Any]:
    """The README's compose request, for ``user_id``, with top-level fields replaced."""
    body: dict[str, Any] = {
        "idempotency_key": key,
        "recipient": {
            "user_id": user_id,
            "email": "ada@example.com",
            "first_name": "Ada",
            "timezone": "Europe/London",
            "locale": "en",
        },
        "template": "picked-for-you",
        "campaign": {
            "id": "weekly-picks",
            "category": "recommendations",
            "kind": "promotional",
            "priority": 1,
        },
        "dry_run": False,
    }
    body.update(changes)
    return body


@pytest.fixture
def compose_request() -> Any:
    """``compose_request(user_id, key, **changes)`` builds a compose body."""
    return compose_body


def publish_subject_failing_for_three_items(client: Any, auth: Any) -> None:
    """Publish picked-for-you with a subject valid for the six sample items and a division by
    zero for a real send of exactly three (``"items": 3`` in the request)."""
    marketer = auth("marketer")
    current = client.get("/v1/templates/picked-for-you", headers=marketer).json
    subject = "{% set check = 1 // (items|length - 3) %}" + current["subject"]
    saved = client.put(
        "/v1/templates/picked-for-you",
        json={"mjml": current["mjml"], "subject": subject, "sample": current["sample"]},
        headers=marketer,
    )
    assert saved.status_code == 201, saved.json
    published = client.post("/v1/templates/picked-for-you/publish",
                            json={"version": saved.json["version"]}, headers=marketer)  # fmt: skip
    assert published.status_code == 200, published.json
