"""Drafts: what the editor holds before it is saved, checked and rendered as the marketer types.

A draft becomes a version's files exactly as ``PUT /v1/templates/<name>`` builds them (the
API's own helper), starting from the version the editor opened, so the preview, the inline
problems and the saved version all come from the same files.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import pydantic
from flask import Response, current_app, jsonify, render_template, request

from api.auth import Role
from api.routing import pydantic_problems
from api.schemas.templates import TemplateSave
from api.services import services
from api.templates import _files as version_files
from api.web import background_request, bp
from api.web.console import MAX_USER_ID  # the same cap as the customer lookup
from api.web.session import current_key, login_required
from engine.render.library import (
    EMAIL_ITEMS,
    MAX_MIN_ITEMS,
    META_FILE,
    SAMPLE_FILE,
    TemplateSource,
    read_template,
)
from engine.render.mjml_compile import MjmlCache
from fatigue.errors import ConfigurationError, NotFoundError, Problem, ValidationError

MARKETER = (Role.MARKETER,)
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
    max_items: str = ""  # likewise

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
            min_items=_typed(data, "min_items"),
            max_items=_typed(data, "max_items"),
        )


def _typed(data: Mapping[str, Any], name: str) -> str:
    return "" if data.get(name) is None else str(data[name]).strip()


#: The editor's label for each field a save reads, to name the field a problem is in.
FIELD_LABELS = {
    "subject": "Subject",
    "preheader": "Preheader",
    "min_items": "Fewest items",
    "max_items": "Most items",
    "mjml": "Email body",
    "text": "Plain-text version",
    "sample": "Sample data",
    "note": "What changed?",
}
#: Fields the page can show a problem under (besides the template's files, named by source).
EDITOR_FIELDS = frozenset([*FIELD_LABELS, "overwrite", "user_id"])


ONE_LINE_FIELDS = frozenset({"subject", "preheader"})


def editor_field(problem: Problem) -> str | None:
    """Name the editor field a problem belongs to, so it can be shown on its line."""
    if problem.field in EDITOR_FIELDS:
        return problem.field
    source = problem.source or ""
    name = source.rsplit("/", 1)[-1]
    if name.startswith("email.mjml"):
        return "mjml"
    if name.startswith("email.txt"):
        return "text"
    if name == "sample.json":
        return "sample"
    # A field named as such was answered above; a per-locale subject names its file part.
    return next((part for part in ("subject", "preheader") if source.endswith(part)), None)


def problem_dict(problem: Problem, standing: bool = False) -> dict[str, Any]:
    """Serialise a problem with the editor field it belongs to.

    A ``standing`` problem is one the live check cannot find again (no change note, a newer
    version, a draft too large), so the editor keeps showing it until the next submission.
    """
    target = editor_field(problem)
    line = problem.line
    if target in ONE_LINE_FIELDS and problem.source == "template.toml":
        # Its line is in the template.toml the draft makes, which the marketer never sees, and
        # the subject box has one line: "Line 1" there only repeated the obvious.
        line = None
    return {
        "message": problem.message,
        "source": problem.source,
        "line": line,
        "field": problem.field,
        "target": target,
        "standing": standing,
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
    least, most = draft.min_items, draft.max_items
    try:
        body = TemplateSave(
            mjml=draft.mjml,
            subject=draft.subject,
            preheader=draft.preheader,
            sample=sample,
            note=draft.note,
            text=draft.text,
            min_items=int(least) if least else None,
            max_items=int(most) if most else None,
        )
    except pydantic.ValidationError as exc:
        raise ValidationError(form_problems(exc)) from exc
    return version_files(name, body, base_files(name, draft.base))


def form_problems(exc: pydantic.ValidationError) -> list[Problem]:
    """Name pydantic's problems by the editor field they are in, not as the whole form's."""
    problems = []
    for problem in pydantic_problems(exc, "form"):
        name = (problem.field or "").split(".", 1)[0]
        label = FIELD_LABELS.get(name)
        problems.append(replace(problem, source=label, field=name) if label else problem)
    return problems


def fewest_items_problems(draft: Draft) -> list[Problem]:
    """Return the item-count fields' own problems, if any (blank keeps the opened version's)."""
    problems = []
    for field, words, lowest in (("min_items", "fewest", 0), ("max_items", "most", 1)):
        typed = getattr(draft, field)
        whole = typed.isascii() and typed.isdigit()  # "²" is a digit to str.isdigit
        if typed and not (whole and lowest <= int(typed) <= MAX_MIN_ITEMS):
            message = f"the {words} items is a whole number from {lowest} to {MAX_MIN_ITEMS}"
            problems.append(Problem(message, field=field))
    return problems


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
    bad = {problem.field for problem in fewest}
    checked = replace(
        draft,
        min_items="" if "min_items" in bad else draft.min_items,
        max_items="" if "max_items" in bad else draft.max_items,
    )
    try:
        source = TemplateSource(name, draft_files(name, checked))
    except ValidationError as exc:
        return None, fewest + exc.problems
    return source, fewest + check(source, _mjml_cache())


def customer_items(user_id: str, count: int = EMAIL_ITEMS) -> tuple[list[dict[str, Any]], bool]:
    """Return a customer's ``count`` recommended items as templates see them (as the API does).

    The second value tells whether the model knows the customer: an unknown id gets the
    picks any new customer gets, which the preview must not pass off as theirs.
    """
    from engine.compose import recommendations

    found = services()
    model = found.get("model").model
    picks = recommendations(model, user_id, count, now=found.clock())
    return [pick["item"] or {"item_id": pick["item_id"]} for pick in picks], user_id in model.users


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
    # Signed with a key the link endpoints refuse: a test email must never unsubscribe anyone.
    return services().get("preview_renderer").render_prepared(prepared, context)


@dataclass(frozen=True)
class PreviewData:
    """What a preview is rendered with: a customer's items or the sample's, said in words."""

    items: list[dict[str, Any]] | None = None
    error: str | None = None
    showing: str = "the sample data"


def _preview_count(source: TemplateSource | None) -> int:
    """Return how many picks a customer preview of this draft asks for (as the API's)."""
    template = read_template(source)[0] if source is not None else None
    return template.preview_count() if template is not None else EMAIL_ITEMS


def preview_data(user_id: str, source: TemplateSource | None = None) -> PreviewData:
    """Look up the customer the preview is for, if any, as the console does (ids capped).

    The draft's template is read for its item count only then: most previews use the sample.
    """
    if not user_id:
        return PreviewData()
    if len(user_id) > MAX_USER_ID:
        return PreviewData(error=f"a customer id is at most {MAX_USER_ID} characters")
    try:
        items, known = customer_items(user_id, _preview_count(source))
    except (ConfigurationError, NotFoundError, ValidationError) as exc:  # no model, bad id
        return PreviewData(error=f"No recommendations for customer {user_id!r}: {exc}")
    if not known:
        showing = f"the picks a new customer gets: customer {user_id} is not known to the model"
        return PreviewData(items, showing=showing)
    return PreviewData(items, showing=f"customer {user_id}'s recommendations")


def version_draft(name: str, number: int | None) -> Draft:
    """Return a saved version (the latest when ``number`` is None) as the editor's draft."""
    store = services().get("templates")
    if number is None:
        number = store.versions(name)[-1].version
    files = dict(store.read(name, number).files)
    meta = tomllib.loads(files.get(META_FILE, ""))
    return Draft(
        subject=str(meta.get("subject", "")),
        preheader=str(meta.get("preheader", "")),
        mjml=files.get("email.mjml", ""),
        sample=_pretty(files.get(SAMPLE_FILE) or "{}"),
        text=files.get("email.txt"),
        base=number,
        min_items=str(meta.get("min_items", 0)),
        max_items=str(meta.get("max_items", "")),
    )


def _pretty(text: str) -> str:
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except json.JSONDecodeError:
        return text


def oversized_editor(limit_kib: int) -> str | None:
    """Answer a save or test too large to read with the editor, or None if not one of those.

    The body was refused unread, so the page opens on the draft's base version (named in the
    form's address) and the editor offers back the edits it keeps in the browser tab.
    """
    key = current_key()
    name = (request.view_args or {}).get("name")
    if request.endpoint not in ("web.save", "web.draft_eml") or key is None or name is None:
        return None
    if not key.allows(MARKETER):
        return None
    base = request.args.get("base", "")
    try:
        draft = version_draft(name, int(base) if base.isdigit() else None)
    except NotFoundError:
        return None
    done = "saved" if request.endpoint == "web.save" else "made into a test email"
    problem = Problem(
        f"the draft is larger than the server accepts ({limit_kib} KiB), so it was not {done}. "
        "This tab kept your edits: restore them, then make the email smaller "
        "(link to images rather than pasting them in).",
        field="mjml",
    )
    return editor_page(name, draft, [], [problem])


def editor_page(
    name: str,
    draft: Draft,
    problems: list[Problem],
    standing: list[Problem] | None = None,
    newer: Any = None,
) -> str:
    """Render the editor holding ``draft`` with the draft's ``problems`` and ``standing`` ones.

    ``newer`` is a version saved since the draft's base, which a save would undo.
    """
    store = services().get("templates")
    shown = [problem_dict(p) for p in problems]
    shown += [problem_dict(p, standing=True) for p in standing or []]
    return render_template(
        "studio/editor.html",
        name=name,
        draft=draft,
        problems=shown,
        versions=store.versions(name),
        publication=store.publication(name),
        newer=newer,
    )


@bp.post("/templates/<name>/draft")
def draft_preview(name: str) -> Response:
    """Check and render the editor's content: problems by line and the preview, unsaved."""
    background_request()  # the live check: it may race a save's redirect
    login_required(MARKETER)
    draft = Draft.from_mapping(request.get_json(silent=True) or {})
    source, problems = check_draft(name, draft)
    preview = None
    data = preview_data(draft.user_id, source)
    if source is not None and data.error is None:
        try:
            email = render_draft(source, draft.user_id, data.items)
            preview = {"subject": email.subject, "preheader": email.preheader, "html": email.html}
        except ValidationError as exc:
            # The checks above explain a failed render better than the render's own error.
            problems = problems or exc.problems
    return jsonify(
        problems=[problem_dict(p) for p in problems],
        preview=preview,
        error=data.error,
        showing=data.showing,
    )


@bp.post("/templates/<name>/test.eml")
def draft_eml(name: str) -> Response:
    """Download the preview as an ``.eml`` message, to open in a mail client."""
    login_required(MARKETER)
    draft = Draft.from_mapping(request.form)
    source, problems = check_draft(name, draft)
    data = preview_data(draft.user_id, source)
    if data.error:
        problems.append(Problem(data.error, field="user_id"))
    if source is None or problems:
        # The editor again, holding the draft: an error page here would lose the edits.
        return Response(editor_page(name, draft, problems), status=422)
    email = render_draft(source, draft.user_id, data.items)
    filename = f"{_FILENAME.sub('-', name)}-preview.eml"
    return Response(
        email.mime_bytes,
        mimetype="message/rfc822",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
