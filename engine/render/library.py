"""The on-disk template layout: one folder per template, parsed into an :class:`EmailTemplate`.

A template folder holds ``template.toml`` (metadata: name, description, subject, preheader,
variables, default locale, ``[locales.xx]`` overrides), ``email.mjml``, optionally
``email.txt`` (the plain-text version), ``sample.json`` (preview data) and locale variants
``email.<locale>.mjml`` / ``email.<locale>.txt``. ``templates/README.md`` is the marketers'
guide to it.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol, TypeGuard

from fatigue.errors import NotFoundError, Problem, ValidationError, decode_utf8
from fatigue.toml_lines import key_lines, line_of, read_toml

META_FILE = "template.toml"
SAMPLE_FILE = "sample.json"
# A locale code as BCP 47 writes it (``fr``, ``fr-CA``, ``es-419``, ``zh-Hant``), in any case,
# or with POSIX's ``_``: the renderer matches a customer's locale to it the same way.
LOCALE_CODE = r"[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*"
# \A and \Z, not ^ and $: $ also matches before a final newline, so "evil\n" passed as a name
# (and became a folder). Anchored both ends, so .match and .fullmatch agree.
FILE_PATTERN = re.compile(rf"\A(template\.toml|sample\.json|email(\.{LOCALE_CODE})?\.(mjml|txt))\Z")
LOCALE_FILE = re.compile(rf"\Aemail\.({LOCALE_CODE})\.(mjml|txt)\Z")
LOCALE_PATTERN = re.compile(rf"\A{LOCALE_CODE}\Z")
BOM = "\ufeff"
NAME_PATTERN = re.compile(r"\A[a-z0-9][a-z0-9-]{0,63}\Z")
STANDARD_VARIABLES = ("recipient", "items", "campaign", "unsubscribe_url", "preferences_url")
MAX_FILE_CHARS = 200_000
# What template.toml may hold. Validation refuses anything else: a misspelt ``min_items`` was
# ignored, so the template read as needing no items at all.
META_KEYS = (
    "name", "description", "subject", "preheader", "variables", "default_locale", "min_items",
    "max_items", "locales",
)  # fmt: skip
LOCALE_KEYS = ("subject", "preheader")
MAX_MIN_ITEMS = 50  # more items than any email shows
#: How many items an email shows unless its request says otherwise (within its template's
#: max_items); a preview for a real customer asks for as many.
EMAIL_ITEMS = 4
BUNDLED_DIR = Path(__file__).resolve().parents[2] / "templates"


@dataclass(frozen=True)
class TemplateSource:
    """The raw files of one template version: file name to text."""

    name: str
    files: Mapping[str, str]
    version: int | None = None

    def __post_init__(self) -> None:
        # However the files arrive (folder, API, studio), TOML, JSON and MJML read them alike.
        files = {name: without_bom(text) for name, text in self.files.items()}
        object.__setattr__(self, "files", MappingProxyType(files))

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
    #: Where in template.toml the subject and preheader are written, so a problem in either
    #: names that line: ``("subject",)`` or ``("locales", "fr", "subject")``.
    subject_key: tuple[str, ...] = ("subject",)
    preheader_key: tuple[str, ...] = ("preheader",)


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
    #: The most items its layout shows (``max_items``; None: as many as it is given). The
    #: governor chooses no more and the renderer passes no more, so ``items|length`` is what
    #: the email shows and what the no-repeat rule records.
    max_items: int | None = None

    def shown(self, requested: int) -> int:
        """How many items an email of this template shows when ``requested`` are asked for."""
        return requested if self.max_items is None else min(requested, self.max_items)

    def preview_count(self) -> int:
        """Return how many picks a preview for a real customer asks for.

        As many as a default compose shows, or the fewest this template needs; the renderer
        passes it no more than it shows.
        """
        return max(EMAIL_ITEMS, self.min_items)

    def variant(self, locale: str | None) -> LocaleVariant:
        """Return the variant for ``locale``: exact tag, then its language, then the default.

        Tags are matched as BCP 47 says, ignoring case, and ``fr_FR`` (as POSIX writes it) is
        read as ``fr-FR``: a customer's ``FR`` or ``fr_FR`` gets the French variant.
        """
        tag = locale_key(locale or "")
        for candidate in (tag, tag.split("-")[0]):
            found = self._by_tag.get(candidate)
            if found is not None:
                return found
        return self.variants[self.default_locale]

    @cached_property
    def _by_tag(self) -> dict[str, LocaleVariant]:
        return {locale_key(name): variant for name, variant in self.variants.items()}


def locale_key(locale: str) -> str:
    """Return the form locale codes are compared in: BCP 47 ignores case; POSIX writes ``_``."""
    return locale.strip().replace("_", "-").lower()


class TemplateLibrary(Protocol):
    """Anything the renderer can fetch template sources from (the bundle or the store)."""

    def names(self) -> list[str]:
        """Return the template names, sorted."""
        ...

    def source(self, name: str, version: int | None = None) -> TemplateSource:
        """Return a template's files: the published version, or ``version``."""
        ...


def read_folder(folder: Path) -> TemplateSource:
    """Read a template folder's files (those the layout names, or meant as one) into a source.

    A misnamed layout (``email.french.mjml``, ``email.fr.html``) is read too, so validation
    names it instead of French readers silently getting English. Raises ``ValidationError``
    naming every file that is not UTF-8 text.
    """
    if not folder.is_dir():
        raise NotFoundError(f"no template folder at {folder}")
    files = {}
    problems = []
    for path in sorted(folder.iterdir()):
        if path.is_file() and _is_template_file(path.name):
            try:
                files[path.name] = read_text(path)
            except ValidationError as exc:
                problems.extend(exc.problems)
    if problems:
        raise ValidationError(problems)
    return TemplateSource(folder.name, files)


def _is_template_file(name: str) -> bool:
    """Whether a folder's file is (or is meant as) part of the template.

    Anything else (a store's version.json, notes, an editor's hidden or ``~`` backup) is not
    the template's and is left alone.
    """
    if FILE_PATTERN.match(name):
        return True
    lowered = name.lower()
    meant = lowered.startswith("email") or lowered.endswith(".mjml")
    return meant and not name.startswith(".") and not name.endswith("~")


def read_text(path: Path) -> str:
    """Return a file's text; raise ``ValidationError`` with the line of a byte UTF-8 lacks."""
    text = decode_utf8(path.read_bytes(), str(path))  # a BOM is dropped there
    # As text mode reads it: a browser's form sends CRLF, and a diff must not see every line.
    return text.replace("\r\n", "\n").replace("\r", "\n")


def without_bom(text: str) -> str:
    """Return ``text`` without the byte-order mark some editors put first in UTF-8 files.

    It is not content, and TOML, JSON and MJML parsers each refuse it with a message about
    something else ("Invalid statement", "text directly inside <mjml>").
    """
    return text.removeprefix(BOM)


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


def _load_meta(source: TemplateSource, problems: list[Problem]) -> dict[str, Any] | None:
    """Return template.toml's values, or None when it is missing, not TOML or unusable."""
    if META_FILE not in source.files:
        problems.append(Problem(f"missing {META_FILE}", source.name))
        return None
    meta = read_toml(source.files[META_FILE], META_FILE)
    if isinstance(meta, Problem):
        problems.append(meta)
        return None
    lines = key_lines(source.files[META_FILE])
    locales = meta.get("locales", {})
    if not isinstance(locales, dict) or not all(isinstance(t, dict) for t in locales.values()):
        message = "locales must be tables, one per locale: [locales.fr]"
        problems.append(Problem(message, META_FILE, lines.get(("locales",)), "locales"))
        return None
    for key in ("name", "subject"):
        if key not in meta:
            # No line holds it: point at the top, where top-level keys go.
            message = f'{key} is required: add {key} = "..." before any [locales] table'
            problems.append(Problem(message, META_FILE, 1, key))
        elif not isinstance(meta[key], str) or not meta[key].strip():
            message = f"{key} is required (a string, not blank)"
            problems.append(Problem(message, META_FILE, lines.get((key,)), key))
    if meta.get("name") and meta.get("name") != source.name:
        message = f"name {meta['name']!r} differs from {source.name!r}"
        problems.append(Problem(message, META_FILE, lines.get(("name",)), "name"))
    least = meta.get("min_items", 0)
    if not _is_min_items(least):
        message = f"min_items must be a whole number from 0 to {MAX_MIN_ITEMS} (got {least!r})"
        problems.append(Problem(message, META_FILE, lines.get(("min_items",)), "min_items"))
    most = meta.get("max_items")
    if most is not None and not (_is_min_items(most) and most >= 1):
        message = f"max_items must be a whole number from 1 to {MAX_MIN_ITEMS} (got {most!r})"
        problems.append(Problem(message, META_FILE, lines.get(("max_items",)), "max_items"))
    elif most is not None and _is_min_items(least) and most < least:
        message = f"max_items {most} is below min_items {least}: no email could ever be sent"
        problems.append(Problem(message, META_FILE, lines.get(("max_items",)), "max_items"))
    if not _is_names(meta.get("variables", [])):
        message = "variables must be a list of names (strings)"
        problems.append(Problem(message, META_FILE, lines.get(("variables",)), "variables"))
    return meta


def _is_min_items(value: Any) -> bool:
    # bool is an int in Python; ``min_items = true`` is a typo, not 1.
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_MIN_ITEMS


def _is_names(value: Any) -> TypeGuard[list[str]]:
    return isinstance(value, list) and all(isinstance(name, str) for name in value)


def _min_items(meta: dict[str, Any]) -> int:
    """Return ``min_items``, or 0 when it is not valid (a problem already says so)."""
    least = meta.get("min_items", 0)
    return int(least) if _is_min_items(least) else 0


def _max_items(meta: dict[str, Any]) -> int | None:
    """Return ``max_items``, or None when absent or not valid (a problem already says so)."""
    most = meta.get("max_items")
    return most if isinstance(most, int) and _is_min_items(most) and most >= 1 else None


def _variables(meta: dict[str, Any]) -> tuple[str, ...]:
    """Return the declared variables, or the standard ones when none (or junk) are declared."""
    variables = meta.get("variables")
    return tuple(variables) if _is_names(variables) else STANDARD_VARIABLES


def _load_sample(source: TemplateSource, problems: list[Problem]) -> dict[str, Any] | None:
    """Return the sample data, or None when it is missing or not a JSON object."""
    text = source.files.get(SAMPLE_FILE)
    if text is None:
        problems.append(Problem(f"missing {SAMPLE_FILE} (sample data for previews)", source.name))
        return None
    try:
        sample = json.loads(text)
    except json.JSONDecodeError as exc:
        problems.append(Problem(f"not valid JSON: {exc.msg}", SAMPLE_FILE, exc.lineno))
        return None
    if not isinstance(sample, dict):
        problems.append(Problem("the sample must be a JSON object", SAMPLE_FILE, 1))
        return None
    return sample


def _variants(source: TemplateSource, meta: dict[str, Any]) -> tuple[str, dict[str, LocaleVariant]]:
    default = str(meta.get("default_locale", "en"))
    overrides = meta.get("locales", {})
    own_files = locale_files(source.files)
    variants: dict[str, LocaleVariant] = {}
    # A [locales.<default>] table is refused on save (see locale_problems) and, as before that
    # check, not applied: the studio edits the default's subject at the top level.
    tables = [locale for locale in sorted(overrides) if locale_key(locale) != locale_key(default)]
    for locale in [default, *tables]:
        extra = overrides.get(locale, {}) if locale != default else {}
        key = locale_key(locale)
        mjml_file = own_files.get((key, "mjml"), "email.mjml")
        variants[locale] = LocaleVariant(
            locale=locale,
            subject=str(extra.get("subject", meta.get("subject", ""))),
            preheader=str(extra.get("preheader", meta.get("preheader", ""))),
            mjml_file=mjml_file,
            text_file=_text_file(source, own_files.get((key, "txt")), mjml_file),
            subject_key=("locales", locale, "subject") if "subject" in extra else ("subject",),
            preheader_key=(
                ("locales", locale, "preheader") if "preheader" in extra else ("preheader",)
            ),
        )
    return default, variants


def locale_files(names: Iterable[str]) -> dict[tuple[str, str], str]:
    """Map (locale key, mjml or txt) to the locale file among ``names``, however it is spelt.

    ``email.FR.mjml`` and ``email.fr_ca.mjml`` serve ``[locales.fr]`` and ``[locales.fr-CA]``,
    as a customer's ``FR`` or ``fr_CA`` does. Of two spellings of one locale the first (in
    name order) is used; the other is reported as never used.
    """
    found: dict[tuple[str, str], str] = {}
    for name in sorted(names):
        match = LOCALE_FILE.match(name)
        if match:
            found.setdefault((locale_key(match.group(1)), match.group(2)), name)
    return found


def _text_file(source: TemplateSource, own_text: str | None, mjml_file: str) -> str | None:
    """Return the text part a variant renders, or None to make its text from its HTML."""
    if _has_text(source, own_text):
        return own_text
    # A variant with its own layout but no own text takes its text from its own HTML: the
    # default text is another language.
    if mjml_file == "email.mjml" and _has_text(source, "email.txt"):
        return "email.txt"
    return None


def _has_text(source: TemplateSource, filename: str | None) -> bool:
    # A blank text part is refused on save; one saved before that check is read as absent, so
    # its readers get text made from the HTML, unsubscribe link included, not an empty part.
    return filename is not None and bool(source.files.get(filename, "").strip())


def _unused_files(source: TemplateSource, variants: Mapping[str, LocaleVariant]) -> list[Problem]:
    used = {variant.mjml_file for variant in variants.values()}
    used |= {variant.text_file for variant in variants.values() if variant.text_file}
    by_key = {locale_key(locale): locale for locale in variants}
    problems = []
    for name in sorted(source.files):
        match = LOCALE_FILE.match(name)
        if not match or name in used or not _has_text(source, name):
            continue  # a blank text part has its own problem (validate.py)
        locale = by_key.get(locale_key(match.group(1)))
        if locale is None:
            hint = f"add a [locales.{match.group(1)}] table to template.toml"
        else:
            variant = variants[locale]
            other = variant.mjml_file if name.endswith(".mjml") else variant.text_file
            hint = f"{other or 'another file'} is the file for [locales.{locale}]; keep one"
        problems.append(Problem(f"{name} is never used: {hint}", source.name, field=name))
    return problems


def parse_template(source: TemplateSource) -> EmailTemplate:
    """Parse a template's files; raise ``ValidationError`` naming every layout problem."""
    template, problems = read_template(source)
    if template is None or problems:
        raise ValidationError(problems)
    return template


def read_template(source: TemplateSource) -> tuple[EmailTemplate | None, list[Problem]]:
    """Parse as much of a template as its files allow; return it and every layout problem.

    The template is None only when what is missing or broken leaves nothing sound to check
    its parts against (metadata, sample data, ``email.mjml``, a file past the size limit);
    a wrong name or a stray file still lets validation go on and list every other problem.
    """
    problems: list[Problem] = []
    complete = True
    if not NAME_PATTERN.match(source.name):
        problems.append(Problem("names are lower-case letters, digits and dashes", source.name))
    for filename, text in source.files.items():
        if not FILE_PATTERN.match(filename):
            problems.append(Problem(_unknown_file(filename), filename))
        elif len(text) > MAX_FILE_CHARS:
            problems.append(Problem(f"longer than {MAX_FILE_CHARS:,} characters", filename))
            complete = False
    meta = _load_meta(source, problems)
    sample = _load_sample(source, problems)
    if "email.mjml" not in source.files:
        problems.append(Problem("missing email.mjml", source.name))
        complete = False
    if meta is None or sample is None or not complete:
        # Which locale files are used depends on template.toml: unread, it cannot tell.
        return None, problems
    default, variants = _variants(source, meta)
    problems.extend(_unused_files(source, variants))
    template = EmailTemplate(
        name=source.name,
        description=str(meta.get("description", "")),
        default_locale=default,
        variables=_variables(meta),
        variants=MappingProxyType(variants),
        sample=MappingProxyType(sample),
        files=source.files,
        min_items=_min_items(meta),
        max_items=_max_items(meta),
    )
    return template, problems


def _unknown_file(filename: str) -> str:
    if filename.lower().startswith("email"):
        return (
            "not a file the template layout knows; locale files are named "
            "email.<locale>.mjml or email.<locale>.txt, e.g. email.fr-CA.mjml"
        )
    return (
        "not a file the template layout knows (template.toml, sample.json, email.mjml, "
        "email.txt, email.<locale>.mjml, email.<locale>.txt)"
    )


def locale_problems(source: TemplateSource) -> list[Problem]:
    """Return a problem for each ``[locales.xx]`` table that would not do what it says.

    Rendering ignores a table for the default locale (a version saved before this check still
    renders as it did); saving refuses it and a second spelling of one locale, since the
    marketer's subject would silently never be sent.
    """
    text = source.files.get(META_FILE, "")
    meta = read_toml(text, META_FILE)
    if isinstance(meta, Problem):
        return []  # read_template reports it
    locales = meta.get("locales", {})
    if not isinstance(locales, dict):
        return []  # read_template reports it
    default = str(meta.get("default_locale", "en"))
    lines = key_lines(text)
    seen: dict[str, str] = {}  # locale key: the table that has it
    problems = _default_locale_problems(meta.get("default_locale", "en"), lines)
    for locale in locales:
        line = line_of(text, lines, ("locales", locale))
        if not LOCALE_PATTERN.match(locale):
            message = f"[locales.{locale}]: not a locale code; write one like fr, fr-CA or es-419"
        elif locale_key(locale) == locale_key(default):
            message = (
                f"[locales.{locale}] is the default locale ({default!r}); put its subject and "
                "preheader at the top level"
            )
        elif locale_key(locale) in seen:
            message = (
                f"[locales.{locale}] is the same locale as [locales.{seen[locale_key(locale)]}]; "
                "keep one of the two"
            )
        else:
            seen[locale_key(locale)] = locale
            continue
        problems.append(Problem(message, META_FILE, line, f"locales.{locale}"))
    return problems


def _default_locale_problems(value: Any, lines: dict[tuple[str, ...], int]) -> list[Problem]:
    """Refuse a ``default_locale`` that is not a locale code written as a string."""
    if isinstance(value, str) and LOCALE_PATTERN.match(value):
        return []
    shown = f'"{value}"' if isinstance(value, str) else str(value).lower()
    message = (
        f'default_locale must be a locale code in quotes, such as "en" or "fr-CA" (it is {shown})'
    )
    return [Problem(message, META_FILE, lines.get(("default_locale",)), "default_locale")]


def unknown_keys(source: TemplateSource) -> list[Problem]:
    """Return a problem for each key template.toml holds that the layout does not know.

    Rendering ignores such keys (a version saved before this check still renders); saving and
    ``rapport templates validate`` refuse them, since a typo would silently change nothing.
    """
    text = source.files.get(META_FILE, "")
    meta = read_toml(text, META_FILE)
    if isinstance(meta, Problem):
        return []  # read_template reports it
    unknown: list[tuple[tuple[str, ...], tuple[str, ...]]] = [
        ((key,), META_KEYS) for key in meta if key not in META_KEYS
    ]
    locales = meta.get("locales", {})
    for locale, table in locales.items() if isinstance(locales, dict) else ():
        for key in table if isinstance(table, dict) else ():
            if key not in LOCALE_KEYS:
                unknown.append((("locales", locale, key), LOCALE_KEYS))
    lines = key_lines(text)
    return [_unknown(path, allowed, line_of(text, lines, path)) for path, allowed in unknown]


def _unknown(path: tuple[str, ...], allowed: tuple[str, ...], line: int | None) -> Problem:
    key = path[-1]
    where = f" in [{'.'.join(path[:-1])}]" if len(path) > 1 else ""
    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"allowed: {', '.join(allowed)}"
    return Problem(f"unknown key {key!r}{where} ({hint})", META_FILE, line, ".".join(path))
