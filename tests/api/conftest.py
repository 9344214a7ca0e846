"""Fixtures for the API tests: an app on temporary paths, a test client, and one key per role."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from api import create_app
from api.auth import KeyRing, Role


@pytest.fixture
def settings(tmp_path: Path, model_dir: Path) -> dict[str, Any]:
    """Settings that keep every file the app writes inside the test's own directory."""
    return {
        "API_KEYS_FILE": str(tmp_path / "keys.json"),
        "EVENT_LOG_DIR": str(tmp_path / "events"),
        "SECRET_KEY": "test-secret-key",
        "PUBLIC_URL": "http://localhost",
        "MODEL_DIR": str(model_dir),
    }


@pytest.fixture
def role_keys(settings: dict[str, Any]) -> dict[Role, str]:
    """One API key per role, created the way ``rapport keys create`` does."""
    keyring = KeyRing(Path(settings["API_KEYS_FILE"]))
    return {role: keyring.create(f"key-{role.value}", frozenset({role})) for role in Role}


@pytest.fixture
def app(settings: dict[str, Any], role_keys: dict[Role, str]) -> Any:
    """An app with no heavy components built yet."""
    return create_app(settings)


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
