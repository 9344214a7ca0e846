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
from collections.abc import MutableMapping
from dataclasses import replace
from typing import Any

import tomlkit
from flask import Blueprint, g
from tomlkit.items import Item

from api.auth import Role
from api.routing import operation
from api.schemas.templates import (
    DiffOut,
    DiffQuery,
    LocaleOut,
    LocaleSave,
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
from engine.render.library import (
    LOCALE_FILE,
    LOCALE_KEYS,
    META_FILE,
    META_KEYS,
    SAMPLE_FILE,
    locale_files,
    locale_key,
)
from engine.render.renderer import sample_context
from fatigue.errors import NotFoundError, Problem, ValidationError

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
    try:
        info = store.save(name, files, author=g.api_key.name, note=body.note, after=body.base)
    except ValidationError as exc:
        raise ValidationError(_body_fields(exc.problems, files)) from exc
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
        count = prepared.template.preview_count()
        picks = recommendations(model, body.user_id, count, now=found.clock())
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
        max_items=int(meta["max_items"]) if "max_items" in meta else None,
        files=files,
        locales=_locales_out(meta, files),
        versions=[VersionOut.model_validate(v.as_dict()) for v in store.versions(name)],
        publication=PublicationOut.model_validate(publication.as_dict()) if publication else None,
    )


def _locales_out(meta: dict[str, Any], files: dict[str, str]) -> dict[str, LocaleOut]:
    """Return each locale variant's own parts, in the shape ``PUT`` takes them back."""
    tables = meta.get("locales")
    variants: dict[str, LocaleOut] = {}
    for locale, table in tables.items() if isinstance(tables, dict) else ():
        own = table if isinstance(table, dict) else {}
        variants[locale] = LocaleOut(
            mjml=files.get(_variant_file(files, locale, "mjml")),
            subject=_text_or_none(own.get("subject")),
            preheader=_text_or_none(own.get("preheader")),
            text=files.get(_variant_file(files, locale, "txt")),
        )
    return variants


def _text_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def _files(name: str, body: TemplateSave, previous: dict[str, str]) -> dict[str, str]:
    """Build the new version's files from the request, keeping what it does not replace.

    template.toml is edited, not rewritten: its comments, order and untouched keys stay, so
    the version diff shows only what the request changed.
    """
    files = dict(previous)
    meta = _metadata(name, previous.get(META_FILE))
    _set(meta, "name", name)
    _set(meta, "subject", body.subject)
    # Left out: kept; null: none (as ``text`` and a locale variant's fields are read).
    if "preheader" in body.model_fields_set or "preheader" not in meta:
        _set(meta, "preheader", body.preheader or "")
    if body.min_items is not None:
        _set(meta, "min_items", body.min_items)
    if body.max_items is not None:
        _set(meta, "max_items", body.max_items)
    if body.locales:
        _edit_locales(meta, files, body.locales)
    files[META_FILE] = meta.as_string()
    files["email.mjml"] = body.mjml
    if body.sample is not None and not _same_sample(previous, body.sample):
        files[SAMPLE_FILE] = json.dumps(body.sample, indent=2, ensure_ascii=False) + "\n"
    elif SAMPLE_FILE not in files:
        files[SAMPLE_FILE] = "{}\n"
    # Left out: the latest version's text part is kept; null: none of its own, so the text
    # is made from the HTML (as a locale variant's ``"text": null`` does).
    if body.text is not None:
        files["email.txt"] = body.text
    elif "text" in body.model_fields_set:
        files.pop("email.txt", None)
    return files


def _same_sample(files: dict[str, str], sample: dict[str, Any]) -> bool:
    """Whether the stored sample holds exactly ``sample``: then its text (and diff) stays.

    Compared as JSON text, not as Python values, which take ``1``, ``1.0`` and ``true`` as one.
    """
    try:
        stored = json.loads(files[SAMPLE_FILE])
    except (KeyError, json.JSONDecodeError):
        return False
    return json.dumps(stored) == json.dumps(sample)


def _metadata(name: str, text: str | None) -> tomlkit.TOMLDocument:
    """Return the latest template.toml to edit, or a new one holding the layout's defaults."""
    if text is None:
        meta = tomlkit.document()
        meta.update(name=name, description="", subject="", preheader="", default_locale="en")
        return meta
    meta = tomlkit.parse(text)
    _drop_unknown_keys(meta)
    return meta


def _set(table: MutableMapping[str, Any], key: str, value: Any) -> None:
    """Set ``key`` only when its value changes: an unchanged line must stay byte for byte."""
    current = table.get(key)
    if isinstance(current, Item):
        current = current.unwrap()
    # The type too: ``min_items = true`` equals 1 in Python but is a typo to correct.
    if key not in table or current != value or type(current) is not type(value):
        table[key] = value


def _drop_unknown_keys(meta: tomlkit.TOMLDocument) -> None:
    """Drop template.toml keys the layout does not know (they never did anything).

    A version saved before such keys were refused would otherwise refuse every later save,
    and neither this API nor the studio can edit template.toml directly. A ``[locales.xx]``
    table for the default locale is one of them: rendering always ignored it.
    """
    unknown: list[tuple[MutableMapping[str, Any], str, str]] = [
        (meta, key, key) for key in meta if key not in META_KEYS
    ]
    default = locale_key(str(meta.get("default_locale", "en")))
    found = meta.get("locales")
    locales: MutableMapping[str, Any] = found if isinstance(found, MutableMapping) else {}
    for locale, table in locales.items():
        if locale_key(locale) == default:
            unknown.append((locales, locale, f"locales.{locale}"))
        elif isinstance(table, MutableMapping):
            unknown += [(table, key, f"locales.{locale}.{key}") for key in table
                        if key not in LOCALE_KEYS]  # fmt: skip
    for table, key, _ in unknown:
        del table[key]
    if unknown:
        dropped = [path for _, _, path in unknown]
        log.warning("template.toml keys %s dropped on save: the layout does not know them", dropped)


def _edit_locales(
    meta: tomlkit.TOMLDocument, files: dict[str, str], changes: dict[str, LocaleSave | None]
) -> None:
    """Add, change or (given ``None``) remove locale variants, as the library stores them."""
    default = str(meta.get("default_locale", "en"))
    for locale in changes:
        if locale_key(locale) == locale_key(default):
            message = (
                f"{locale!r} is the default locale: edit it with the top-level mjml, subject, "
                "preheader and text"
            )
            raise ValidationError(Problem(message, field=f"locales.{locale}"))
    for given, change in changes.items():
        locale = _variant_name(meta, given)
        if change is None:
            _remove_locale(meta, files, locale)
        else:
            _edit_locale(meta, files, locale, change)
    tables = meta.get("locales")
    if isinstance(tables, MutableMapping) and not tables:
        del meta["locales"]  # no empty [locales] table for a change nobody made


def _edit_locale(
    meta: tomlkit.TOMLDocument, files: dict[str, str], locale: str, change: LocaleSave
) -> None:
    if "locales" not in meta:
        # A super table writes only its [locales.xx] tables, never an empty [locales] header.
        meta["locales"] = tomlkit.table(is_super_table=True)
    tables = meta["locales"]
    if locale not in tables:
        tables[locale] = tomlkit.table()  # declares the variant, even with no subject of its own
    table = tables[locale]
    given = change.model_fields_set  # a part left out is kept; a part given as null is removed
    for key in LOCALE_KEYS:
        value = getattr(change, key)
        if key in given and value is None:
            table.pop(key, None)
        elif key in given:
            _set(table, key, value)
    for part, suffix in (("mjml", "mjml"), ("text", "txt")):
        filename = _variant_file(files, locale, suffix)
        content = getattr(change, part)
        if part in given and content is None:
            files.pop(filename, None)
        elif part in given:
            files[filename] = content


def _remove_locale(meta: tomlkit.TOMLDocument, files: dict[str, str], locale: str) -> None:
    tables = meta.get("locales")
    if isinstance(tables, MutableMapping):
        tables.pop(locale, None)
    for part in ("mjml", "txt"):
        files.pop(_variant_file(files, locale, part), None)


def _variant_name(meta: tomlkit.TOMLDocument, locale: str) -> str:
    """Return the ``[locales.*]`` name the version already uses for ``locale`` (``FR``), else it."""
    tables = meta.get("locales")
    known = tables.keys() if isinstance(tables, MutableMapping) else ()
    return next((name for name in known if locale_key(name) == locale_key(locale)), locale)


def _variant_file(files: dict[str, str], locale: str, suffix: str) -> str:
    """Return the file holding ``locale``'s part, as spelt in the version (``email.FR.mjml``).

    The library matches locale codes without regard to case or ``_``/``-``, so the file may be
    spelt otherwise than the request's key; a new one is named after the key.
    """
    return locale_files(files).get((locale_key(locale), suffix), f"email.{locale}.{suffix}")


def _body_fields(problems: list[Problem], files: dict[str, str]) -> list[Problem]:
    """Name each problem of a locale variant by the request field it came from.

    Validation names files (``email.fr.mjml:12``); a client sent ``locales.fr.mjml``, so that
    is the field, with the file and line kept.
    """
    variants = {locale_key(locale): locale for locale in _variant_locales(files)}
    named = []
    for problem in problems:
        # A variant's own file (template.toml problems already name ``locales.fr.subject``).
        found = LOCALE_FILE.match(problem.source or "")
        locale = variants.get(locale_key(found[1])) if found else None
        if found and locale is not None:
            part = {"txt": "text"}.get(found[2], found[2])
            problem = replace(problem, field=f"locales.{locale}.{part}")
        named.append(problem)
    return named


def _variant_locales(files: dict[str, str]) -> set[str]:
    """Return the locales of a version's variants other than the default."""
    meta = tomllib.loads(files[META_FILE])
    tables = meta.get("locales")
    default = meta.get("default_locale", "en")
    return {locale for locale in tables if locale != default} if isinstance(tables, dict) else set()
