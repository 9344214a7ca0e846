"""Template endpoints for marketers: list, read, save, diff, publish, roll back, preview.

Saving validates first (the store refuses a version with any problem, each named with its
line); a saved version is not live until it is published, and rollback returns to the version
published before. The renderer reads the published version from the same store, so a publish
is live on the next request in every worker.
"""

from __future__ import annotations

import json
import logging
import tomllib
from typing import Any

from flask import Blueprint, g

from api.auth import Role
from api.routing import operation
from api.schemas.templates import (
    DiffOut,
    DiffQuery,
    PreviewData,
    PreviewIn,
    PreviewOut,
    PublicationOut,
    PublishIn,
    SavedVersion,
    TemplateList,
    TemplateOut,
    TemplateSave,
    TemplateSummary,
    VersionOut,
)
from api.services import services
from engine.render.library import LOCALE_KEYS, META_FILE, META_KEYS, SAMPLE_FILE
from engine.render.renderer import sample_context
from fatigue.errors import NotFoundError

bp = Blueprint("templates", __name__)
MARKETER = (Role.MARKETER,)
BASE = "/v1/templates/<name>"

log = logging.getLogger(__name__)


def _store() -> Any:
    return services().get("templates")


@operation(
    bp,
    "/v1/templates",
    "GET",
    roles=MARKETER,
    response=TemplateList,
    summary="List templates with their latest and published versions.",
)
def list_templates() -> TemplateList:
    """Return every template."""
    store = _store()
    summaries = []
    for name in store.names():
        publication = store.publication(name)
        summaries.append(
            TemplateSummary(
                name=name,
                latest_version=store.versions(name)[-1].version,
                published_version=publication.version if publication else None,
            )
        )
    return TemplateList(templates=summaries)


@operation(
    bp,
    BASE,
    "GET",
    roles=MARKETER,
    response=TemplateOut,
    summary="Read the published version of a template (or the latest if none is published).",
)
def get_template(name: str) -> TemplateOut:
    """Return the published version, or the latest when nothing is published yet."""
    store = _store()
    publication = store.publication(name)
    version = publication.version if publication else store.versions(name)[-1].version
    return _template_out(name, version)


@operation(
    bp,
    f"{BASE}/versions/<int:version>",
    "GET",
    roles=MARKETER,
    response=TemplateOut,
    summary="Read any version of a template.",
)
def get_version(name: str, version: int) -> TemplateOut:
    """Return one version."""
    return _template_out(name, version)


@operation(
    bp,
    BASE,
    "PUT",
    roles=MARKETER,
    body=TemplateSave,
    response=SavedVersion,
    status=201,
    extra_responses={409: "A newer version was saved since `base`; `detail` names it"},
    summary="Save a new version after validating it; 422 lists every problem with its line.",
)
def save_template(name: str, body: TemplateSave) -> SavedVersion:
    """Validate and store a new, unpublished version."""
    store = _store()
    try:
        latest = store.versions(name)[-1].version
        previous = dict(store.read(name, latest).files)
    except NotFoundError:
        previous = {}
    files = _files(name, body, previous)
    info = store.save(name, files, author=g.api_key.name, note=body.note, after=body.base)
    return SavedVersion(version=info.version)


@operation(
    bp,
    f"{BASE}/diff",
    "GET",
    roles=MARKETER,
    query=DiffQuery,
    response=DiffOut,
    summary="Unified diff of every file between two versions (?from=1&to=2).",
)
def diff_versions(name: str, query: DiffQuery) -> DiffOut:
    """Compare two versions."""
    text = _store().diff(name, query.old, query.new)
    return DiffOut(name=name, old=query.old, new=query.new, diff=text)


@operation(
    bp,
    f"{BASE}/publish",
    "POST",
    roles=MARKETER,
    body=PublishIn,
    response=PublicationOut,
    summary="Publish a saved version; it is live on the next request.",
)
def publish(name: str, body: PublishIn) -> PublicationOut:
    """Make ``body.version`` the published version."""
    publication = _store().publish(name, body.version, author=g.api_key.name)
    return PublicationOut.model_validate(publication.as_dict())


@operation(
    bp,
    f"{BASE}/rollback",
    "POST",
    roles=MARKETER,
    response=PublicationOut,
    summary="Return to the version published before the current one.",
)
def rollback(name: str) -> PublicationOut:
    """Roll back one publication."""
    publication = _store().rollback(name, author=g.api_key.name)
    return PublicationOut.model_validate(publication.as_dict())


@operation(
    bp,
    f"{BASE}/preview",
    "POST",
    roles=MARKETER,
    body=PreviewIn,
    response=PreviewOut,
    summary="Render a version with sample data, supplied data, or a real customer's picks.",
)
def preview(name: str, body: PreviewIn) -> PreviewOut:
    """Render without deciding or recording anything."""
    found = services()
    data = body.data or PreviewData()
    items, recipient = data.items, data.recipient
    # Signed with a key the link endpoints refuse: a preview's links must never act on anyone.
    renderer = found.get("preview_renderer")
    prepared = renderer.prepared(name, body.version)  # once: a publish meanwhile changes nothing
    if body.user_id is not None:
        from engine.compose import recommendations

        model = found.get("model").model
        picks = recommendations(model, body.user_id, 6, now=found.clock())
        items = [pick["item"] or {"item_id": pick["item_id"]} for pick in picks]
        # The sample's recipient stands in for the fields only a platform knows (first name),
        # as in the studio: the email the customer would get, with their picks.
        sample = prepared.template.sample
        recipient = {**dict(sample.get("recipient") or {}), "user_id": body.user_id,
                     **(recipient or {})}  # fmt: skip
    email = renderer.render_prepared(prepared, sample_context(prepared, items, recipient))
    return PreviewOut(
        subject=email.subject, preheader=email.preheader, html=email.html, text=email.text
    )


def _template_out(name: str, version: int) -> TemplateOut:
    store = _store()
    files = dict(store.read(name, version).files)
    meta = tomllib.loads(files.get(META_FILE, ""))
    publication = store.publication(name)
    return TemplateOut(
        name=name,
        version=version,
        published=publication is not None and publication.version == version,
        subject=str(meta.get("subject", "")),
        preheader=str(meta.get("preheader", "")),
        mjml=files.get("email.mjml", ""),
        text=files.get("email.txt"),
        sample=json.loads(files.get(SAMPLE_FILE) or "{}"),
        min_items=int(meta.get("min_items", 0)),
        files=files,
        versions=[VersionOut.model_validate(v.as_dict()) for v in store.versions(name)],
        publication=PublicationOut.model_validate(publication.as_dict()) if publication else None,
    )


def _files(name: str, body: TemplateSave, previous: dict[str, str]) -> dict[str, str]:
    """Build the new version's files from the request, keeping what it does not replace."""
    files = dict(previous)
    meta = _known_keys(tomllib.loads(previous[META_FILE])) if META_FILE in previous else {}
    meta.update(name=name, subject=body.subject)
    if body.preheader is not None or "preheader" not in meta:
        meta["preheader"] = body.preheader or ""
    meta.setdefault("description", "")
    meta.setdefault("default_locale", "en")
    if body.min_items is not None:
        meta["min_items"] = body.min_items
    files[META_FILE] = toml_document(meta)
    files["email.mjml"] = body.mjml
    if body.sample is not None or SAMPLE_FILE not in files:
        files[SAMPLE_FILE] = json.dumps(body.sample or {}, indent=2, ensure_ascii=False) + "\n"
    if body.text is not None:
        files["email.txt"] = body.text
    return files


def _known_keys(meta: dict[str, Any]) -> dict[str, Any]:
    """Drop template.toml keys the layout does not know (they never did anything).

    A version saved before such keys were refused would otherwise refuse every later save,
    and neither this API nor the studio can edit template.toml directly.
    """
    kept = {key: value for key, value in meta.items() if key in META_KEYS}
    locales = kept.get("locales")
    if isinstance(locales, dict):
        kept["locales"] = {
            locale: {k: v for k, v in table.items() if k in LOCALE_KEYS}
            if isinstance(table, dict)
            else table
            for locale, table in locales.items()
        }
    dropped = sorted(set(meta) - set(kept))
    if dropped:
        log.warning("template.toml keys %s dropped on save: the layout does not know them", dropped)
    return kept


def toml_document(data: dict[str, Any]) -> str:
    """Write template metadata as TOML: scalars and lists first, then one table per mapping.

    JSON string, number, boolean and array literals are valid TOML, which keeps this small.
    """
    lines: list[str] = []
    tables: list[tuple[str, dict[str, Any]]] = []
    _toml_table("", data, lines, tables)
    while tables:
        path, table = tables.pop(0)
        lines.append(f"\n[{path}]")
        _toml_table(path, table, lines, tables)
    return "\n".join(lines) + "\n"


def _toml_table(
    path: str, table: dict[str, Any], lines: list[str], tables: list[tuple[str, dict[str, Any]]]
) -> None:
    for key, value in table.items():
        quoted = key if key.replace("_", "").replace("-", "").isalnum() else json.dumps(key)
        if isinstance(value, dict):
            tables.append((f"{path}.{quoted}" if path else quoted, value))
        else:
            lines.append(f"{quoted} = {json.dumps(value, ensure_ascii=False)}")
