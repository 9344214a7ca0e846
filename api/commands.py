"""The API's commands: ``rapport keys create`` and ``rapport serve``.

Heavy imports (gunicorn, the engine) happen inside the commands so ``rapport --help`` is fast.
"""

from __future__ import annotations

from pathlib import Path

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
@click.option("--access-log", is_flag=True, help="Log every request to stderr.")
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
