"""``rapport demo``: train the demo model if needed, make a key, print examples, serve.

Everything runs on the embedded defaults: the bundled demo data and templates, ``memory://``
state, one worker. The demo key goes to the configured keys file (``var/api-keys.json`` by
default), replacing the previous run's, so keys made there with ``rapport keys create`` work on
the demo too; it is printed once, inside the example commands.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import click

from fatigue.errors import RapportError

DEMO_KEY_NAME = "demo"
#: Zones around the world for the example customer: the first where it is day now, so the
#: bundled rules' quiet hours (21:00-08:00) do not defer the example.
EXAMPLE_ZONES = ("Europe/London", "America/New_York", "America/Los_Angeles", "Pacific/Auckland",
                 "Asia/Tokyo", "Asia/Kolkata")  # fmt: skip


def daytime_zone(now: datetime) -> str:
    """Return the first example zone where ``now`` falls between 10:00 and 18:00."""
    for name in EXAMPLE_ZONES:
        if 10 <= now.astimezone(ZoneInfo(name)).hour < 18:
            return name
    return EXAMPLE_ZONES[0]


def ensure_model(model_dir: Path) -> bool:
    """Train the demo model into ``model_dir`` unless a version is published; say if trained."""
    from engine.artifact import current_version
    from engine.demo import ensure_demo_model

    if current_version(model_dir) is not None:
        return False
    click.echo(f"training the demo model into {model_dir} (a few seconds) ...", err=True)
    ensure_demo_model(model_dir)
    return True


def demo_key(keys_file: Path) -> str:
    """Create the demo's admin key in ``keys_file`` and return it (only its hash is stored).

    A fresh one each run: the previous run's demo key is forgotten, other keys are kept.
    """
    from api.auth import KeyRing, Role

    return KeyRing(keys_file).create(DEMO_KEY_NAME, frozenset({Role.ADMIN}), replace=True)


def examples(base: str, key: str, now: datetime | None = None) -> str:
    """Return the text printed for the person running the demo."""
    zone = daytime_zone(now or datetime.now(UTC))
    compose = (
        '{"idempotency_key": "demo-1", "recipient": {"user_id": "12347", "email": '
        f'"ada@example.com", "first_name": "Ada", "timezone": "{zone}", "locale": "en"}}, '
        '"template": "picked-for-you", "campaign": {"id": "weekly-picks", "category": '
        '"recommendations", "kind": "promotional", "priority": 1}, "dry_run": false}'
    )
    return f"""
Rapport demo on {base}
  web studio:     {base}/studio/   (sign in with the key below)
  API reference:  {base}/docs
  demo API key:   {key}   (admin; shown only now)

Ask for one customer's email (a customer in {zone}, where it is day now: at night
quiet hours would answer "defer" with send_at; the same idempotency key again replays it):

  curl -s {base}/v1/compose \\
    -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' \\
    -d '{compose}'

Why customer 12347 was (or was not) mailed, and what would hold the next email back:

  curl -s {base}/v1/users/12347/fatigue -H 'Authorization: Bearer {key}'

Stop with Ctrl-C. State is in memory (memory://) and goes away with the server.
"""


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--no-serve", is_flag=True, help="Prepare and print the examples, then exit.")
def demo(host: str, port: int, no_serve: bool) -> None:
    """Run Rapport on the bundled demo data: train if needed, then serve with examples."""
    from api.config import load_settings
    from api.serve import ServeOptions, check_port, run

    try:
        settings = load_settings()
        if not no_serve:  # before the key: a new one would lock out a demo already there
            check_port(host, port)
        ensure_model(Path(settings["MODEL_DIR"]))
        key = demo_key(Path(settings["API_KEYS_FILE"]))
        os.environ.setdefault("RAPPORT_PUBLIC_URL", f"http://localhost:{port}")
        os.environ.setdefault("RAPPORT_SENDER", "Rapport demo shop <news@shop.example.com>")
        click.echo(examples(f"http://{'localhost' if host == '127.0.0.1' else host}:{port}", key))
        if not no_serve:
            run(ServeOptions(host, port, workers=1), settings)
    except RapportError as exc:
        raise click.ClickException(str(exc)) from exc
