"""Fixtures for the API tests: an app on temporary paths, a test client, and one key per role."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from api import create_app
from api.auth import KeyRing, Role
from fatigue.clock import FrozenClock


@pytest.fixture
def settings(tmp_path: Path, model_dir: Path) -> dict[str, Any]:
    """Settings that keep every file the app writes inside the test's own directory."""
    return {
        "API_KEYS_FILE": str(tmp_path / "keys.json"),
        "EVENT_LOG_DIR": str(tmp_path / "events"),
        "TEMPLATES_DIR": str(tmp_path / "templates"),
        "SECRET_KEY": "test-secret-key-for-links",
        "PUBLIC_URL": "http://localhost",
        "MODEL_DIR": str(model_dir),
    }


@pytest.fixture
def role_keys(settings: dict[str, Any]) -> dict[Role, str]:
    """One API key per role, created the way ``rapport keys create`` does."""
    keyring = KeyRing(Path(settings["API_KEYS_FILE"]))
    return {role: keyring.create(f"key-{role.value}", frozenset({role})) for role in Role}


@pytest.fixture
def clock() -> FrozenClock:
    """The app's clock: Monday 23 November 2026, noon UTC (outside quiet hours)."""
    return FrozenClock(datetime(2026, 11, 23, 12, 0, tzinfo=UTC))


@pytest.fixture
def app(settings: dict[str, Any], role_keys: dict[Role, str], clock: FrozenClock) -> Any:
    """An app on the demo model, the bundled templates and rules, and a memory:// store."""
    return create_app({**settings, "CLOCK": clock})


@pytest.fixture
def client(app: Any) -> Any:
    """Flask's test client for ``app``."""
    return app.test_client()


@pytest.fixture
def auth(role_keys: dict[Role, str]) -> Any:
    """``auth(role)`` gives the Authorization header of that role's key."""
    return lambda role: {"Authorization": f"Bearer {role_keys[Role(role)]}"}


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo model, trained once per test session the way ``rapport train`` does."""
    from click.testing import CliRunner

    from engine.cli import train

    directory = tmp_path_factory.mktemp("model")
    demo = Path(__file__).resolve().parents[2] / "engine" / "demo_data"
    result = CliRunner().invoke(
        train,
        [
            "--interactions",
            str(demo / "interactions.csv.gz"),
            "--catalog",
            str(demo / "catalog.csv"),
            "--default-event",
            "purchase",
            "--model-dir",
            str(directory),
        ],
    )
    assert result.exit_code == 0, result.output
    return directory


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
