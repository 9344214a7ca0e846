"""Validation run before a template version is saved: every problem, each with its line.

A template is refused when its MJML does not compile, its Jinja has a syntax error, it uses a
variable its sample data lacks, or it has no unsubscribe link. Missing variables are found in
one pass by rendering the *MJML source* (which is valid Jinja text) with an undefined type that
records each miss and the line it happened on, so the lines are the marketer's own.
"""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any

from jinja2 import meta, nodes

from engine.render.diagnostics import MissingRecorder, problem_from
from engine.render.library import (
    STANDARD_VARIABLES,
    EmailTemplate,
    TemplateSource,
    read_template,
    unknown_keys,
)
from engine.render.mjml_compile import MjmlCache
from engine.render.prepared import compile_jinja
from engine.render.sandbox import RapportSandbox, budget, render_text
from fatigue.errors import Problem, ValidationError

UNSUBSCRIBE_PROBE = "https://unsubscribe.invalid/u/probe"
PREFERENCES_PROBE = "https://preferences.invalid/p/probe"
IMPLICIT_VARIABLES = frozenset({"preheader"})


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


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        # <a> inside mj-text and MJML's own linking tags (mj-button, mj-navbar-link...).
        self.hrefs.update(value for name, value in attrs if name == "href" and value)


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
) -> tuple[list[Problem], str]:
    recorder = MissingRecorder(filename)
    env = RapportSandbox(html=html)
    env.undefined = recorder.undefined_class()
    try:
        with budget():
            output = render_text(compile_jinja(env, text, filename), variables)
    except Exception as exc:  # any failure of the sample render is the template's problem
        return [problem_from(exc, filename)], ""
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


def _unsubscribe(rendered_mjml: str, filename: str) -> list[Problem]:
    """Check the MJML, rendered with sample data, links to the probe unsubscribe URL."""
    links = _Links()
    links.feed(rendered_mjml)
    if UNSUBSCRIBE_PROBE in links.hrefs:
        return []
    return [
        Problem(
            'no unsubscribe link: add <a href="{{ unsubscribe_url }}">Unsubscribe</a> '
            "to the footer",
            filename,
            field="unsubscribe_url",
        )
    ]


def _check_parts(template: EmailTemplate, mjml: MjmlCache) -> list[Problem]:
    problems: list[Problem] = []
    variables = sample_variables(template)
    known = set(template.variables) | set(STANDARD_VARIABLES) | set(variables)
    known |= IMPLICIT_VARIABLES
    checked: set[str] = set()
    for variant in template.variants.values():
        parts = [(True, template.files[variant.mjml_file], variant.mjml_file)]
        if variant.text_file:
            parts.append((False, template.files[variant.text_file], variant.text_file))
        parts.append((False, variant.subject, f"template.toml [{variant.locale}] subject"))
        parts.append((False, variant.preheader, f"template.toml [{variant.locale}] preheader"))
        for html, text, filename in parts:
            if filename in checked:
                continue
            checked.add(filename)
            env = RapportSandbox(html=html)
            found = _syntax(env, text, filename)
            if not found:
                missing, output = _missing(html, text, filename, variables)
                found = _undeclared(text, filename, known) + missing
                if html and output:
                    found += _unsubscribe(output, filename)
                elif output and filename == variant.text_file:
                    found += _text_unsubscribe(output, filename)
            if html:
                found += _compiled(template.files[variant.mjml_file], filename, mjml)
            problems.extend(found)
    return sorted(
        _distinct(problems), key=lambda problem: (problem.source or "", problem.line or 0)
    )


def _distinct(problems: list[Problem]) -> list[Problem]:
    seen: set[tuple[str | None, int | None, str | None]] = set()
    kept = []
    for problem in problems:
        key = (problem.source, problem.line, problem.field)
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
    problems += unknown_keys(source)
    if template is not None:
        problems += _check_parts(template, mjml or MjmlCache())
    return problems


def validate(source: TemplateSource, mjml: MjmlCache | None = None) -> None:
    """Raise ``ValidationError`` listing every problem with ``source``."""
    problems = check(source, mjml)
    if problems:
        raise ValidationError(problems)
