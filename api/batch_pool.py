"""Spreading one batch stream over every core: its chunks composed in helper processes.

A gunicorn worker is one process, so a single NDJSON stream used one core however many the
host had. With a shared store (Redis) and ``BATCH_PROCESSES`` above one, the batch endpoint
hands each chunk of raw lines to a pool of helper processes, each running its own app built
from the same settings, and streams their answers back in input order, a few chunks ahead.
With ``memory://`` state a helper would keep fatigue state of its own, so there is no pool.

Helpers start from a fresh interpreter (``forkserver``; a gunicorn worker has threads, which
``fork`` must not copy) and load the model as the pool starts. A chunk whose helper fails is
composed in the worker instead; idempotency keys make that safe even if the helper had decided.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import CancelledError, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, NamedTuple

log = logging.getLogger(__name__)
MAX_RESTARTS = 3  # pools started again after a helper died, before batches stay in the worker
WATCH_SECONDS = 2.0  # how often a helper checks that its worker is still there
WAIT_STEP = 1.0  # how often a waiting chunk looks whether its pool broke without saying so


class Stop(NamedTuple):
    """In place of a batch line: the audience stops here (too many recipients or bytes)."""

    detail: str


class Oversize(NamedTuple):
    """In place of a batch line too long to be one request: answered as too large, no more."""

    detail: str


Chunk = list[tuple[int, bytes | Stop | Oversize]]  # numbered raw lines, the last maybe a Stop
AnswerChunk = Callable[[Chunk], Iterator[bytes]]

_HELPER_APP: Any = None  # the app of this helper process (set by _start_helper)


class Submitted(NamedTuple):
    """A chunk handed to a pool: its future, and which pool (None: it never reached one)."""

    future: Future[bytes]
    chunk: Chunk
    executor: ProcessPoolExecutor | None


def _end_helpers(broken: ProcessPoolExecutor) -> None:
    """Kill what is left of a broken pool's helpers.

    Helpers ignore SIGTERM (see ``_start_helper``), so the pool's own termination left the
    survivors running beside the new pool, and the worker waited on them at exit until gunicorn
    killed it. ``_processes`` is the executor's own table of its helper processes.
    """
    processes = list((getattr(broken, "_processes", None) or {}).values())
    for process in processes:
        with contextlib.suppress(ProcessLookupError, AttributeError, ValueError):
            process.kill()
    for process in processes:
        with contextlib.suppress(AttributeError, ValueError, AssertionError):
            process.join(timeout=2)
    # A helper killed mid-answer leaves half a message in the answers pipe, and the executor's
    # manager thread waits for the rest: with every helper gone, closing this process's own
    # write end ends that wait (an EOF), or the thread, and the process's exit that joins it,
    # would hang for good.
    writer = getattr(getattr(broken, "_result_queue", None), "_writer", None)
    if writer is not None:
        with contextlib.suppress(OSError):
            writer.close()


class BatchPool:
    """Helper processes composing batch chunks for one gunicorn worker."""

    def __init__(self, settings: Mapping[str, Any], processes: int, clock: Any = None) -> None:
        self.processes = processes
        self._settings = dict(settings)
        self._clock = clock  # helpers get a copy: a frozen test clock does not advance in them
        self._lock = threading.Lock()
        self._restarts = 0
        self._executor: ProcessPoolExecutor | None = self._start()

    def answers(self, chunks: Iterator[Chunk], local: AnswerChunk) -> Iterator[bytes]:
        """Yield every chunk's answer lines in order; ``local`` composes a chunk a helper failed."""
        window = 2 * self.processes  # enough queued that no helper waits for the next chunk
        pending: deque[Submitted] = deque()
        try:
            for chunk in chunks:
                pending.append(self._submit(chunk))
                if len(pending) >= window:
                    yield from self._result(pending.popleft(), local)
            while pending:
                yield from self._result(pending.popleft(), local)
        finally:  # a client that went away: chunks not yet started are never decided
            for submitted in pending:
                submitted.future.cancel()

    def close(self) -> None:
        """Stop the helpers (queued chunks are cancelled)."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)

    def _start(self) -> ProcessPoolExecutor:
        executor = ProcessPoolExecutor(
            max_workers=self.processes,
            mp_context=multiprocessing.get_context("forkserver"),
            initializer=_start_helper,
            initargs=(self._settings, self._clock, os.getpid()),
        )
        # Start every helper now: each loads the model, which the first stream must not wait for.
        self._ready = [executor.submit(_ready) for _ in range(self.processes)]
        return executor

    def _submit(self, chunk: Chunk) -> Submitted:
        with self._lock:
            executor = self._executor
        try:
            if executor is None:
                raise BrokenProcessPool("batch helpers are stopped")
            return Submitted(executor.submit(_compose_in_helper, chunk), chunk, executor)
        except (BrokenProcessPool, RuntimeError) as exc:  # compose here (see _result)
            self._restart(executor)
            failed: Future[bytes] = Future()
            failed.set_exception(exc)
            return Submitted(failed, chunk, None)

    def _restart(self, broken: ProcessPoolExecutor | None) -> None:
        """Replace a pool a dead helper broke (a broken pool takes no more work), a few times."""
        with self._lock:
            if broken is None or self._executor is not broken:
                return  # stopped, or another thread already replaced it
            _end_helpers(broken)  # first: shutdown forgets its processes
            broken.shutdown(wait=False, cancel_futures=True)
            if self._restarts >= MAX_RESTARTS:
                log.error("batch helpers keep dying; batches are composed in the worker now")
                self._executor = None
                return
            self._restarts += 1
            log.warning("a batch helper died; starting the helpers again")
            self._executor = self._start()

    def _result(self, submitted: Submitted, local: AnswerChunk) -> Iterator[bytes]:
        try:
            answer = self._answer(submitted)
        except BrokenProcessPool:
            # Only the pool this chunk went to: every chunk queued on a pool that one dead helper
            # broke fails alike, and restarting the new pool for each of them used up every
            # restart at once (and cancelled the new pool's chunks).
            self._restart(submitted.executor)
        except CancelledError:  # its pool was replaced before it ran
            pass
        except Exception:
            log.exception("a batch helper failed on lines %d..", submitted.chunk[0][0])
        else:
            yield answer
            return
        yield from local(submitted.chunk)  # idempotency keys make this safe if a helper decided

    def _answer(self, submitted: Submitted) -> bytes:
        """Wait for a chunk's answer; raise ``BrokenProcessPool`` if its pool broke meanwhile.

        A helper killed while writing its answer leaves half a message in the pipe all helpers
        share: the executor's manager thread then waits for the rest forever, never notices
        the dead helper, and fails no future (CPython 3.11; a test caught the stream waiting
        for good about once in ten runs). So every ``WAIT_STEP`` the wait looks whether the
        chunk's pool lost a helper, is broken, or was replaced; ``_restart`` then ends the
        other helpers, which closes the pipe and frees that thread.
        """
        while True:
            try:
                return submitted.future.result(timeout=WAIT_STEP)
            except TimeoutError:
                executor = submitted.executor
                if executor is not None and (executor is not self._executor or _broken(executor)):
                    raise BrokenProcessPool("the chunk's pool broke while it waited") from None


def _broken(executor: ProcessPoolExecutor) -> bool:
    """Whether the pool is marked broken or one of its helpers is dead (executor internals)."""
    if getattr(executor, "_broken", False):
        return True
    processes = getattr(executor, "_processes", None) or {}
    return any(not process.is_alive() for process in list(processes.values()))


def _start_helper(settings: dict[str, Any], clock: Any, worker: int) -> None:
    """Build this helper's app from the worker's settings (runs once per helper process)."""
    global _HELPER_APP
    # Ctrl-C and a service manager's SIGTERM reach the whole group; a helper ends with its
    # worker instead (the pool's shutdown, or the watch below), so a stopping worker's
    # batches finish on their helpers rather than restarting the pool three times.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    threading.Thread(target=_exit_with, args=(worker,), daemon=True).start()
    from api import create_app
    from api.heap import settle_heap
    from engine.models import pin_single_threaded

    config = {**settings, "BATCH_PROCESSES": 1}  # a helper composes in itself
    if clock is not None:
        config["CLOCK"] = clock
    _HELPER_APP = create_app(config)
    _HELPER_APP.extensions["rapport"].warm()
    settle_heap()
    pin_single_threaded()  # one helper per core, as the workers


def _exit_with(worker: int) -> None:
    """End this helper once its worker is gone (a killed worker runs no exit hooks)."""
    while True:
        time.sleep(WATCH_SECONDS)
        try:
            os.kill(worker, 0)
        except ProcessLookupError:
            os._exit(0)


def _ready() -> bool:
    return _HELPER_APP is not None


def _compose_in_helper(chunk: Chunk) -> bytes:
    """Compose one chunk in this helper; its decision-log entries are written before returning."""
    from api.compose import answer_chunk

    with _HELPER_APP.app_context():
        found = _HELPER_APP.extensions["rapport"]
        answers = b"".join(answer_chunk(chunk))
        found.get("composer").log_writer.flush()  # a helper may stop without its exit hooks
        return answers
