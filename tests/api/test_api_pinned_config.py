"""Workers serve the rules the master validated, whatever happens to the files meanwhile."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from api.auth import KeyRing, Role
from api.pinned import PINNED, Pins, pinned_path
from api.serve import check_settings
from api.testing import call, running_server
from fatigue.errors import ValidationError

from .test_api_server import _master_and_workers, _until, memory_server

RULES = Path(__file__).resolve().parents[2] / "fatigue" / "default_rules.toml"


def test_a_file_that_fails_on_reload_leaves_the_pinned_copy_in_force(settings, tmp_path, caplog):
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES.read_text())
    environ: dict[str, str] = {}
    pins = Pins(environ)
    try:
        configured = {**settings, "STORE_URL": "memory://", "RULES": str(rules)}
        pins.pin(configured)
        first = Path(environ[PINNED["RULES"]])
        assert first.read_text() == RULES.read_text() and first.parent == pins.directory
        rules.write_text("[[caps]]\nmax = -1\n")
        assert not pins.repin(lambda environ: configured, check_settings)
        assert environ[PINNED["RULES"]] == str(first) and first.read_text() == RULES.read_text()
        assert "workers keep the configuration pinned before" in caplog.text
        rules.write_text(RULES.read_text().replace("max = 1", "max = 2", 1))
        assert pins.repin(lambda environ: configured, check_settings)
        assert Path(environ[PINNED["RULES"]]).read_text() == rules.read_text()
    finally:
        pins.remove()
    assert not pins.directory.exists()


def test_a_typo_in_the_config_file_on_reload_keeps_the_pinned_copy(settings, tmp_path, caplog):
    """``load_settings`` raised outside the check: the master exited on SIGHUP."""
    from api.config import load_settings

    config = tmp_path / "rapport.toml"
    config.write_text('store_url = "memory://"\n')
    environ = {"RAPPORT_CONFIG": str(config)}
    pins = Pins(environ)
    try:
        pins.pin(load_settings(environ))
        first = environ["RAPPORT_CONFIG"]
        assert first != str(config) and Path(first).read_text() == config.read_text()
        config.write_text('store_url = "memory://"\nrulez = "typo"\n')
        assert not pins.repin(load_settings, lambda found: None)
        assert environ["RAPPORT_CONFIG"] == first  # what a restarted worker reads
        assert "rulez" in caplog.text and load_settings(environ)["STORE_URL"] == "memory://"
        config.write_text('store_url = "memory://"\nmax_batch_recipients = 7\n')
        assert pins.repin(load_settings, lambda found: None)
        assert load_settings(environ)["MAX_BATCH_RECIPIENTS"] == 7
    finally:
        pins.remove()


def test_without_a_pinned_copy_the_configured_file_is_read(monkeypatch, tmp_path):
    monkeypatch.delenv(PINNED["RULES"], raising=False)
    assert pinned_path({"RULES": str(tmp_path / "r.toml")}, "RULES") == tmp_path / "r.toml"
    assert pinned_path({"RULES": ""}, "RULES") is None


def rules_served(base: str, key: str) -> dict:
    status, _, answer = call(base, "GET", "/v1/fatigue/rules", key=key)
    assert status == 200
    return json.loads(answer)


def test_a_broken_rules_file_neither_stops_a_restarted_worker_nor_a_reload(
    model_dir, tmp_path, caplog
):
    """A worker killed while the file is broken used to take the whole server down."""
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES.read_text())
    key = KeyRing(tmp_path / "keys.json").create("ops", frozenset({Role.ENGINEER}))
    environment = memory_server(model_dir, tmp_path, RAPPORT_RULES=str(rules))
    with running_server(environment, workers=1) as base:
        master, [worker] = _master_and_workers(urlsplit(base).port or 0)
        served = rules_served(base, key)
        assert served["source"] == str(rules) and served["toml"] == RULES.read_text()

        rules.write_text("[[caps]]\nmax = -1\n")  # deployed broken
        os.kill(worker, signal.SIGKILL)  # and the worker dies (OOM killer, a crash)
        assert _until(lambda: _master_and_workers(urlsplit(base).port or 0)[1] - {worker})
        assert _until(lambda: call(base, "GET", "/readyz")[0] == 200)
        assert rules_served(base, key)["toml"] == RULES.read_text()

        _, [worker] = _master_and_workers(urlsplit(base).port or 0)
        os.kill(master, signal.SIGHUP)  # a reload with the file still broken changes nothing
        assert _until(lambda: _master_and_workers(urlsplit(base).port or 0)[1] - {worker})
        assert _until(lambda: call(base, "GET", "/readyz")[0] == 200)
        assert rules_served(base, key)["toml"] == RULES.read_text()

        fixed = RULES.read_text().replace("max = 1", "max = 2", 1)
        rules.write_text(fixed)
        _, [worker] = _master_and_workers(urlsplit(base).port or 0)
        os.kill(master, signal.SIGHUP)  # a reload once it validates serves it
        assert _until(lambda: _master_and_workers(urlsplit(base).port or 0)[1] - {worker})
        assert _until(lambda: call(base, "GET", "/readyz")[0] == 200)
        assert _until(lambda: rules_served(base, key)["toml"] == fixed)


def test_the_start_check_still_refuses_a_broken_file(settings, tmp_path):
    rules = tmp_path / "rules.toml"
    rules.write_text("[[caps]]\nmax = -1\n")
    with pytest.raises(ValidationError, match=str(rules)):
        check_settings({**settings, "STORE_URL": "memory://", "RULES": str(rules)})


def test_a_broken_config_file_does_not_stop_a_restarted_worker(model_dir, tmp_path):
    """A worker re-read RAPPORT_CONFIG at boot: a typo there was an outage at the next crash."""
    config = tmp_path / "rapport.toml"
    config.write_text(f'rules = "{RULES}"\n')
    environment = memory_server(model_dir, tmp_path, RAPPORT_CONFIG=str(config))
    with running_server(environment, workers=1) as base:
        master, [worker] = _master_and_workers(urlsplit(base).port or 0)
        config.write_text(f'rules = "{RULES}"\nrulez = "typo"\n')
        os.kill(worker, signal.SIGKILL)
        assert _until(lambda: _master_and_workers(urlsplit(base).port or 0)[1] - {worker})
        assert _until(lambda: call(base, "GET", "/readyz")[0] == 200)
        _, [worker] = _master_and_workers(urlsplit(base).port or 0)
        os.kill(master, signal.SIGHUP)  # the master keeps running on what it pinned
        assert _until(lambda: _master_and_workers(urlsplit(base).port or 0)[1] - {worker})
        assert _until(lambda: call(base, "GET", "/readyz")[0] == 200)


def test_files_of_one_name_are_pinned_apart_and_a_lost_copy_falls_back(tmp_path, caplog):
    """rules/rapport.toml beside rapport.toml: one copy overwrote the other, and workers
    loaded the settings file as their rules."""
    from api.config import load_settings

    (tmp_path / "rules").mkdir()
    rules = tmp_path / "rules" / "rapport.toml"
    rules.write_text(RULES.read_text())
    config = tmp_path / "rapport.toml"
    config.write_text(f'rules = "{rules}"\n')
    environ = {"RAPPORT_CONFIG": str(config)}
    pins = Pins(environ)
    try:
        pins.pin(load_settings(environ))
        assert Path(environ[PINNED["RULES"]]).read_text() == RULES.read_text()
        assert Path(environ["RAPPORT_CONFIG"]).read_text() == config.read_text()
        Path(environ["RAPPORT_CONFIG"]).unlink()  # a cleaner empties /tmp
        assert load_settings(environ)["RULES"] == str(rules)  # read from the original
        assert "pinned copy" in caplog.text
    finally:
        pins.remove()


def test_a_reload_decides_the_secret_and_refuses_memory_under_several_workers(tmp_path):
    """The master's own variables outranked the file: a secret_key added to it was ignored."""
    from api.serve import WorkerChoices

    config = tmp_path / "rapport.toml"
    config.write_text('store_url = "redis://127.0.0.1:1/0"\n')
    environ = {"RAPPORT_CONFIG": str(config)}
    pins = Pins(environ)
    choices = WorkerChoices(workers=2)
    try:
        from api.config import load_settings

        started = load_settings(environ)
        pins.pin(started)
        choices.apply(started, environ)
        generated = environ["RAPPORT_SECRET_KEY"]
        choices.reload(pins, environ)  # nothing changed: the generated secret is kept
        assert environ["RAPPORT_SECRET_KEY"] == generated
        config.write_text('store_url = "redis://127.0.0.1:1/0"\nsecret_key = "' + "k" * 32 + '"\n')
        choices.reload(pins, environ)
        assert "RAPPORT_SECRET_KEY" not in environ  # the file's key is the one now
        assert load_settings(environ)["SECRET_KEY"] == "k" * 32
        config.write_text('store_url = "memory://"\n')
        choices.reload(pins, environ)  # refused: two workers would keep two states
        assert load_settings(environ)["STORE_URL"] == "redis://127.0.0.1:1/0"
    finally:
        pins.remove()
