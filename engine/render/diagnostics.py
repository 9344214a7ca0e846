"""Turn Jinja failures into problems with lines, and find every missing variable in one pass."""

from __future__ import annotations

import re
import sys
from dataclasses import replace
from types import TracebackType
from typing import Any

from jinja2 import (
    ChainableUndefined,
    Environment,
    TemplateRuntimeError,
    TemplateSyntaxError,
    UndefinedError,
)
from jinja2.sandbox import SecurityError

from fatigue.errors import Problem, ValidationError


class RenderError(ValidationError):
    """A template failed to render for one recipient; ``problems`` says where and why."""

    def __init__(self, problems: list[Problem] | Problem | str, template: str = "") -> None:
        super().__init__(problems)
        self.template = template  # the template's name, whatever file the problem is in


def traceback_line(tb: TracebackType | None, filename: str) -> int | None:
    """Return the innermost template line in ``tb`` (Jinja rewrites frames to template lines)."""
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


_NO_SUCH = re.compile(r"No (filter|test) named '([^']*)'")
# Python's own words for a failed operation, and what they mean to whoever wrote the template.
_TYPE_REASONS = (
    (
        re.compile(r"concatenate|unsupported operand|not supported between|can't multiply"),
        "mixes text and numbers in one calculation or comparison: convert first, e.g. "
        "value|int or value|string",
    ),
    (
        re.compile(r"required positional argument|positional arguments? but|keyword argument"),
        "gives a filter or function the wrong number or kind of arguments",
    ),
    (re.compile(r"not iterable"), "loops over a value that is not a list"),
    (re.compile(r"not callable"), "calls something that is not a function"),
)


def describe(exc: BaseException) -> str:
    """Return a marketer-readable reason for a failed render (never a Python class name)."""
    if isinstance(exc, UndefinedError):
        return _undefined(exc.message or "")
    if isinstance(exc, SecurityError):
        return f"not allowed in templates: {exc}"
    if isinstance(exc, RecursionError):
        return "macros call each other too deeply"
    message = getattr(exc, "message", None) or str(exc)
    missing = _NO_SUCH.search(message)
    if missing and isinstance(exc, TemplateRuntimeError | TemplateSyntaxError):
        kind, name = missing.groups()
        return f"there is no {kind} named '{name}': check its spelling"
    if isinstance(exc, TemplateSyntaxError):
        return f"Jinja syntax error: {exc.message}"
    if isinstance(exc, TemplateRuntimeError):
        return message
    return _plain_reason(exc, message)


# Jinja's words for a missing value name Python types ("'dict object' has no attribute 'x'").
_NO_ATTRIBUTE = re.compile(r"^'?(\w+)(?: object)?'? has no (attribute|element) '?([^']*)'?$")
_KINDS = {
    "dict": "the data", "list": "the list", "str": "the text", "int": "the number",
    "float": "the number", "bool": "a yes/no value", "None": "an empty value",
}  # fmt: skip
_SEQUENCES = frozenset({"list", "str", "tuple"})


def _undefined(message: str) -> str:
    """Say which value the data lacks, in the template's words rather than Python's."""
    found = _NO_ATTRIBUTE.match(message)
    if found is None:  # "'missing' is undefined": already plain
        return f"{message} (the data has no such value)"
    kind, what, name = found.groups()
    owner = _KINDS.get(kind, "the value")
    if what == "element" and kind in _SEQUENCES:
        return f"{owner} has no item {name} (it is shorter; check its length first)"
    return f"{owner} has no '{name}' here: check the name, or give it a default (|default)"


def _plain_reason(exc: BaseException, message: str) -> str:
    if isinstance(exc, ZeroDivisionError):
        return "divides by zero: check the divisor first, e.g. {% if count %}...{% endif %}"
    if isinstance(exc, OverflowError):
        return "a number is too large to compute"
    if isinstance(exc, TypeError):
        found = (reason for pattern, reason in _TYPE_REASONS if pattern.search(message))
        return next(found, "uses a value of the wrong kind here (e.g. text where a number goes)")
    if isinstance(exc, ValueError):
        return "gives a value that is not valid here (e.g. text that is not a number)"
    if isinstance(exc, LookupError | AttributeError):
        return "reads a value that is not there"
    return "the template failed at this line; check the expressions on it"


def problem_from(exc: BaseException, filename: str, field: str | None = None) -> Problem:
    """Return the problem for a Jinja failure in the template known as ``filename``."""
    if isinstance(exc, TemplateSyntaxError):  # line 0: the sandbox could not tell which
        unclosed = _unclosed_block(exc)
        if unclosed is not None:
            return replace(unclosed, source=filename, field=field)
        return Problem(describe(exc), filename, exc.lineno or None, field)
    return Problem(describe(exc), filename, traceback_line(exc.__traceback__, filename), field)


_UNCLOSED = re.compile(r"Unexpected end of template\..*needs to be closed is '(\w+)'", re.DOTALL)
# Tags that open a block needing an end tag (``{% set x %}`` only without ``=``).
_BLOCK_TAGS = frozenset({"if", "for", "macro", "call", "filter", "with", "autoescape", "block"})


def _unclosed_block(exc: TemplateSyntaxError) -> Problem | None:
    """Name the line a never-closed block opens on (Jinja names only the end of the file)."""
    found = _UNCLOSED.search(exc.message or "")
    if found is None or not exc.source:
        return None
    tag = found.group(1)
    opened = _open_blocks(exc.source)
    line = next((at for name, at in reversed(opened) if name == tag), None)
    if line is None:
        return None
    # No line numbers in the words: a subject's lines are shifted to template.toml's later.
    message = (
        f"Jinja syntax error: the {{% {tag} %}} opened here is never closed (the text ends "
        f"first): add {{% end{tag} %}} where it should end"
    )
    return Problem(message, line=line)


def _open_blocks(source: str) -> list[tuple[str, int]]:
    """Return the blocks still open at the end of ``source``: (tag, line), outermost first."""
    opened: list[tuple[str, int]] = []
    try:
        tokens = [token for token in Environment().lex(source) if token[1] != "whitespace"]
    except TemplateSyntaxError:
        return []
    for index, (line, kind, _value) in enumerate(tokens[:-1]):
        if kind != "block_begin" or tokens[index + 1][1] != "name":
            continue
        name = tokens[index + 1][2]
        if name.startswith("end"):
            ends = [at for at, (tag, _) in enumerate(opened) if tag == name[3:]]
            del opened[ends[-1] if ends else len(opened) :]
        elif name in _BLOCK_TAGS or (name == "set" and not _assigns(tokens, index + 2)):
            opened.append((name, line))
    return opened


def _assigns(tokens: list[tuple[int, str, str]], start: int) -> bool:
    """Whether the tag from ``start`` has ``=`` before its end (``{% set x = 1 %}``)."""
    for _line, kind, _value in tokens[start:]:
        if kind == "block_end":
            return False
        if kind == "assign":
            return True
    return False


class MissingRecorder:
    """Collects (name, line) of each undefined value a validation render touches."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.missing: list[tuple[str, int | None]] = []

    def undefined_class(self) -> type[ChainableUndefined]:
        """Return an undefined type that records instead of raising, so one pass finds all."""
        recorder = self

        class Recording(ChainableUndefined):
            __slots__ = ()

            def __init__(self, hint: str | None = None, obj: Any = None, name: Any = None,
                         exc: type[TemplateRuntimeError] = UndefinedError) -> None:  # fmt: skip
                super().__init__(hint, obj, name, exc)
                if exc is UndefinedError and name is not None:
                    recorder.record(name, obj)

        return Recording

    def record(self, name: Any, obj: Any) -> None:
        """Note a missing ``name`` (on ``obj``) at the template line being executed.

        An attribute is noted as ``.name``; a list index as ``[0]``, so ``items[0]`` on an
        empty sample list reads as what it is, not as an attribute called ``0``.
        """
        frame = sys._getframe(2)
        line = None
        while frame is not None:
            if frame.f_code.co_filename == self.filename:
                template = frame.f_globals.get("__jinja_template__")
                line = template.get_corresponding_lineno(frame.f_lineno) if template else None
                break
            frame = frame.f_back  # type: ignore[assignment]
        top_level = obj is None or isinstance(obj, ChainableUndefined)
        if isinstance(name, int) and not isinstance(name, bool):
            label = f"[{name}]"
        else:
            label = str(name) if top_level else f".{name}"
        self.missing.append((label, line))
