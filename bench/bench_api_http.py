"""Over HTTP on loopback: ``rapport serve`` (gunicorn) on a private Redis, driven from this process.

Measures compose requests per second with several keep-alive connections, and batch compose
(NDJSON streamed both ways) in recipients per second, one stream and two at once. The load
generators (wrk for composes where it is installed, Python's HTTP client otherwise; a plain
socket streaming each batch, see ``_stream``) run on the same two shared cores as the server,
so the figures understate what a separate client machine would see. Every request is bounded
in count and time. The baseline is ``GET /healthz`` under the same wrk load: a request that
does nothing but pass through gunicorn, Flask and the app's per-request hooks, the ceiling any
endpoint on this machine could reach.

Targets: 1,000 compose/s; batch at least 5,000 recipients/s.

Run: ``.venv/bin/python bench/bench_api_http.py [--seconds 10] [--connections 8] [--workers N]
[--threads N] [--batch N]``
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_api import request_body, train
from tables import table

from api.auth import KeyRing, Role
from api.serve import ServeOptions, default_workers
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


@dataclass
class Tally:
    """What the client threads saw: answers by kind, latencies, the first failure."""

    answers: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def client_loop(base: str, token: str, deadline: float, index: int, tally: Tally) -> None:
    """Send fresh compose requests on one keep-alive connection until ``deadline``."""
    parts = urlsplit(base)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    n = 0
    while time.monotonic() < deadline and n < 200_000:
        body = json.dumps(request_body(f"c{index}-{n}", f"c{index}-{n}"))
        started = time.perf_counter()
        connection.request("POST", "/v1/compose", body, headers)
        response = connection.getresponse()
        payload = response.read()
        took = time.perf_counter() - started
        key = str(response.status)
        if response.status == 200:
            key = json.loads(payload)["decision"]["action"]
        with tally.lock:
            tally.latencies.append(took)
            tally.answers[key] += 1
            if response.status != 200 and not tally.failures:
                tally.failures.append(payload.decode("utf-8", "replace")[:500])
        n += 1
    connection.close()


def compose_load(base: str, token: str, seconds: float, connections: int) -> dict[str, object]:
    """Hammer ``POST /v1/compose`` from ``connections`` threads for ``seconds``."""
    deadline = time.monotonic() + seconds
    tally = Tally()
    started = time.perf_counter()
    threads = [
        threading.Thread(target=client_loop, args=(base, token, deadline, i, tally))
        for i in range(connections)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    for failure in tally.failures:
        print(f"first failed answer: {failure}")
    every = sorted(tally.latencies)
    done = len(every)
    return {"requests": done, "rate": done / elapsed, "mix": dict(tally.answers),
            "p50": every[done // 2] * 1e3, "p99": every[int(done * 0.99)] * 1e3}  # fmt: skip


WRK_SCRIPT = """
local users = {%(users)s}
local counter = 0
local thread_id = 0
function setup(thread)
  thread:set("id", thread_id)
  thread_id = thread_id + 1
end
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer %(token)s"
wrk.headers["Content-Type"] = "application/json"
function request()
  counter = counter + 1
  local key = "wrk-" .. id .. "-" .. counter
  local user = key
  if #users > 0 then user = users[(counter * 7 + id) %% #users + 1] end
  local body = string.format(%(template)s, key, user)
  return wrk.format(nil, "/v1/compose", nil, body)
end
"""


def wrk_load(
    base: str, token: str, seconds: float, connections: int, users: list[str]
) -> dict[str, object] | None:
    """Drive ``POST /v1/compose`` with wrk (a C load generator) when it is installed."""
    template = json.dumps(request_body("USER", "KEY")).replace('"KEY"', '"%s"', 1)
    template = template.replace('"USER"', '"%s"', 1)
    script = WRK_SCRIPT % {
        "users": ", ".join(json.dumps(u) for u in users), "token": token,
        "template": json.dumps(template),
    }  # fmt: skip
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
    try:
        return run_wrk(f"{base}/v1/compose", seconds, connections, ["-s", handle.name])
    finally:
        os.unlink(handle.name)


def run_wrk(
    url: str, seconds: float, connections: int, extra: list[str]
) -> dict[str, object] | None:
    """Run wrk against ``url`` (None when wrk is not installed); parse its summary."""
    wrk = shutil.which("wrk")
    if wrk is None:
        return None
    output = subprocess.run(
        [wrk, "-t", "2", "-c", str(connections), "-d", f"{seconds:.0f}s", "--latency",
         *extra, url],
        capture_output=True, text=True, timeout=seconds + 60, check=True,
    ).stdout  # fmt: skip
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)", output)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", output)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    total = re.search(r"(\d+) requests in", output)
    return {"requests": int(total.group(1)) if total else 0, "rate": rate,
            "p50": _ms(p50), "p99": _ms(p99),
            "mix": {"non-2xx": int(errors.group(1)) if errors else 0}}  # fmt: skip


def _ms(found: re.Match[str] | None) -> float:
    if found is None:
        return float("nan")
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}[found.group(2)]
    return float(found.group(1)) * scale


def audience(prefix: str, recipients: int) -> bytes:
    """An NDJSON audience of ``recipients`` fresh customers, built before any clock starts."""
    return b"".join(
        (json.dumps(request_body(f"{prefix}-{n}", f"{prefix}-{n}")) + "\n").encode()
        for n in range(recipients)
    )


def batch_stream(base: str, token: str, prefix: str, recipients: int) -> tuple[int, float]:
    """Stream an audience up while reading answers down; return lines answered and seconds.

    The audience is built before the clock starts, as a platform would have it ready: building
    each line while sending cost the load generator, which shares the server's two cores, a
    twentieth of a recipient's CPU. The stream then costs the load generator about 0.013 ms of
    CPU a recipient (per-process CPU from /proc; 0.021 with ``http.client`` reading the
    answers); curl, tried in its place, cost 0.04 (16 KB reads and writes of 25 KB answers, to
    a pipe or a file in memory).
    """
    return _stream(base, token, audience(prefix, recipients))


def _stream(base: str, token: str, body: bytes) -> tuple[int, float]:
    """Send ``body`` in 64 KB chunks from one thread while this one reads and counts answers.

    Plain sockets, not ``http.client``, whose chunked reader copies each 25 KB answer in
    Python before it can be counted: here the answers are counted where they are received.
    """
    host, port = urlsplit(base).hostname, urlsplit(base).port
    sock = socket.create_connection((host, port), timeout=120)
    started = time.perf_counter()
    sock.sendall(
        b"POST /v1/compose/batch HTTP/1.1\r\nHost: %s:%d\r\nAuthorization: Bearer %s\r\n"
        b"Content-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n"
        % (str(host).encode(), port or 80, token.encode())
    )
    sender_error: list[BaseException] = []

    def send() -> None:
        try:
            for start in range(0, len(body), 64 * 1024):
                block = body[start : start + 64 * 1024]
                sock.sendall(b"%x\r\n%s\r\n" % (len(block), block))
            sock.sendall(b"0\r\n\r\n")
        except BaseException as exc:  # reported by the caller
            sender_error.append(exc)

    sender = threading.Thread(target=send)
    sender.start()
    try:
        answered = ChunkedLines(sock).count()
    finally:
        sock.close()  # ends the sender too, if the server stopped reading
        sender.join()
    if sender_error:
        raise sender_error[0]
    return answered, time.perf_counter() - started


class ChunkedLines:
    """Count the lines of a chunked HTTP/1.1 answer as it arrives (raise unless it is a 200).

    Received into one buffer, reused: a fresh 1 MB ``recv`` per read was a new mapping of
    memory each time, faulted in page by page.
    """

    def __init__(self, sock: socket.socket, size: int = 1 << 20) -> None:
        self.sock = sock
        self.buffer = bytearray(size)
        self.view = memoryview(self.buffer)
        self.at = self.end = 0  # unread bytes: buffer[at:end]

    def count(self) -> int:
        head = bytes(self._through(b"\r\n\r\n"))
        status = head.split(b" ", 2)[1]
        if status != b"200" or b"transfer-encoding: chunked" not in head.lower():
            raise RuntimeError(f"batch refused: {head[:200]!r} {self._rest()!r}")
        answered = 0
        while size := int(bytes(self._through(b"\r\n")).split(b";")[0], 16):
            while size:  # a chunk is counted as it streams past, never held whole
                if self.at == self.end:
                    self._receive()
                taken = min(size, self.end - self.at)
                answered += self._lines(self.at, self.at + taken)
                self.at += taken
                size -= taken
            if self._through(b"\r\n"):
                raise RuntimeError("a chunk longer than its size line said")
        return answered

    def _lines(self, start: int, stop: int) -> int:
        # find (memchr) per line, not count: count walks a 25 KB answer a byte at a time, about
        # 8 us of a recipient's CPU here against under 1 us.
        lines, found, find = 0, self.buffer.find(b"\n", start, stop), self.buffer.find
        while found >= 0:
            lines += 1
            found = find(b"\n", found + 1, stop)
        return lines

    def _through(self, end: bytes) -> memoryview:
        """Return the bytes up to ``end`` (which is consumed too)."""
        found = self.buffer.find(end, self.at, self.end)
        while found < 0:
            self._receive()
            found = self.buffer.find(end, self.at, self.end)
        piece = self.view[self.at : found]
        self.at = found + len(end)
        return piece

    def _receive(self) -> None:
        if self.at == self.end:
            self.at = self.end = 0
        elif self.at:  # keep the unread tail (a size line cut in two) at the front
            kept = self.end - self.at
            self.buffer[:kept] = self.buffer[self.at : self.end]
            self.at, self.end = 0, kept
        if self.end == len(self.buffer):
            raise RuntimeError("a chunk size line longer than the buffer")
        more = self.sock.recv_into(self.view[self.end :])
        if not more:
            raise ConnectionError("the server closed the connection mid-answer")
        self.end += more

    def _rest(self) -> bytes:
        """What has arrived after the head (the start of a refusal's problem document)."""
        return bytes(self.buffer[self.at : self.end][:300])


def environment_for(root: Path, redis_url: str) -> dict[str, str]:
    """The server's settings: everything under ``root``, state in the private Redis."""
    return {
        "RAPPORT_STORE_URL": redis_url, "RAPPORT_MODEL_DIR": str(root / "model"),
        "RAPPORT_TEMPLATES_DIR": str(root / "templates"),
        "RAPPORT_API_KEYS_FILE": str(root / "keys.json"),
        "RAPPORT_EVENT_LOG_DIR": str(root / "events"),
        "RAPPORT_SECRET_KEY": "benchmark-secret-for-links",
        "RAPPORT_PUBLIC_URL": "http://localhost", "RAPPORT_RULES": str(rules_file(root)),
    }  # fmt: skip


def compose_rows(
    base: str, token: str, args: argparse.Namespace, known: list[str]
) -> list[list[object]]:
    """Measure single composes with each available client and audience."""
    compose_load(base, token, 1.0, args.connections)  # warm every worker's threads
    loads = [("python threads", "fresh customers",
              compose_load(base, token, args.seconds, args.connections))]  # fmt: skip
    # Known customers twice: the second run asks about customers every worker has seen, whose
    # picks it kept (engine/serving.py), as a platform asks about its customers day after day.
    for audience, users in (("fresh customers", []), ("known customers", known),
                            ("known customers, again", known)):  # fmt: skip
        found = wrk_load(base, token, args.seconds, args.connections, users)
        if found is not None:
            loads.append(("wrk", audience, found))
    # The baseline: what gunicorn and Flask alone cost, a request that does nothing.
    floor = run_wrk(f"{base}/healthz", args.seconds, args.connections, [])
    rows: list[list[object]] = []
    if floor is not None:
        rows.append(["wrk", "GET /healthz (no-op baseline)", floor["requests"],
                     f"{floor['rate']:,.0f}", f"{floor['p50']:.1f}", f"{floor['p99']:.1f}",
                     "", "1.00x", ""])  # fmt: skip
    for client, audience, load in loads:
        mix = ", ".join(f"{k} {v}" for k, v in sorted(load["mix"].items()))  # type: ignore[attr-defined]
        ratio = f"{load['rate'] / floor['rate']:.2f}x" if floor else ""  # type: ignore[operator]
        rows.append([client, audience, load["requests"], f"{load['rate']:,.0f}",
                     f"{load['p50']:.1f}", f"{load['p99']:.1f}", mix, ratio,
                     f">= {COMPOSE_TARGET:,}/s"])  # fmt: skip
    return rows


def batch_rows(base: str, token: str, recipients: int) -> list[list[object]]:
    """Measure one NDJSON stream, then two at once (the audience split between them).

    The kernel gives each connection to whichever worker accepts first, so the two streams may
    land on one worker; with four they rarely split evenly, and the slowest stream sets the time.
    """
    target = f">= {BATCH_TARGET:,}/s"
    rows: list[list[object]] = []
    for streams in (1, 2):
        lines, seconds = parallel_streams(base, token, streams, recipients // streams)
        rows.append([streams, lines, f"{seconds:.1f}", f"{lines / seconds:,.0f}", target])
    return rows


def parallel_streams(base: str, token: str, streams: int, each: int) -> tuple[int, float]:
    """Run ``streams`` batch streams of ``each`` recipients at once: lines answered, seconds."""
    results: list[tuple[int, float]] = []
    threads = [
        threading.Thread(
            target=lambda n=n: results.append(batch_stream(base, token, f"s{streams}-{n}", each))
        )
        for n in range(streams)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(count for count, _ in results), max(taken for _, taken in results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="gunicorn workers (default: as rapport serve, one per core)",
    )
    parser.add_argument("--batch", type=int, default=40_000)  # two streams: ~8 s, not 2
    parser.add_argument(
        "--threads", type=int, default=ServeOptions.threads,
        help="threads per worker (default: as rapport serve)",
    )  # fmt: skip
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="rapport-bench-http-"))
    train(root / "model")
    token = KeyRing(root / "keys.json").create("bench", frozenset({Role.PLATFORM}))
    from engine.serving import Recommender

    known = [str(user) for user in Recommender.load(root / "model").users.ids]
    workers = args.workers or default_workers("redis://")
    with (
        private_redis() as redis_url,
        running_server(environment_for(root, redis_url), workers, args.threads) as base,
    ):
        # Workers compile the templates themselves before traffic; this warms the rest (Redis
        # scripts and connections, the model's caches) in whichever worker takes it.
        batch_stream(base, token, "warm", 300)
        composed = compose_rows(base, token, args, known)
        batched = batch_rows(base, token, args.batch)
    table(
        f"POST /v1/compose over HTTP ({workers} gunicorn workers x {args.threads} threads, "
        f"{args.connections} keep-alive connections, Redis)",
        ["client", "audience", "requests", "requests/s", "p50 ms", "p99 ms", "answers",
         "vs no-op", "target"],
        composed,
    )  # fmt: skip
    table("POST /v1/compose/batch over HTTP (NDJSON streamed both ways)",
          ["streams", "recipients", "seconds", "recipients/s", "target"], batched)  # fmt: skip
    print(
        f"\n{platform.machine()}, {os.cpu_count()} cores shared by server, Redis and this "
        f"load generator; Python {platform.python_version()}; {datetime.now(UTC):%Y-%m-%d}"
    )


if __name__ == "__main__":
    main()
