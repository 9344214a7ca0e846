"""Compile MJML to HTML once per template version, cached by content hash.

Jinja is hidden from the compiler (see :mod:`engine.render.protect`) and restored afterwards,
so the result is an HTML Jinja template; recipient data never passes through the MJML parser.
Every failure is a :class:`~fatigue.errors.ValidationError` listing each problem with its line;
no exception from the ``mjml`` package reaches the caller.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from jinja2 import TemplateSyntaxError

from engine.render.diagnostics import problem_from
from engine.render.lint import RAW_FIX, lint
from engine.render.protect import PLACEHOLDER, Construct, protect, restore
from engine.render.sandbox import RapportSandbox, char_references
from fatigue.errors import Problem, ValidationError

CACHE_SIZE = 256
COMPILER_FAILED = (
    "MJML could not compile this template, although every element, attribute and value looks "
    "valid; simplify the layout around the last change"
)
log = logging.getLogger(__name__)
# The MJML source is the HTML part's Jinja as written, so it is checked in the same sandbox.
_JINJA_ENV = RapportSandbox(html=True)


@dataclass(frozen=True)
class CompiledHtml:
    """The HTML (with the template's Jinja intact) compiled from one MJML source."""

    html: str
    source_hash: str


def source_hash(source: str) -> str:
    """Return the content hash that identifies a compiled template."""
    return hashlib.sha256(source.encode("utf-8")).hexdigest()


def compile_mjml(source: str, source_name: str = "<mjml>") -> CompiledHtml:
    """Compile ``source`` without the cache; raise ``ValidationError`` listing every problem."""
    _check_jinja(source, source_name)
    protected = protect(source)
    problems = lint(protected, source_name)
    if problems:
        raise ValidationError(problems)
    html = ascii_html(compact(_run_compiler(protected.source, source_name)), protected.constructs)
    restored, lost = restore(html, protected)
    if lost:
        raise ValidationError(
            [
                Problem(f"{item.text} was dropped by MJML; {RAW_FIX}", source_name, item.line)
                for item in lost
            ]
        )
    return CompiledHtml(restored, source_hash(source))


def _check_jinja(source: str, source_name: str) -> None:
    """Refuse Jinja that does not compile, with its line in the MJML the marketer wrote.

    Checked before anything else: until the Jinja is sound, nobody can tell where it ends, so
    hiding it from MJML would hide markup too (``{{ x }`` would run on to the next ``}}``).
    """
    try:
        _JINJA_ENV.compile(source, name=source_name, filename=source_name)
    except TemplateSyntaxError as exc:
        raise ValidationError([problem_from(exc, source_name)]) from exc


# Where whitespace is shown as typed, indentation is content: such a document is left alone.
_VERBATIM = re.compile(r"<pre\b|<textarea\b|white-space\s*:\s*(pre|break-spaces)", re.IGNORECASE)
_INDENT = re.compile(r"\n[ \t]+")


def compact(html: str) -> str:
    """Drop the indentation MJML writes at the start of each line (about a quarter of the bytes).

    Elsewhere a newline followed by spaces shows as one space, exactly as the newline alone
    does, so the email looks the same; it is smaller to send, store and answer with (Gmail
    clips messages past 102 KB). Jinja is hidden when this runs, so its text is never touched.
    """
    return html if _VERBATIM.search(html) else _INDENT.sub("\n", html)


# Raw text (styles, scripts) and comments read a character reference as its letters.
_LITERAL_TEXT = re.compile(r"<(style|script)\b.*?</\1\s*>|<!--.*?-->", re.IGNORECASE | re.DOTALL)
# Jinja blocks whose text a filter may still change: a filter block, a {% set %} block, a macro.
_BLOCK_START = re.compile(r"\{%[-+]?\s*(filter|macro|call)\b|\{%[-+]?\s*set\b[^=]*%\}\Z", re.DOTALL)
_BLOCK_END = re.compile(r"\{%[-+]?\s*end(filter|macro|call|set)\b")
_NON_ASCII = re.compile("[^\x00-\x7f]")


def ascii_html(html: str, constructs: Sequence[Construct] = ()) -> str:
    """Write the layout's non-ASCII characters as character references, where HTML reads them.

    MJML turns ``&middot;`` into the character itself; written back as ``&#183;``, the static
    HTML is ASCII, and so is a whole email unless its data or styles bring other characters
    (see ``char_references``). Runs while Jinja is hidden (``constructs`` are what the
    placeholders stand for): its text is never touched, nor the text inside a block a filter
    may change, nor styles, scripts and comments.
    """
    if html.isascii():
        return html
    kept = [match.span() for match in _LITERAL_TEXT.finditer(html)]
    kept += _filtered_blocks(html, constructs)
    kept.sort()
    starts = [start for start, _ in kept]

    def written(match: re.Match[str]) -> str:
        at = bisect_right(starts, match.start()) - 1
        if at >= 0 and match.start() < kept[at][1]:
            return match.group()
        return char_references(match.group())

    return _NON_ASCII.sub(written, html)


def _filtered_blocks(html: str, constructs: Sequence[Construct]) -> list[tuple[int, int]]:
    """Spans of ``html`` inside outermost filter, ``{% set %}``, macro and call blocks."""
    spans: list[tuple[int, int]] = []
    depth = start = 0
    for placeholder in PLACEHOLDER.finditer(html):
        index = int(placeholder.group(1))
        text = constructs[index].text if index < len(constructs) else ""
        if _BLOCK_START.match(text):
            if not depth:
                start = placeholder.start()
            depth += 1
        elif _BLOCK_END.match(text) and depth:
            depth -= 1
            if not depth:
                spans.append((start, placeholder.end()))
    if depth:  # unclosed (Jinja refuses it anyway): keep the rest as it is
        spans.append((start, len(html)))
    return spans


def _run_compiler(source: str, source_name: str) -> str:
    from mjml import mjml_to_html

    try:
        result = mjml_to_html(source)
    except Exception as exc:  # the compiler's own failures: never let a traceback out
        # The lint and MJML's validation rules ran first, so this is a compiler gap they do
        # not know; its message names Python internals, and no line is known.
        log.warning("the MJML compiler failed on %s", source_name, exc_info=True)
        raise ValidationError(Problem(COMPILER_FAILED, source_name)) from exc
    if result.errors:
        raise ValidationError([Problem(f"MJML: {error}", source_name) for error in result.errors])
    return result.html


class MjmlCache:
    """A bounded, thread-safe cache of compiled templates keyed by source hash."""

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self._size = size
        self._entries: OrderedDict[str, CompiledHtml] = OrderedDict()
        self._lock = threading.Lock()
        self.compilations = 0

    def compile(self, source: str, source_name: str = "<mjml>") -> CompiledHtml:
        """Return the compiled HTML for ``source``, compiling only on first sight."""
        key = source_hash(source)
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
        compiled = compile_mjml(source, source_name)
        with self._lock:
            self.compilations += 1
            self._entries[key] = compiled
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)
        return compiled
