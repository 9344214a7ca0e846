"""MJML compile: Jinja kept intact, the lint with lines, the package's gaps as problems, cache."""

from __future__ import annotations

import pytest

from engine.render.mjml_compile import MjmlCache, compile_mjml
from fatigue.errors import ValidationError


def body(inner: str) -> str:
    """Return a document whose line 5 is ``inner``."""
    return (
        "<mjml>\n<mj-body>\n<mj-section>\n<mj-column>\n"
        f"{inner}\n</mj-column>\n</mj-section>\n</mj-body>\n</mjml>\n"
    )


def problems_of(source: str) -> list:
    with pytest.raises(ValidationError) as caught:
        compile_mjml(source, "t.mjml")
    return caught.value.problems


def test_jinja_survives_compilation_byte_for_byte() -> None:
    jinja = [
        "{% if items|length > 3 and x < 2 %}",
        '{{ recipient.first_name|default("there", true) }}',
        "{% endif %}",
    ]
    source = body(
        f"<mj-text>{''.join(jinja)}</mj-text>\n"
        '<mj-image src="{{ item.image_url }}" alt="{{ item.title|default(\'x\') }}" />'
    )
    html = compile_mjml(source).html
    for construct in jinja:
        assert construct in html
    assert 'src="{{ item.image_url }}"' in html
    assert "alt=\"{{ item.title|default('x') }}\"" in html


def test_loops_in_mj_raw_land_around_the_compiled_section() -> None:
    source = (
        "<mjml><mj-body>\n<mj-raw>{% for item in items %}</mj-raw>\n"
        "<mj-section><mj-column><mj-text>{{ item.title }}</mj-text></mj-column></mj-section>\n"
        "<mj-raw>{% endfor %}</mj-raw>\n</mj-body></mjml>"
    )
    html = compile_mjml(source).html
    start, end = html.index("{% for item in items %}"), html.index("{% endfor %}")
    assert start < html.index("{{ item.title }}") < end


def test_jinja_between_sections_is_reported_with_its_line_and_the_mj_raw_fix() -> None:
    source = (
        "<mjml>\n<mj-body>\n{% for item in items %}\n<mj-section><mj-column>"
        "<mj-text>x</mj-text></mj-column></mj-section>\n{% endfor %}\n</mj-body>\n</mjml>"
    )
    problems = problems_of(source)
    assert [(p.line, "mj-raw" in p.message) for p in problems] == [(3, True), (5, True)]


@pytest.mark.parametrize(
    ("inner", "field"),
    [
        ('<mj-image src="a.png" alt="a" width="{{ w }}" />', "width"),
        ('<mj-text padding="{{ p }}px">x</mj-text>', "padding"),
        ('<mj-button border="{{ b }}" href="x">x</mj-button>', "border"),
        ('<mj-spacer height="{{ h }}" />', "height"),
    ],
)
def test_jinja_in_computed_attributes_is_reported(inner: str, field: str) -> None:
    (problem,) = problems_of(body(inner))
    assert (problem.line, problem.field, problem.source) == (5, field, "t.mjml")
    assert "does not survive" in problem.message


def test_jinja_inside_a_tag_is_reported() -> None:
    problems = problems_of(body('<mj-text {% if x %}align="right"{% endif %}>x</mj-text>'))
    assert {p.line for p in problems} == {5}
    assert all("inside the <mj-text> tag" in p.message for p in problems)


def test_multi_line_jinja_keeps_later_lines_right() -> None:
    source = body('<mj-text>{{\n  recipient.first_name\n}}</mj-text>\n<mj-image width="{{ w }}" />')
    (problem,) = problems_of(source)
    assert problem.line == 8


def test_mj_include_is_refused_and_never_read(tmp_path) -> None:
    secret = tmp_path / "secret.mjml"
    secret.write_text("<mj-text>TOP-SECRET-CONTENT</mj-text>")
    (problem,) = problems_of(body(f'<mj-include path="{secret}" />'))
    assert problem.line == 5 and "mj-include is disabled" in problem.message


def test_hero_without_background_size_is_a_problem_not_a_traceback() -> None:
    source = (
        '<mjml>\n<mj-body>\n<mj-hero background-url="https://x.example/h.jpg">\n'
        "<mj-text>hi</mj-text>\n</mj-hero>\n</mj-body>\n</mjml>"
    )
    (problem,) = problems_of(source)
    assert problem.line == 3 and "background-width" in problem.message
    fixed = source.replace('h.jpg"', 'h.jpg" background-width="600px" background-height="300px"')
    assert "h.jpg" in compile_mjml(fixed).html


def test_font_reusing_a_builtin_name_is_a_problem() -> None:
    source = (
        '<mjml>\n<mj-head>\n<mj-font name="Roboto" href="https://f.example/r.css" />\n'
        '</mj-head>\n<mj-body><mj-section><mj-column><mj-text font-family="Roboto">x</mj-text>'
        "</mj-column>"
        "</mj-section></mj-body>\n</mjml>"
    )
    (problem,) = problems_of(source)
    assert problem.line == 3 and problem.field == "name"
    assert "https://f.example/r.css" in compile_mjml(source.replace("Roboto", "Brand")).html


def test_unknown_tags_unbalanced_tags_and_missing_body_are_reported() -> None:
    lines = ["<mjml>", "<mj-body>", "<mj-section>", "<mj-colum>", "<mj-text>x", "</mj-section>"]
    source = "\n".join([*lines, "</mj-body>", "</mjml>"])
    messages = {(p.line, p.message.split(" ")[0]) for p in problems_of(source)}
    assert (4, "<mj-colum>") in messages
    assert any(line == 5 for line, _ in messages)
    (problem,) = problems_of("<mjml>\n<mj-head></mj-head>\n</mjml>")
    assert "no <mj-body>" in problem.message
    assert any("no <mjml>" in problem.message for problem in problems_of("just text"))


def test_compiler_exceptions_become_problems(monkeypatch) -> None:
    import mjml

    def crash(source: str) -> None:
        raise TypeError("'NoneType' object is not subscriptable")

    monkeypatch.setattr(mjml, "mjml_to_html", crash)
    (problem,) = problems_of(body("<mj-text>x</mj-text>"))
    assert problem.source == "t.mjml" and problem.line is None  # not a made-up line 1
    assert "MJML could not compile this template" in problem.message
    assert "TypeError" not in problem.message and "NoneType" not in problem.message


def test_cache_compiles_each_content_once() -> None:
    cache = MjmlCache(size=2)
    one, two, three = (body(f"<mj-text>{n}</mj-text>") for n in ("one", "two", "three"))
    first = cache.compile(one)
    assert cache.compile(one) is first
    cache.compile(two)
    assert cache.compilations == 2
    cache.compile(three)  # evicts "one", the least recently used
    cache.compile(one)
    assert cache.compilations == 4


def test_a_stray_closing_brace_is_a_jinja_error_not_swallowed_markup() -> None:
    """``{{ x }`` once hid the markup up to the next ``}}`` and compiled without a word."""
    source = body(
        "<mj-text>Hello {{ items|length }</mj-text>\n"
        "</mj-column></mj-section><mj-section><mj-column>\n"
        "<mj-text>{{ recipient.first_name }}</mj-text>"
    )
    [problem] = problems_of(source)
    assert (problem.source, problem.line) == ("t.mjml", 5)
    assert problem.message == "Jinja syntax error: unexpected '}'"


def test_jinja_is_found_where_jinja_itself_says_it_ends() -> None:
    from engine.render.protect import protect

    constructs = [
        '{{ "say \\"hi\\"" ~ "a\\"b" }}',  # escaped quotes: the string does not end early
        "{{ {'a': {'b': 1}}['a'].b }}",  # ``}}`` inside braces does not end the expression
        "{%- raw -%}",
        "{% endraw %}",
        "{# a comment -#}",
    ]
    source = (
        f'<mj-text align="center">{constructs[0]}</mj-text>\n'
        f'<mj-text align="left">{constructs[1]}</mj-text>\n'
        f"<mj-raw>{constructs[2]} {{{{ not jinja }} {constructs[3]}</mj-raw>\r\n"
        f"{constructs[4]} <mj-text>{{{{ x }}}}</mj-text>\n"
    )
    protected = protect(source)
    assert [c.text for c in protected.constructs] == [*constructs, "{{ x }}"]
    assert [c.line for c in protected.constructs] == [1, 2, 3, 3, 4, 4]
    assert '<mj-text align="center">' in protected.source  # markup stays visible to MJML
    assert "{{ not jinja }" in protected.source  # a raw block's text is text


def test_an_escaped_quote_does_not_hide_the_markup_after_it() -> None:
    """The quote in ``Don't`` once closed the string in ``'it\\'s'``: both lines were hidden."""
    source = body(
        "<mj-text>{{ 'it\\'s' }}</mj-text>\n"
        '<mj-text align="center">Don\'t miss {{ recipient.user_id }}</mj-text>'
    )
    html = compile_mjml(source).html
    assert "{{ 'it\\'s' }}</div>" in html and "Don't miss {{ recipient.user_id }}</div>" in html
    assert "mj-text" not in html


def test_the_layout_writes_non_ascii_as_character_references_where_html_reads_them() -> None:
    source = (
        "<mjml>\n<mj-head>\n<mj-title>Café</mj-title>\n"
        '<mj-style>.note:after { content: "→"; }</mj-style>\n</mj-head>\n<mj-body>\n'
        "<mj-section>\n<mj-column>\n"
        '<mj-text>Prices · £ · 😀 {{ "Zoé"|upper }}</mj-text>\n'
        '<mj-image src="https://s.example/a.jpg" alt="Crème" />\n'
        "</mj-column>\n</mj-section>\n</mj-body>\n</mjml>\n"
    )
    html = compile_mjml(source).html
    outside_jinja = html.replace('{{ "Zoé"|upper }}', "")
    assert "Prices &#183; &#163; &#183; &#128512;" in html and 'alt="Cr&#232;me"' in html
    assert "<title>\nCaf&#233;\n</title>" in html
    # A style sheet reads a reference as its letters; the Jinja stays as the marketer wrote it.
    assert 'content: "→"' in html and '{{ "Zoé"|upper }}' in html
    assert [ch for ch in outside_jinja if not ch.isascii()] == ["→"]


def test_comments_keep_their_characters_and_ascii_html_is_returned_as_it_was() -> None:
    from engine.render.mjml_compile import ascii_html

    html = "<p>é</p><!-- ünchanged --><script>let s = 'ß'</script><p>ok</p>"
    kept = "<!-- ünchanged --><script>let s = 'ß'</script>"
    assert ascii_html(html) == f"<p>&#233;</p>{kept}<p>ok</p>"
    plain = "<p>plain</p>"
    assert ascii_html(plain) is plain


def test_text_inside_filter_set_and_macro_blocks_keeps_its_characters() -> None:
    source = body(
        "<mj-text>{% filter upper %}Café · {{ name }}{% endfilter %} · Crème"
        "{% set t %}Zoë{% endset %}{{ t }}</mj-text>\n"
        "<mj-raw>{% macro m(x) %}<p>Éa {{ x }}</p>{% endmacro %}</mj-raw>"
    )
    html = compile_mjml(source).html
    # A filter may still change the block's text (upper would not touch a reference's letters).
    assert "{% filter upper %}Café · {{ name }}{% endfilter %} &#183; Cr&#232;me" in html
    assert "{% set t %}Zoë{% endset %}" in html and "<p>Éa {{ x }}</p>" in html
