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

import logging
import multiprocessing
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

log = logging.getLogger(__name__)
Chunk = list[tuple[int, bytes | None]]  # numbered raw lines; None: the recipient limit passed
AnswerChunk = Callable[[Chunk], Iterator[bytes]]

_HELPER_APP: Any = None  # the app of this helper process (set by _start_helper)


class BatchPool:
    """Helper processes composing batch chunks for one gunicorn worker."""

    def __init__(self, settings: Mapping[str, Any], processes: int, clock: Any = None) -> None:
        self.processes = processes
        self._executor = ProcessPoolExecutor(
            max_workers=processes,
            mp_context=multiprocessing.get_context("forkserver"),
            initializer=_start_helper,
            initargs=(dict(settings), clock),
        )
        # Start every helper now: each loads the model, which the first stream must not wait for.
        self._ready = [self._executor.submit(_ready) for _ in range(processes)]

    def answers(self, chunks: Iterator[Chunk], local: AnswerChunk) -> Iterator[bytes]:
        """Yield every chunk's answer lines in order; ``local`` composes a chunk a helper failed."""
        window = 2 * self.processes  # enough queued that no helper waits for the next chunk
        pending: deque[tuple[Future[bytes], Chunk]] = deque()
        for chunk in chunks:
            pending.append((self._submit(chunk), chunk))
            if len(pending) >= window:
                yield from self._result(*pending.popleft(), local)
        while pending:
            yield from self._result(*pending.popleft(), local)

    def close(self) -> None:
        """Stop the helpers (queued chunks are cancelled)."""
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _submit(self, chunk: Chunk) -> Future[bytes]:
        try:
            return self._executor.submit(_compose_in_helper, chunk)
        except RuntimeError as exc:  # the pool broke or was shut down: compose here
            failed: Future[bytes] = Future()
            failed.set_exception(exc)
            return failed

    @staticmethod
    def _result(future: Future[bytes], chunk: Chunk, local: AnswerChunk) -> Iterator[bytes]:
        try:
            answer = future.result()
        except Exception:
            log.exception("a batch helper failed; composing lines %d.. here", chunk[0][0])
            yield from local(chunk)
            return
        yield answer


def _start_helper(settings: dict[str, Any], clock: Any) -> None:
    """Build this helper's app from the worker's settings (runs once per helper process)."""
    global _HELPER_APP
    from api import create_app
    from api.heap import settle_heap

    config = {**settings, "BATCH_PROCESSES": 1}  # a helper composes in itself
    if clock is not None:
        config["CLOCK"] = clock
    _HELPER_APP = create_app(config)
    _HELPER_APP.extensions["rapport"].warm()
    settle_heap()


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
