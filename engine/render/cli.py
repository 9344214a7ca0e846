"""``rapport templates compile | validate | render``.

Heavy imports (the MJML compiler, Jinja, the recommender) happen inside the commands so
``rapport --help`` stays instant. Every failure is printed as ``file:line: message`` lines on
stderr with exit status 1, never as a traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from fatigue.errors import RapportError, user_errors

if TYPE_CHECKING:
    from engine.render.library import TemplateSource
    from engine.render.renderer import RenderContext, Renderer

DEV_SECRET = "rapport-development-only-secret"
# The same default as the server's PUBLIC_URL (api/config.py): ``rapport serve`` answers there.
# Written out, not imported: engine sits below api and never imports it.
DEFAULT_PUBLIC_URL = "http://localhost:8000"
DEFAULT_MODEL_DIR = "var/model"


@contextmanager
def _writing(path: Path) -> Iterator[None]:
    """Turn a failure to create or write ``path`` into an error naming it (inside user_errors)."""
    try:
        yield
    except OSError as exc:
        raise RapportError(f"cannot write {path}: {exc.strerror or exc}") from exc


@click.group("templates")
def templates() -> None:
    """Compile, validate and render email templates."""


@templates.command("compile")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write HTML here.")
def compile_command(file: Path, out: Path | None) -> None:
    """Compile FILE.mjml to HTML (stdout, or --out); Jinja in it is kept as written."""
    from engine.render.library import read_text
    from engine.render.mjml_compile import compile_mjml

    with user_errors():
        compiled = compile_mjml(read_text(file), str(file))
        if out is not None:
            with _writing(out):
                out.write_text(compiled.html, encoding="utf-8")
    if out is None:
        click.echo(compiled.html, nl=False)


def _sources(target: str | None) -> list[TemplateSource]:
    from engine.render.library import BundledLibrary, read_folder

    if target is None:
        return list(BundledLibrary())
    path = Path(target)
    if path.is_dir():
        return [read_folder(path)]
    if path.name == "template.toml" and path.is_file():
        return [read_folder(path.parent)]
    return [BundledLibrary().source(target)]


@templates.command("validate")
@click.argument("target", required=False)
def validate_command(target: str | None) -> None:
    """Validate TARGET (a bundled template name or a template folder), or every bundled one."""
    from engine.render.validate import check

    failed = False
    with user_errors():
        sources = _sources(target)
    for source in sources:
        problems = check(source)
        failed = failed or bool(problems)
        for problem in problems:
            click.echo(f"error: {source.name}: {problem}", err=True)
        if not problems:
            click.echo(f"ok: {source.name}")
    if failed:
        raise SystemExit(1)


def _renderer() -> Renderer:
    from engine.render.links import LinkConfig, LinkSigner
    from engine.render.renderer import Renderer
    from engine.render.store_files import store_from_env

    secret = os.environ.get("RAPPORT_SECRET_KEY")
    if not secret:
        click.echo("note: RAPPORT_SECRET_KEY is unset; links use a development key", err=True)
    return Renderer(
        store_from_env(),
        LinkSigner(secret or DEV_SECRET),
        LinkConfig(os.environ.get("RAPPORT_PUBLIC_URL", DEFAULT_PUBLIC_URL)),
    )


def _recommended_items(model_dir: Path, user: str, count: int) -> list[dict[str, Any]]:
    from engine.serving import Recommender

    recommender = Recommender.load(model_dir)
    catalog = recommender.catalog
    if catalog is None:
        # Its picks are bare item ids: no title, link or image for the email to show.
        raise RapportError(
            f"the model in {model_dir} has no catalog, so its items have no titles or links: "
            "train it with --catalog (rapport train --catalog catalog.csv ...)"
        )
    items = []
    for pick in recommender.recommend(user, n=count):
        if pick.item_id in catalog:
            item = catalog[pick.item_id].as_template_dict()
            item.update(relevance=pick.relevance, source=str(pick.source))
            items.append(item)
    return items


def _context(
    renderer: Renderer, name: str, version: int | None, user: str, model_dir: Path | None
) -> RenderContext:
    from dataclasses import replace

    from engine.render.renderer import sample_context

    prepared = renderer.prepared(name, version)
    context = sample_context(prepared)
    recipient = {**context.recipient, "user_id": user}
    directory = model_dir or Path(os.environ.get("RAPPORT_MODEL_DIR", DEFAULT_MODEL_DIR))
    if model_dir is None and not directory.exists():
        click.echo(f"note: no model at {directory}; using the template's sample items", err=True)
        return replace(context, recipient=recipient)
    items = _recommended_items(directory, user, prepared.template.preview_count())
    if not items:
        raise RapportError(f"the model has no recommendations for user {user!r}")
    return replace(context, recipient=recipient, items=items)


@templates.command("render")
@click.argument("name")
@click.option("--user", required=True, help="Customer id to recommend for.")
@click.option("--model-dir", type=click.Path(file_okay=False, path_type=Path), default=None)
@click.option("--version", type=int, default=None, help="Template version (default: published).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("."))
def render_command(
    name: str, user: str, model_dir: Path | None, version: int | None, out: Path
) -> None:
    """Render NAME for --user and write NAME.html, NAME.txt and NAME.eml into --out."""
    with user_errors():
        renderer = _renderer()
        email = renderer.render(name, _context(renderer, name, version, user, model_dir), version)
        with _writing(out):
            out.mkdir(parents=True, exist_ok=True)
        written = {
            out / f"{name}.html": email.html.encode("utf-8"),
            out / f"{name}.txt": email.text.encode("utf-8"),
            out / f"{name}.eml": email.mime_bytes,
        }
        for path, data in written.items():
            with _writing(path):
                path.write_bytes(data)
            click.echo(str(path))
    click.echo(f"subject: {email.subject}", file=sys.stderr)
