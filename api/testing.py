"""Start a real ``rapport serve`` (gunicorn) on a free loopback port: for tests and benchmarks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from fatigue.testing import free_port


class ServerFailed(RuntimeError):
    """The server process exited or never became ready; the message holds its log tail."""


@contextmanager
def running_server(
    environment: Mapping[str, str],
    workers: int = 2,
    threads: int = 2,
    timeout: float = 60.0,
    options: Sequence[str] = (),
    log_path: Path | None = None,
) -> Iterator[str]:
    """Run ``rapport serve`` with ``environment`` added; yield its base URL; stop it on exit.

    ``options`` are more ``rapport serve`` flags; the server's output goes to ``log_path``
    when given (complete once the block has ended), else to a temporary file.
    """
    port = free_port()
    rapport = Path(sys.executable).with_name("rapport")
    command = [str(rapport), "serve", "--host", "127.0.0.1", "--port", str(port),
               "--workers", str(workers), "--threads", str(threads), *options]  # fmt: skip
    env = {**os.environ, **environment}
    opened = open(log_path, "w+b") if log_path is not None else tempfile.TemporaryFile()  # noqa: SIM115
    with opened as log:
        # A file, not a pipe: a pipe nobody drains would stall the server once it fills.
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            _wait_ready(process, base, timeout, log)
            yield base
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_ready(process: subprocess.Popen[bytes], base: str, timeout: float, log: object) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerFailed(f"rapport serve exited with {process.returncode}: {_tail(log)}")
        try:
            with urllib.request.urlopen(f"{base}/readyz", timeout=2) as response:
                if response.status == 200:
                    return
        except urllib.error.HTTPError as exc:
            last = exc.read().decode("utf-8", "replace")
        except OSError as exc:
            last = str(exc)
        time.sleep(0.2)
    raise ServerFailed(f"not ready after {timeout}s ({last}): {_tail(log)}")


def _tail(log: object) -> str:
    handle = log  # a binary temporary file
    handle.seek(0)  # type: ignore[attr-defined]
    return handle.read()[-3000:].decode("utf-8", "replace")  # type: ignore[attr-defined]


def call(
    base: str,
    method: str,
    path: str,
    body: object = None,
    key: str | None = None,
    data: bytes | None = None,
    content_type: str = "application/json",
) -> tuple[int, dict[str, str], bytes]:
    """Make one HTTP request; return status, headers and body (errors are answers too)."""
    payload = data if data is not None else (None if body is None else json.dumps(body).encode())
    request = urllib.request.Request(f"{base}{path}", data=payload, method=method)
    if payload is not None:
        request.add_header("Content-Type", content_type)
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()
