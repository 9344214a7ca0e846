"""``rapport events replay``: a state store that lost its data gets its suppressions back."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import redis
from click.testing import CliRunner

from api import create_app
from api.auth import Role
from api.cli import main

pytestmark = pytest.mark.redis

EVENTS = [
    {"type": "unsubscribe", "user_id": "left", "timestamp": "2026-11-20T09:00:00Z",
     "campaign_id": "weekly-picks"},
    {"type": "complaint", "user_id": "angry", "timestamp": "2026-11-21T09:00:00Z"},
    {"type": "open", "user_id": "keen", "timestamp": "2026-11-22T09:00:00Z"},
    # Commerce events the log holds for training: not fatigue state, and not damaged lines.
    {"type": "view", "user_id": "keen", "timestamp": "2026-11-22T09:01:00Z", "item_id": "22423"},
    {"type": "add_to_cart", "user_id": "keen", "timestamp": "2026-11-22T09:02:00Z",
     "item_id": "22423"},
]  # fmt: skip


@pytest.fixture
def stored(settings, clock, redis_url, role_keys):
    """An app on Redis under a prefix of its own, with the events above acknowledged."""
    url = f"{redis_url}{'&' if '?' in redis_url else '?'}prefix=replay{id(settings)}:"
    app = create_app({**settings, "STORE_URL": url, "CLOCK": clock})
    client = app.test_client()
    headers = {"Authorization": f"Bearer {role_keys[Role.PLATFORM]}"}
    answer = client.post("/v1/events", json={"events": EVENTS}, headers=headers)
    assert answer.status_code == 202 and answer.json["accepted"] == 5
    yield app, url
    wipe(url)
    app.extensions["rapport"].get("store").close()


def wipe(url: str) -> None:
    """What a Redis restarted without persistence leaves of this store: nothing."""
    prefix = parse_qs(urlsplit(url).query)["prefix"][0]
    with redis.Redis.from_url(url.split("?")[0]) as server:
        for key in server.scan_iter(match=f"{prefix}*"):
            server.delete(key)


def state(app, user: str):
    return app.extensions["rapport"].get("governor").explain(user)


def run(settings, url: str, *arguments: str):
    environment = {
        "RAPPORT_STORE_URL": url,
        "RAPPORT_EVENT_LOG_DIR": settings["EVENT_LOG_DIR"],
        "RAPPORT_CONFIG": "",
    }
    return CliRunner().invoke(main, ["events", "replay", *arguments], env=environment)


def test_a_wiped_store_gets_its_suppressions_back_and_a_second_run_changes_nothing(
    stored, settings
):
    app, url = stored
    assert "all" in state(app, "left").suppression
    wipe(url)
    assert state(app, "left").suppression == {} and state(app, "angry").suppression == {}
    result = run(settings, url)
    assert result.exit_code == 0, result.output
    assert "replayed 2 suppression events from 1 file(s)" in result.output
    assert "1 engagement events left out (--all)" in result.output
    assert "all" in state(app, "left").suppression
    assert "complaint" in state(app, "angry").suppression
    assert state(app, "keen").last_engaged is None  # engagement only with --all
    again = run(settings, url)
    assert again.exit_code == 0 and "all" in state(app, "left").suppression
    everything = run(settings, url, "--all")
    assert everything.exit_code == 0, everything.output
    assert state(app, "keen").last_engaged is not None


def test_readiness_fails_once_the_store_lost_its_data_until_this_host_replayed(
    stored, settings, caplog
):
    """A Redis restarted empty answers and takes writes: nothing else would notice."""
    app, url = stored
    client = app.test_client()
    assert client.get("/readyz").status_code == 200  # the store's identity is now this host's
    wipe(url)
    lost = client.get("/readyz")
    assert lost.status_code == 503 and lost.json["checks"]["store_state"].startswith("failed")
    assert [c for c, v in lost.json["checks"].items() if v != "ok"] == ["store_state"]
    said = [r.getMessage() for r in caplog.records if "store_state" in r.getMessage()]
    assert said and "run 'rapport events replay' on this host" in said[0]
    partial = run(settings, url, "--since", "2000-01-01")
    assert partial.exit_code == 0 and client.get("/readyz").status_code == 503  # not the whole log
    assert run(settings, url).exit_code == 0
    assert client.get("/readyz").status_code == 200
    assert "all" in state(app, "left").suppression


def test_a_host_new_to_a_store_takes_its_identity_and_a_new_store_gets_one(
    stored, settings, tmp_path
):
    from api.store_state import IDENTITY_FILE

    app, url = stored
    assert app.test_client().get("/readyz").status_code == 200
    first = (Path(settings["EVENT_LOG_DIR"]) / IDENTITY_FILE).read_text().strip()
    other = create_app({**settings, "STORE_URL": url, "EVENT_LOG_DIR": str(tmp_path / "b")})
    assert other.test_client().get("/readyz").status_code == 200  # a second host joins
    assert (tmp_path / "b" / IDENTITY_FILE).read_text().strip() == first
    other.extensions["rapport"].get("store").close()


def test_a_damaged_line_is_named_and_the_rest_is_replayed(stored, settings):
    app, url = stored
    wipe(url)
    [segment] = Path(settings["EVENT_LOG_DIR"]).glob("events-*.jsonl")
    lines = segment.read_text().splitlines()
    segment.write_text("\n".join([lines[0], '{"event": "unsubscribe"', *lines[1:]]) + "\n")
    result = run(settings, url)
    assert result.exit_code == 1
    assert f"skipped {segment}:2: not an event record" in result.output
    assert "1 line(s) were not event records" in result.output
    assert (
        "all" in state(app, "left").suppression and "complaint" in state(app, "angry").suppression
    )


def test_since_skips_older_days_and_a_memory_store_is_refused(stored, settings):
    _, url = stored
    wipe(url)
    folder = Path(settings["EVENT_LOG_DIR"])
    [segment] = folder.glob("events-*.jsonl")
    segment.rename(folder / "events-2026-11-01.jsonl")  # written on an earlier day
    result = run(settings, url, "--since", "2026-11-02")
    assert result.exit_code == 1 and "no event log files" in result.output
    refused = run(settings, "memory://")
    assert refused.exit_code == 1 and "memory://" in refused.output
    bad = run(settings, "redis://:s3cret@localhost:notaport/0")
    assert bad.exit_code == 1 and "Traceback" not in bad.output and "s3cret" not in bad.output
    assert "RAPPORT_STORE_URL 'redis://***@localhost:notaport/0': Port could not be cast" in (
        bad.output
    )
