"""Decisions per second: memory store vs Redis vs the ``limits`` library on the same caps.

The governor evaluates every rule of the issue's contract file (a cap of 3 a day, a 16 h
cooldown, quiet hours, relevance over 20 candidates, holdout) and records each send; ``limits``
only checks and counts the cap, so the ratio shows what the full decision costs over a bare
rate limiter on the same store. Every decision is complete: all rules evaluated, counters and
limits in the reasons. On Redis each decision is one ``EVALSHA`` (batches pipeline them in one
round trip); the "keys" rows give every request an idempotency key, as the API does, so the
store also keeps what a retry needs to get the same decision.

Run: ``.venv/bin/python bench/bench_fatigue_throughput.py`` (uses $REDIS_URL or starts a
private redis-server). Figures depend on the machine; the table prints them with ratios.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from fatigue.clock import FrozenClock
from fatigue.domain import Campaign, Candidate, MessageRequest, Recipient
from fatigue.governor import Governor
from fatigue.rules import load_rules
from fatigue.store import store_from_url
from fatigue.store.memory import MemoryStore
from fatigue.testing import CONTRACT_RULES, private_redis

CONTRACT = CONTRACT_RULES
CANDIDATES = [Candidate(f"item-{n}", 0.5 - n / 100, category=f"c{n % 4}") for n in range(20)]
CAMPAIGN = Campaign("spring", "sale")
REQUEST = MessageRequest((CAMPAIGN,))


@contextmanager
def redis_url() -> Iterator[str]:
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
    else:
        with private_redis() as url:
            yield url


def rate(run: Callable[[int], None], count: int) -> float:
    start = time.perf_counter()
    run(count)
    return count / (time.perf_counter() - start)


def governor_runner(
    store_url: str | None, batch: int, users: int, keys: bool = False
) -> Callable[[int], None]:
    clock = FrozenClock(datetime(2026, 1, 12, 12, tzinfo=UTC))
    store = MemoryStore(quiet=True) if store_url is None else store_from_url(store_url)
    governor = Governor(load_rules(CONTRACT), store, clock)
    recipients = [Recipient(f"user-{n}", timezone="Europe/London") for n in range(users)]

    def request(n: int) -> MessageRequest:
        return MessageRequest((CAMPAIGN,), idempotency_key=f"req-{n}") if keys else REQUEST

    def run(count: int) -> None:
        done = 0
        while done < count:
            size = min(batch, count - done)
            jobs = [
                (recipients[(done + i) % users], request(done + i), CANDIDATES) for i in range(size)
            ]
            if batch == 1:
                governor.decide(*jobs[0])
            else:
                governor.decide_many(jobs)
            done += size
            clock.advance(seconds=1)

    return run


def limits_runner(storage_url: str, users: int) -> Callable[[int], None]:
    from limits import parse, storage, strategies

    limiter = strategies.MovingWindowRateLimiter(storage.storage_from_string(storage_url))
    cap = parse("3/day")

    def run(count: int) -> None:
        for n in range(count):
            limiter.hit(cap, f"user-{n % users}")

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=20_000)
    parser.add_argument("--users", type=int, default=5_000)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args()
    n, users = args.decisions, args.users
    with redis_url() as url:
        prefix = f"{url}{'&' if '?' in url else '?'}prefix=bench{uuid.uuid4().hex[:6]}:"
        rows = [
            ("rapport memory://", "1", rate(governor_runner(None, 1, users), n)),
            (
                "rapport memory:// batched",
                str(args.batch),
                rate(governor_runner(None, args.batch, users), n),
            ),
            ("rapport redis:// single", "1", rate(governor_runner(prefix, 1, users), n // 4)),
            (
                "rapport redis:// batched",
                str(args.batch),
                rate(governor_runner(prefix + "b", args.batch, users), n),
            ),
            (
                "rapport memory:// batched, keys",
                str(args.batch),
                rate(governor_runner(None, args.batch, users, keys=True), n),
            ),
            (
                "rapport redis:// batched, keys",
                str(args.batch),
                rate(governor_runner(prefix + "k", args.batch, users, keys=True), n),
            ),
            ("limits memory:// moving window", "1", rate(limits_runner("memory://", users), n)),
            ("limits redis:// moving window", "1", rate(limits_runner(url, users), n // 4)),
        ]
    baseline = {"memory": rows[-2][2], "redis": rows[-1][2]}
    machine = platform.processor() or platform.machine()
    print(
        f"# fatigue throughput, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {machine}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(f"# {n} decisions over {users} customers; contract rules, 20 candidates each")
    print(f"{'run':34} {'batch':>5} {'decisions/s':>12} {'vs limits (same store)':>24}")
    for name, batch, per_second in rows:
        base = baseline["redis" if "redis" in name else "memory"]
        print(f"{name:34} {batch:>5} {per_second:>12,.0f} {per_second / base:>23.2f}x")


if __name__ == "__main__":
    main()
