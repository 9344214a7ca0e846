"""The template studio's pages: the list, the editor, history, diff, publish and roll back.

Reads and writes go through the versioned template store the API uses; saving validates
first, so a version with any problem is never stored, and publishing or rolling back asks for
confirmation on a page of its own (which also works without JavaScript).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from api.services import services
from api.web import bp
from api.web.drafts import (
    MARKETER,
    Draft,
    check_draft,
    draft_files,
    editor_page,
    version_draft,
)
from api.web.session import login_required, when
from fatigue.errors import ConflictError, NotFoundError, Problem, ValidationError


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
    wanted = request.args.get("version", "")
    return editor_page(name, version_draft(name, int(wanted) if wanted.isdigit() else None), [])


@bp.post("/templates/<name>")
def save(name: str) -> Response | tuple[str, int]:
    """Save the editor's content as a new version (validated, not yet published)."""
    key = login_required(MARKETER)
    draft = Draft.from_mapping(request.form)
    newer = newer_version(name, draft)
    conflict = newer is not None and request.form.get("overwrite") != str(newer.version)
    refusals = [overwrite_problem(draft, newer)] if conflict else []
    if not draft.note.strip():
        refusals.append(Problem("say what changed: a change note is needed to save", field="note"))
    if refusals:
        return editor_page(name, draft, [], refusals, newer), 409 if conflict else 422
    # Saved over a newer version only when ticked; otherwise only right after the opened one,
    # checked by the store in the same step (a save landing meanwhile is refused, not undone).
    after = None if newer is not None else draft.base
    try:
        info = _store().save(
            name, draft_files(name, draft), author=key.name, note=draft.note, after=after
        )
    except ValidationError as exc:  # every problem the draft has, not only the first found
        problems = check_draft(name, draft)[1] or exc.problems
        return editor_page(name, draft, problems, newer=newer), 422
    except ConflictError:  # someone saved between the check above and this save
        newer = newer_version(name, draft)
        return editor_page(name, draft, [], [overwrite_problem(draft, newer)], newer), 409
    flash(f"Saved version {info.version}. It is not live until you publish it.")
    flash(f"{name}:{draft.base}", "draft-saved")  # the editor forgets the copy it kept
    return redirect(url_for("web.editor", name=name, version=info.version), code=303)


def newer_version(name: str, draft: Draft) -> Any:
    """Return the latest version if it was saved after the version the draft was opened from.

    Saving builds on the draft's base, so it would silently undo a newer version's changes;
    the marketer must say so by ticking "save over version N" (N, so a yet newer one asks again).
    """
    latest = _store().versions(name)[-1]
    if draft.base is None or latest.version <= draft.base:
        return None
    return latest


def overwrite_problem(draft: Draft, newer: Any) -> Problem:
    """Name the newer version, its author and note, and the two ways on."""
    note = f" ({newer.note})" if newer.note else ""
    message = (
        f"version {newer.version} was saved by {newer.author} on {when(newer.created_at)}"
        f"{note} after you opened version {draft.base}: saving would undo its changes. Your "
        f'edits are kept here. Compare the versions, or tick "Save over version '
        f'{newer.version}" in the save dialog to save anyway.'
    )
    return Problem(message, field="overwrite")


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
