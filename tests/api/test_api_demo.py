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
    keys = KeyRing(tmp_path / "var" / "api-keys.json")  # the file `rapport keys create` uses
    found = keys.authenticate(key)
    assert found is not None and found.roles == {Role.ADMIN}
    platform = keys.create("esp", frozenset({Role.PLATFORM}))  # as the README's API section does

    second = CliRunner().invoke(demo, ["--no-serve"])
    assert second.exit_code == 0 and "training" not in second.stderr
    assert keys.authenticate(key) is None  # the previous run's demo key is forgotten
    assert keys.authenticate(platform) is not None  # and no other key


def test_a_demo_on_a_port_in_use_says_so_and_keeps_the_running_demos_key(
    tmp_path: Path, monkeypatch
):
    import socket

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RAPPORT_API_KEYS_FILE", raising=False)
    monkeypatch.setenv("RAPPORT_MODEL_DIR", str(tmp_path / "model"))
    running = CliRunner().invoke(demo, ["--no-serve"])
    key = next(word for word in running.stdout.split() if word.startswith("rpk_"))
    with socket.socket() as held:  # the running demo's listening socket
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        second = CliRunner().invoke(demo, ["--port", str(port)])
    assert second.exit_code != 0
    assert f"cannot listen on 127.0.0.1:{port}" in second.output and "--port" in second.output
    assert "rpk_" not in second.output  # no key printed for a server that never started
    assert KeyRing(tmp_path / "var" / "api-keys.json").authenticate(key) is not None


def test_the_demos_example_customer_is_somewhere_it_is_day():
    """The bundled rules' quiet hours (21:00-08:00) would defer the example half the day."""
    from datetime import UTC, datetime, timedelta
    from zoneinfo import ZoneInfo

    from api.demo import daytime_zone, examples

    for hour in range(0, 24 * 365, 7):  # every hour of the day, across the year's clock changes
        now = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(hours=hour, minutes=59)
        zone = daytime_zone(now)
        assert 10 <= now.astimezone(ZoneInfo(zone)).hour < 18, (now, zone)
    night_in_london = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)
    text = examples("http://localhost:8000", "rpk_x", night_in_london)
    assert '"timezone": "Asia/Tokyo"' in text and '"dry_run": false' in text


@pytest.mark.parametrize("url", ["memory://", "Memory://", "MEMORY://", " memory://"])
def test_memory_store_runs_one_worker(url):
    """Every spelling the store accepts: two workers on Memory:// kept two separate states."""
    assert default_workers(url) == 1
    assert default_workers("redis://localhost:6379/0") >= 2
    check_workers("redis://localhost:6379/0", 4)
    with pytest.raises(ConfigurationError, match="own fatigue state"):
        check_workers(url, 2)


def test_workers_follow_the_cores_this_process_may_use(monkeypatch, tmp_path: Path):
    """Affinity and a cgroup quota, not the host's core count (64 workers in a 2-CPU box)."""
    from api import serve as serve_module

    monkeypatch.setattr(serve_module.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    quota = tmp_path / "cpu.max"
    monkeypatch.setattr(serve_module, "CGROUP_CPU_MAX", str(quota))
    quota.write_text("max 100000\n")
    assert serve_module.usable_cores() == 4
    quota.write_text("150000 100000\n")  # one and a half CPUs: two workers' worth
    assert serve_module.usable_cores() == 2
    assert default_workers("redis://localhost:6379/0") == 2


def test_a_secret_key_from_the_config_file_signs_the_links(tmp_path: Path):
    """serve looked only at the environment, then set a random key that beat the file's."""
    from api.config import load_settings
    from api.serve import share_secret

    config = tmp_path / "rapport.toml"
    config.write_text('secret_key = "from-the-config-file-0123"\n')
    environ = {"RAPPORT_CONFIG": str(config)}
    share_secret(load_settings(environ), environ)
    assert "RAPPORT_SECRET_KEY" not in environ  # the workers read the file's key
    assert load_settings(environ)["SECRET_KEY"] == "from-the-config-file-0123"
    unconfigured: dict[str, str] = {}
    share_secret(load_settings(unconfigured), unconfigured)
    assert len(unconfigured["RAPPORT_SECRET_KEY"]) >= 32  # one made-up key for every worker


@pytest.mark.parametrize("value", ["nan", "-1", "inf"])
def test_a_reload_interval_that_would_switch_reloads_off_is_refused(value, monkeypatch):
    from api.config import load_settings

    with pytest.raises(ConfigurationError, match="model_reload_interval"):
        load_settings({"RAPPORT_MODEL_RELOAD_INTERVAL": value})


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


@pytest.mark.parametrize(
    ("name", "value", "said"),
    [
        ("RAPPORT_PUBLIC_URL", "http://shop.example.com", "must be https://"),
        ("RAPPORT_SECRET_KEY", "short", "RAPPORT_SECRET_KEY: the link signing secret must be"),
        (
            "RAPPORT_TEMPLATES_DIR",
            "/dev/null/templates",
            "RAPPORT_TEMPLATES_DIR /dev/null/templates: /dev/null is not a directory",
        ),
        ("RAPPORT_STORE_URL", "redis://localhost:notaport/0", "Port could not be cast"),
        ("RAPPORT_STORE_URL", "postgres://x", "unknown fatigue store URL"),
        (
            "RAPPORT_STORE_URL",
            "redis://:s3cret@localhost:6379/0?prefx=a:",
            "store URL 'redis://***@localhost:6379/0?prefx=a:': unknown option 'prefx' (did you "
            "mean 'prefix'?)",
        ),
        (
            "RAPPORT_STORE_URL",
            "redis://:s3cret@localhost:notaport/0",
            "RAPPORT_STORE_URL 'redis://***@localhost:notaport/0': Port could not be cast",
        ),
        (
            "RAPPORT_STORE_URL",
            "redis://localhost:6379/0?password=s3cret&prefx=a:",
            "store URL 'redis://localhost:6379/0?password=***&prefx=a:': unknown option 'prefx'",
        ),
        (
            "RAPPORT_STORE_URL",
            "redis://localhost:6379/0?socket_timeout=0",
            "socket_timeout must be more than 0 seconds",
        ),
        ("RAPPORT_RULES", "/nonexistent/rules.toml", "cannot read rule file"),
        ("RAPPORT_CAMPAIGNS_FILE", "/nonexistent/campaigns.toml", "campaign registry not found"),
    ],
)
def test_serve_refuses_bad_settings_in_one_line_before_any_worker_starts(
    name, value, said, monkeypatch, model_dir
):
    from api.commands import serve

    monkeypatch.setenv("RAPPORT_MODEL_DIR", str(model_dir))
    monkeypatch.setenv(name, value)
    result = CliRunner().invoke(serve, ["--port", "1", "--workers", "1"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.startswith("Error: ") and said in result.output
    assert "s3cret" not in result.output  # a password in the URL is never repeated


def test_access_lines_never_carry_a_link_token():
    """A token unsubscribes or redirects on someone's behalf: --access-log must not keep it."""
    from api.serve import redacted

    assert redacted("POST /u/eyJ1IjoiNDIifQ.abc-def HTTP/1.1") == "POST /u/… HTTP/1.1"
    assert redacted("/c/eyJ1IjoiNDIifQ.x?utm=1") == "/c/…?utm=1"
    assert redacted("GET /v1/users/u/fatigue HTTP/1.1") == "GET /v1/users/u/fatigue HTTP/1.1"
    # Other spellings reach the same page (the router merges slashes, the server decodes %75):
    # any long token-shaped segment is cut, whatever leads to it.
    token = "eyJ1IjoiNzc3IiwiZCI6ImQtMSJ9.aRAuNw.7J-0xVSQ1q0hs8ExGmbfeYxVtNY"
    for path in (f"//u/{token}", f"/%75/{token}", f"/u//{token}"):
        assert token not in redacted(f"GET {path} HTTP/1.1")
        assert redacted(f"GET {path} HTTP/1.1").endswith("/… HTTP/1.1")
    assert redacted("GET /v1/templates/picked-for-you HTTP/1.1").endswith("picked-for-you HTTP/1.1")


def test_the_access_log_leaves_out_probes_that_succeeded(tmp_path: Path, model_dir: Path):
    """Load balancers and Prometheus poll all day; their lines would bury everyone else's."""
    from api.testing import call, running_server

    from .test_api_server import memory_server

    environment = memory_server(model_dir, tmp_path)
    log = tmp_path / "server.log"
    with running_server(environment, workers=1, options=["--access-log"], log_path=log) as base:
        for path in ("/healthz", "/readyz", "/metrics", "/no-such-page", "/v1/templates"):
            call(base, "GET", path)
    lines = [line for line in log.read_text().splitlines() if '"GET /' in line]
    assert any('"GET /no-such-page' in line and " 404 " in line for line in lines), lines
    assert any('"GET /v1/templates' in line and " 401 " in line for line in lines), lines
    assert not [line for line in lines if any(p in line for p in ("/healthz", "/metrics"))]
    assert not [line for line in lines if "/readyz" in line and " 200 " in line]
    # Each worker says what it serves when it is ready.
    ready = [line for line in log.read_text().splitlines() if "worker ready: model " in line]
    assert len(ready) == 1 and "store memory://, rules bundled defaults" in ready[0], ready
