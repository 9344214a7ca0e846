"""Keeping the garbage collector off the long-lived heap of a serving process.

The model, catalog and compiled templates are millions of objects that live as long as the
process; composing allocates enough to start collections often, and every full collection
walked them all again.
"""

from __future__ import annotations

import gc

YOUNG_GC_THRESHOLD = 20_000  # allocations between young collections (CPython's default: 700)


def settle_heap() -> None:
    """Hide what is alive after loading from the garbage collector; collect less often.

    Freezing after loading and raising the youngest generation's threshold saved about a sixth
    of a send's CPU in bench/bench_api.py. Reference counting still frees what is replaced.
    """
    gc.collect()
    gc.freeze()
    youngest, middle, oldest = gc.get_threshold()
    gc.set_threshold(max(youngest, YOUNG_GC_THRESHOLD), middle, oldest)


def resettle_heap() -> None:
    """After a reload in a settled process, hide the newly loaded model too.

    Does nothing in a process that never settled its heap (tests, the CLI). The old model is
    freed by reference counting as the last request lets go of it; it holds no cycles. Objects
    of requests in flight at a freeze are frozen too, and a frozen cycle is never collected:
    unfreezing before collecting reclaims those left by the previous freeze, so each reload
    costs one collection of the whole heap and nothing accumulates across reloads.
    """
    if gc.get_freeze_count():
        gc.unfreeze()
        gc.collect()
        gc.freeze()
