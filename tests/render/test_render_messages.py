"""Problems in plain words, at the right place: failed renders, unclosed blocks, metadata."""

from __future__ import annotations

import re

import pytest

from engine.render.diagnostics import RenderError
from engine.render.library import TemplateSource
from engine.render.renderer import Renderer
from engine.render.validate import check
from tests.render.render_helpers import DictLibrary, template_files

# What a Python exception's name looks like in a message: no marketer should read one.
PYTHON_NAME = re.compile(r"\b\w*(Error|Exception)\b|NoneType|__\w+__")


def problems(body: str = "<mj-text>x</mj-text>", **files: str) -> list:
    found = template_files(body)
    found.update({name.replace("_", "."): text for name, text in files.items()})
    return check(TemplateSource("t", found))


@pytest.mark.parametrize(
    ("jinja", "words"),
    [
        ('{% if items is defined %}{{ "x"|nosuch }}{% endif %}', "no filter named 'nosuch'"),
        ('{{ "x"|nosuch }}', "no filter named 'nosuch'"),
        ("{{ 1 / (items|length) }}", "divides by zero"),
        ("{{ recipient.user_id + 1 }}", "mixes text and numbers"),
        ("{{ recipient.user_id|round }}", "wrong kind"),
        ("{{ recipient.user_id|replace(1) }}", "wrong number or kind of arguments"),
    ],
)
def test_failures_are_described_in_plain_words_with_their_line(jinja: str, words: str) -> None:
    (problem,) = problems(f"<mj-text>{jinja}</mj-text>")
    assert (problem.source, problem.line) == ("email.mjml", 5)
    assert words in problem.message
    assert not PYTHON_NAME.search(problem.message), problem.message


META = (
    'name = "t"\ndescription = ""\n\nsubject = """Hi\n{{ recipient.first_name }}"""\n'
    'preheader = "Pre {{ 1 / recipient.n }}"\n\n'
    '[locales.fr]\nsubject = "Salut {{ recipient.nom }}"\n'
)


@pytest.mark.parametrize(
    ("recipient", "line", "field", "words"),
    [
        ({"user_id": "u"}, 5, "subject", "first_name"),
        ({"user_id": "u", "first_name": "A", "n": 0}, 6, "preheader", "divides by zero"),
        ({"user_id": "u", "locale": "fr"}, 9, "locales.fr.subject", "nom"),
    ],
)
def test_a_subject_or_preheader_failing_at_preview_names_its_key_and_line(
    recipient: dict, line: int, field: str, words: str, signer, links
) -> None:
    files = template_files("<mj-text>x</mj-text>")
    files["template.toml"] = META
    renderer = Renderer(DictLibrary(TemplateSource("t", files)), signer, links)
    with pytest.raises(RenderError) as caught:
        renderer.preview("t", recipient=recipient)
    (problem,) = caught.value.problems
    assert (problem.source, problem.line, problem.field) == ("template.toml", line, field)
    assert words in problem.message and not PYTHON_NAME.search(problem.message)


@pytest.mark.parametrize(
    ("body", "line", "tag"),
    [
        ("<mj-text>{% if items %}\nx\n{% for i in items %}{% endfor %}\n{% set q = 1 %}</mj-text>",
         5, "if"),
        ("<mj-text>\n{% for i in items %}{% if i %}{% endif %}\n{% set b %}x{% endset %}</mj-text>",
         6, "for"),
        ("<mj-text>{% if items %}{% endif %}{% set b %}x\n</mj-text>", 5, "set"),
    ],
)  # fmt: skip
def test_an_unclosed_block_is_reported_where_it_opens(body: str, line: int, tag: str) -> None:
    (problem,) = problems(body)
    assert (problem.source, problem.line) == ("email.mjml", line)
    assert f"{{% {tag} %}}" in problem.message and f"{{% end{tag} %}}" in problem.message


def test_an_unclosed_block_in_the_subject_names_its_template_toml_line() -> None:
    meta = 'name = "t"\n\nsubject = "Hi {% if recipient.first_name %}{{ recipient.first_name }}"\n'
    (problem,) = problems(template_toml=meta)
    assert (problem.source, problem.line, problem.field) == ("template.toml", 3, "subject")
    assert "{% endif %}" in problem.message


@pytest.mark.parametrize("value", ["3", "true", '"english"', '["en"]'])
def test_a_default_locale_that_is_not_a_locale_code_is_refused(value: str) -> None:
    meta = f'name = "t"\nsubject = "Hi"\ndefault_locale = {value}\n'
    (problem,) = problems(template_toml=meta)
    assert (problem.source, problem.line, problem.field) == ("template.toml", 3, "default_locale")
    assert "locale code" in problem.message


def test_a_default_locale_code_is_accepted() -> None:
    assert problems(template_toml='name = "t"\nsubject = "Hi"\ndefault_locale = "fr-CA"\n') == []


@pytest.mark.parametrize("opening", ['"""\\', '"""  \\'])
def test_a_subject_after_a_line_ending_backslash_is_found_on_its_own_line(
    opening: str, signer, links
) -> None:
    """``subject = \"\"\"\\`` drops the newline and the blank lines after it: the text is later."""
    files = template_files("<mj-text>x</mj-text>")
    subject = '\n\n  Hi {{ recipient.first_name }}"""\n'
    files["template.toml"] = f'name = "t"\nsubject = {opening}' + subject
    renderer = Renderer(DictLibrary(TemplateSource("t", files)), signer, links)
    with pytest.raises(RenderError) as caught:
        renderer.preview("t", recipient={"user_id": "u"})
    (problem,) = caught.value.problems
    assert (problem.source, problem.line, problem.field) == ("template.toml", 4, "subject")


@pytest.mark.parametrize(
    ("jinja", "words"),
    [
        ("{{ recipient.first_name }}", "the data has no 'first_name' here"),
        ("{{ recipient.user_id.x }}", "the text has no 'x' here"),
        ("{{ items[3].title }}", "the list has no item 3"),
        ("{{ recipient[5] }}", "the data has no '5' here"),  # a key, not a position
        ("{{ none.x }}", "an empty value has no 'x' here"),
    ],
)
def test_a_value_missing_at_preview_is_named_without_python_types(
    jinja: str, words: str, signer, links
) -> None:
    """Jinja says "'dict object' has no attribute 'first_name'"; a marketer reads the data."""
    files = template_files(f"<mj-text>{jinja}</mj-text>")
    renderer = Renderer(DictLibrary(TemplateSource("t", files)), signer, links)
    with pytest.raises(RenderError) as caught:
        renderer.preview("t", recipient={"user_id": "u"}, items=[])
    (problem,) = caught.value.problems
    assert words in problem.message and "object" not in problem.message, problem.message
