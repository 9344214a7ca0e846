"""Drafts: what the editor holds before it is saved, checked and rendered as the marketer types.

A draft becomes a version's files exactly as ``PUT /v1/templates/<name>`` builds them (the
API's own helper), starting from the version the editor opened, so the preview, the inline
problems and the saved version all come from the same files.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import pydantic
from flask import Response, current_app, jsonify, request

from api.auth import Role
from api.routing import pydantic_problems
from api.schemas.templates import TemplateSave
from api.services import services
from api.templates import _files as version_files
from api.web import bp
from api.web.session import login_required
from engine.render.library import MAX_MIN_ITEMS, TemplateSource
from engine.render.mjml_compile import MjmlCache
from fatigue.errors import ConfigurationError, NotFoundError, Problem, ValidationError

MARKETER = (Role.MARKETER,)
PREVIEW_ITEMS = 6
_FILENAME = re.compile(r"[^a-z0-9-]+")


@dataclass(frozen=True)
class Draft:
    """The editor's fields, as posted by the form or the preview script."""

    subject: str
    preheader: str
    mjml: str
    sample: str
    text: str | None
    base: int | None
    note: str = ""
    user_id: str = ""
    min_items: str = ""  # as typed; blank keeps the opened version's

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Draft:
        """Read the fields from a form or a JSON object; missing ones are empty."""
        base = str(data.get("base") or "")
        text = data.get("text")
        return cls(
            subject=str(data.get("subject") or ""),
            preheader=str(data.get("preheader") or ""),
            mjml=str(data.get("mjml") or ""),
            sample=str(data.get("sample") or "{}"),
            text=None if text is None else str(text),
            base=int(base) if base.isdigit() else None,
            note=str(data.get("note") or ""),
            user_id=str(data.get("user_id") or "").strip(),
            min_items="" if data.get("min_items") is None else str(data["min_items"]).strip(),
        )


def editor_field(problem: Problem) -> str | None:
    """Name the editor field a problem belongs to, so it can be shown on its line."""
    source = problem.source or ""
    name = source.rsplit("/", 1)[-1]
    if name.startswith("email.mjml"):
        return "mjml"
    if name.startswith("email.txt"):
        return "text"
    if name == "sample.json" or problem.field == "sample":
        return "sample"
    for part in ("subject", "preheader", "min_items"):
        if source.endswith(part) or problem.field == part:
            return part
    return None


def problem_dict(problem: Problem) -> dict[str, Any]:
    """Serialise a problem with the editor field it belongs to."""
    return {
        "message": problem.message,
        "source": problem.source,
        "line": problem.line,
        "field": problem.field,
        "target": editor_field(problem),
    }


def draft_files(name: str, draft: Draft) -> dict[str, str]:
    """Build the files a save of ``draft`` would store; raise ``ValidationError`` if unreadable."""
    try:
        sample = json.loads(draft.sample or "{}")
    except json.JSONDecodeError as exc:
        problem = Problem(f"sample data is not JSON: {exc.msg}", "sample.json", exc.lineno)
        raise ValidationError(problem) from exc
    if not isinstance(sample, dict):
        raise ValidationError(Problem("sample data must be a JSON object", "sample.json", 1))
    fewest = fewest_items_problems(draft)
    if fewest:
        raise ValidationError(fewest)
    least = draft.min_items
    try:
        body = TemplateSave(
            mjml=draft.mjml,
            subject=draft.subject,
            preheader=draft.preheader,
            sample=sample,
            note=draft.note,
            text=draft.text,
            min_items=int(least) if least else None,
        )
    except pydantic.ValidationError as exc:
        raise ValidationError(pydantic_problems(exc, "form")) from exc
    return version_files(name, body, base_files(name, draft.base))


def fewest_items_problems(draft: Draft) -> list[Problem]:
    """Return the fewest-items field's own problem, if any (blank keeps the opened version's)."""
    least = draft.min_items
    if not least or (least.isdigit() and int(least) <= MAX_MIN_ITEMS):
        return []
    message = f"the fewest items is a whole number from 0 to {MAX_MIN_ITEMS}"
    return [Problem(message, field="min_items")]


def base_files(name: str, version: int | None) -> dict[str, str]:
    """Return the files of the version the editor opened (the latest when not given)."""
    store = services().get("templates")
    number = version if version is not None else store.versions(name)[-1].version
    return dict(store.read(name, number).files)


def _mjml_cache() -> MjmlCache:
    """Return the app's cache of compiled draft MJML (typing repeats the same sources)."""
    cache: MjmlCache | None = current_app.extensions.get("rapport.web.mjml")
    if cache is None:
        cache = current_app.extensions.setdefault("rapport.web.mjml", MjmlCache(64))
    return cache


def check_draft(name: str, draft: Draft) -> tuple[TemplateSource | None, list[Problem]]:
    """Return the draft's files and every problem a save would refuse it for.

    A bad fewest-items value is reported beside the template's own problems (the rest is
    checked as if it were left blank), so fixing one does not reveal another.
    """
    from engine.render.validate import check

    fewest = fewest_items_problems(draft)
    checked = replace(draft, min_items="") if fewest else draft
    try:
        source = TemplateSource(name, draft_files(name, checked))
    except ValidationError as exc:
        return None, fewest + exc.problems
    return source, fewest + check(source, _mjml_cache())


def customer_items(user_id: str) -> list[dict[str, Any]]:
    """Return a real customer's recommended items as templates see them (as the API does)."""
    from engine.compose import recommendations

    found = services()
    model = found.get("model").model
    picks = recommendations(model, user_id, PREVIEW_ITEMS, now=found.clock())
    return [pick["item"] or {"item_id": pick["item_id"]} for pick in picks]


def render_draft(
    source: TemplateSource, user_id: str = "", items: list[dict[str, Any]] | None = None
) -> Any:
    """Render the draft with its sample data, or with a customer's ``items``."""
    from engine.render.prepared import prepare
    from engine.render.renderer import sample_context

    prepared = prepare(source, _mjml_cache())
    recipient = None
    if user_id:
        recipient = {**dict(prepared.template.sample.get("recipient", {})), "user_id": user_id}
    context = sample_context(prepared, items if user_id else None, recipient)
    return services().get("renderer").render_prepared(prepared, context)


def _items_or_error(user_id: str) -> tuple[list[dict[str, Any]] | None, str | None]:
    if not user_id:
        return None, None
    try:
        return customer_items(user_id), None
    except (ConfigurationError, NotFoundError, ValidationError) as exc:  # no model, bad id
        return None, f"No recommendations for customer {user_id!r}: {exc}"


@bp.post("/templates/<name>/draft")
def draft_preview(name: str) -> Response:
    """Check and render the editor's content: problems by line and the preview, unsaved."""
    login_required(MARKETER)
    draft = Draft.from_mapping(request.get_json(silent=True) or {})
    source, problems = check_draft(name, draft)
    preview = None
    items, error = _items_or_error(draft.user_id)
    if source is not None and error is None:
        try:
            email = render_draft(source, draft.user_id, items)
            preview = {"subject": email.subject, "preheader": email.preheader, "html": email.html}
        except ValidationError as exc:
            # The checks above explain a failed render better than the render's own error.
            problems = problems or exc.problems
    return jsonify(problems=[problem_dict(p) for p in problems], preview=preview, error=error)


@bp.post("/templates/<name>/test.eml")
def draft_eml(name: str) -> Response:
    """Download the preview as an ``.eml`` message, to open in a mail client."""
    login_required(MARKETER)
    draft = Draft.from_mapping(request.form)
    source, problems = check_draft(name, draft)
    if source is None or problems:
        raise ValidationError(problems)
    items, error = _items_or_error(draft.user_id)
    if error:
        raise ValidationError(Problem(error, field="user_id"))
    email = render_draft(source, draft.user_id, items)
    filename = f"{_FILENAME.sub('-', name)}-preview.eml"
    return Response(
        email.mime_bytes,
        mimetype="message/rfc822",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
