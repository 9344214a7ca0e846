"""The template studio's pages: the list, the editor, history, diff, publish and roll back.

Reads and writes go through the versioned template store the API uses; saving validates
first, so a version with any problem is never stored, and publishing or rolling back asks for
confirmation on a page of its own (which also works without JavaScript).
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from typing import Any

from flask import flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from api.services import services
from api.web import bp
from api.web.drafts import MARKETER, Draft, check_draft, draft_files, problem_dict
from api.web.session import login_required
from engine.render.library import META_FILE, SAMPLE_FILE
from fatigue.errors import NotFoundError, Problem, ValidationError


def _store() -> Any:
    return services().get("templates")


@dataclass(frozen=True)
class DiffLine:
    """One line of a unified diff and how to show it."""

    text: str
    kind: str  # "add", "remove", "hunk", "file" or "context"


@bp.get("/templates")
def templates_list() -> str:
    """List every template: published version, latest version, last editor and change."""
    login_required(MARKETER)
    store = _store()
    rows = []
    for name in store.names():
        versions = store.versions(name)
        publication = store.publication(name)
        rows.append({"name": name, "latest": versions[-1], "publication": publication})
    return render_template("studio/templates.html", rows=rows)


@bp.get("/templates/<name>")
def editor(name: str) -> str:
    """Open the editor on a version (the latest unless ``?version=`` names another)."""
    login_required(MARKETER)
    store = _store()
    versions = store.versions(name)
    wanted = request.args.get("version", "")
    number = int(wanted) if wanted.isdigit() else versions[-1].version
    files = dict(store.read(name, number).files)
    meta = tomllib.loads(files.get(META_FILE, ""))
    draft = Draft(
        subject=str(meta.get("subject", "")),
        preheader=str(meta.get("preheader", "")),
        mjml=files.get("email.mjml", ""),
        sample=_pretty(files.get(SAMPLE_FILE) or "{}"),
        text=files.get("email.txt"),
        base=number,
        min_items=str(meta.get("min_items", 0)),
    )
    return _editor_page(name, draft, [])


@bp.post("/templates/<name>")
def save(name: str) -> Response | tuple[str, int]:
    """Save the editor's content as a new version (validated, not yet published)."""
    key = login_required(MARKETER)
    draft = Draft.from_mapping(request.form)
    if not draft.note.strip():
        problem = Problem("say what changed: a change note is needed to save", field="note")
        return _editor_page(name, draft, [problem]), 422
    try:
        info = _store().save(name, draft_files(name, draft), author=key.name, note=draft.note)
    except ValidationError as exc:  # every problem the draft has, not only the first found
        return _editor_page(name, draft, check_draft(name, draft)[1] or exc.problems), 422
    flash(f"Saved version {info.version}. It is not live until you publish it.")
    return redirect(url_for("web.editor", name=name, version=info.version), code=303)


def _editor_page(name: str, draft: Draft, problems: list[Problem]) -> str:
    store = _store()
    return render_template(
        "studio/editor.html",
        name=name,
        draft=draft,
        problems=[problem_dict(p) for p in problems],
        versions=store.versions(name),
        publication=store.publication(name),
    )


def _pretty(text: str) -> str:
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except json.JSONDecodeError:
        return text


@bp.get("/templates/<name>/history")
def history(name: str) -> str:
    """Show every version with author, time and note, and what is published."""
    login_required(MARKETER)
    store = _store()
    versions = list(reversed(store.versions(name)))
    return render_template(
        "studio/history.html", name=name, versions=versions, publication=store.publication(name)
    )


@bp.get("/templates/<name>/diff")
def diff(name: str) -> str:
    """Show the differences between two versions (``?from=1&to=2``)."""
    login_required(MARKETER)
    store = _store()
    numbers = [v.version for v in store.versions(name)]
    old = _version_arg("from", numbers[max(len(numbers) - 2, 0)])
    new = _version_arg("to", numbers[-1])
    text = store.diff(name, old, new)
    return render_template(
        "studio/diff.html", name=name, old=old, new=new, numbers=numbers, lines=_diff_lines(text)
    )


def _version_arg(field: str, default: int) -> int:
    raw = request.args.get(field, "")
    if not raw:
        return default
    if not raw.isdigit():
        raise ValidationError(Problem(f"{field!r} must be a version number", field=field))
    return int(raw)


def _diff_lines(text: str) -> list[DiffLine]:
    lines = []
    for line in text.splitlines():
        if line.startswith(("+++", "---")):
            kind = "file"
        elif line.startswith("@@"):
            kind = "hunk"
        elif line.startswith("+"):
            kind = "add"
        elif line.startswith("-"):
            kind = "remove"
        else:
            kind = "context"
        lines.append(DiffLine(line, kind))
    return lines


@bp.route("/templates/<name>/publish/<int:version>", methods=["GET", "POST"])
def publish(name: str, version: int) -> Response | str:
    """Ask to confirm, then make ``version`` the live one."""
    key = login_required(MARKETER)
    store = _store()
    info = next((v for v in store.versions(name) if v.version == version), None)
    if info is None:
        raise NotFoundError(f"template {name!r} has no version {version}")
    if request.method == "GET":
        return render_template(
            "studio/confirm.html",
            name=name,
            action="publish",
            target=info,
            publication=store.publication(name),
        )
    store.publish(name, version, author=key.name)
    flash(f"Version {version} of {name} is live.")
    return redirect(url_for("web.history", name=name), code=303)


@bp.route("/templates/<name>/rollback", methods=["GET", "POST"])
def rollback(name: str) -> Response | str:
    """Ask to confirm, then return to the version published before the current one."""
    key = login_required(MARKETER)
    store = _store()
    publication = store.publication(name)
    if publication is None or not publication.previous:
        raise NotFoundError(f"template {name!r} has no earlier publication to roll back to")
    if request.method == "GET":
        target = next(v for v in store.versions(name) if v.version == publication.previous[-1])
        return render_template(
            "studio/confirm.html",
            name=name,
            action="rollback",
            target=target,
            publication=publication,
        )
    done = store.rollback(name, author=key.name)
    flash(f"Rolled back: version {done.version} of {name} is live again.")
    return redirect(url_for("web.history", name=name), code=303)
