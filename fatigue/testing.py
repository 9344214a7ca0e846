"""Helpers for tests and benchmarks: the contract rule file and a private ``redis-server``."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

# The minimal rule file every version accepts (the contract, copied into the README):
# tests and benchmarks exercise exactly what users copy.
CONTRACT_RULES = """
[[caps]]
max = 3
per = "1d"

[cooldown]
after_any = "16h"

[quiet_hours]
start = "21:00"
end = "08:00"
default_timezone = "Europe/London"

[relevance]
min_relevance = 0.017
min_items = 3

[holdout]
percent = 0
salt = "rapport"
"""


class RedisUnavailable(RuntimeError):
    """A private redis-server could not be started."""


def free_port() -> int:
    """Return a TCP port nobody is listening on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def private_redis(
    binary: str = "redis-server", timeout: float = 10.0, port: int | None = None
) -> Iterator[str]:
    """Start a throwaway redis-server and yield its URL; stop it and remove its dir on exit.

    ``port`` starts it where an earlier one stood: a store that lost its server sees it return.
    """
    path = shutil.which(binary)
    if path is None:
        raise RedisUnavailable(f"{binary} is not installed (apt-get install redis-server)")
    port = port or free_port()
    workdir = tempfile.mkdtemp(prefix="rapport-redis-")
    command = [path, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    # A log file, not a pipe: a pipe nobody drains would stall the server once it fills.
    logfile = os.path.join(workdir, "redis.log")
    process = subprocess.Popen([*command, "--dir", workdir, "--logfile", logfile])
    try:
        _wait_until_ready(process, port, timeout, logfile)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def _wait_until_ready(
    process: subprocess.Popen[bytes], port: int, timeout: float, logfile: str
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            with open(logfile, errors="replace") as log:
                error = log.read()[-2000:]
            raise RedisUnavailable(f"redis-server exited with {process.returncode}: {error}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return
        except OSError:
            time.sleep(0.05)
    raise RedisUnavailable(f"redis-server did not answer on port {port} within {timeout}s")
