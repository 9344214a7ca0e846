"""The browser tests' server fixture closes every response, even when the client resets."""

from __future__ import annotations

import gc
import socket
import struct
import sys
from typing import Any


def get_then_reset(base_url: str, path: str) -> bytes:
    """GET ``path``, read the answer, then reset the connection (SO_LINGER 0) like a closed tab."""
    host, port = base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        answer = sock.recv(65536)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    return answer


def test_a_reset_connection_leaves_no_file_response_unclosed(server, monkeypatch):
    unraisable: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    answers = [get_then_reset(server, "/favicon.ico") for _ in range(50)]
    gc.collect()
    assert [answer.split(b"\r\n", 1)[0] for answer in answers] == [b"HTTP/1.1 200 OK"] * 50
    assert [repr(u.exc_value) for u in unraisable] == []
