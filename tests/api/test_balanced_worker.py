"""The gunicorn worker that leaves new connections to idle siblings, on real loopback sockets.

The worker's event loop is driven step by step from the test (``wait_for_and_dispatch_events``
is one turn of gunicorn's own loop), so each assertion sees one decision to accept or hold.
A sibling worker is played by the test accepting on the same listening socket.
"""

from __future__ import annotations

import os
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from gunicorn.config import Config
from gunicorn.glogging import Logger

from api.balanced_worker import HOLD, BalancedThreadWorker


class Slow:
    """A WSGI app whose /slow requests wait until released (a long batch stream, say)."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        if environ["PATH_INFO"] == "/slow":
            self.release.wait(10)
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return [b"ok"]


@contextmanager
def worker_on_loopback(threads: int) -> Iterator[tuple[BalancedThreadWorker, socket.socket, Slow]]:
    """A worker set up as ``init_process`` does, minus its endless loop, on a fresh listener."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    cfg = Config()
    cfg.set("threads", threads)
    app = Slow()
    worker = BalancedThreadWorker(0, os.getppid(), [listener], None, 30, cfg, Logger(cfg))
    worker.wsgi = app
    worker.tpool = worker.get_thread_pool()
    worker.poller = selectors.DefaultSelector()
    worker.method_queue.init()
    worker.poller.register(
        worker.method_queue.fileno(), selectors.EVENT_READ, worker.method_queue.run_callbacks
    )
    worker.set_accept_enabled(True)
    try:
        yield worker, listener, app
    finally:
        app.release.set()
        worker.tpool.shutdown(wait=True)
        worker.method_queue.run_callbacks(None)  # finished requests back to keep-alive
        for connection in [*worker.keepalived_conns, *worker.pending_conns]:
            connection.close()
        worker.method_queue.close()
        worker.poller.close()
        worker.tmp.close()
        listener.close()


def pump(worker: BalancedThreadWorker, until: Callable[[], bool], seconds: float = 5.0) -> bool:
    """Turn the worker's loop until ``until()`` holds or ``seconds`` pass; return ``until()``."""
    deadline = time.monotonic() + seconds
    while not until() and time.monotonic() < deadline:
        worker.wait_for_and_dispatch_events(0.05)
    return until()


def client(listener: socket.socket, path: str | None = None) -> socket.socket:
    """Connect to the worker's listener, sending one request for ``path`` if given."""
    connection = socket.create_connection(listener.getsockname(), timeout=10)
    if path is not None:
        connection.sendall(f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
    return connection


def test_an_idle_worker_accepts_at_once():
    with worker_on_loopback(threads=2) as (worker, listener, _), client(listener, "/fast") as fast:
        worker.wait_for_and_dispatch_events(1.0)
        assert worker.nr_conns == 1
        assert pump(worker, lambda: worker.busy == 0)
        assert fast.recv(1024).startswith(b"HTTP/1.1 200")


def test_a_busy_worker_leaves_a_new_connection_to_an_idle_sibling():
    with worker_on_loopback(threads=2) as (worker, listener, _), client(listener, "/slow"):
        assert pump(worker, lambda: worker.busy == 1)
        with client(listener, "/fast"):
            worker.wait_for_and_dispatch_events(1.0)  # sees it waiting, and holds
            assert worker.nr_conns == 1
            listener.settimeout(5)
            taken, _ = listener.accept()  # the sibling takes it meanwhile
            taken.close()
            assert not pump(worker, lambda: worker.nr_conns > 1, seconds=3 * HOLD)


def test_a_busy_worker_takes_the_connection_nobody_else_took_after_its_hold():
    with worker_on_loopback(threads=2) as (worker, listener, _), client(listener, "/slow"):
        assert pump(worker, lambda: worker.busy == 1)
        started = time.monotonic()
        with client(listener, "/fast") as fast:
            assert pump(worker, lambda: worker.nr_conns == 2)
            assert time.monotonic() - started >= HOLD
            assert pump(worker, lambda: worker.busy == 1)
            assert fast.recv(1024).startswith(b"HTTP/1.1 200")


def test_with_its_only_thread_busy_a_worker_still_takes_a_connection_after_its_hold():
    """No starvation: a worker that is never idle under load still accepts, HOLD later."""
    with worker_on_loopback(threads=1) as (worker, listener, app), client(listener, "/slow") as one:
        assert pump(worker, lambda: worker.busy == 1)
        with client(listener, "/fast") as fast:
            assert pump(worker, lambda: worker.nr_conns == 2)
            assert worker.busy == 2  # queued behind the slow request, as gunicorn queues
            app.release.set()
            assert pump(worker, lambda: worker.busy == 0)
            assert one.recv(1024).startswith(b"HTTP/1.1 200")
            assert fast.recv(1024).startswith(b"HTTP/1.1 200")
