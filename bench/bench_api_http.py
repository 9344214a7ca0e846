"""Over HTTP on loopback: ``rapport serve`` (gunicorn) on a private Redis, driven from this process.

Measures compose requests per second with several keep-alive connections, and batch compose
(NDJSON streamed both ways) in recipients per second, one stream and two at once. The load
generator runs on the same two shared cores as the server, so the figures understate what a
separate client machine would see. Every request is bounded in count and time.

Targets: 1,000 compose/s; batch at least 5,000 recipients/s.

Run: ``.venv/bin/python bench/bench_api_http.py [--seconds 10] [--connections 8] [--workers 3]``
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_api import request_body, table, train

from api.auth import KeyRing, Role
from api.testing import running_server
from fatigue.testing import private_redis

COMPOSE_TARGET = 1_000
BATCH_TARGET = 5_000
RULES_WITHOUT_QUIET_HOURS = Path(__file__).resolve().parents[1] / "fatigue" / "default_rules.toml"


def rules_file(directory: Path) -> Path:
    """The bundled rules minus quiet hours, so the run sends whatever the time of day."""
    text = RULES_WITHOUT_QUIET_HOURS.read_text()
    start = text.index("[quiet_hours]")
    end = text.index("\n\n", start)
    path = directory / "rules.toml"
    path.write_text(text[:start] + text[end + 2 :])
    return path


def compose_load(base: str, token: str, seconds: float, connections: int) -> dict[str, object]:
    """Hammer ``POST /v1/compose`` from ``connections`` threads for ``seconds``."""
    host, port = urlsplit(base).hostname, urlsplit(base).port
    deadline = time.monotonic() + seconds
    counts: list[dict[str, int]] = [{} for _ in range(connections)]
    latencies: list[list[float]] = [[] for _ in range(connections)]

    def worker(index: int) -> None:
        connection = http.client.HTTPConnection(host, port, timeout=30)
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        n = 0
        while time.monotonic() < deadline and n < 200_000:
            body = json.dumps(request_body(f"c{index}-{n}", f"c{index}-{n}"))
            started = time.perf_counter()
            connection.request("POST", "/v1/compose", body, headers)
            response = connection.getresponse()
            payload = response.read()
            latencies[index].append(time.perf_counter() - started)
            key = str(response.status)
            if response.status == 200:
                key = json.loads(payload)["decision"]["action"]
            counts[index][key] = counts[index].get(key, 0) + 1
            n += 1
        connection.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    total: dict[str, int] = {}
    for found in counts:
        for key, value in found.items():
            total[key] = total.get(key, 0) + value
    every = sorted(x for found in latencies for x in found)
    done = sum(total.values())
    return {
        "requests": done,
        "rate": done / elapsed,
        "mix": total,
        "p50": every[len(every) // 2] * 1e3,
        "p99": every[int(len(every) * 0.99)] * 1e3,
    }


def batch_stream(base: str, token: str, prefix: str, recipients: int) -> tuple[int, float]:
    """Stream an audience up while reading answers down; return lines answered and seconds."""
    host, port = urlsplit(base).hostname, urlsplit(base).port
    connection = http.client.HTTPConnection(host, port, timeout=120)
    lines = (
        (json.dumps(request_body(f"{prefix}-{n}", f"{prefix}-{n}")) + "\n").encode()
        for n in range(recipients)
    )
    started = time.perf_counter()
    connection.putrequest("POST", "/v1/compose/batch")
    connection.putheader("Authorization", f"Bearer {token}")
    connection.putheader("Content-Type", "application/x-ndjson")
    connection.putheader("Transfer-Encoding", "chunked")
    connection.endheaders()
    sender_error: list[BaseException] = []

    def send() -> None:
        try:
            buffer = b""
            for line in lines:
                buffer += line
                if len(buffer) > 64 * 1024:
                    connection.send(b"%x\r\n%s\r\n" % (len(buffer), buffer))
                    buffer = b""
            if buffer:
                connection.send(b"%x\r\n%s\r\n" % (len(buffer), buffer))
            connection.send(b"0\r\n\r\n")
        except BaseException as exc:  # reported by the caller
            sender_error.append(exc)

    sender = threading.Thread(target=send)
    sender.start()
    response = connection.getresponse()
    answered = 0
    while chunk := response.read(256 * 1024):
        answered += chunk.count(b"\n")
    sender.join()
    connection.close()
    if sender_error:
        raise sender_error[0]
    return answered, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--batch", type=int, default=10_000)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="rapport-bench-http-"))
    train(root / "model")
    token = KeyRing(root / "keys.json").create("bench", frozenset({Role.PLATFORM}))
    with private_redis() as redis_url:
        environment = {
            "RAPPORT_STORE_URL": redis_url, "RAPPORT_MODEL_DIR": str(root / "model"),
            "RAPPORT_TEMPLATES_DIR": str(root / "templates"),
            "RAPPORT_API_KEYS_FILE": str(root / "keys.json"),
            "RAPPORT_EVENT_LOG_DIR": str(root / "events"),
            "RAPPORT_SECRET_KEY": "benchmark-secret-for-links",
            "RAPPORT_PUBLIC_URL": "http://localhost", "RAPPORT_RULES": str(rules_file(root)),
        }  # fmt: skip
        with running_server(environment, workers=args.workers) as base:
            batch_stream(base, token, "warm", 300)  # compile templates in every worker
            compose_load(base, token, 1.0, args.connections)
            load = compose_load(base, token, args.seconds, args.connections)
            one = batch_stream(base, token, "one", args.batch)
            results: list[tuple[int, float]] = []
            pair = [
                threading.Thread(
                    target=lambda p=p: results.append(batch_stream(base, token, p, args.batch))
                )
                for p in ("left", "right")
            ]
            for thread in pair:
                thread.start()
            for thread in pair:
                thread.join()
    mix = ", ".join(f"{k} {v}" for k, v in sorted(load["mix"].items()))  # type: ignore[attr-defined]
    table(
        f"POST /v1/compose over HTTP ({args.workers} gunicorn workers, {args.connections} "
        "keep-alive connections, Redis)",
        ["requests", "compose/s", "p50 ms", "p99 ms", "decisions", "target"],
        [[load["requests"], f"{load['rate']:,.0f}", f"{load['p50']:.1f}", f"{load['p99']:.1f}",
          mix, f">= {COMPOSE_TARGET:,}/s"]],
    )  # fmt: skip
    pair_lines = sum(lines for lines, _ in results)
    pair_seconds = max(seconds for _, seconds in results)
    table(
        "POST /v1/compose/batch over HTTP (NDJSON streamed both ways)",
        ["streams", "recipients", "seconds", "recipients/s", "target"],
        [[1, one[0], f"{one[1]:.1f}", f"{one[0] / one[1]:,.0f}", f">= {BATCH_TARGET:,}/s"],
         [2, pair_lines, f"{pair_seconds:.1f}", f"{pair_lines / pair_seconds:,.0f}",
          f">= {BATCH_TARGET:,}/s"]],
    )  # fmt: skip
    print(
        f"\n{platform.machine()}, {os.cpu_count()} cores shared by server, Redis and this "
        f"load generator; Python {platform.python_version()}; {datetime.now(UTC):%Y-%m-%d}"
    )


if __name__ == "__main__":
    main()
