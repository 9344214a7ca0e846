"""Configuration, problem documents, keys, the event log, health, metrics and the spec."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from api import create_app
from api.auth import KeyRing, Role, digest_of, parse_roles
from api.commands import keys
from api.config import DEFAULTS, load_settings, read_config_file
from api.eventlog import EventLog
from fatigue.clock import FrozenClock
from fatigue.errors import ConfigurationError, StoreError, ValidationError


def test_defaults_need_no_configuration():
    settings = load_settings(environ={})
    assert settings["STORE_URL"] == "memory://"
    assert settings == DEFAULTS


def test_file_then_environment_then_overrides(tmp_path: Path):
    config = tmp_path / "rapport.toml"
    config.write_text('store_url = "redis://cache:6379/1"\nmax_events_per_request = 50\n')
    environ = {"RAPPORT_CONFIG": str(config), "RAPPORT_MAX_EVENTS_PER_REQUEST": "70"}
    settings = load_settings(environ=environ, overrides={"RULES": "rules.toml"})
    assert settings["STORE_URL"] == "redis://cache:6379/1"
    assert settings["MAX_EVENTS_PER_REQUEST"] == 70
    assert settings["RULES"] == "rules.toml"


def test_config_file_problems_name_file_and_key(tmp_path: Path):
    config = tmp_path / "rapport.toml"
    config.write_text('stor_url = "redis://x"\nmax_batch_bytes = "lots"\n')
    with pytest.raises(ValidationError) as caught:
        read_config_file(config)
    fields = {problem.field for problem in caught.value.problems}
    assert fields == {"stor_url", "max_batch_bytes"}
    assert all(problem.source == str(config) for problem in caught.value.problems)


def test_bad_environment_value_names_the_variable():
    with pytest.raises(ConfigurationError, match="RAPPORT_MAX_BATCH_BYTES"):
        load_settings(environ={"RAPPORT_MAX_BATCH_BYTES": "-3"})


def test_a_misspelt_variable_is_named_once_with_the_setting_it_resembles(caplog, monkeypatch):
    from api import config

    monkeypatch.setattr(config, "_warned", set())  # whatever this process named before
    environ = {"RAPPORT_MODEL_DIRR": "/srv/model", "RAPPORT_CONFIG_ORIGINAL": "x.toml",
               "RAPPORT_PINNED_RULES": "r.toml", "RAPPORT_CHROMIUM": "/usr/bin/chromium",
               "RAPPORT_STORE_URL": "memory://", "OTHER_THING": "1"}  # fmt: skip
    settings = load_settings(environ)
    load_settings(environ)  # every worker and command loads the settings: said once
    assert settings["MODEL_DIR"] == "var/model"
    assert [record.getMessage() for record in caplog.records] == [
        "environment variable RAPPORT_MODEL_DIRR is not a Rapport setting: ignored "
        "(did you mean RAPPORT_MODEL_DIR?)"
    ]


def test_failure_series_are_shown_at_zero_before_any_failure(settings):
    """An alert on a failure rate needs the series before the first failure happens.

    In a process of its own: in this one, earlier tests have counted failures already.
    """
    import json
    import subprocess
    import sys

    from api.metrics import EVENT_OUTCOMES, REJECTION_REASONS, StorePart

    script = """
import json, sys
from prometheus_client import REGISTRY
from api import create_app
create_app(json.loads(sys.argv[1]))
found = {}
for name, label, values in json.loads(sys.argv[2]):
    for value in values:
        found[f"{name}/{value}"] = REGISTRY.get_sample_value(name, {label: value})
print(json.dumps(found))
"""
    asked = [
        ("rapport_store_errors_total", "part", [part.value for part in StorePart]),
        ("rapport_events_total", "outcome", list(EVENT_OUTCOMES)),
        ("rapport_events_rejected_total", "reason", list(REJECTION_REASONS)),
    ]
    answer = subprocess.run(
        [sys.executable, "-c", script, json.dumps(settings), json.dumps(asked)],
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    found = json.loads(answer.stdout.splitlines()[-1])
    assert found and set(found.values()) == {0.0}, found  # None: a series not shown


def test_missing_config_file_is_a_configuration_error(tmp_path: Path):
    with pytest.raises(ConfigurationError, match="not found"):
        load_settings(environ={"RAPPORT_CONFIG": str(tmp_path / "absent.toml")})


def test_keys_file_stores_only_digests(tmp_path: Path):
    path = tmp_path / "keys.json"
    token = KeyRing(path).create("esp", frozenset({Role.PLATFORM}))
    stored = path.read_text()
    assert token not in stored
    assert digest_of(token) in stored
    assert os.stat(path).st_mode & 0o077 == 0
    key = KeyRing(path).authenticate(token)
    assert key is not None and key.name == "esp" and key.roles == {Role.PLATFORM}
    assert KeyRing(path).authenticate(token + "x") is None


def test_duplicate_key_names_and_unknown_roles_are_refused(tmp_path: Path):
    ring = KeyRing(tmp_path / "keys.json")
    ring.create("esp", frozenset({Role.PLATFORM}))
    with pytest.raises(ValidationError, match="already exists"):
        ring.create("esp", frozenset({Role.ADMIN}))
    with pytest.raises(ValidationError, match="unknown role superuser"):
        parse_roles("platform,superuser")


def test_keyring_sees_keys_created_after_it_loaded(tmp_path: Path):
    path = tmp_path / "keys.json"
    serving = KeyRing(path)
    assert serving.current() == ()
    token = KeyRing(path).create("late", frozenset({Role.MARKETER}))
    assert serving.authenticate(token) is not None


def test_keys_create_prints_the_key_alone_on_stdout(tmp_path: Path, monkeypatch):
    path = tmp_path / "keys.json"
    monkeypatch.setenv("RAPPORT_API_KEYS_FILE", str(path))
    result = CliRunner().invoke(keys, ["create", "--name", "esp", "--roles", "platform,marketer"])
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    assert token.startswith("rpk_") and "\n" not in token
    key = KeyRing(path).authenticate(token)
    assert key is not None and key.roles == {Role.PLATFORM, Role.MARKETER}
    listed = CliRunner().invoke(keys, ["list"])
    assert "esp\tmarketer,platform" in listed.stdout and token not in listed.stdout


def test_keys_create_rejects_unknown_role(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("RAPPORT_API_KEYS_FILE", str(tmp_path / "keys.json"))
    result = CliRunner().invoke(keys, ["create", "--name", "x", "--roles", "root"])
    assert result.exit_code != 0
    assert "unknown role root" in result.output
    assert not (tmp_path / "keys.json").exists()


def test_unreadable_keys_file_is_a_configuration_error(tmp_path: Path):
    path = tmp_path / "keys.json"
    path.write_text("{not json")
    with pytest.raises(ConfigurationError, match=r"keys\.json"):
        KeyRing(path).current()


def test_event_log_appends_daily_segments(tmp_path: Path):
    from datetime import UTC, datetime

    clock = FrozenClock(datetime(2026, 11, 22, 23, 59, tzinfo=UTC))
    log = EventLog(tmp_path / "events", clock)
    log.append([{"user_id": "1", "event": "open"}])
    clock.advance(minutes=2)
    log.append([{"user_id": "2", "event": "click"}, {"user_id": "3", "event": "view"}])
    names = sorted(path.name for path in (tmp_path / "events").iterdir())
    assert names == ["events-2026-11-22.jsonl", "events-2026-11-23.jsonl"]
    assert [record["user_id"] for record in log.read()] == ["1", "2", "3"]


def test_event_log_rolls_back_a_failed_write(tmp_path: Path, monkeypatch):
    # A full disk cannot be caused for real in a test; this fault alone is simulated.
    log = EventLog(tmp_path)
    log.append([{"user_id": "1"}])
    before = log.segment().read_bytes()
    real_write = os.write
    calls = []

    def half_then_full(fd: int, data: bytes) -> int:
        calls.append(len(data))
        if len(calls) == 1:
            return real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", half_then_full)
    with pytest.raises(StoreError, match="No space left"):
        log.append([{"user_id": "2", "note": "x" * 100}, {"user_id": "3"}])
    monkeypatch.undo()
    assert log.segment().read_bytes() == before


def test_readiness_of_the_event_log_follows_failed_writes(tmp_path: Path):
    from datetime import UTC, datetime

    clock = FrozenClock(datetime(2026, 11, 22, 12, tzinfo=UTC))
    log = EventLog(tmp_path / "events", clock)
    log.append([{"user_id": "1"}])
    log.check()
    log.segment().unlink()
    log.segment().mkdir()  # a real failure: today's segment cannot be opened for appending
    with pytest.raises(StoreError):
        log.append([{"user_id": "2"}])
    with pytest.raises(StoreError, match="the last write failed"):
        log.check()  # write access alone said "ok" while every append failed
    clock.advance(seconds=31)
    log.check()  # long enough: traffic may find out whether the fault is gone
    log.segment().rmdir()
    log.append([{"user_id": "3"}])
    log.check()


def test_readiness_of_the_event_log_needs_free_space(tmp_path: Path, monkeypatch):
    # A full disk cannot be caused for real in a test; the file system's answer is simulated.
    log = EventLog(tmp_path / "events")
    real = os.statvfs(tmp_path)
    full = os.statvfs_result((real.f_bsize, real.f_frsize, real.f_blocks, 0, 0, *real[5:]))
    monkeypatch.setattr(os, "statvfs", lambda path: full)
    with pytest.raises(StoreError, match="only 0 bytes free"):
        log.check()
    monkeypatch.undo()
    log.check()


def test_health_and_readiness(client):
    assert client.get("/healthz").json == {"status": "ok", "checks": {}}
    ready = client.get("/readyz")
    assert ready.json["status"] == "ready", ready.json
    assert ready.status_code == 200


def test_warming_compiles_the_published_templates_and_skips_one_that_fails(
    app, client, auth, caplog
):
    """A serving process compiles before traffic. A template never published is skipped
    quietly; one that cannot be read is only logged (its own requests answer for it), and the
    process still starts."""
    shown = client.get("/v1/templates/picked-for-you", headers=auth("marketer")).json
    fields = {key: shown[key] for key in ("mjml", "subject", "preheader", "sample")}
    saved = client.put("/v1/templates/draft-only", json=fields, headers=auth("marketer"))
    assert saved.status_code == 201, saved.json
    renderer = app.extensions["rapport"].get("renderer")
    names = renderer.library.names()
    assert "draft-only" in names and "weekly-digest" in names
    read = renderer.library.source

    def unreadable_digest(name: str, version: int | None = None):
        if name == "weekly-digest":  # a disk fault, which a test cannot cause for real
            raise OSError("Input/output error")
        return read(name, version)

    renderer.library.source = unreadable_digest
    renderer.cache = type(renderer.cache)()  # the save compiled the draft's sample already
    app.extensions["rapport"].warm()
    assert len(renderer.cache) == len(names) - 2 >= 3
    assert "'weekly-digest' not compiled ahead of traffic: Input/output error" in caplog.text
    assert "draft-only" not in caplog.text


def test_readiness_names_a_broken_keys_file_and_an_unwritable_event_log(settings, clock, auth):
    """Each fails every request of its kind: not ready, and callers are not shown the paths."""
    Path(settings["API_KEYS_FILE"]).write_text("{not json")
    Path(settings["EVENT_LOG_DIR"]).write_text("a file where the directory should be")
    client = create_app({**settings, "CLOCK": clock}).test_client()
    ready = client.get("/readyz")
    assert ready.status_code == 503
    checks = ready.json["checks"]
    assert checks["api_keys"] != "ok" and checks["event_log"] != "ok" and checks["model"] == "ok"
    refused = client.post("/v1/events", json={"events": []}, headers=auth("platform"))
    assert refused.status_code == 503 and refused.json["type"] == "/problems/unavailable"
    assert settings["API_KEYS_FILE"] not in refused.text


def test_a_keys_file_broken_while_serving_keeps_the_keys_read_before(settings, clock, auth, caplog):
    """A bad copy over the keys file must not refuse every request: warn, keep, show in /readyz."""
    client = create_app({**settings, "CLOCK": clock}).test_client()
    assert client.get("/v1/users/1/fatigue", headers=auth("engineer")).status_code == 200
    keys = Path(settings["API_KEYS_FILE"])
    good = keys.read_text()
    keys.write_text(good[: len(good) // 2])  # cut short
    for _ in range(3):
        assert client.get("/v1/users/1/fatigue", headers=auth("engineer")).status_code == 200
    assert caplog.text.count("the keys read before stay in use") == 1  # once, not per request
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.json["checks"]["api_keys"] != "ok"
    keys.write_text(good)
    assert client.get("/readyz").status_code == 200


def test_a_keys_file_deleted_while_serving_keeps_the_keys_read_before(
    settings, clock, auth, caplog
):
    """A missing file gave no keys: every call 401 "unknown API key", /readyz ok, no log line."""
    client = create_app({**settings, "CLOCK": clock}).test_client()
    assert client.get("/v1/users/1/fatigue", headers=auth("engineer")).status_code == 200
    keys = Path(settings["API_KEYS_FILE"])
    good = keys.read_text()
    keys.unlink()
    for _ in range(3):
        assert client.get("/v1/users/1/fatigue", headers=auth("engineer")).status_code == 200
    gone = [r for r in caplog.records if "the API keys file is gone" in r.getMessage()]
    assert len(gone) == 1 and gone[0].levelname == "ERROR"
    assert "the keys read before stay in use" in gone[0].getMessage()
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json["checks"]["api_keys"] == "failed (KeysUnreadable; details in the server log)"
    keys.write_text(good)
    assert client.get("/readyz").status_code == 200
    assert "the API keys file reads again" in caplog.text


def test_a_worker_started_on_a_damaged_keys_file_answers_503_and_logs_it_once(
    settings, clock, auth, caplog
):
    """It answered 500 /problems/configuration with an ERROR line per request."""
    keys = Path(settings["API_KEYS_FILE"])
    good = keys.read_text()
    keys.write_text(good[: len(good) // 2])
    client = create_app({**settings, "CLOCK": clock}).test_client()
    for _ in range(3):
        refused = client.get("/v1/users/1/fatigue", headers=auth("engineer"))
        assert refused.status_code == 503 and refused.json["type"] == "/problems/unavailable"
        assert refused.json["detail"].startswith("the API keys file cannot be read")
        assert refused.headers["Retry-After"] == "5" and str(keys) not in refused.text
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "unreadable API keys file" in errors[0], errors
    assert client.get("/readyz").json["checks"]["api_keys"].startswith("failed (KeysUnreadable")
    keys.write_text(good)
    assert client.get("/v1/users/1/fatigue", headers=auth("engineer")).status_code == 200


def test_without_any_keys_file_requests_are_refused_as_unknown_keys(settings, clock, auth):
    """At start with no file at all: served, and refused (the documented behaviour stays)."""
    Path(settings["API_KEYS_FILE"]).unlink()
    client = create_app({**settings, "CLOCK": clock}).test_client()
    refused = client.get("/v1/users/1/fatigue", headers=auth("engineer"))
    assert refused.status_code == 401 and refused.json["detail"] == "unknown API key"
    assert client.get("/readyz").json["checks"]["api_keys"] == "ok"


def test_a_failed_event_log_write_is_named_as_the_event_log(settings, clock, auth):
    Path(settings["EVENT_LOG_DIR"]).write_text("a file where the directory should be")
    client = create_app({**settings, "CLOCK": clock}).test_client()
    event = {"type": "open", "user_id": "1", "timestamp": "2026-11-23T10:00:00Z"}
    refused = client.post("/v1/events", json={"events": [event]}, headers=auth("platform"))
    assert refused.status_code == 503
    assert refused.json["detail"] == "the event log is unavailable; retry shortly"


def test_unknown_route_is_problem_json(client):
    response = client.get("/v1/nothing-here")
    assert response.status_code == 404
    assert response.content_type == "application/problem+json"
    assert response.json["type"] == "/problems/not-found"
    assert client.get(response.json["type"]).status_code == 200


def test_wrong_method_is_problem_json(client):
    response = client.delete("/healthz")
    assert response.status_code == 405
    assert response.json["type"] == "/problems/method-not-allowed"
    assert "GET" in response.headers["Allow"]


def test_metrics_are_prometheus_text(client):
    client.get("/healthz")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    assert 'rapport_http_request_duration_seconds_count{method="GET",route="/healthz"' in (
        response.text
    )


def test_made_up_methods_share_one_metrics_label(client):
    for n in range(5):
        assert client.open("/healthz", method=f"XMADEUP{n}").status_code == 405
    text = client.get("/metrics").text
    assert "XMADEUP" not in text
    assert 'rapport_http_request_duration_seconds_count{method="other",route="unmatched"' in text


def test_openapi_document_and_docs_page(client):
    spec = client.get("/openapi.json").json
    assert spec["openapi"] == "3.1.0"
    assert "/healthz" in spec["paths"]
    assert "ProblemDocument" in spec["components"]["schemas"]
    page = client.get("/docs")
    assert page.status_code == 200 and "/healthz" in page.text
    json.dumps(spec)  # the whole document is plain JSON


def test_the_links_in_emails_are_in_the_document_as_public_pages(client):
    """Unsubscribe, preferences and click links are part of the contract mailbox providers use."""
    paths = client.get("/openapi.json").json["paths"]
    pages = {("/u/{token}", "get"), ("/u/{token}", "post"), ("/p/{token}", "get"),
             ("/p/{token}", "post"), ("/c/{token}", "get")}  # fmt: skip
    for path, method in pages:
        operation = paths[path][method]
        assert operation["security"] == [], (path, method)  # no key: a person follows it
        assert "text/html" in operation["responses"]["400"]["content"], (path, method)
    assert "302" in paths["/c/{token}"]["get"]["responses"]
    assert "503" in paths["/u/{token}"]["post"]["responses"]  # said when nothing could keep it
    form = paths["/p/{token}"]["post"]["requestBody"]["content"]
    assert list(form) == ["application/x-www-form-urlencoded"]
    assert "requestBody" not in paths["/u/{token}"]["post"]  # RFC 8058's body is not read


def test_path_parameters_are_typed_as_their_routes_take_them(client):
    """``<int:version>`` matches digits only: the document must say integer, not any text."""
    spec = client.get("/openapi.json").json
    operation = spec["paths"]["/v1/templates/{name}/versions/{version}"]["get"]
    types = {p["name"]: p["schema"]["type"] for p in operation["parameters"] if p["in"] == "path"}
    assert types == {"name": "string", "version": "integer"}


def test_keys_created_at_once_are_all_kept_and_the_file_keeps_its_mode(tmp_path: Path):
    """Creates raced (8 printed, 6 stored); a replaced file went back to 0600 for its creator."""
    from concurrent.futures import ThreadPoolExecutor

    path = tmp_path / "keys.json"
    KeyRing(path).create("first", frozenset({Role.PLATFORM}))
    path.chmod(0o640)  # the operator lets the server's group read it
    with ThreadPoolExecutor(8) as pool:
        tokens = list(pool.map(
            lambda n: KeyRing(path).create(f"key-{n}", frozenset({Role.PLATFORM})), range(8)
        ))  # fmt: skip
    ring = KeyRing(path)
    assert all(ring.authenticate(token) is not None for token in tokens)
    assert len(ring.current()) == 9
    assert path.stat().st_mode & 0o777 == 0o640


def test_serving_without_any_key_says_so_at_start(settings, tmp_path: Path, caplog):
    from api.serve import check_settings

    missing = tmp_path / "nowhere" / "keys.json"
    check_settings({**settings, "API_KEYS_FILE": str(missing), "STORE_URL": "memory://"})
    assert f"no API keys in {missing}" in caplog.text and "rapport keys create" in caplog.text


def test_every_answer_names_its_request_and_keeps_a_clients_plain_id(client):
    fresh = client.get("/healthz").headers["X-Request-Id"]
    again = client.get("/healthz").headers["X-Request-Id"]
    assert fresh and again and fresh != again
    kept = client.get("/healthz", headers={"X-Request-Id": "lb-7f3a.42:1"})
    assert kept.headers["X-Request-Id"] == "lb-7f3a.42:1"
    for hostile in ("two words", "x" * 129, 'a"b', ""):
        answer = client.get("/healthz", headers={"X-Request-Id": hostile})
        assert answer.headers["X-Request-Id"] not in (hostile, "")
    problem = client.get("/v1/nowhere", headers={"X-Request-Id": "trace-1"})
    assert problem.status_code == 404 and problem.json["request_id"] == "trace-1"


def test_an_unhandled_error_is_logged_with_its_route_and_request_id(
    client, auth, compose_request, settings, caplog
):
    from api.request_ids import RequestIdFilter

    client.post("/v1/compose", json=compose_request(), headers=auth("platform"))  # publishes
    published = Path(settings["TEMPLATES_DIR"]) / "picked-for-you" / "published.json"
    published.write_text("{truncated")  # a real fault: a half-copied file on the server
    caplog.handler.addFilter(RequestIdFilter())
    answer = client.post(
        "/v1/compose", json=compose_request(key="k-2"),
        headers={**auth("platform"), "X-Request-Id": "incident-9"},
    )  # fmt: skip
    assert answer.status_code == 500 and answer.json["request_id"] == "incident-9"
    assert "truncated" not in answer.text  # the detail stays in the log
    [record] = [r for r in caplog.records if r.getMessage().startswith("unhandled error")]
    assert record.getMessage() == "unhandled error answering POST /v1/compose"
    assert record.request_id == "incident-9"  # type: ignore[attr-defined]


def test_a_request_during_the_first_read_of_the_keys_file_waits_for_it(tmp_path, monkeypatch):
    """A thread that saw the new stamp used the keys before it (none): a valid key got 401."""
    import threading
    import time

    import api.auth

    path = tmp_path / "keys.json"
    token = KeyRing(path).create("esp", frozenset({Role.PLATFORM}))
    ring = KeyRing(path)
    real = api.auth._read_keys

    def slow(found):  # the file read takes a while (a slow disk, a big file)
        time.sleep(0.3)
        return real(found)

    monkeypatch.setattr(api.auth, "_read_keys", slow)
    answers: list[object] = []
    first = threading.Thread(target=lambda: answers.append(ring.authenticate(token)))
    first.start()
    time.sleep(0.1)  # the first request is reading the file now
    assert ring.authenticate(token) is not None
    first.join()
    assert answers[0] is not None
