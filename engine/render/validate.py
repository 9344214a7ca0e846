"""Validation run before a template version is saved: every problem, each with its line.

A template is refused when its MJML does not compile, its Jinja has a syntax error, it uses a
variable its sample data lacks, it breaks a rule every template must follow (a visible
unsubscribe link, a preference-centre link, alt text on every image), or its own text part is
blank or has no unsubscribe link. Missing variables are found in
one pass by rendering the *MJML source* (which is valid Jinja text) with an undefined type that
records each miss and the line it happened on, so the lines are the marketer's own.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from html.parser import HTMLParser
from typing import Any

from jinja2 import meta, nodes

from engine.render.diagnostics import MissingRecorder, problem_from
from engine.render.library import (
    FILE_PATTERN,
    META_FILE,
    STANDARD_VARIABLES,
    EmailTemplate,
    LocaleVariant,
    TemplateSource,
    locale_problems,
    read_template,
    unknown_keys,
)
from engine.render.lint import image_problems, rule_problems
from engine.render.mjml_compile import COMPILER_FAILED, MjmlCache
from engine.render.prepared import compile_jinja
from engine.render.protect import protect
from engine.render.sandbox import RapportSandbox, budget, render_text
from fatigue.errors import Problem, ValidationError
from fatigue.toml_lines import key_lines, line_of

UNSUBSCRIBE_PROBE = "https://unsubscribe.invalid/u/probe"
PREFERENCES_PROBE = "https://preferences.invalid/p/probe"
IMPLICIT_VARIABLES = frozenset({"preheader"})
# ``subject = """`` alone on its line: TOML drops that newline, so the text starts on the next.
OPENS_MULTILINE = re.compile(r"=\s*(\"\"\"|''')\s*$")
# ``subject = """\`` (a line-ending backslash) drops the blank lines after it too.
OPENS_TRIMMED = re.compile(r"=\s*\"\"\"[ \t]*\\\s*$")
# Tags that link without holding text, so never wait for their end tag.
VOID_TAGS = frozenset({"area", "base", "img", "link", "meta"})


def sample_variables(template: EmailTemplate) -> dict[str, Any]:
    """Return the variables a preview sees: sample data over the standard ones."""
    variables: dict[str, Any] = {
        "recipient": {},
        "items": [],
        "campaign": {"id": "preview", "name": "Preview"},
        "unsubscribe_url": UNSUBSCRIBE_PROBE,
        "preferences_url": PREFERENCES_PROBE,
        "preheader": "",
    }
    variables.update(template.sample)
    return variables


@dataclass(frozen=True)
class RequiredLink:
    """A link every email must show: its variable, the URL validation gives it, how to add it."""

    variable: str
    probe: str
    label: str
    example: str


REQUIRED_LINKS = (
    RequiredLink(
        "unsubscribe_url", UNSUBSCRIBE_PROBE, "unsubscribe link",
        '<a href="{{ unsubscribe_url }}">Unsubscribe</a>',
    ),
    RequiredLink(
        "preferences_url", PREFERENCES_PROBE, "preference-centre link",
        '<a href="{{ preferences_url }}">Email preferences</a>',
    ),
)  # fmt: skip


class _Links(HTMLParser):
    """Collects each link target with the text it shows (an image shows its alt text)."""

    def __init__(self) -> None:
        super().__init__()
        self.texts: dict[str, str] = {}
        self._open: list[tuple[str, str]] = []  # (tag, href) of the links now being read

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        # <a> inside mj-text and MJML's own linking tags (mj-button, mj-navbar-link...).
        values = dict(attrs)
        self._shown(values.get("alt") or "")
        href = values.get("href")
        if href:
            self.texts.setdefault(href, "")
            if tag not in VOID_TAGS:
                self._open.append((tag, href))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        alt = values.get("alt") or ""
        self._shown(alt)
        href = values.get("href")
        if href:  # <mj-image href="..." alt="..." />: the image is what the link shows
            self.texts[href] = self.texts.get(href, "") + alt

    def handle_endtag(self, tag: str) -> None:
        for index in range(len(self._open) - 1, -1, -1):
            if self._open[index][0] == tag:
                del self._open[index:]
                return

    def handle_data(self, data: str) -> None:
        self._shown(data)

    def _shown(self, text: str) -> None:
        for _tag, href in self._open:
            self.texts[href] += text


def _syntax(env: RapportSandbox, text: str, filename: str) -> list[Problem]:
    try:
        compile_jinja(env, text, filename)
    except ValidationError as exc:
        return exc.problems
    return []


def _undeclared(text: str, filename: str, known: set[str]) -> list[Problem]:
    tree = RapportSandbox(html=True).parse(text)
    # Jinja counts a name set inside an {% if %} as undeclared (it may not have been set);
    # a name the template stores anywhere is its own, not a misspelt variable.
    stored = {node.name for node in tree.find_all(nodes.Name) if node.ctx in ("store", "param")}
    problems = []
    for name in sorted(meta.find_undeclared_variables(tree) - known - stored):
        lines = [node.lineno for node in tree.find_all(nodes.Name) if node.name == name]
        problems.append(
            Problem(
                f"uses {name!r}, which is neither a template variable nor in the sample data",
                filename,
                min(lines, default=None),
                name,
            )
        )
    return problems


def _missing(
    html: bool, text: str, filename: str, variables: dict[str, Any]
) -> tuple[list[Problem], str | None]:
    """Return each value the sample data lacks, and the output (None when the render failed)."""
    recorder = MissingRecorder(filename)
    env = RapportSandbox(html=html)
    env.undefined = recorder.undefined_class()
    try:
        with budget():
            output = render_text(compile_jinja(env, text, filename), variables)
    except Exception as exc:  # any failure of the sample render is the template's problem
        return [problem_from(exc, filename)], None
    seen: set[tuple[str, int | None]] = set()
    problems = []
    for name, line in recorder.missing:
        if (name, line) not in seen:
            seen.add((name, line))
            message = (
                f"reads entry {name} of a list the sample data has too few entries in"
                " (give the sample more, or guard it: {% if items %})"
                if name.startswith("[")
                else f"uses {name!r}, which the sample data lacks"
            )
            field = None if name.startswith("[") else name
            problems.append(Problem(message, filename, line, field))
    return problems, output


def _text_unsubscribe(rendered_text: str, filename: str) -> list[Problem]:
    """Check a dedicated text part shows the unsubscribe URL: its readers have no other way."""
    if UNSUBSCRIBE_PROBE in rendered_text:
        return []
    message = "no unsubscribe link: add 'Unsubscribe: {{ unsubscribe_url }}' to the text"
    return [Problem(message, filename, field="unsubscribe_url")]


def _required_links(rendered_mjml: str, source: str, filename: str) -> list[Problem]:
    """Check the MJML, rendered with sample data, shows each required link, with text."""
    links = _Links()
    links.feed(rendered_mjml)
    links.close()
    problems = []
    for link in REQUIRED_LINKS:
        text = links.texts.get(link.probe)
        if text is None:
            message = f"no {link.label}: add {link.example} to the footer"
            problems.append(Problem(message, filename, field=link.variable))
        elif not text.strip():
            message = f"the {link.label} shows no text, so nobody sees it: write {link.example}"
            line = _first_line_with(source, link.variable)
            problems.append(Problem(message, filename, line, link.variable))
    return problems


def _first_line_with(text: str, word: str) -> int | None:
    return next((n for n, line in enumerate(text.splitlines(), start=1) if word in line), None)


def _blank_text_parts(source: TemplateSource) -> list[Problem]:
    """Refuse an empty text part: its readers would get no words and no unsubscribe link.

    Refused rather than quietly replaced by text made from the HTML: an empty file is more
    likely a failed save or paste than a choice, and deleting it says the choice plainly. (A
    blank one saved before this check renders as if absent: see library._has_text.)
    """
    return [
        Problem(
            "the plain-text version is empty: write it (with 'Unsubscribe: "
            "{{ unsubscribe_url }}'), or delete the file to have it made from the HTML",
            filename,
            1,
        )
        for filename, text in sorted(source.files.items())
        if filename.endswith(".txt") and FILE_PATTERN.match(filename) and not text.strip()
    ]


@dataclass(frozen=True)
class _Part:
    """One Jinja part of a variant: its text and the name its problems are reported under."""

    html: bool
    text: str
    filename: str
    #: For subject and preheader, their key in template.toml (its problems name its lines).
    key: tuple[str, ...] | None = None


def _parts(template: EmailTemplate, variant: LocaleVariant) -> Iterator[_Part]:
    yield _Part(True, template.files[variant.mjml_file], variant.mjml_file)
    if variant.text_file:
        yield _Part(False, template.files[variant.text_file], variant.text_file)
    for text, key in ((variant.subject, variant.subject_key),
                      (variant.preheader, variant.preheader_key)):  # fmt: skip
        # A name of its own, so a recorded miss or traceback line is this string's.
        yield _Part(False, text, f"{META_FILE}#{'.'.join(key)}", key)


def _check_parts(template: EmailTemplate, mjml: MjmlCache) -> list[Problem]:
    problems: list[Problem] = []
    variables = sample_variables(template)
    known = set(template.variables) | set(STANDARD_VARIABLES) | set(variables)
    known |= IMPLICIT_VARIABLES
    checked: set[str] = set()
    for variant in template.variants.values():
        for part in _parts(template, variant):
            if part.filename in checked:
                continue
            checked.add(part.filename)
            # Distinct before a subject's problems all take its key as their field: two
            # misspelt variables on one line are two problems.
            found = _distinct(_check_part(part, variant, known, variables, mjml))
            if part.key is not None:
                found = in_template_toml(found, part.key, template.files[META_FILE])
            problems.extend(found)
    return sorted(problems, key=lambda problem: (problem.source or "", problem.line or 0))


def _check_part(
    part: _Part,
    variant: LocaleVariant,
    known: set[str],
    variables: dict[str, Any],
    mjml: MjmlCache,
) -> list[Problem]:
    found = _syntax(RapportSandbox(html=part.html), part.text, part.filename)
    broken_rules: list[Problem] = []
    if not found:
        missing, output = _missing(part.html, part.text, part.filename, variables)
        found = _undeclared(part.text, part.filename, known) + missing
        if part.html:
            protected = protect(part.text)
            broken_rules = rule_problems(protected, part.filename)
            found += image_problems(protected, part.filename) + broken_rules
            if output is not None:
                found += _required_links(output, part.text, part.filename)
        elif output is not None and part.filename == variant.text_file:
            # Checked even when the text renders blank: that is no way out either.
            found += _text_unsubscribe(output, part.filename)
    if part.html:
        compiled = _compiled(part.text, part.filename, mjml)
        if broken_rules:  # a broken rule (padding="x") is what crashed the compiler: its line
            compiled = [problem for problem in compiled if problem.message != COMPILER_FAILED]
        found += compiled
    return found


def in_template_toml(
    problems: list[Problem], key: tuple[str, ...], meta_text: str
) -> list[Problem]:
    """Point problems found in a subject or preheader at their line in template.toml.

    The field is the key (``subject``, ``locales.fr.subject``): the one thing to fix, and the
    name the API and the studio give that field.
    """
    start = _value_line(meta_text, key)
    return [
        replace(
            problem,
            source=META_FILE,
            line=start + (problem.line or 1) - 1 if start else None,
            field=".".join(key),
        )
        for problem in problems
    ]


def _value_line(meta_text: str, key: tuple[str, ...]) -> int | None:
    """Return the template.toml line a string value's text starts on."""
    line = line_of(meta_text, key_lines(meta_text), key)
    if line is None:
        return None
    lines = meta_text.splitlines()
    if line > len(lines):
        return line
    if OPENS_TRIMMED.search(lines[line - 1]):
        following = (n for n in range(line + 1, len(lines) + 1) if lines[n - 1].strip())
        return next(following, line + 1)
    return line + 1 if OPENS_MULTILINE.search(lines[line - 1]) else line


def _distinct(problems: list[Problem]) -> list[Problem]:
    seen: set[tuple[str | None, int | None, str]] = set()
    kept = []
    for problem in problems:
        # Without a field, the message tells two problems on one line apart.
        key = (problem.source, problem.line, problem.field or problem.message)
        if key not in seen:
            seen.add(key)
            kept.append(problem)
    return kept


def _compiled(source: str, filename: str, mjml: MjmlCache) -> list[Problem]:
    try:
        mjml.compile(source, filename)
    except ValidationError as exc:
        return exc.problems
    return []


def check(source: TemplateSource, mjml: MjmlCache | None = None) -> list[Problem]:
    """Return every problem with ``source`` (an empty list when it may be saved).

    Layout problems come first; the parts are checked too unless the layout leaves nothing
    sound to check them against, so one wrong name does not hide every other mistake.
    """
    template, problems = read_template(source)
    problems += unknown_keys(source) + locale_problems(source) + _blank_text_parts(source)
    if template is not None:
        problems += _check_parts(template, mjml or MjmlCache())
    return problems


def validate(source: TemplateSource, mjml: MjmlCache | None = None) -> None:
    """Raise ``ValidationError`` listing every problem with ``source``."""
    problems = check(source, mjml)
    if problems:
        raise ValidationError(problems)
