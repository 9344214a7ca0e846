"""Emails rendered per second for "picked for you": compile once vs compile per recipient.

The production path compiles the MJML once per template version and runs only Jinja per
recipient (subject, preheader, HTML, the text part, signed links, UTM tags and the MIME
message). The baseline compiles the MJML again for every recipient, as a renderer without the
cache would. Both run in this process on one pinned core, with recipients and their six items
drawn from the demo catalog with a fixed seed.

Run: ``.venv/bin/python bench/bench_render.py [--recipients 3000] [--baseline 150]``
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import random
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tables import table

from engine.render.library import BundledLibrary
from engine.render.links import Campaign, LinkConfig, LinkSigner
from engine.render.mjml_compile import MjmlCache
from engine.render.prepared import PreparedCache
from engine.render.renderer import RenderContext, Renderer
from fatigue.clock import FrozenClock

CATALOG = Path(__file__).resolve().parents[1] / "engine" / "demo_data" / "catalog.csv"
TEMPLATE = "picked-for-you"
TARGET = 2_000


def contexts(count: int, seed: int = 7) -> list[RenderContext]:
    """Return ``count`` recipients, each with six catalog items."""
    with CATALOG.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    rng = random.Random(seed)
    campaign = Campaign("bench-2026", "Benchmark")
    result = []
    for index in range(count):
        items = []
        for rank, row in enumerate(rng.sample(rows, 6)):
            item = dict(row, price=float(row["price"]), in_stock=True)
            item.update(relevance=round(0.5 - rank * 0.05, 2), source="cf")
            items.append(item)
        recipient = {
            "user_id": str(10_000 + index),
            "email": f"customer{index}@example.com",
            "first_name": rng.choice(["Amelia", "Oliver", "Isla", "Noah", "Léa", ""]),
            "locale": "en-GB",
            "timezone": "Europe/London",
        }
        result.append(RenderContext(recipient, items, campaign))
    return result


def measure(render: Callable[[RenderContext], object], batch: list[RenderContext]) -> float:
    """Return emails per second rendering every context of ``batch`` once."""
    started = time.perf_counter()
    for context in batch:
        render(context)
    return len(batch) / (time.perf_counter() - started)


def renderer() -> Renderer:
    """Return a renderer over the bundled templates with a frozen clock."""
    clock = FrozenClock(datetime(2026, 11, 22, 9, 0, tzinfo=UTC))
    return Renderer(
        BundledLibrary(),
        LinkSigner("benchmark-secret-0123456789", clock=clock),
        LinkConfig("https://mail.example.com", unsubscribe_mailto="unsubscribe@example.com"),
        clock=clock,
    )


def main() -> None:
    """Run both paths side by side and print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--recipients", type=int, default=3_000)
    parser.add_argument("--baseline", type=int, default=150)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core

    cached = renderer()
    prepared = cached.prepared(TEMPLATE)

    def email(context: RenderContext) -> bytes:
        # The MIME message is written lazily (only when a caller asks for it); the target
        # counts it, so ask.
        return cached.render_prepared(prepared, context).mime_bytes

    measure(email, contexts(200, seed=1))  # warm up
    batch = contexts(args.recipients)
    once = measure(email, batch)

    uncached = renderer()
    source = uncached.library.source(TEMPLATE)

    def compile_each_time(context: RenderContext) -> object:
        fresh = PreparedCache(MjmlCache())  # nothing carried over between recipients
        return uncached.render_prepared(fresh.get(source), context).mime_bytes

    per_recipient = measure(compile_each_time, batch[: args.baseline])

    sample = cached.render_prepared(prepared, batch[0])
    print(f"# bench_render  {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(f"machine: {platform.machine()}, python {platform.python_version()}, ", end="")
    print(f"{os.cpu_count()} cores visible, pinned to 1; shared machine, figures are noisy")
    print(f"template: {TEMPLATE}, 6 items, HTML {len(sample.html):,} chars, ", end="")
    print(f"MIME {len(sample.mime_bytes):,} bytes")
    table(
        "Per-recipient render (subject, preheader, HTML, text, links, MIME)",
        ["path", "recipients", "emails/s", "ms/email", "vs target"],
        [
            ["compile once, Jinja per recipient", len(batch), f"{once:,.0f}",
             f"{1000 / once:.3f}", f"{once / TARGET:.2f}x of {TARGET:,}/s"],
            ["compile MJML per recipient (baseline)", args.baseline, f"{per_recipient:,.0f}",
             f"{1000 / per_recipient:.3f}", ""],
        ],
    )  # fmt: skip
    print(f"\nratio (compile once / compile per recipient): {once / per_recipient:.1f}x")


if __name__ == "__main__":
    main()
