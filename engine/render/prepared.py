"""A template made ready to render: MJML compiled once, every Jinja part compiled once.

Preparation is keyed by the hash of all of a template version's files, so each version is
compiled once per process however many recipients it serves, and a new version (different
content) can never be served from a stale entry.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING

from jinja2 import Template, TemplateSyntaxError

from engine.render.diagnostics import problem_from
from engine.render.library import EmailTemplate, TemplateSource, parse_template
from engine.render.mjml_compile import MjmlCache
from engine.render.sandbox import RapportSandbox
from fatigue.errors import ValidationError

if TYPE_CHECKING:
    from collections.abc import Mapping

HTML_ENV = RapportSandbox(html=True)
TEXT_ENV = RapportSandbox(html=False)


def compile_jinja(env: RapportSandbox, source: str, filename: str) -> Template:
    """Compile ``source`` so tracebacks and recorded lines name ``filename``.

    Raises ``ValidationError`` (with the line) for syntax errors and refused constructs.
    """
    try:
        code = env.compile(source, name=filename, filename=filename)
    except TemplateSyntaxError as exc:
        raise ValidationError([problem_from(exc, filename)]) from exc
    return env.template_class.from_code(env, code, env.globals, None)


@dataclass(frozen=True)
class PreparedVariant:
    """One locale's compiled parts: subject, preheader, HTML and (optional) text templates."""

    locale: str
    subject: Template
    preheader: Template
    html: Template
    text: Template | None
    html_source: str


@dataclass(frozen=True)
class PreparedTemplate:
    """A parsed template version with every locale variant compiled."""

    template: EmailTemplate
    version: int | None
    variants: Mapping[str, PreparedVariant]

    def variant(self, locale: str | None) -> PreparedVariant:
        """Return the compiled variant for ``locale`` (with fallback to the default)."""
        return self.variants[self.template.variant(locale).locale]


def prepare(source: TemplateSource, mjml: MjmlCache) -> PreparedTemplate:
    """Parse and compile every part of ``source``; raise ``ValidationError`` on failure."""
    template = parse_template(source)
    variants = {}
    for locale, variant in template.variants.items():
        prefix = f"{source.name}/"
        compiled = mjml.compile(source.files[variant.mjml_file], prefix + variant.mjml_file)
        text = None
        if variant.text_file:
            text_name = prefix + variant.text_file
            text = compile_jinja(TEXT_ENV, source.files[variant.text_file], text_name)
        variants[locale] = PreparedVariant(
            locale=locale,
            subject=compile_jinja(TEXT_ENV, variant.subject, f"{prefix}template.toml#subject"),
            preheader=compile_jinja(
                TEXT_ENV, variant.preheader, f"{prefix}template.toml#preheader"
            ),
            html=compile_jinja(HTML_ENV, compiled.html, f"{prefix}{variant.mjml_file}.html"),
            text=text,
            html_source=compiled.html,
        )
    return PreparedTemplate(template, source.version, MappingProxyType(variants))


class PreparedCache:
    """Prepared templates by content hash, bounded and shared by threads."""

    def __init__(self, mjml: MjmlCache | None = None, size: int = 128) -> None:
        self.mjml = mjml or MjmlCache()
        self._size = size
        self._entries: OrderedDict[str, PreparedTemplate] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size(self) -> int:
        """How many prepared templates the cache keeps (the least recently used go first)."""
        return self._size

    def get(self, source: TemplateSource) -> PreparedTemplate:
        """Return ``source`` prepared, preparing it only on first sight of its content."""
        key = f"{source.digest}:{source.version}"
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
        prepared = prepare(source, self.mjml)
        with self._lock:
            self._entries[key] = prepared
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)
        return prepared
