"""The API's commands: ``rapport keys``, ``rapport serve`` and ``rapport events replay``.

Heavy imports (gunicorn, the engine) happen inside the commands so ``rapport --help`` is fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from fatigue.errors import RapportError


@click.group()
def keys() -> None:
    """Manage API keys (stored hashed in RAPPORT_API_KEYS_FILE)."""


@keys.command("create")
@click.option("--name", required=True, help="Who or what the key is for, e.g. 'esp-prod'.")
@click.option(
    "--roles", required=True, help="Comma-separated: platform, marketer, engineer, admin."
)
def create_key(name: str, roles: str) -> None:
    """Create a key, print it once on stdout, and store only its hash."""
    from api.auth import KeyRing, parse_roles
    from api.config import load_settings

    try:
        path = Path(load_settings()["API_KEYS_FILE"])
        token = KeyRing(path).create(name, parse_roles(roles))
    except RapportError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(token)
    click.echo(f"key {name!r} stored (hashed) in {path}; it is not shown again", err=True)


@keys.command("list")
def list_keys() -> None:
    """List key names and roles (never the keys themselves)."""
    from api.auth import KeyRing
    from api.config import load_settings

    try:
        path = Path(load_settings()["API_KEYS_FILE"])
        for key in KeyRing(path).current():
            roles = ",".join(sorted(role.value for role in key.roles))
            click.echo(f"{key.name}\t{roles}\t{key.created_at}")
    except RapportError as exc:
        raise click.ClickException(str(exc)) from exc


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    default=8000,
    show_default=True,
    type=click.IntRange(1, 65535),
    help="Port to listen on.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Worker processes [default: one per core (at least 2) on redis://, 1 on memory://].",
)
@click.option(
    "--threads",
    default=2,
    show_default=True,
    type=click.IntRange(min=1),
    help="Threads per worker.",
)
@click.option(
    "--access-log",
    is_flag=True,
    help="Log every request to stderr (health, readiness and metrics probes only when they fail).",
)
def serve(host: str, port: int, workers: int | None, threads: int, access_log: bool) -> None:
    """Serve the API under gunicorn (configured by RAPPORT_* variables)."""
    from api.config import load_settings
    from api.serve import ServeOptions, run

    try:
        settings = load_settings()
        model_dir = Path(settings["MODEL_DIR"])
        if not (model_dir / "CURRENT").exists():
            raise click.ClickException(
                f"no published model in {model_dir}: run 'rapport demo' (trains the demo model) "
                "or 'rapport train', or point RAPPORT_MODEL_DIR at a model directory"
            )
        options = ServeOptions(host, port, workers, threads, access_log=access_log)
        run(options, settings)
    except RapportError as exc:
        raise click.ClickException(str(exc)) from exc


@click.group()
def events() -> None:
    """Work with the event log (RAPPORT_EVENT_LOG_DIR): every event acknowledged."""


@events.command("replay")
@click.option(
    "--since",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="Replay the daily files from this UTC day on [default: all of them].",
)
@click.option(
    "--all",
    "everything",
    is_flag=True,
    help="Replay engagement too (opens, clicks, bounces), for a store that lost everything; "
    "by default only unsubscribes, resubscribes, complaints and hard bounces.",
)
def replay_events(since: Any, everything: bool) -> None:
    """Re-apply the event log to the state store (after Redis lost its data).

    Each event id is applied once, so running it again is harmless.
    """
    from api.components import rules_from
    from api.config import load_settings
    from api.replay import replay, segments
    from api.store_state import record_store_state
    from fatigue.governor import Governor
    from fatigue.store import in_memory, masked_url, store_from_url

    url = ""
    try:
        settings = load_settings()
        url = str(settings["STORE_URL"])
        if in_memory(url):
            raise click.ClickException(
                "RAPPORT_STORE_URL is memory://: that state lives inside a server process, "
                "which replays nothing; point it at the redis:// store to restore"
            )
        directory = Path(settings["EVENT_LOG_DIR"])
        files = segments(directory, since.date() if since else None)
        if not files:
            raise click.ClickException(f"no event log files (events-*.jsonl) in {directory}")
        store = store_from_url(url)
        problems: list[str] = []

        def report(problem: Any) -> None:
            problems.append(str(problem))
            click.echo(f"skipped {problem}", err=True)

        try:
            governor = Governor(rules_from(settings), store)
            count = replay(files, governor.record_event, everything, report)
            if since is None and not problems:  # the whole log, every line: the state is back
                record_store_state(store, directory)
        finally:
            store.close()
    except RapportError as exc:
        raise click.ClickException(str(exc)) from exc
    except ValueError as exc:  # a store URL redis-py cannot parse (a port that is not one)
        raise click.ClickException(f"RAPPORT_STORE_URL {masked_url(url)!r}: {exc}") from exc
    kinds = "events" if everything else "suppression events"
    left_out = f"; {count.skipped_kind:,} engagement events left out (--all)"
    click.echo(
        f"replayed {count.applied:,} {kinds} from {count.files} file(s) in {directory}"
        + ("" if everything else left_out)
        + f"; {count.not_governed:,} commerce events are for training only"
    )
    if problems:
        raise click.ClickException(f"{len(problems)} line(s) were not event records (above)")
