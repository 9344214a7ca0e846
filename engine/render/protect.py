"""Hide Jinja from the MJML compiler behind inert placeholders, and bring it back afterwards.

The MJML parser re-serialises text (``>`` becomes ``&gt;``) and attribute values (quotes),
which would corrupt ``{% if items|length > 3 %}`` or ``{{ x|default("y") }}``. Each Jinja
construct is swapped for a placeholder word before compiling and restored byte for byte after,
so the compiled HTML carries exactly the Jinja the marketer wrote. A placeholder that does not
come out of the compiler marks Jinja that MJML dropped, which the lint reports with its line.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from dataclasses import dataclass

# A Jinja tag, expression or comment; quoted strings may contain the closing delimiter.
JINJA = re.compile(
    r"""\{\{(?:[^'"}]|'[^']*'|"[^"]*"|\}(?!\}))*\}\}"""
    r"""|\{%(?:[^'"%]|'[^']*'|"[^"]*"|%(?!\}))*%\}"""
    r"""|\{\#.*?\#\}""",
    re.DOTALL,
)
PLACEHOLDER = re.compile(r"zjq(\d{5})qjz", re.IGNORECASE)


@dataclass(frozen=True)
class Construct:
    """One Jinja construct in a template source and the line it starts on."""

    text: str
    line: int

    @property
    def is_block(self) -> bool:
        """Whether it is a ``{% tag %}`` (control flow) rather than an expression."""
        return self.text.startswith("{%")


@dataclass(frozen=True)
class Protected:
    """A source with every Jinja construct replaced by a numbered placeholder."""

    source: str
    constructs: tuple[Construct, ...]
    # Start offsets (in ``source``) of the placeholders, and the original line shift there.
    offsets: tuple[int, ...]
    shifts: tuple[int, ...]

    def original_line(self, line: int) -> int:
        """Map a line of the protected source back to the marketer's line."""
        line_starts = _line_starts(self.source)
        offset = line_starts[min(line, len(line_starts)) - 1]
        index = bisect_right(self.offsets, offset) - 1
        return line + (self.shifts[index] if index >= 0 else 0)

    def constructs_in(self, text: str) -> list[Construct]:
        """Return the constructs whose placeholders appear in ``text``."""
        return [self.constructs[int(match.group(1))] for match in PLACEHOLDER.finditer(text)]


def _line_starts(text: str) -> list[int]:
    return [0] + [match.end() for match in re.finditer("\n", text)]


def placeholder(index: int) -> str:
    """Return the inert word standing for construct number ``index``."""
    return f"zjq{index:05d}qjz"


def protect(source: str) -> Protected:
    """Replace each Jinja construct in ``source`` by a placeholder, keeping line mapping."""
    constructs: list[Construct] = []
    offsets: list[int] = []
    shifts: list[int] = []
    pieces: list[str] = []
    cursor = 0
    length = 0
    shift = 0
    for index, match in enumerate(JINJA.finditer(source)):
        text = match.group(0)
        constructs.append(Construct(text, source.count("\n", 0, match.start()) + 1))
        before = source[cursor : match.start()]
        pieces.extend((before, placeholder(index)))
        length += len(before)
        # Lines folded into this placeholder shift everything after it.
        shift += text.count("\n")
        offsets.append(length)
        shifts.append(shift)
        length += len(placeholder(index))
        cursor = match.end()
    pieces.append(source[cursor:])
    return Protected("".join(pieces), tuple(constructs), tuple(offsets), tuple(shifts))


def restore(html: str, protected: Protected) -> tuple[str, list[Construct]]:
    """Put the Jinja back into compiled ``html``; also return constructs that were lost."""
    seen: set[int] = set()

    def back(match: re.Match[str]) -> str:
        index = int(match.group(1))
        seen.add(index)
        return protected.constructs[index].text

    restored = PLACEHOLDER.sub(back, html)
    lost = [item for index, item in enumerate(protected.constructs) if index not in seen]
    return restored, lost
