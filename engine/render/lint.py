"""Static checks on an MJML template before it is compiled, each problem with its line.

The rules exist because Jinja runs *after* MJML compiles (once per template version), so:

- Jinja in a layout attribute MJML computes from (``width``, ``padding``, ``border``...) or
  inside a tag does not survive compilation;
- ``{% for %}`` / ``{% if %}`` written between MJML sections is dropped by the compiler: wrap
  such tags in ``<mj-raw>`` so they land in the HTML around the compiled section;
- MJML's own validation rules (:mod:`engine.render.mjml_rules`: attribute names, attribute
  values, nesting) apply on save (``rule_problems``), since the ``mjml`` package does not
  validate yet;
- the ``mjml`` package has gaps that end in a Python exception (``mj-include`` reading any
  path, ``mj-hero`` without background size, ``mj-font`` reusing a built-in name,
  ``mj-style inline``): each becomes a clear problem here instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html.parser import HTMLParser

from engine.render import mjml_rules
from engine.render.protect import PLACEHOLDER, Protected
from fatigue.errors import Problem

# Attributes whose value is copied into the HTML as is, so Jinja there survives compilation.
JINJA_ATTRIBUTES = frozenset({"href", "src", "alt", "title", "background-url", "name", "rel"})
# Elements whose children are MJML elements: text between them is dropped by the compiler.
CONTAINERS = frozenset(
    {
        "mjml", "mj-head", "mj-body", "mj-wrapper", "mj-section", "mj-group", "mj-column",
        "mj-hero", "mj-attributes", "mj-navbar", "mj-social", "mj-carousel", "mj-accordion",
        "mj-accordion-element",
    }
)  # fmt: skip
# Elements that show an image, each with an ``alt`` attribute for its text.
IMAGE_TAGS = frozenset({"mj-image", "mj-carousel-image", "img"})
BUILTIN_FONTS = frozenset({"open sans", "droid sans", "lato", "roboto", "ubuntu"})
RAW_FIX = (
    "wrap Jinja tags that surround whole sections or columns in <mj-raw>, e.g. "
    "<mj-raw>{% for item in items %}</mj-raw> ... <mj-raw>{% endfor %}</mj-raw>"
)


def known_tags() -> frozenset[str]:
    """Return every tag the MJML compiler knows, plus the attribute-default children."""
    from mjml.core.registry import components, register_core_components

    register_core_components()
    return frozenset(components) | {"mjml", "mj-all", "mj-class", "mj-include"}


@dataclass
class _Open:
    tag: str
    line: int


class _Linter(HTMLParser):
    def __init__(
        self, protected: Protected, source_name: str, tags: frozenset[str], rules: bool = False
    ) -> None:
        super().__init__(convert_charrefs=False)
        self.protected = protected
        self.source_name = source_name
        self.tags = tags
        self.rules = rules  # apply MJML's validation rules (on save), collected apart
        self.problems: list[Problem] = []
        self.rule_problems: list[Problem] = []
        self.stack: list[_Open] = []
        self.seen: set[str] = set()

    def problem(
        self,
        message: str,
        line: int | None = None,
        field: str | None = None,
        *,
        exact: bool = False,
    ) -> None:
        where = line if exact and line else self.protected.original_line(line or self.getpos()[0])
        self.problems.append(Problem(message, self.source_name, where, field))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.check_tag(tag, attrs)
        if tag.startswith("mj") and tag not in {"mj-all", "mj-class"}:
            self.stack.append(_Open(tag, self.getpos()[0]))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.check_tag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if not tag.startswith("mj") or tag in {"mj-all", "mj-class"}:
            return
        if not any(item.tag == tag for item in self.stack):
            self.problem(f"</{tag}> closes nothing: check the tags are balanced")
            return
        while self.stack[-1].tag != tag:
            unclosed = self.stack.pop()
            self.problem(
                f"<{unclosed.tag}> is never closed (reached </{tag}> on line "
                f"{self.protected.original_line(self.getpos()[0])})",
                unclosed.line,
            )
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        parent = self.stack[-1].tag if self.stack else "mjml"
        if parent not in CONTAINERS:
            return
        for construct in self.protected.constructs_in(data):
            self.problem(
                f"{construct.text} directly inside <{parent}> is dropped by MJML; {RAW_FIX}",
                construct.line,
                exact=True,
            )
        if PLACEHOLDER.sub("", data).strip():
            self.problem(f"text directly inside <{parent}> is dropped; put it in <mj-text>")

    def check_tag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.seen.add(tag)
        if tag.startswith("mj") and tag not in self.tags:
            self.problem(f"<{tag}> is not an MJML element", field=tag)
        elif tag.startswith("mj") and self.rules:
            self.check_mjml_rules(tag, attrs)
        for name, value in attrs:
            self.check_attribute(tag, name, value or "")
        self.check_known_gaps(tag, dict(attrs))

    def check_mjml_rules(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        """Apply MJML's own validation: nesting, attribute names and attribute values."""
        parent = self.stack[-1].tag if self.stack else None
        misplaced = mjml_rules.misplaced(tag, parent) if parent else None
        if misplaced:
            self.rule_problem(misplaced, self.getpos()[0], tag)
        for name, value in attrs:
            if PLACEHOLDER.search(name):
                continue  # Jinja inside the tag: check_attribute names it
            reason = mjml_rules.unknown_attribute(tag, name)
            if reason is None and not PLACEHOLDER.search(value or ""):
                reason = mjml_rules.invalid_value(tag, name, value or "")
            if reason:
                self.rule_problem(reason, self.attribute_line(name), name)

    def rule_problem(self, message: str, line: int, field: str) -> None:
        where = self.protected.original_line(line)
        self.rule_problems.append(Problem(message, self.source_name, where, field))

    def attribute_line(self, name: str) -> int:
        """Return the line (of the protected source) an attribute of the current tag is on."""
        line = self.getpos()[0]
        text = self.get_starttag_text() or ""
        found = re.search(rf"\s{re.escape(name)}(?=[\s=/>])", text, re.IGNORECASE)
        return line + text.count("\n", 0, found.start() + 1) if found else line

    def check_attribute(self, tag: str, name: str, value: str) -> None:
        if PLACEHOLDER.search(name):
            found = self.protected.constructs_in(name)
            jinja = ", ".join(item.text for item in found)
            self.problem(
                f"Jinja inside the <{tag}> tag itself ({jinja}) does not survive MJML "
                f"compilation; Jinja may only fill attribute values; {RAW_FIX}",
                found[0].line,
                tag,
                exact=True,
            )
        elif tag.startswith("mj") and name not in JINJA_ATTRIBUTES and PLACEHOLDER.search(value):
            found = self.protected.constructs_in(value)
            jinja = ", ".join(item.text for item in found)
            self.problem(
                f'Jinja in the {name}="..." attribute of <{tag}> ({jinja}) does not survive: '
                f"MJML computes the layout from it before any recipient exists. Use a fixed "
                f"value, or choose between whole sections with <mj-raw>{{% if %}}</mj-raw>",
                found[0].line,
                name,
                exact=True,
            )

    def check_known_gaps(self, tag: str, attrs: dict[str, str | None]) -> None:
        parent = self.stack[-1].tag if self.stack else None
        unsupported = UNSUPPORTED_NESTING.get((tag, parent or ""))
        if unsupported:  # valid MJML that crashes the package: said here, at its line
            self.problem(f"<{tag}> inside <{parent}> {unsupported}", field=tag)
        if tag == "mj-include":
            self.problem(
                "mj-include is disabled: a template may only use its own file; paste the "
                "included section into this template",
                field="path",
            )
        elif tag == "mj-hero" and not (
            attrs.get("background-width") and attrs.get("background-height")
        ):
            self.problem(
                "<mj-hero> needs background-width and background-height (the background "
                'image size, e.g. background-width="600px" background-height="300px")',
                field="mj-hero",
            )
        elif tag == "mj-font" and (attrs.get("name") or "").strip().lower() in BUILTIN_FONTS:
            self.problem(
                f"<mj-font> cannot redefine the built-in font {attrs.get('name')!r}: remove "
                "this mj-font (the font is loaded automatically) or give it another name",
                field="name",
            )
        elif tag == "mj-style" and (attrs.get("inline") or "").lower() == "inline":
            self.problem(
                'mj-style inline="inline" is not supported; use a plain <mj-style> or '
                "mj-attributes",
                field="inline",
            )


# Nestings MJML allows that the ``mjml`` package (0.12) crashes on, with what to do instead.
UNSUPPORTED_NESTING = {
    ("mj-hero", "mj-wrapper"): "is not supported by this MJML compiler: put the <mj-hero> "
    "directly in <mj-body>",
    ("mj-navbar", "mj-hero"): "is not supported by this MJML compiler: put the <mj-navbar> "
    "in an <mj-column> of a section",
}


class _Images(HTMLParser):
    """Finds images without alt text: screen readers and image-blocking inboxes show nothing."""

    def __init__(self, protected: Protected, source_name: str) -> None:
        super().__init__(convert_charrefs=False)
        self.protected = protected
        self.source_name = source_name
        self.problems: list[Problem] = []
        # <mj-image padding="0" /> in <mj-attributes> sets defaults; it is not an image.
        self.in_defaults = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "mj-attributes":
            self.in_defaults = True
        elif self.in_defaults:
            return
        elif tag in IMAGE_TAGS and not (dict(attrs).get("alt") or "").strip():
            line = self.protected.original_line(self.getpos()[0])
            message = (
                f'<{tag}> has no alt text: describe the image, e.g. alt="{{{{ item.title }}}}"'
            )
            self.problems.append(Problem(message, self.source_name, line, "alt"))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag != "mj-attributes":  # <mj-attributes /> opens nothing
            self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag == "mj-attributes":
            self.in_defaults = False


def image_problems(protected: Protected, source_name: str) -> list[Problem]:
    """Return a problem for each image in a protected MJML source that has no alt text.

    Checked when a template is saved, not when it renders: a version saved before this check
    keeps rendering. Jinja in ``alt`` counts as text (it is the marketer's description).
    """
    images = _Images(protected, source_name)
    images.feed(protected.source)
    images.close()
    return images.problems


def rule_problems(protected: Protected, source_name: str) -> list[Problem]:
    """Return where a protected MJML source breaks MJML's own validation rules, in order.

    Checked when a template is saved, not when it renders: MJML ignores an unknown attribute,
    so a version saved before these rules keeps rendering as it always did.
    """
    linter = _Linter(protected, source_name, known_tags(), rules=True)
    linter.feed(protected.source)
    linter.close()
    return sorted(linter.rule_problems, key=lambda problem: problem.line or 0)


def lint(protected: Protected, source_name: str) -> list[Problem]:
    """Return every problem found in a protected MJML source, in source order."""
    linter = _Linter(protected=protected, source_name=source_name, tags=known_tags())
    linter.feed(protected.source)
    linter.close()
    for still_open in reversed(linter.stack):
        linter.problem(f"<{still_open.tag}> is never closed", still_open.line)
    if "mjml" not in linter.seen:
        linter.problem("the template has no <mjml> root element", 1)
    elif "mj-body" not in linter.seen:
        linter.problem("the template has no <mj-body>", 1)
    return sorted(linter.problems, key=lambda problem: problem.line or 0)
