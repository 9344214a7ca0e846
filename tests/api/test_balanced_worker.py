"""The gunicorn worker that leaves new connections to less busy siblings, on real sockets.

The worker's event loop is driven step by step from the test (``wait_for_and_dispatch_events``
is one turn of gunicorn's own loop), so each assertion sees one decision to accept or hold.
A sibling worker is played by the test: an entry on the shared board (this live process's pid)
and, when it takes a connection, an accept on the same listening socket.
"""

from __future__ import annotations

import multiprocessing
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from gunicorn.config import Config
from gunicorn.glogging import Logger

from api import balanced_worker
from api.balanced_worker import GRACE, HOLD, BalancedThreadWorker, Board


class Slow:
    """A WSGI app whose /slow requests wait until released (a long batch stream, say).

    /spin computes for half a second instead, holding the interpreter lock as composing does.
    """

    def __init__(self) -> None:
        self.release = threading.Event()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        if environ["PATH_INFO"] == "/slow":
            self.release.wait(10)
        elif environ["PATH_INFO"] == "/spin":
            deadline = time.monotonic() + 0.5
            while time.monotonic() < deadline:
                sum(range(1000))
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


@pytest.fixture
def board(monkeypatch) -> Board:
    """A fresh board of four slots, as the master makes before forking its workers."""
    fresh = Board(slots=4)
    monkeypatch.setattr(balanced_worker, "_BOARD", [fresh])
    return fresh


def sibling(board: Board, busy: int) -> None:
    """Put a live sibling with ``busy`` requests in hand on the board's last slot."""
    board.pids[3], board.busy[3] = os.getpid(), busy


def test_an_idle_worker_accepts_at_once(board):
    sibling(board, 0)
    with worker_on_loopback(threads=2) as (worker, listener, _), client(listener, "/fast") as fast:
        worker.claim_slot()
        worker.wait_for_and_dispatch_events(1.0)
        assert worker.nr_conns == 1
        assert pump(worker, lambda: worker.busy == 0)
        assert fast.recv(1024).startswith(b"HTTP/1.1 200")


def test_a_busy_worker_accepts_at_once_when_no_sibling_is_less_busy(board):
    """Clients opening a connection per request would otherwise wait out a hold each."""
    sibling(board, 1)
    with worker_on_loopback(threads=2) as (worker, listener, _), client(listener, "/slow"):
        worker.claim_slot()
        assert pump(worker, lambda: worker.busy == 1)
        assert board.busy[worker.slot] == 1
        with client(listener, "/fast"):
            worker.wait_for_and_dispatch_events(1.0)
            assert worker.nr_conns == 2


def test_a_busy_worker_leaves_a_new_connection_to_a_less_busy_sibling(board):
    sibling(board, 0)
    with worker_on_loopback(threads=2) as (worker, listener, _), client(listener, "/slow"):
        worker.claim_slot()
        assert pump(worker, lambda: worker.busy == 1)
        with client(listener, "/fast"):
            worker.wait_for_and_dispatch_events(1.0)  # sees it waiting, and holds
            assert worker.nr_conns == 1
            listener.settimeout(5)
            taken, _ = listener.accept()  # the sibling takes it meanwhile
            taken.close()
        time.sleep(GRACE + 2 * HOLD)  # after that hold's grace: the next one is held too
        with client(listener, "/fast"):
            worker.wait_for_and_dispatch_events(1.0)
            assert worker.nr_conns == 1


def test_after_its_hold_a_worker_takes_one_waiting_connection_then_holds_again(board):
    """No starvation, and no grabbing: the hold's end lets one connection in, not a burst."""
    sibling(board, 0)  # a sibling that never takes anything (a stuck one, say)
    with worker_on_loopback(threads=1) as (worker, listener, app), client(listener, "/slow") as one:
        worker.claim_slot()
        assert pump(worker, lambda: worker.busy == 1)
        with client(listener, "/fast") as fast, client(listener, "/fast") as third:
            worker.wait_for_and_dispatch_events(1.0)  # sees them waiting, and holds
            assert worker.nr_conns == 1
            assert pump(worker, lambda: worker.nr_conns == 2)  # the hold over: one comes in
            worker.wait_for_and_dispatch_events(1.0)  # the third: held again
            assert worker.nr_conns == 2
            assert pump(worker, lambda: worker.nr_conns == 3)
            app.release.set()
            assert pump(worker, lambda: worker.busy == 0)
            for answered in (one, fast, third):
                assert answered.recv(1024).startswith(b"HTTP/1.1 200")


def test_a_worker_off_the_board_accepts_as_plain_gthread_does(monkeypatch):
    monkeypatch.setattr(balanced_worker, "_BOARD", [])
    with worker_on_loopback(threads=2) as (worker, listener, _), client(listener, "/slow"):
        worker.claim_slot()
        assert worker.slot is None
        assert pump(worker, lambda: worker.busy == 1)
        with client(listener, "/fast"):
            worker.wait_for_and_dispatch_events(1.0)
            assert worker.nr_conns == 2


def test_a_slot_left_by_a_dead_worker_is_taken_again():
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()  # reaped: nothing answers to its pid any more
    board = Board(slots=2)
    board.pids[0] = os.getpid()  # a live worker
    board.pids[1] = ended.pid  # a worker killed before it could give its slot back
    assert board.claim(os.getpid()) == 1
    assert board.claim(os.getpid()) is None  # every slot held by a live worker
    board.release(1)
    assert board.claim(os.getpid()) == 1


def test_a_worker_computing_still_takes_a_connection_nobody_else_takes(board):
    """The main thread waits for the interpreter lock behind the computing one: no starvation."""
    sibling(board, 0)  # idle on the board, but never accepting (a stuck sibling)
    with worker_on_loopback(threads=1) as (worker, listener, _), client(listener, "/spin"):
        worker.claim_slot()
        assert pump(worker, lambda: worker.busy == 1)
        with client(listener, "/fast"):
            assert pump(worker, lambda: worker.nr_conns == 2, seconds=0.4)  # before /spin ends


def test_a_stopping_worker_leaves_the_board_at_once(board):
    """Still serving its last requests, it takes no new connection: it is nobody's sibling."""
    with worker_on_loopback(threads=1) as (worker, _, _app):
        worker.claim_slot()
        slot = worker.slot
        assert slot is not None and board.pids[slot] == os.getpid()
        worker.handle_exit(signal.SIGTERM, None)
        assert worker.alive is False and board.pids[slot] == 0 and worker.slot is None


def test_the_board_made_before_forking_is_the_workers_own(board):
    """What a forked worker writes is what its siblings read (the master makes the board)."""
    child = multiprocessing.get_context("fork").Process(target=_claim_and_post)
    child.start()
    child.join(10)
    assert child.exitcode == 0
    [slot] = [n for n, pid in enumerate(board.pids) if pid == child.pid]
    assert board.busy[slot] == 7


def _claim_and_post() -> None:
    worker_board = balanced_worker._BOARD[0]
    slot = worker_board.claim(os.getpid())
    assert slot is not None
    worker_board.busy[slot] = 7
