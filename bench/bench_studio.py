"""How fast the studio's live preview answers a keystroke, through the real app over HTTP.

Each round posts the editor's draft of "picked for you" to ``/studio/templates/<name>/draft``
(validation with every check a save runs, then a full render), as the page does a moment after
the marketer stops typing. Two kinds of keystroke: one that changes the MJML (a new source, so
MJML compiles again) and one in the subject only (the compiled MJML is reused). The baseline in
the same run is the JSON API's preview of the saved version (``POST /v1/templates/<name>/
preview``), which neither validates nor compiles. The app is served by werkzeug on a loopback
port, as in the browser tests; the machine is shared, so figures are noisy.

Run: ``.venv/bin/python bench/bench_studio.py [--rounds 40]``
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import statistics
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from http.cookiejar import CookieJar
from pathlib import Path

from werkzeug.serving import make_server

from api import create_app
from api.auth import KeyRing, Role

TEMPLATE = "picked-for-you"
FOLDER = Path(__file__).resolve().parents[1] / "templates" / TEMPLATE
ANCHOR = '<mj-section padding="24px 12px 8px">'


def timed(call: Callable[[int], None], rounds: int) -> list[float]:
    """Return the milliseconds each of ``rounds`` calls took (after two warm-up calls)."""
    for warm in range(2):
        call(-1 - warm)
    times = []
    for index in range(rounds):
        start = time.perf_counter()
        call(index)
        times.append((time.perf_counter() - start) * 1000)
    return times


def main() -> None:
    """Serve the app, sign in, and time the three kinds of request."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    rounds = parser.parse_args().rounds
    folder = Path(tempfile.mkdtemp(prefix="rapport-bench-studio-"))
    ring = KeyRing(folder / "keys.json")
    key = ring.create("bench", frozenset({Role.MARKETER}))
    app = create_app(
        {
            "API_KEYS_FILE": str(folder / "keys.json"),
            "EVENT_LOG_DIR": str(folder / "events"),
            "TEMPLATES_DIR": str(folder / "templates"),
            "MODEL_DIR": str(folder / "model"),
            "SECRET_KEY": "bench-studio-secret-key",
        }
    )
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{httpd.server_port}"
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
    token = re.search(r'name="csrf_token" value="([^"]+)"', _get(opener, f"{base}/studio/login"))
    assert token, "no CSRF token on the login page"
    csrf = token.group(1)
    _post(opener, f"{base}/studio/login", f"api_key={key}&csrf_token={csrf}".encode(), {
        "Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
    # Signing in starts a new session with a new CSRF token; the editor page carries it.
    editor = _get(opener, f"{base}/studio/templates/{TEMPLATE}")
    csrf = re.findall(r'name="csrf_token" value="([^"]+)"', editor)[-1]
    mjml = (FOLDER / "email.mjml").read_text(encoding="utf-8")
    draft = {
        "subject": "Picked for you",
        "preheader": "",
        "mjml": mjml,
        "sample": (FOLDER / "sample.json").read_text(encoding="utf-8"),
        "base": "1",
    }
    studio = {"Content-Type": "application/json", "X-CSRF-Token": csrf}
    api = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    url = f"{base}/studio/templates/{TEMPLATE}/draft"

    def mjml_keystroke(index: int) -> None:
        text = mjml.replace(ANCHOR, f"<mj-raw><!-- {index} --></mj-raw>{ANCHOR}", 1)
        _post(opener, url, json.dumps({**draft, "mjml": text}).encode(), studio)

    def subject_keystroke(index: int) -> None:
        body = {**draft, "subject": f"Picked for you {index}"}
        _post(opener, url, json.dumps(body).encode(), studio)

    def api_preview(_index: int) -> None:
        _post(opener, f"{base}/v1/templates/{TEMPLATE}/preview", b"{}", api)

    results = [
        ("API preview of the saved version (baseline)", timed(api_preview, rounds)),
        ("studio draft, keystroke in the subject", timed(subject_keystroke, rounds)),
        ("studio draft, keystroke in the MJML", timed(mjml_keystroke, rounds)),
    ]
    httpd.shutdown()
    _report(results, rounds)


def _report(results: list[tuple[str, list[float]]], rounds: int) -> None:
    baseline = statistics.median(results[0][1])
    print(f"# bench_studio  {datetime.now(UTC):%Y-%m-%d %H:%M} UTC  {platform.node()}")
    print(f"# {rounds} rounds each; shared 2-core machine, figures are noisy\n")
    header = f"{'request':<46} {'median ms':>10} {'p90 ms':>8} {'x baseline':>11}"
    print(header)
    print("-" * len(header))
    for name, times in results:
        median = statistics.median(times)
        p90 = sorted(times)[int(len(times) * 0.9) - 1]
        print(f"{name:<46} {median:>10.1f} {p90:>8.1f} {median / baseline:>11.2f}")


def _get(opener: urllib.request.OpenerDirector, url: str) -> str:
    with opener.open(url, timeout=60) as response:
        return response.read().decode()


def _post(
    opener: urllib.request.OpenerDirector, url: str, body: bytes, headers: dict[str, str]
) -> bytes:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    with opener.open(request, timeout=60) as response:
        return response.read()


if __name__ == "__main__":
    main()
