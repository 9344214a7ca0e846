"""``rapport demo`` and ``rapport serve`` option handling (the server itself: test_api_server)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from api.auth import KeyRing, Role
from api.demo import demo
from api.serve import check_workers, default_workers
from fatigue.errors import ConfigurationError


def test_demo_trains_once_makes_a_key_and_prints_examples(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RAPPORT_API_KEYS_FILE", raising=False)
    monkeypatch.setenv("RAPPORT_MODEL_DIR", str(tmp_path / "model"))
    first = CliRunner().invoke(demo, ["--no-serve", "--port", "8123"])
    assert first.exit_code == 0, first.output
    assert (tmp_path / "model" / "CURRENT").exists()
    assert "training the demo model" in first.stderr
    key = next(word for word in first.stdout.split() if word.startswith("rpk_"))
    assert f"Bearer {key}" in first.stdout and "http://localhost:8123/v1/compose" in first.stdout
    found = KeyRing(tmp_path / "var" / "demo" / "api-keys.json").authenticate(key)
    assert found is not None and found.roles == {Role.ADMIN}

    monkeypatch.delenv("RAPPORT_API_KEYS_FILE")  # a new process: the first run's setting is gone
    second = CliRunner().invoke(demo, ["--no-serve"])
    assert second.exit_code == 0 and "training" not in second.stderr
    assert KeyRing(tmp_path / "var" / "demo" / "api-keys.json").authenticate(key) is None


def test_memory_store_runs_one_worker():
    assert default_workers("memory://") == 1
    assert default_workers("redis://localhost:6379/0") >= 2
    check_workers("redis://localhost:6379/0", 4)
    with pytest.raises(ConfigurationError, match="own fatigue state"):
        check_workers("memory://", 2)


def test_serve_without_a_model_says_what_to_do(tmp_path: Path, monkeypatch):
    from api.commands import serve

    monkeypatch.setenv("RAPPORT_MODEL_DIR", str(tmp_path / "nothing"))
    result = CliRunner().invoke(serve, ["--port", "1"])
    assert result.exit_code != 0
    assert "no published model" in result.output and "rapport demo" in result.output


def test_serve_refuses_several_workers_on_memory(tmp_path: Path, monkeypatch, model_dir):
    from api.commands import serve

    monkeypatch.setenv("RAPPORT_MODEL_DIR", str(model_dir))
    monkeypatch.setenv("RAPPORT_STORE_URL", "memory://")
    result = CliRunner().invoke(serve, ["--port", "1", "--workers", "3"])
    assert result.exit_code != 0 and "own fatigue state" in result.output
