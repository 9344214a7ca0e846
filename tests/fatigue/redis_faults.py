"""Faults of a real Redis for tests: full, read-only, or hung, on a server of the test's own.

Making a server full (``maxmemory``), a read-only replica (``REPLICAOF`` a port nobody listens
on) or stopped (``SIGSTOP``) must touch no other test: ``own_redis`` starts one per test.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

import redis

from fatigue.domain import Recipient
from fatigue.testing import free_port
from tests.conftest import own_redis_server


def own_server() -> AbstractContextManager[str]:
    """Start a redis-server for one test: its faults reach no other test (skip if none)."""
    return own_redis_server()


@contextmanager
def read_only(url: str) -> Iterator[None]:
    """Make the server a replica of a master that is not there (as after a failover)."""
    client = redis.Redis.from_url(url)
    client.execute_command("REPLICAOF", "127.0.0.1", str(free_port()))
    try:
        yield
    finally:
        client.execute_command("REPLICAOF", "NO", "ONE")
        client.close()


@contextmanager
def out_of_memory(url: str) -> Iterator[None]:
    """Give the server less memory than it uses, refusing writes (``noeviction``)."""
    client = redis.Redis.from_url(url)
    kept = client.config_get("maxmemory", "maxmemory-policy")
    client.config_set("maxmemory-policy", "noeviction")
    used = int(client.info("memory")["used_memory"])
    client.config_set("maxmemory", str(used // 2))  # under what it holds: every write refused
    try:
        yield
    finally:
        client.config_set("maxmemory", kept["maxmemory"])
        client.config_set("maxmemory-policy", kept["maxmemory-policy"])
        client.close()


@contextmanager
def hung(url: str) -> Iterator[None]:
    """Stop the server (SIGSTOP): connections stay open and nothing answers."""
    client = redis.Redis.from_url(url)
    pid = int(client.info("server")["process_id"])
    client.close()
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def customer(user_id: str) -> Recipient:
    return Recipient(user_id, f"{user_id}@example.com", "Ada", "en-GB", "Europe/London")


FAULTS: dict[str, tuple[Callable[[str], AbstractContextManager[None]], str]] = {
    "read-only": (read_only, "ReadOnlyError"),
    "out-of-memory": (out_of_memory, "OutOfMemoryError"),
}
