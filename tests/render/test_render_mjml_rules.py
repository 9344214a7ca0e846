"""MJML's own validation rules: attribute names, attribute values and nesting, with lines.

Checked on save (``check``), not at render: a version saved before the rules keeps rendering.
"""

from __future__ import annotations

import pytest

from engine.render.library import TemplateSource
from engine.render.lint import rule_problems
from engine.render.mjml_compile import compile_mjml
from engine.render.protect import protect
from engine.render.validate import check
from fatigue.errors import ValidationError
from tests.render.render_helpers import template_files


def problems_of(source: str) -> list:
    return rule_problems(protect(source), "t.mjml")


def saved(mjml_body: str) -> list:
    """Every problem saving a template whose body holds ``mjml_body`` (line 5 on) reports."""
    return check(TemplateSource("t", template_files(mjml_body)))


def document(*lines: str) -> str:
    """Return a document whose line 5 is the first of ``lines``."""
    head = "<mjml>\n<mj-body>\n<mj-section>\n<mj-column>\n"
    return head + "\n".join(lines) + "\n</mj-column>\n</mj-section>\n</mj-body>\n</mjml>\n"


def test_a_misspelt_attribute_is_refused_with_its_line_and_the_right_name() -> None:
    (problem,) = problems_of(document('<mj-text font-wieght="bold">Hello</mj-text>'))
    assert (problem.source, problem.line, problem.field) == ("t.mjml", 5, "font-wieght")
    assert '<mj-text> has no attribute "font-wieght"' in problem.message
    assert 'did you mean "font-weight"' in problem.message


@pytest.mark.parametrize(
    ("tag", "field", "expected"),
    [
        ('<mj-column width="abc">', "width", "a number with px or %"),
        ('<mj-column padding="x">', "padding", "1 to 4 sizes"),
        ('<mj-column background-color="bleu">', "background-color", "colour"),
        ('<mj-column direction="up">', "direction", "one of ltr, rtl"),
    ],
)
def test_an_invalid_value_is_refused_with_its_line(tag: str, field: str, expected: str) -> None:
    source = document("</mj-column>", f"{tag}<mj-text>x</mj-text>")
    (problem,) = problems_of(source)
    assert (problem.line, problem.field) == (6, field)
    assert expected in problem.message and "<mj-column>" in problem.message


def test_a_value_that_crashed_the_compiler_is_named_at_its_own_line_under_jinja() -> None:
    """``padding="x"`` crashed the compiler, reported at line 1; Jinja above spans lines."""
    body = "\n".join([
        "<mj-text>{{ recipient.user_id\n  |default('there') }}</mj-text>",
        "<mj-text",
        '  color="#333"',
        '  padding="x">{% if items %}{{ items[0].title }}{% endif %}</mj-text>',
    ])  # fmt: skip
    (problem,) = saved(body)  # the compiler's own failure, which says less, is left out
    assert (problem.source, problem.line, problem.field) == ("email.mjml", 9, "padding")
    assert 'padding="x" on <mj-text> is not valid' in problem.message


def test_elements_in_the_wrong_parent_are_refused_with_their_lines() -> None:
    source = (
        "<mjml>\n<mj-body>\n<mj-section>\n<mj-text>x</mj-text>\n</mj-section>\n"
        "<mj-column><mj-text>y</mj-text></mj-column>\n</mj-body>\n</mjml>\n"
    )
    problems = problems_of(source)
    assert [(p.line, p.field) for p in problems] == [(4, "mj-text"), (6, "mj-column")]
    assert "<mj-text> cannot be used inside <mj-section>" in problems[0].message
    assert "<mj-column>" in problems[0].message  # where it belongs
    assert "<mj-column> cannot be used inside <mj-body>" in problems[1].message


@pytest.mark.parametrize(
    "tag",
    [
        '<mj-text padding="10px 25px" line-height="1.5" color="#f60" align="justify">',
        '<mj-text padding="0" font-size="14px" letter-spacing="-1px" color="rgba(0,0,0,0.5)">',
        '<mj-text container-background-color="transparent" css-class="x" mj-class="y">',
        '<mj-text letter-spacing="0.1em">',  # the reference's type; the package says (px,%)
        '<mj-text color="{{ recipient.colour }}">',  # Jinja: the lint's business, not a value
    ],
)
def test_valid_values_and_every_bundled_attribute_pass(tag: str) -> None:
    source = document(f"{tag}x</mj-text>")
    assert problems_of(source) == []
    if "{{" in tag:  # Jinja: the lint's business, not a value
        with pytest.raises(ValidationError) as caught:
            compile_mjml(source)
        assert all(p.field == "color" and "Jinja" in p.message for p in caught.value.problems)
    else:
        assert "x</div>" in compile_mjml(source).html


def test_attribute_defaults_in_the_head_are_checked_too() -> None:
    source = (
        '<mjml>\n<mj-head>\n<mj-attributes>\n<mj-all font-family="Arial" />\n'
        '<mj-text paddin="0" />\n</mj-attributes>\n</mj-head>\n'
        "<mj-body><mj-section><mj-column><mj-text>x</mj-text></mj-column></mj-section>"
        "</mj-body>\n</mjml>\n"
    )
    (problem,) = problems_of(source)
    assert (problem.line, problem.field) == (5, "paddin")


def test_defaults_for_every_element_or_a_class_are_checked_against_every_element() -> None:
    """``<mj-all padding="x">`` crashed the compiler with a message saying all looked valid."""
    source = (
        '<mjml>\n<mj-head>\n<mj-attributes>\n<mj-all padding="x" font-family="Arial" />\n'
        '<mj-class name="big" padding="10px" fontsize="20px" color="bleu" />\n'
        '<mj-class name="ok" font-size="20px" color="#333" letter-spacing="1px" />\n'
        "</mj-attributes>\n</mj-head>\n"
        "<mj-body><mj-section><mj-column><mj-text>x</mj-text></mj-column></mj-section>"
        "</mj-body>\n</mjml>\n"
    )
    problems = problems_of(source)
    assert [(p.line, p.field) for p in problems] == [(4, "padding"), (5, "fontsize"), (5, "color")]
    assert 'padding="x" on <mj-all> is not valid' in problems[0].message
    assert 'sets "fontsize", which no MJML element has' in problems[1].message


@pytest.mark.parametrize(
    ("body", "tag"),
    [
        (
            '<mj-wrapper><mj-hero background-width="600px" background-height="300px">'
            "<mj-text>x</mj-text></mj-hero></mj-wrapper>",
            "mj-hero",
        ),
        (
            '<mj-hero background-width="600px" background-height="300px">'
            '<mj-navbar><mj-navbar-link href="https://shop.example">Shop</mj-navbar-link>'
            "</mj-navbar></mj-hero>",
            "mj-navbar",
        ),
    ],
)
def test_nestings_the_compiler_crashes_on_are_named_at_their_line(body: str, tag: str) -> None:
    """Valid MJML the package cannot compile: the save named no line and blamed nothing."""
    source = f"<mjml>\n<mj-body>\n{body}\n</mj-body>\n</mjml>\n"
    with pytest.raises(ValidationError) as caught:
        compile_mjml(source, "t.mjml")
    (problem,) = caught.value.problems
    assert (problem.line, problem.field) == (3, tag)
    assert "is not supported by this MJML compiler" in problem.message


def test_a_template_saved_with_an_invalid_attribute_is_refused_on_save() -> None:
    problems = saved('<mj-text font-wieght="bold">Hi</mj-text>')
    assert [(p.source, p.line, p.field) for p in problems] == [("email.mjml", 5, "font-wieght")]


def test_a_version_saved_before_the_rules_keeps_rendering() -> None:
    """MJML ignores an unknown attribute: an upgrade must not stop a published email."""
    source = document('<mj-text font-wieght="bold">Hello</mj-text>', '<mj-image width="300" />')
    assert "Hello</div>" in compile_mjml(source).html
