"""Reading TOML with its problems on their lines: ``tomllib`` reports no line numbers for values.

Rule files and template.toml name the line of each problem; both read simple TOML (tables,
arrays of tables, keys, multi-line strings), which a line scan maps well enough.
"""

from __future__ import annotations

import re
import tomllib
from typing import Any

from fatigue.errors import Problem

_DECODE_LINE = re.compile(r"at line (\d+)")

_ARRAY_HEADER = re.compile(r"^\[\[\s*([^\]]+?)\s*\]\]")
_TABLE_HEADER = re.compile(r"^\[\s*([^\]]+?)\s*\]")
_KEY = re.compile(r"""^("[^"]*"|'[^']*'|[A-Za-z0-9_\-]+)\s*[=.]""")


def key_lines(text: str) -> dict[tuple[Any, ...], int]:
    """Map each table and key path to the line defining it (1-based).

    ``[locales.fr]`` is the path ``("locales", "fr")``; the n-th ``[[caps]]`` is ``("caps", n)``.
    """
    lines: dict[tuple[Any, ...], int] = {}
    table: tuple[Any, ...] = ()
    counts: dict[str, int] = {}
    in_string = False
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        # A line inside a multi-line string may look like a key: skip until the string ends.
        odd_quotes = raw.count('"""') % 2 == 1 or raw.count("'''") % 2 == 1
        if in_string or not line or line.startswith("#"):
            in_string ^= odd_quotes
            continue
        if match := _ARRAY_HEADER.match(line):
            name = match.group(1).strip("\"'")
            counts[name] = counts.get(name, -1) + 1
            table = (name, counts[name])
        elif match := _TABLE_HEADER.match(line):
            table = tuple(part.strip().strip("\"'") for part in match.group(1).split("."))
        elif match := _KEY.match(line):
            lines.setdefault((*table, match.group(1).strip("\"'")), number)
            in_string = odd_quotes
            continue
        else:
            continue
        lines.setdefault(table, number)
    return lines


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
