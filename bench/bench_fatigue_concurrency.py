"""Correctness under concurrency: a cap of 3 a day must record exactly 3 sends, every time.

Two benchmarks against a real Redis: 64 threads in one process, and 4 processes, each trial
racing for one fresh customer. Prints trials run, trials with exactly 3 sends, and timing.

Run: ``.venv/bin/python bench/bench_fatigue_concurrency.py [--trials 1000]`` (uses $REDIS_URL
or starts a private redis-server). Exits 1 if any trial recorded anything but 3 sends.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from fatigue.clock import FrozenClock
from fatigue.domain import Action, Campaign, Candidate, MessageRequest, Recipient
from fatigue.governor import Governor
from fatigue.rules import load_rules
from fatigue.store import store_from_url
from fatigue.store.base import StateQuery
from fatigue.testing import private_redis

RULES = '[[caps]]\nmax = 3\nper = "1d"\n'
CAP = 3
CANDIDATES = [Candidate(f"item-{n}", 0.5, category="c") for n in range(5)]
REQUEST = MessageRequest((Campaign("race", "sale"),))
NOW = datetime(2026, 1, 12, 12, tzinfo=UTC)


@contextmanager
def redis_url() -> Iterator[str]:
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
    else:
        with private_redis() as url:
            yield url


def governor(url: str) -> Governor:
    return Governor(load_rules(RULES), store_from_url(url), FrozenClock(NOW))


def recorded(url: str, user: str) -> int:
    store = store_from_url(url)
    try:
        return len(store.load([StateQuery(user, NOW.timestamp(), 0.0)])[0].sends)
    finally:
        store.close()


def thread_trials(url: str, trials: int, threads: int) -> Counter[tuple[int, int]]:
    """Run trials with ``threads`` threads sharing one governor; count (sends, recorded)."""
    shared = governor(url)
    outcomes: Counter[tuple[int, int]] = Counter()
    start = threading.Barrier(threads + 1)
    done = threading.Barrier(threads + 1)
    state: dict[str, object] = {}
    actions: list[Action] = []
    lock = threading.Lock()

    def worker() -> None:
        while True:
            start.wait()
            user = state["user"]
            if user is None:
                return
            action = shared.decide(Recipient(str(user)), REQUEST, CANDIDATES).action
            with lock:
                actions.append(action)
            done.wait()

    pool = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for trial in range(trials):
        user = f"threads-{uuid.uuid4().hex[:8]}-{trial}"
        state["user"] = user
        actions.clear()
        start.wait()
        done.wait()
        outcomes[(actions.count(Action.SEND), recorded(url, user))] += 1
    state["user"] = None
    start.wait()
    return outcomes


def process_worker(url: str, trials: int, per_process: int, barrier: object, queue: object) -> None:
    shared = governor(url)
    for trial in range(trials):
        barrier.wait()  # type: ignore[attr-defined]
        user = f"procs-{trial}"
        sends = sum(
            shared.decide(Recipient(user), REQUEST, CANDIDATES).action == Action.SEND
            for _ in range(per_process)
        )
        queue.put((trial, sends))  # type: ignore[attr-defined]


def process_trials(
    url: str, trials: int, processes: int, per_process: int
) -> Counter[tuple[int, int]]:
    """Run trials with ``processes`` worker processes racing for the same customer."""
    prefixed = f"{url}{'&' if '?' in url else '?'}prefix=bench{uuid.uuid4().hex[:6]}:"
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(processes)
    queue = context.Queue()
    workers = [
        context.Process(target=process_worker, args=(prefixed, trials, per_process, barrier, queue))
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    sends: Counter[int] = Counter()
    for _ in range(trials * processes):
        trial, count = queue.get()
        sends[trial] += count
    for worker in workers:
        worker.join()
    return Counter((sends[t], recorded(prefixed, f"procs-{t}")) for t in range(trials))


def report(name: str, requests: int, outcomes: Counter[tuple[int, int]], seconds: float) -> bool:
    trials = sum(outcomes.values())
    exact = outcomes[(CAP, CAP)]
    spread = ", ".join(f"{s} sent/{r} recorded: {n}" for (s, r), n in sorted(outcomes.items()))
    print(f"{name:22} {trials:>7} {requests:>9} {exact:>12} {seconds:>9.1f}  {spread}")
    return exact == trials


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=64)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--per-process", type=int, default=16)
    args = parser.parse_args()
    print(
        f"# fatigue concurrency, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}; cap {CAP} per day"
    )
    print(
        f"{'benchmark':22} {'trials':>7} {'requests':>9} {'exactly 3':>12} {'seconds':>9}  outcomes"
    )
    with redis_url() as url:
        prefixed = f"{url}{'&' if '?' in url else '?'}prefix=bench{uuid.uuid4().hex[:6]}:"
        began = time.perf_counter()
        ok = report(
            f"{args.threads} threads",
            args.threads,
            thread_trials(prefixed, args.trials, args.threads),
            time.perf_counter() - began,
        )
        began = time.perf_counter()
        outcomes = process_trials(url, args.trials, args.processes, args.per_process)
        ok &= report(
            f"{args.processes} processes",
            args.processes * args.per_process,
            outcomes,
            time.perf_counter() - began,
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
