"""Compacted email HTML looks exactly as MJML's indented output does, in a real Chromium."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from engine.render import mjml_compile
from engine.render.protect import protect, restore

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
BUNDLED = sorted(TEMPLATES.glob("*/email*.mjml"))


def compiled(mjml: str, compact: bool) -> str:
    """The template's HTML as MJML writes it, compacted or not (its Jinja shown as text)."""
    protected = protect(mjml)
    html = mjml_compile._run_compiler(protected.source, "email.mjml")
    restored, lost = restore(mjml_compile.compact(html) if compact else html, protected)
    assert not lost
    return restored


def screenshot(page: Any, html: str, width: int) -> bytes:
    page.set_viewport_size({"width": width, "height": 800})
    page.set_content(html)
    return bytes(page.screenshot(full_page=True))


@pytest.mark.parametrize("path", BUNDLED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_bundled_email_looks_the_same_compacted(browser, path):
    mjml = path.read_text()
    indented, compacted = compiled(mjml, compact=False), compiled(mjml, compact=True)
    assert len(compacted) < 0.85 * len(indented)
    page = browser.new_page()
    page.route("**/*", lambda route: route.abort())  # images: offline, the same either way
    try:
        for width in (600, 375):  # desktop and phone layouts
            assert screenshot(page, compacted, width) == screenshot(page, indented, width)
    finally:
        page.close()


def document(body: str) -> str:
    return f"<mjml><mj-body><mj-section><mj-column>{body}</mj-column></mj-section></mj-body></mjml>"


def test_a_document_that_shows_whitespace_as_typed_is_left_alone():
    verbatim = "<mj-raw><pre>\n    indented\n        code</pre></mj-raw>"
    styled = '<mj-text css-class="x"><div style="white-space: pre">\n  a\n    b</div></mj-text>'
    for body in (verbatim, styled):
        assert compiled(document(body), compact=True) == compiled(document(body), compact=False)
    plain = document("<mj-text>a</mj-text>")
    assert "\n  " in compiled(plain, compact=False) and "\n " not in compiled(plain, compact=True)
