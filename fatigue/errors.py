"""The project's error hierarchy.

It lives in ``fatigue`` because that package sits at the bottom of the dependency chain
(``api -> engine -> fatigue``): every layer can raise and catch these without importing upward.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input, and where: file, line and field when known."""

    message: str
    source: str | None = None
    line: int | None = None
    field: str | None = None

    def __str__(self) -> str:
        where = ":".join(str(part) for part in (self.source, self.line) if part)
        label = " ".join(part for part in (where, f"[{self.field}]" if self.field else "") if part)
        return f"{label}: {self.message}" if label else self.message


class RapportError(Exception):
    """Base of every error Rapport raises on purpose."""


class ConfigurationError(RapportError):
    """A setting, URL or rule file is wrong; fix the configuration, not the request."""


class ValidationError(RapportError):
    """Input data is malformed; ``problems`` says what was wrong and where, every one of them."""

    def __init__(self, problems: list[Problem] | Problem | str) -> None:
        if isinstance(problems, str):
            problems = [Problem(problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems: list[Problem] = list(problems)
        super().__init__("; ".join(str(problem) for problem in self.problems))


class NotFoundError(RapportError):
    """A named thing (model, template, version, user) does not exist."""


class ConflictError(RapportError):
    """A change was made from a version that is no longer the latest (someone saved since)."""


class StoreError(RapportError):
    """The state store failed; wraps the driver's error with ``raise ... from exc``."""


def decode_utf8(data: bytes, source: str) -> str:
    """Decode a file's bytes as UTF-8; raise ValidationError naming the first bad byte's line.

    A byte-order mark some editors write first is dropped: it is not content.
    """
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        message = f"not UTF-8 text (byte 0x{data[exc.start]:02x}); save the file as UTF-8"
        raise ValidationError(Problem(message, source, line)) from None


def describe_os_error(exc: OSError) -> str:
    """Name the file a failed read or write was about, and why, in one line."""
    return f"{exc.filename or 'a file'}: {exc.strerror or exc}"


@contextmanager
def user_errors() -> Iterator[None]:
    """In a command: print Rapport's errors as ``error: ...`` lines and exit 1, no traceback.

    A file that cannot be read or written is reported the same way, naming it.
    """
    import click

    try:
        yield
    except BrokenPipeError:  # the reader of our output left (| head): not ours to report
        raise
    except RapportError as exc:
        problems = getattr(exc, "problems", None)
        lines = [str(problem) for problem in problems] if problems else [str(exc)]
    except OSError as exc:
        lines = [describe_os_error(exc)]
    else:
        return
    for line in lines:
        click.echo(f"error: {line}", err=True)
    raise SystemExit(1)
