"""In-process composition: recommend + govern + render latency, and batch throughput.

Trains the demo model into a temporary directory, builds the app with a memory:// store and a
frozen clock (Monday noon, outside quiet hours), then measures:

* one recipient through ``Composer.compose`` (the pipeline) and through ``POST /v1/compose``
  in Flask's test client (adds JSON parsing, auth and serialisation); p50/p99 over sends only
  (a send is the expensive path: it renders), against the same process's ``recommend`` alone as
  the baseline;
* batch composition: ``Composer.compose_many`` in chunks, and ``POST /v1/compose/batch``
  through the test client, in recipients per second.

Every recipient is fresh (its own user id and idempotency key) so caps never turn a send into a
cheap deferral. Targets: p99 under 10 ms for compose with render; at least 5,000 recipients/s
in batch.

Run: ``.venv/bin/python bench/bench_api.py [--requests 2000] [--batch 20000]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tables import table

from api import create_app
from api.auth import KeyRing, Role
from api.compose import to_input
from api.heap import settle_heap
from api.schemas.compose import ComposeRequest
from engine.models import pin_single_threaded
from fatigue.clock import FrozenClock

P99_TARGET_MS = 10.0
BATCH_TARGET = 5_000


def train(directory: Path) -> None:
    """Train the demo model into ``directory`` (the same builder ``rapport demo`` uses)."""
    from engine.demo import ensure_demo_model

    ensure_demo_model(directory)


def request_body(user: str, key: str) -> dict[str, object]:
    """The README's compose request for ``user``."""
    return {
        "idempotency_key": key,
        "recipient": {"user_id": user, "email": "ada@example.com", "first_name": "Ada",
                      "timezone": "Europe/London", "locale": "en"},
        "template": "picked-for-you",
        "campaign": {"id": "weekly-picks", "category": "recommendations",
                     "kind": "promotional", "priority": 1},
    }  # fmt: skip


def percentiles(samples: list[float]) -> tuple[float, float, float]:
    """Return p50, p99 and mean in milliseconds."""
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return statistics.median(ordered) * 1e3, p99 * 1e3, statistics.fmean(ordered) * 1e3


def timed(calls: list[Callable[[], object]]) -> tuple[list[float], list[object]]:
    """Run each call, returning its duration and result."""
    durations, results = [], []
    for call in calls:
        started = time.perf_counter()
        results.append(call())
        durations.append(time.perf_counter() - started)
    return durations, results


@dataclass
class Bench:
    """The app under test and what every measurement needs."""

    app: Any
    clock: FrozenClock
    token: str

    @property
    def composer(self) -> Any:
        return self.app.extensions["rapport"].get("composer")

    @property
    def model(self) -> Any:
        return self.app.extensions["rapport"].get("model").model

    def users(self, prefix: str, n: int) -> list[str]:
        """Known customers first (personal picks), then cold ones (popular picks)."""
        known = [str(user) for user in self.model.users.ids]
        return [known[i] if i < len(known) else f"{prefix}-cold-{i}" for i in range(n)]

    def inputs(self, prefix: str, n: int) -> list[Any]:
        """Pipeline inputs for ``n`` fresh recipients (checked against the app's campaigns)."""
        with self.app.app_context():
            return [to_input(ComposeRequest.model_validate(request_body(u, f"{prefix}-{u}")))
                    for u in self.users(prefix, n)]  # fmt: skip

    def post(self, path: str, data: str, content_type: str) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"}
        return self.app.test_client().post(path, data=data, headers=headers,
                                           content_type=content_type)  # fmt: skip


def build(root: Path) -> Bench:
    """Train the demo model and build a warmed-up app on a frozen clock."""
    train(root / "model")
    token = KeyRing(root / "keys.json").create("bench", frozenset({Role.PLATFORM}))
    clock = FrozenClock(datetime(2026, 11, 23, 12, 0, tzinfo=UTC))
    app = create_app({
        "API_KEYS_FILE": str(root / "keys.json"), "EVENT_LOG_DIR": str(root / "events"),
        "TEMPLATES_DIR": str(root / "templates"), "MODEL_DIR": str(root / "model"),
        "SECRET_KEY": "benchmark-secret-for-links", "PUBLIC_URL": "http://localhost",
        "CLOCK": clock,
    })  # fmt: skip
    app.extensions["rapport"].warm()
    bench = Bench(app, clock, token)
    for request in bench.inputs("warm", 50):  # compile the template, fill the caches
        bench.composer.compose(request)
    settle_heap()  # as each ``rapport serve`` worker does once it has loaded
    pin_single_threaded()
    clock.advance(days=3)
    return bench


def latency(bench: Bench, count: int) -> list[float]:
    """Print single-recipient latencies; return the through-the-app samples for sends."""
    model, composer = bench.model, bench.composer
    base_d, _ = timed([lambda u=u: model.recommend(u, 30) for u in bench.users("r", count)])
    pipe_d, pipe_r = timed([lambda i=i: composer.compose(i) for i in bench.inputs("p", count)])
    pipe_sends = [d for d, r in zip(pipe_d, pipe_r, strict=True) if r.email is not None]
    bench.clock.advance(days=3)
    bodies = [json.dumps(request_body(u, f"h-{u}")) for u in bench.users("h", count)]
    http_d, http_r = timed([lambda b=b: bench.post("/v1/compose", b, "application/json")
                            for b in bodies])  # fmt: skip
    http_sends = [d for d, r in zip(http_d, http_r, strict=True) if r.json["email"] is not None]
    bench.clock.advance(days=3)
    rows = []
    base99 = percentiles(base_d)[1]
    for label, samples in (
        ("recommend only (baseline)", base_d),
        ("Composer.compose, sends", pipe_sends),
        ("POST /v1/compose (test client), sends", http_sends),
    ):
        p50, p99, mean = percentiles(samples)
        rows.append([label, f"{len(samples)}/{count}", f"{p50:.2f}", f"{p99:.2f}",
                     f"{mean:.2f}", f"{p99 / base99:.1f}x"])  # fmt: skip
    table("Compose with render, in process (ms)",
          ["path", "n", "p50", "p99", "mean", "p99 vs baseline"], rows)  # fmt: skip
    return http_sends


def batch(bench: Bench, count: int) -> None:
    """Print batch throughput through the pipeline and through the NDJSON endpoint."""
    inputs = bench.inputs("b", count)
    started = time.perf_counter()
    sends = 0
    for start in range(0, len(inputs), 128):
        for result in bench.composer.compose_many(inputs[start : start + 128]):
            sends += result.email is not None
    pipeline_rate = len(inputs) / (time.perf_counter() - started)
    bench.clock.advance(days=3)
    audience = "".join(json.dumps(request_body(u, f"n-{u}")) + "\n"
                       for u in bench.users("n", count))  # fmt: skip
    started = time.perf_counter()
    lines = (
        bench.post("/v1/compose/batch", audience, "application/x-ndjson").get_data().count(b"\n")
    )
    endpoint_rate = lines / (time.perf_counter() - started)
    table("Batch composition, in process (recipients/s)",
          ["path", "recipients", "sends", "recipients/s", "target"],
          [["Composer.compose_many, chunks of 128", count, sends, f"{pipeline_rate:,.0f}",
            f">= {BATCH_TARGET:,}"],
           ["POST /v1/compose/batch (test client)", lines, "", f"{endpoint_rate:,.0f}",
            f">= {BATCH_TARGET:,}"]])  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=20000)
    args = parser.parse_args()
    bench = build(Path(tempfile.mkdtemp(prefix="rapport-bench-api-")))
    http_sends = latency(bench, args.requests)
    batch(bench, args.batch)
    p99 = percentiles(http_sends)[1]
    verdict = "met" if p99 < P99_TARGET_MS else "MISSED"
    machine = platform.processor() or platform.machine()
    print(f"\ncompose+render p99 through the app: {p99:.2f} ms (target < {P99_TARGET_MS} ms: "
          f"{verdict}); {machine}, {os.cpu_count()} cores (shared), Python "
          f"{platform.python_version()}, {datetime.now(UTC):%Y-%m-%d}")  # fmt: skip


if __name__ == "__main__":
    main()
