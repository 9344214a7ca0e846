"""The on-disk template layout: one folder per template, parsed into an :class:`EmailTemplate`.

A template folder holds ``template.toml`` (metadata: name, description, subject, preheader,
variables, default locale, ``[locales.xx]`` overrides), ``email.mjml``, optionally
``email.txt`` (the plain-text version), ``sample.json`` (preview data) and locale variants
``email.<locale>.mjml`` / ``email.<locale>.txt``. ``templates/README.md`` is the marketers'
guide to it.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol

from fatigue.errors import NotFoundError, Problem, ValidationError

META_FILE = "template.toml"
SAMPLE_FILE = "sample.json"
FILE_PATTERN = re.compile(
    r"^(template\.toml|sample\.json|email(\.[a-z]{2}(-[A-Z]{2})?)?\.(mjml|txt))$"
)
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
STANDARD_VARIABLES = ("recipient", "items", "campaign", "unsubscribe_url", "preferences_url")
MAX_FILE_CHARS = 200_000
MAX_MIN_ITEMS = 50  # more items than any email shows
BUNDLED_DIR = Path(__file__).resolve().parents[2] / "templates"


@dataclass(frozen=True)
class TemplateSource:
    """The raw files of one template version: file name to text."""

    name: str
    files: Mapping[str, str]
    version: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "files", MappingProxyType(dict(self.files)))

    @cached_property
    def digest(self) -> str:
        """Return a hash of every file (names and contents), computed once per source."""
        digest = hashlib.sha256(self.name.encode())
        for filename in sorted(self.files):
            digest.update(b"\0" + filename.encode() + b"\0" + self.files[filename].encode())
        return digest.hexdigest()


@dataclass(frozen=True)
class LocaleVariant:
    """What one locale of a template uses: subject, preheader, MJML file and text file."""

    locale: str
    subject: str
    preheader: str
    mjml_file: str
    text_file: str | None


@dataclass(frozen=True)
class EmailTemplate:
    """A parsed template: metadata, locale variants, sample data and its files."""

    name: str
    description: str
    default_locale: str
    variables: tuple[str, ...]
    variants: Mapping[str, LocaleVariant]
    sample: Mapping[str, Any]
    files: Mapping[str, str] = field(repr=False)
    #: The fewest items the email can show (``min_items`` in template.toml): a campaign using
    #: it is not sent with fewer, and its decision says so.
    min_items: int = 0

    def variant(self, locale: str | None) -> LocaleVariant:
        """Return the variant for ``locale``: exact tag, then its language, then the default.

        Tags are matched as BCP 47 says, ignoring case, and ``fr_FR`` (as POSIX writes it) is
        read as ``fr-FR``: a customer's ``FR`` or ``fr_FR`` gets the French variant.
        """
        tag = (locale or "").strip().replace("_", "-").lower()
        for candidate in (tag, tag.split("-")[0]):
            found = self._by_tag.get(candidate)
            if found is not None:
                return found
        return self.variants[self.default_locale]

    @cached_property
    def _by_tag(self) -> dict[str, LocaleVariant]:
        return {name.replace("_", "-").lower(): variant for name, variant in self.variants.items()}


class TemplateLibrary(Protocol):
    """Anything the renderer can fetch template sources from (the bundle or the store)."""

    def names(self) -> list[str]:
        """Return the template names, sorted."""
        ...

    def source(self, name: str, version: int | None = None) -> TemplateSource:
        """Return a template's files: the published version, or ``version``."""
        ...


def read_folder(folder: Path) -> TemplateSource:
    """Read a template folder's files (only those the layout names) into a source."""
    if not folder.is_dir():
        raise NotFoundError(f"no template folder at {folder}")
    files = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and FILE_PATTERN.match(path.name):
            files[path.name] = path.read_text(encoding="utf-8")
    return TemplateSource(folder.name, files)


class BundledLibrary:
    """The read-only template folders shipped in ``templates/`` (or any folder of folders)."""

    def __init__(self, root: Path = BUNDLED_DIR) -> None:
        self.root = root

    def names(self) -> list[str]:
        """Return the folder names that hold a ``template.toml``."""
        return sorted(path.parent.name for path in self.root.glob(f"*/{META_FILE}"))

    def source(self, name: str, version: int | None = None) -> TemplateSource:
        """Return the bundled files of ``name`` (bundled templates have no versions)."""
        if version not in (None, 1) or not NAME_PATTERN.match(name):
            raise NotFoundError(f"no bundled template {name!r} version {version}")
        if name not in self.names():
            raise NotFoundError(f"no template named {name!r} in {self.root}")
        return read_folder(self.root / name)

    def __iter__(self) -> Iterator[TemplateSource]:
        return (self.source(name) for name in self.names())


def _toml_problem(exc: tomllib.TOMLDecodeError) -> Problem:
    match = re.search(r"at line (\d+)", str(exc))
    return Problem(f"not valid TOML: {exc}", META_FILE, int(match.group(1)) if match else None)


def _load_meta(source: TemplateSource, problems: list[Problem]) -> dict[str, Any]:
    if META_FILE not in source.files:
        problems.append(Problem(f"missing {META_FILE}", source.name))
        return {}
    try:
        meta = tomllib.loads(source.files[META_FILE])
    except tomllib.TOMLDecodeError as exc:
        problems.append(_toml_problem(exc))
        return {}
    for key in ("name", "subject"):
        if not isinstance(meta.get(key), str) or not meta[key].strip():
            problems.append(Problem(f"{key} is required (a string)", META_FILE, field=key))
    if meta.get("name") and meta.get("name") != source.name:
        problems.append(
            Problem(f"name {meta['name']!r} differs from {source.name!r}", META_FILE, field="name")
        )
    least = meta.get("min_items", 0)
    if isinstance(least, bool) or not isinstance(least, int) or not 0 <= least <= MAX_MIN_ITEMS:
        problems.append(
            Problem(
                f"min_items must be a whole number from 0 to {MAX_MIN_ITEMS} (got {least!r})",
                META_FILE,
                field="min_items",
            )
        )
    return meta


def _load_sample(source: TemplateSource, problems: list[Problem]) -> dict[str, Any]:
    text = source.files.get(SAMPLE_FILE)
    if text is None:
        problems.append(Problem(f"missing {SAMPLE_FILE} (sample data for previews)", source.name))
        return {}
    try:
        sample = json.loads(text)
    except json.JSONDecodeError as exc:
        problems.append(Problem(f"not valid JSON: {exc.msg}", SAMPLE_FILE, exc.lineno))
        return {}
    if not isinstance(sample, dict):
        problems.append(Problem("the sample must be a JSON object", SAMPLE_FILE, 1))
        return {}
    return sample


def _variants(
    source: TemplateSource, meta: dict[str, Any], problems: list[Problem]
) -> tuple[str, dict[str, LocaleVariant]]:
    default = str(meta.get("default_locale", "en"))
    overrides = meta.get("locales", {})
    variants: dict[str, LocaleVariant] = {}
    if "email.mjml" not in source.files:
        problems.append(Problem("missing email.mjml", source.name))
    for locale in [default, *sorted(overrides)]:
        extra = overrides.get(locale, {}) if locale != default else {}
        own = f"email.{locale}.mjml"
        mjml_file = own if own in source.files else "email.mjml"
        text = f"email.{locale}.txt"
        if text not in source.files:
            # A variant with its own layout but no own text takes its text from its own HTML:
            # the default text is another language.
            text = "email.txt" if mjml_file == "email.mjml" else ""
        variants[locale] = LocaleVariant(
            locale=locale,
            subject=str(extra.get("subject", meta.get("subject", ""))),
            preheader=str(extra.get("preheader", meta.get("preheader", ""))),
            mjml_file=mjml_file,
            text_file=text if text in source.files else None,
        )
    for name in sorted(source.files):
        parts = name.split(".")
        if len(parts) == 3 and parts[0] == "email" and parts[1] not in variants:
            problems.append(
                Problem(
                    f"{name} is never used: add a [locales.{parts[1]}] table to template.toml",
                    source.name,
                    field=name,
                )
            )
    return default, variants


def parse_template(source: TemplateSource) -> EmailTemplate:
    """Parse a template's files; raise ``ValidationError`` naming every layout problem."""
    problems: list[Problem] = []
    if not NAME_PATTERN.match(source.name):
        problems.append(Problem("names are lower-case letters, digits and dashes", source.name))
    for filename, text in source.files.items():
        if not FILE_PATTERN.match(filename):
            problems.append(Problem("not a file the template layout knows", filename))
        elif len(text) > MAX_FILE_CHARS:
            problems.append(Problem(f"longer than {MAX_FILE_CHARS:,} characters", filename))
    meta = _load_meta(source, problems)
    sample = _load_sample(source, problems)
    default, variants = _variants(source, meta, problems)
    if problems:
        raise ValidationError(problems)
    return EmailTemplate(
        name=source.name,
        description=str(meta.get("description", "")),
        default_locale=default,
        variables=tuple(meta.get("variables", STANDARD_VARIABLES)),
        variants=MappingProxyType(variants),
        sample=MappingProxyType(sample),
        files=source.files,
        min_items=int(meta.get("min_items", 0)),
    )
