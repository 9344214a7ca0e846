"""Reading TOML with its problems on their lines: ``tomllib`` reports no line numbers for values.

Rule files and template.toml name the line of each problem. ``key_lines`` reads the text as
TOML does (tables, arrays of tables, dotted keys, the four kinds of string, arrays and inline
tables spread over lines) but keeps only where each table, key and array element starts, so a
problem names the line of the faulty field rather than of the table around it.
"""

from __future__ import annotations

import re
import tomllib
from contextlib import suppress
from typing import Any

from fatigue.errors import Problem

_DECODE_LINE = re.compile(r"at line (\d+)")

_BARE = re.compile(r"[A-Za-z0-9_\-]+")
_SCALAR_END = re.compile(r"[,\]}\n#]")
Path = tuple[Any, ...]
_DEEPEST = 32


def key_lines(text: str) -> dict[Path, int]:
    """Map each table and key path to the line defining it (1-based).

    ``[locales.fr]`` is the path ``("locales", "fr")``; the n-th ``[[caps]]`` is ``("caps", n)``;
    a dotted key ``quiet_hours.end = ...`` is ``("quiet_hours", "end")``, and the fields of
    inline tables in an array, ``caps = [{ max = 1 }, { max = 2 }]``, are ``("caps", 1, "max")``
    and so on, each on the line it is written on. Text that is not valid TOML maps as far as
    it can be read.
    """
    scanner = _Scanner(text)
    # Not TOML (the parser says where), or absurdly deep: keep what was read.
    with suppress(IndexError, RecursionError):
        scanner.document()
    return scanner.lines


class _Scanner:
    """A TOML reader that keeps only where each table, key and array element starts."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.at = 0
        self.line = 1
        self.lines: dict[Path, int] = {}

    def peek(self, count: int = 1) -> str:
        return self.text[self.at : self.at + count]

    def advance(self, count: int = 1) -> None:
        self.line += self.text.count("\n", self.at, self.at + count)
        self.at += count

    def blank(self, newlines: bool) -> None:
        """Skip spaces and comments (and line ends when ``newlines``)."""
        while self.at < len(self.text):
            char = self.text[self.at]
            if char in " \t\r" or (newlines and char == "\n"):
                self.advance()
            elif char == "#":
                end = self.text.find("\n", self.at)
                self.advance((len(self.text) if end < 0 else end) - self.at)
            else:
                return

    def document(self) -> None:
        table: Path = ()
        counts: dict[Path, int] = {}
        while True:
            self.blank(newlines=True)
            if self.at >= len(self.text):
                return
            line = self.line
            if self.peek(2) == "[[":
                self.advance(2)
                name = self.key()
                counts[name] = counts.get(name, -1) + 1
                table = (*name, counts[name])
                self.lines.setdefault(table, line)
            elif self.peek() == "[":
                self.advance()
                table = self.key()
                self.lines.setdefault(table, line)
            else:
                path = self.key(table, record=True)
                if self.peek() == "=":
                    self.advance()
                    self.value(path)
            end = self.text.find("\n", self.at)  # the rest of the line: "]]", a comment
            self.advance((len(self.text) if end < 0 else end) - self.at)

    def key(self, within: Path = (), record: bool = False) -> Path:
        """Read a (dotted) key; with ``record``, note the line of each of its prefixes."""
        path = within
        while True:
            self.blank(newlines=False)
            char = self.peek()
            if char in ('"', "'"):
                part = self.string()[1:-1]
            else:
                match = _BARE.match(self.text, self.at)
                if match is None:
                    return path
                part = match.group()
                self.advance(len(part))
            path = (*path, part)
            if record:
                self.lines.setdefault(path, self.line)
            self.blank(newlines=False)
            if self.peek() != ".":
                return path
            self.advance()

    def string(self) -> str:
        """Read a string of any of TOML's four kinds; return its source text."""
        start = self.at
        quote = self.peek()
        if self.peek(3) == quote * 3:
            self.advance(3)
            while self.peek(3) != quote * 3:
                if self.at >= len(self.text):
                    raise IndexError("unterminated string")
                self.advance(2 if quote == '"' and self.peek() == "\\" else 1)
            while self.peek() == quote:  # up to two quotes may end the content itself
                self.advance()
        else:
            self.advance()
            while self.peek() != quote:
                if self.peek() in ("\n", ""):
                    raise IndexError("unterminated string")
                self.advance(2 if quote == '"' and self.peek() == "\\" else 1)
            self.advance()
        return self.text[start : self.at]

    def value(self, path: Path) -> None:
        self.blank(newlines=False)
        char = self.peek()
        if char in ('"', "'"):
            self.string()
        elif char == "[":
            self.advance()
            self.items(path, "]")
        elif char == "{":
            self.advance()
            self.items(path, "}")
        else:
            match = _SCALAR_END.search(self.text, self.at)
            self.advance((match.start() if match else len(self.text)) - self.at)

    def items(self, path: Path, close: str) -> None:
        """Read an array's elements (``]``) or an inline table's keys (``}``)."""
        if len(path) > _DEEPEST:  # rule files nest two deep; deeper text only costs time
            raise IndexError("nested too deeply to map")
        index = 0
        while True:
            self.blank(newlines=True)
            char = self.peek()
            if char == close:
                self.advance()
                return
            if char == "":
                raise IndexError("unterminated array or inline table")
            if char == ",":
                index += 1
                self.advance()
            elif close == "]":
                at = self.at
                self.lines.setdefault((*path, index), self.line)
                self.value((*path, index))
                if self.at == at:
                    raise IndexError("not an array")
            else:
                at = self.at
                field = self.key(path, record=True)
                if self.peek() != "=" or self.at == at:
                    raise IndexError("not an inline table")
                self.advance()
                self.value(field)


def line_of(text: str, lines: dict[tuple[Any, ...], int], path: tuple[Any, ...]) -> int | None:
    """Return the line of ``path``, else of its nearest table, else where its name first appears."""
    for end in range(len(path), 0, -1):
        if path[:end] in lines:
            return lines[path[:end]]
    if not path:
        return None
    pattern = re.compile(rf"(^|[^A-Za-z0-9_]){re.escape(str(path[-1]))}([^A-Za-z0-9_]|$)")
    for number, line in enumerate(text.splitlines(), start=1):
        if pattern.search(line):
            return number
    return None


def read_toml(text: str, source: str) -> dict[str, Any] | Problem:
    """Return the document in ``text``, or the problem (with its line when known) stopping it.

    tomllib reads nested arrays and inline tables recursively: text nested thousands deep raised
    ``RecursionError``, a 500 from the API, instead of a problem with the file.
    """
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = _DECODE_LINE.search(str(exc))
        return Problem(f"not valid TOML: {exc}", source, int(match.group(1)) if match else None)
    except RecursionError:
        message = "not valid TOML: it nests too deeply (arrays or tables inside one another)"
        return Problem(f"{message}; nest them less", source)
