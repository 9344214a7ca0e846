"""What gunicorn answers itself, before the app sees a request, as problem+json.

A request gunicorn cannot parse never reaches Flask: a request line past ``limit_request_line``
(414), headers past their limits (431), a malformed line or header (400). gunicorn then writes a
small HTML page, and the JSON API never answers with HTML. The worker lets gunicorn decide the
status and log the request as usual, catches the page it writes, and sends the same status as
``application/problem+json`` instead.
"""

from __future__ import annotations

from typing import Any

import orjson

from api.problems import PROBLEM_MEDIA_TYPE, PROBLEM_TYPES


class CapturedSocket:
    """Stands in for the client socket while gunicorn writes its error page."""

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self.written = b""

    def gettimeout(self) -> float:
        """Say the socket is non-blocking, so gunicorn writes without switching it."""
        return 0.0

    def sendall(self, data: bytes) -> None:
        """Keep what gunicorn writes instead of sending it."""
        self.written += data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def problem_answer(page: bytes, exc: BaseException) -> bytes:
    """Return the HTTP answer to send instead of gunicorn's ``page`` for ``exc``."""
    status_line = page.split(b"\r\n", 1)[0].decode("latin-1")  # "HTTP/1.1 414 URI Too Long"
    _, code, reason = status_line.split(" ", 2)
    status = int(code)
    if status >= 500:  # gunicorn's own failure, already logged with its traceback
        kind, detail = PROBLEM_TYPES["internal"], "internal error; it has been logged"
    else:
        kind, detail = PROBLEM_TYPES["http-error"], f"{reason}: {exc}"
    document = {"type": kind.uri, "title": reason, "status": status, "detail": detail}
    body = orjson.dumps(document)
    head = (
        f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\n"
        f"Content-Type: {PROBLEM_MEDIA_TYPE}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("latin-1") + body
