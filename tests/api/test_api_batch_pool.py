"""One batch stream spread over helper processes: same answers, same order, real Redis."""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime

import pytest

from api import create_app
from api.services import services

from .test_api_batch import answers, ndjson, post_batch


@pytest.fixture
def pooled(redis_url, settings, role_keys, clock):
    prefix = f"t{uuid.uuid4().hex[:8]}:"
    app = create_app(
        {**settings, "STORE_URL": f"{redis_url}?prefix={prefix}", "BATCH_PROCESSES": 2,
         "CLOCK": clock}
    )  # fmt: skip
    yield app
    pool = services(app).get("batch_pool")
    pool.close()


@pytest.mark.redis
def test_helpers_answer_every_line_in_order_with_its_number(pooled, auth, compose_request):
    pool = services(pooled).get("batch_pool")
    assert pool is not None and pool.processes == 2
    users = [str(12347 + n) for n in range(300)]  # three chunks
    lines = [compose_request(u, f"p-{u}") for u in users]
    lines.insert(5, "{not json")
    lines.insert(200, compose_request("12999", "p-bad", items=0))
    body = ndjson(lines).replace("\n", "\n\n", 1)  # a blank line is skipped but counted
    response = pooled.test_client().post(
        "/v1/compose/batch", data=body,
        headers={**auth("platform"), "Content-Type": "application/x-ndjson"},
    )  # fmt: skip
    found = answers(response)
    assert [line["line"] for line in found] == [1, *range(3, 304)]
    assert found[5]["error"]["status"] == 400  # line 7: the JSON that is not
    assert found[200]["error"]["status"] == 422 and "items" in json.dumps(found[200]["error"])
    served = [line for line in found if "decision" in line]
    assert [line["user_id"] for line in served] == users
    assert {line["decision"]["action"] for line in served} >= {"send"}
    # The decisions were made in the helpers, not here: this process holds no compose pipeline.
    assert "composer" not in services(pooled)._built


@pytest.mark.redis
def test_the_same_recipients_again_replay_across_helpers(pooled, auth, compose_request):
    client = pooled.test_client()
    lines = [compose_request(str(12347 + n), f"r-{n}") for n in range(260)]
    first = answers(post_batch(client, auth, lines))
    again = answers(post_batch(client, auth, lines))
    assert [a["decision"]["id"] for a in first] == [a["decision"]["id"] for a in again]


@pytest.mark.redis
def test_a_clock_that_cannot_travel_keeps_batches_in_the_worker(redis_url, settings, caplog):
    def clock():  # a local function: it cannot be pickled into a helper
        return datetime(2026, 11, 23, 12, tzinfo=UTC)

    app = create_app({**settings, "STORE_URL": redis_url, "BATCH_PROCESSES": 2, "CLOCK": clock})
    assert services(app).get("batch_pool") is None
    assert "the clock cannot be sent to helpers" in caplog.text


@pytest.mark.parametrize("url", ["memory://", "Memory://"])  # any spelling the store accepts
def test_memory_state_is_never_spread(settings, clock, caplog, url):
    app = create_app({**settings, "STORE_URL": url, "BATCH_PROCESSES": 4, "CLOCK": clock})
    assert services(app).get("batch_pool") is None
    assert "memory:// state cannot be shared" in caplog.text


def test_serve_gives_batch_helpers_the_cores_its_workers_leave(tmp_path):
    from api.serve import spread_batches

    redis = "redis://localhost:6379/0"
    environ: dict[str, str] = {}
    spread_batches("memory://", 1, environ, cores=8)
    assert environ == {}  # memory:// state cannot be shared with helpers
    spread_batches(redis, 8, environ, cores=8)
    assert environ == {}  # one worker per core: no core to spare
    spread_batches(redis, 2, environ, cores=8)
    assert environ["RAPPORT_BATCH_PROCESSES"] == "4"
    chosen = {"RAPPORT_BATCH_PROCESSES": "1"}
    spread_batches(redis, 1, chosen, cores=8)
    assert chosen == {"RAPPORT_BATCH_PROCESSES": "1"}
    config = tmp_path / "rapport.toml"
    config.write_text("batch_processes = 3\n")
    from_file = {"RAPPORT_CONFIG": str(config)}
    spread_batches(redis, 1, from_file, cores=8)
    assert "RAPPORT_BATCH_PROCESSES" not in from_file


@pytest.mark.redis
def test_a_killed_helper_costs_nothing_but_time(pooled, auth, compose_request, caplog):
    import signal

    pool = services(pooled).get("batch_pool")
    assert all(ready.result(timeout=60) for ready in pool._ready)  # both helpers are up
    for pid in list(pool._executor._processes):  # a real fault: the helpers die
        os.kill(pid, signal.SIGKILL)
    lines = [compose_request(str(12347 + n), f"k-{n}") for n in range(200)]
    response = post_batch(pooled.test_client(), auth, lines)
    found = answers(response)
    assert [line["line"] for line in found] == list(range(1, 201))
    assert all("decision" in line for line in found)  # composed in this process instead
    assert "a batch helper died; starting the helpers again" in caplog.text
    # A broken pool takes no more work: the helpers were started again, and answer the next.
    assert all(ready.result(timeout=60) for ready in pool._ready)
    caplog.clear()
    again = [compose_request(str(12347 + n), f"k2-{n}") for n in range(200)]
    response = post_batch(pooled.test_client(), auth, again)
    assert len([line for line in answers(response) if "decision" in line]) == 200
    assert "batch helper" not in caplog.text


@pytest.mark.redis
def test_a_stop_signal_to_the_whole_group_leaves_helpers_to_their_worker(
    pooled, auth, compose_request, caplog
):
    """systemd signals every process: helpers must not die under a worker finishing batches."""
    import signal

    pool = services(pooled).get("batch_pool")
    assert all(ready.result(timeout=60) for ready in pool._ready)
    helpers = list(pool._executor._processes)
    for pid in helpers:
        os.kill(pid, signal.SIGTERM)
        os.kill(pid, signal.SIGINT)
    lines = [compose_request(str(12347 + n), f"t-{n}") for n in range(200)]
    response = post_batch(pooled.test_client(), auth, lines)
    assert len([line for line in answers(response) if "decision" in line]) == 200
    assert "batch helper" not in caplog.text and list(pool._executor._processes) == helpers


@pytest.mark.redis
def test_one_helper_dying_mid_batch_restarts_the_pool_once(pooled, auth, compose_request, caplog):
    """Every chunk queued on the broken pool fails alike; only the first may restart it."""
    import signal

    pool = services(pooled).get("batch_pool")
    assert all(ready.result(timeout=60) for ready in pool._ready)
    broken = dict(pool._executor._processes)
    lines = [compose_request(str(12347 + n), f"m-{n}") for n in range(1200)]
    response = pooled.test_client().post(
        "/v1/compose/batch", data=ndjson(lines), buffered=False,
        headers={**auth("platform"), "Content-Type": "application/x-ndjson"},
    )  # fmt: skip
    stream = iter(response.response)
    received = [next(stream)]  # the first chunk is answered: the others are queued on helpers
    os.kill(next(iter(broken)), signal.SIGKILL)
    received.extend(stream)
    found = [json.loads(line) for line in b"".join(received).splitlines()]
    assert [line["line"] for line in found] == list(range(1, 1201))
    assert all("decision" in line for line in found)
    assert caplog.text.count("a batch helper died; starting the helpers again") == 1
    assert "keep dying" not in caplog.text and "CancelledError" not in caplog.text
    assert not any(process.is_alive() for process in broken.values())  # no survivor left
    assert all(ready.result(timeout=60) for ready in pool._ready)  # the new helpers serve
