"""Printing helpers shared by the benchmark scripts."""

from __future__ import annotations


def table(title: str, header: list[str], rows: list[list[object]]) -> None:
    """Print a fixed-width table under a ``## title`` heading."""
    print(f"\n## {title}")
    widths = [max(len(str(x)) for x in [h, *[r[i] for r in rows]]) for i, h in enumerate(header)]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    for row in rows:
        print("  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True)))
