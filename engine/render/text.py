"""Plain text from rendered email HTML, for templates without a dedicated text version.

Compiled MJML is layout tables, Outlook conditional comments and a hidden preheader; a reader
of the text part wants none of that. This keeps the words, turns links into ``words (url)``,
images into their alt text, block elements into line breaks, and drops hidden elements.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

BLOCKS = frozenset(
    {"p", "div", "tr", "table", "h1", "h2", "h3", "h4", "h5", "h6", "li", "ul", "ol", "br",
     "hr", "section", "article", "header", "footer"}
)  # fmt: skip
SKIPPED = frozenset({"head", "style", "script", "title"})
VOID = frozenset({"br", "hr", "img", "meta", "link", "input", "col", "area", "base", "wbr"})


def _hidden(style: str) -> bool:
    compact = style.replace(" ", "").lower()
    return "display:none" in compact or "max-height:0" in compact


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip_depth = 0
        self.links: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag in VOID:
            self.handle_void(tag, attributes)
            return
        if self.skip_depth or tag in SKIPPED or _hidden(attributes.get("style") or ""):
            self.skip_depth += 1
            return
        if tag in BLOCKS:
            self.parts.append("\n")
        if tag == "a":
            self.links.append(attributes.get("href"))
            self.parts.append("\x00")  # marks where the link text starts

    def handle_void(self, tag: str, attributes: dict[str, str | None]) -> None:
        if self.skip_depth:
            return
        if tag == "br":
            self.parts.append("\n")
        elif tag == "hr":
            self.parts.append("\n" + "-" * 40 + "\n")
        elif tag == "img" and (attributes.get("alt") or "").strip():
            self.parts.append(f" {attributes['alt']} ")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_void(tag, dict(attrs))

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        if self.skip_depth:
            self.skip_depth -= 1
            return
        if tag == "a" and self.links:
            self.close_link(self.links.pop())
        if tag in BLOCKS:
            self.parts.append("\n")

    def close_link(self, href: str | None) -> None:
        start = len(self.parts) - 1 - self.parts[::-1].index("\x00")
        words = " ".join("".join(self.parts[start + 1 :]).split())
        del self.parts[start:]
        if href and href.startswith(("http://", "https://", "mailto:")):
            self.parts.append(f"{words} ({href})" if words and words != href else href)
        else:
            self.parts.append(words)

    def handle_data(self, data: str) -> None:
        if not self.skip_depth:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    """Return a readable plain-text version of email ``html``."""
    extractor = _TextExtractor()
    extractor.feed(html)
    extractor.close()
    text = "".join(part for part in extractor.parts if part != "\x00")
    lines = [" ".join(line.split()) for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"
