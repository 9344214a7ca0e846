"""End to end: real gunicorn workers, real Redis, over HTTP on a loopback port."""

from __future__ import annotations

import http.client
import json
import os
import signal
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from api.auth import KeyRing, Role
from api.testing import call, running_server

from .conftest import compose_body

pytestmark = pytest.mark.redis


@pytest.fixture(scope="module")
def server(redis_url, model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("server")
    # The bundled rules without quiet hours, so a send is possible whenever the suite runs.
    defaults = (Path(__file__).resolve().parents[2] / "fatigue" / "default_rules.toml").read_text()
    start = defaults.index("[quiet_hours]")
    end = defaults.index("\n\n", start)
    (root / "rules.toml").write_text(defaults[:start] + defaults[end + 2 :])
    keys = KeyRing(root / "keys.json")
    tokens = {role: keys.create(role.value, frozenset({role})) for role in Role}
    environment = {
        "RAPPORT_STORE_URL": redis_url.rsplit("/", 1)[0] + "/9",
        "RAPPORT_MODEL_DIR": str(model_dir),
        "RAPPORT_TEMPLATES_DIR": str(root / "templates"),
        "RAPPORT_API_KEYS_FILE": str(root / "keys.json"),
        "RAPPORT_EVENT_LOG_DIR": str(root / "events"),
        "RAPPORT_SECRET_KEY": "end-to-end-secret-for-links",
        "RAPPORT_PUBLIC_URL": "http://localhost:1",
        "RAPPORT_RULES": str(root / "rules.toml"),
    }
    import redis

    redis.Redis.from_url(environment["RAPPORT_STORE_URL"]).flushdb()
    with running_server(environment, workers=2) as base:
        yield base, tokens, root


def body(user: str, key: str) -> dict:
    """The README's compose request in UTC (the server runs on the real clock)."""
    request = compose_body(user, key)
    request["recipient"]["timezone"] = "UTC"
    return request


def test_compose_events_and_unsubscribe_over_http(server):
    base, tokens, root = server
    platform = tokens[Role.PLATFORM]
    status, _, raw = call(base, "POST", "/v1/compose", body("12347", "e2e-1"), platform)
    assert status == 200, raw
    answer = json.loads(raw)
    assert answer["decision"]["action"] == "send", answer["decision"]["reasons"]
    assert all(reason["rule"] != "quiet_hours" for reason in answer["decision"]["reasons"])
    decision_id = answer["decision"]["id"]

    # Retries land on any worker: Redis makes them return the same decision.
    for _ in range(4):
        again = json.loads(call(base, "POST", "/v1/compose", body("12347", "e2e-1"), platform)[2])
        assert again["decision"]["id"] == decision_id

    event = {
        "type": "open",
        "user_id": "12347",
        "timestamp": "2026-11-22T10:00:00Z",
        "decision_id": decision_id,
    }
    status, _, raw = call(base, "POST", "/v1/events", {"events": [event]}, platform)
    assert status == 202 and json.loads(raw) == {"accepted": 1, "rejected": []}
    logged = [
        json.loads(line)
        for path in (root / "events").glob("*.jsonl")
        for line in path.read_text().splitlines()
    ]
    assert logged[-1]["decision_id"] == decision_id

    unsubscribe = answer["email"]["headers"]["List-Unsubscribe"].strip("<>")
    path = "/" + unsubscribe.split("/", 3)[3]
    status, headers, _ = call(
        base,
        "POST",
        path,
        data=b"List-Unsubscribe=One-Click",
        content_type="application/x-www-form-urlencoded",
    )
    assert status == 200 and "Set-Cookie" not in headers and "Location" not in headers
    status, _, raw = call(base, "POST", "/v1/compose", body("12347", "e2e-2"), platform)
    assert json.loads(raw)["decision"]["action"] == "suppress"

    explained = json.loads(
        call(base, "GET", "/v1/users/12347/fatigue", key=tokens[Role.ENGINEER])[2]
    )
    assert "all" in explained["suppression"] and explained["recent_sends"] == 1


def test_batch_streams_over_http_and_metrics_cover_every_worker(server):
    base, tokens, _ = server
    lines = "".join(json.dumps(body(str(12400 + n), f"e2e-b{n}")) + "\n" for n in range(200))
    status, headers, raw = call(
        base,
        "POST",
        "/v1/compose/batch",
        data=lines.encode(),
        key=tokens[Role.PLATFORM],
        content_type="application/x-ndjson",
    )
    assert status == 200 and headers["Content-Type"].startswith("application/x-ndjson")
    answers = [json.loads(line) for line in raw.decode().splitlines()]
    assert [answer["line"] for answer in answers] == list(range(1, 201))
    status, _, metrics = call(base, "GET", "/metrics")
    assert status == 200
    assert b"rapport_decisions_total" in metrics
    assert b"rapport_http_request_duration_seconds_count" in metrics


def test_requests_gunicorn_refuses_itself_get_problem_json_not_html(server):
    base, _, _ = server
    parts = urlsplit(base)
    for path, headers, status in (
        ("/v1/users/" + "x" * 5000 + "/fatigue", {}, 414),  # past limit_request_line
        ("/healthz", {"X-Padding": "y" * 9000}, 431),  # a header past limit_request_field_size
    ):
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        document = json.loads(response.read())
        connection.close()
        assert response.status == status
        assert response.getheader("Content-Type") == "application/problem+json"
        assert document["status"] == status and document["type"] == "/problems/http-error"
        assert "too large" in document["detail"].lower() or "too long" in document["detail"]


def test_auth_and_errors_over_http(server):
    base, tokens, _ = server
    assert call(base, "POST", "/v1/compose", body("1", "x"))[0] == 401
    assert call(base, "POST", "/v1/compose", body("1", "x"), tokens[Role.MARKETER])[0] == 403
    status, headers, _ = call(base, "POST", "/v1/compose", data=b"{", key=tokens[Role.PLATFORM])
    assert status == 400 and headers["Content-Type"] == "application/problem+json"


def memory_server(model_dir: Path, root: Path, **more: str) -> dict[str, str]:
    """The variables of a one-worker ``rapport serve`` on memory://, its files under ``root``."""
    return {
        "RAPPORT_STORE_URL": "memory://", "RAPPORT_MODEL_DIR": str(model_dir),
        "RAPPORT_TEMPLATES_DIR": str(root / "templates"),
        "RAPPORT_API_KEYS_FILE": str(root / "keys.json"),
        "RAPPORT_EVENT_LOG_DIR": str(root / "events"),
        "RAPPORT_SECRET_KEY": "end-to-end-secret-for-links", **more,
    }  # fmt: skip


def _processes() -> dict[int, tuple[int, str]]:
    """Every process's parent pid and command line (Linux /proc)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except (OSError, ValueError):
                continue  # gone meanwhile
            found[int(entry.name)] = (parent, command)
    return found


def _master_and_workers(port: int) -> tuple[int, set[int]]:
    processes = _processes()
    master = next(
        pid
        for pid, (parent, command) in processes.items()
        if "rapport serve" in command and f"--port {port} " in command
        and processes.get(parent, (0, ""))[1].find("rapport serve") < 0
    )  # fmt: skip
    return master, {pid for pid, (parent, _) in processes.items() if parent == master}


def _until(check, seconds: float = 30.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return False


@pytest.mark.parametrize("signal_to", ["master-hup", "worker-term"])
def test_a_reload_or_a_worker_leaving_keeps_the_server_and_its_metrics(
    signal_to, model_dir, tmp_path
):
    """A worker that exits cleanly must not take the shared metrics directory with it."""
    environment = memory_server(model_dir, tmp_path)
    with running_server(environment, workers=1) as base:
        master, workers = _master_and_workers(urlsplit(base).port or 0)
        assert len(workers) == 1
        if signal_to == "master-hup":
            os.kill(master, signal.SIGHUP)
        else:
            os.kill(next(iter(workers)), signal.SIGTERM)
        assert _until(lambda: _master_and_workers(urlsplit(base).port or 0)[1].isdisjoint(workers))
        assert _until(lambda: call(base, "GET", "/readyz")[0] == 200)
        status, _, metrics = call(base, "GET", "/metrics")
        assert status == 200 and b"rapport_http_request" in metrics
        assert _master_and_workers(urlsplit(base).port or 0)[0] == master
