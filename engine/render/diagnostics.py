"""Turn Jinja failures into problems with lines, and find every missing variable in one pass."""

from __future__ import annotations

import sys
from types import TracebackType
from typing import Any

from jinja2 import ChainableUndefined, TemplateRuntimeError, TemplateSyntaxError, UndefinedError
from jinja2.sandbox import SecurityError

from fatigue.errors import Problem, ValidationError


class RenderError(ValidationError):
    """A template failed to render for one recipient; ``problems`` says where and why."""


def traceback_line(tb: TracebackType | None, filename: str) -> int | None:
    """Return the innermost template line in ``tb`` (Jinja rewrites frames to template lines)."""
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def describe(exc: BaseException) -> str:
    """Return a marketer-readable reason for a failed render."""
    if isinstance(exc, UndefinedError):
        return f"{exc.message} (the data has no such value)"
    if isinstance(exc, SecurityError):
        return f"not allowed in templates: {exc}"
    if isinstance(exc, RecursionError):
        return "macros call each other too deeply"
    if isinstance(exc, TemplateSyntaxError):
        return f"Jinja syntax error: {exc.message}"
    return f"{type(exc).__name__}: {exc}"


def problem_from(exc: BaseException, filename: str, field: str | None = None) -> Problem:
    """Return the problem for a Jinja failure in the template known as ``filename``."""
    if isinstance(exc, TemplateSyntaxError):  # line 0: the sandbox could not tell which
        return Problem(describe(exc), filename, exc.lineno or None, field)
    return Problem(describe(exc), filename, traceback_line(exc.__traceback__, filename), field)


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
