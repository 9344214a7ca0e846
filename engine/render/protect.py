"""Hide Jinja from the MJML compiler behind inert placeholders, and bring it back afterwards.

The MJML parser re-serialises text (``>`` becomes ``&gt;``) and attribute values (quotes),
which would corrupt ``{% if items|length > 3 %}`` or ``{{ x|default("y") }}``. Each Jinja
construct is swapped for a placeholder word before compiling and restored byte for byte after,
so the compiled HTML carries exactly the Jinja the marketer wrote. A placeholder that does not
come out of the compiler marks Jinja that MJML dropped, which the lint reports with its line.
Comments (``{# ... #}``) are the exception: they print nothing, so they are simply left out of
what MJML sees, and may be written anywhere, even between sections or inside a tag.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass

from jinja2 import TemplateSyntaxError

from engine.render.sandbox import RapportSandbox

# Jinja's own lexer says where each construct starts and ends: a hand-written pattern guessed
# wrong on a stray ``}`` or an escaped quote and hid MJML markup up to the next ``}}``.
_LEXER = RapportSandbox(html=True).lexer
_OPENERS = frozenset({"variable_begin", "block_begin", "comment_begin"})
_CLOSERS = frozenset({"variable_end", "block_end", "comment_end"})
# ``{% raw %}`` and ``{% endraw %}`` are single tokens; what lies between them is text.
_WHOLE = frozenset({"raw_begin", "raw_end"})
_NEWLINE = re.compile(r"\r\n|\r")
PLACEHOLDER = re.compile(r"zjq(\d{5})qjz", re.IGNORECASE)


@dataclass(frozen=True)
class Construct:
    """One Jinja construct in a template source and the line it starts on."""

    text: str
    line: int

    @property
    def is_comment(self) -> bool:
        """Whether it is a ``{# comment #}``, which prints nothing."""
        return self.text.startswith("{#")

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


def _jinja_texts(source: str) -> Iterator[str]:
    """Yield the text of each Jinja construct in ``source``, in order, as Jinja lexes it."""
    parts: list[str] = []
    for _line, token, value in _LEXER.tokeniter(source, None):
        if token in _WHOLE or token in _CLOSERS:
            # ``-}}`` eats the whitespace after it; that whitespace is text, not the tag.
            yield "".join(parts) + value.rstrip()
            parts = []
        elif token in _OPENERS or parts:
            parts.append(value)
    if parts:
        raise TemplateSyntaxError("unexpected end of template", source.count("\n") + 1)


def protect(source: str) -> Protected:
    """Replace each Jinja construct in ``source`` by a placeholder, keeping line mapping.

    Raises ``TemplateSyntaxError`` when ``source`` is not valid Jinja (check it first).
    Windows and old Mac line breaks become plain newlines, as Jinja reads them, so both
    count lines alike.
    """
    source = _NEWLINE.sub("\n", source)
    constructs: list[Construct] = []
    offsets: list[int] = []
    shifts: list[int] = []
    pieces: list[str] = []
    cursor = 0
    length = 0
    shift = 0
    for index, text in enumerate(_jinja_texts(source)):
        # Text between constructs holds no Jinja opener (a raw block's holds no end tag), so
        # the first match is this construct.
        start = source.index(text, cursor)
        construct = Construct(text, source.count("\n", 0, start) + 1)
        constructs.append(construct)
        before = source[cursor:start]
        # A comment prints nothing: it stands for nothing, wherever it is (between sections,
        # inside a tag), so MJML never sees it and the lint never reports it.
        stand_in = "" if construct.is_comment else placeholder(index)
        pieces.extend((before, stand_in))
        length += len(before)
        # Lines folded into this placeholder shift everything after it.
        shift += text.count("\n")
        offsets.append(length)
        shifts.append(shift)
        length += len(stand_in)
        cursor = start + len(text)
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
    lost = [
        item
        for index, item in enumerate(protected.constructs)
        if index not in seen and not item.is_comment
    ]
    return restored, lost
