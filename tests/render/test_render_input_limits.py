"""Names with a trailing newline and text nested too deeply are refused as invalid input.

``$`` in a pattern matches before a final newline, so ``evil\\n`` passed the name check and
became a folder; and deeply nested Jinja or TOML overflowed Python's recursion limit (or its
compiler's nesting limits) and answered 500 instead of naming the file.
"""

from __future__ import annotations

import pytest

from engine.render.library import TemplateSource, read_template
from engine.render.mjml_compile import MjmlCache
from engine.render.prepared import HTML_ENV, TEXT_ENV, compile_jinja, prepare
from engine.render.store import MemoryTemplateStore, check_name
from engine.render.store_files import FileTemplateStore
from engine.render.validate import check
from fatigue.errors import ValidationError

from .render_helpers import template_files
from .test_render_store import valid_files

TOO_DEEP = "nests too deeply"

# Each overflowed the parser, the sandbox's tree walk, Jinja's code generator or Python's
# compiler (whose nesting limits are lower than the recursion limit).
DEEP_JINJA = {
    "ifs": "{% if 1 %}" * 3000 + "x" + "{% endif %}" * 3000,
    "filters": "{{ 1" + "|abs" * 20_000 + " }}",
    "filters-on-a-variable": "{{ x" + "|abs" * 250 + " }}",
    "parentheses": "{{ " + "(" * 3000 + "1" + ")" * 3000 + " }}",
    "negations": "{{ " + "-" * 20_000 + "1 }}",
    "lists": "{{ " + "[" * 3000 + "]" * 3000 + " }}",
    "additions": "{{ x" + "+x" * 300 + " }}",
    "loops": "{% for a in x %}" * 25 + "{% endfor %}" * 25,
    "past-the-limit": "{{ x" + "|abs" * 70 + " }}",
}
NEWLINE_NAMES = ["evil\n", "evil\r\n", "evil\n\n", "\nevil"]


@pytest.mark.parametrize("name", NEWLINE_NAMES)
def test_a_name_with_a_newline_is_refused(name: str) -> None:
    with pytest.raises(ValidationError, match="lower-case"):
        check_name(name)


def test_a_plain_name_still_passes() -> None:
    check_name("picked-for-you")


def test_no_store_saves_a_template_under_a_name_ending_in_a_newline(tmp_path, clock) -> None:
    for store in (MemoryTemplateStore(clock=clock), FileTemplateStore(tmp_path, clock=clock)):
        with pytest.raises(ValidationError):
            store.save("evil\n", valid_files(), "ann", "note")
        assert "evil\n" not in store.names()
    assert not any("\n" in path.name for path in tmp_path.iterdir())


def test_the_layout_refuses_a_name_file_or_locale_ending_in_a_newline() -> None:
    files = template_files("<mj-text>Hi</mj-text>")
    files["template.toml"] += '[locales."fr\\n"]\nsubject = "Salut"\n'
    files["email.mjml\n"] = files["email.mjml"]
    _, problems = read_template(TemplateSource("t\n", files))
    sources = {problem.source for problem in problems}
    assert {"t\n", "email.mjml\n"} <= sources
    assert any(problem.field == "locales.fr\n" for problem in check(TemplateSource("t", files)))


@pytest.mark.parametrize("source", DEEP_JINJA.values(), ids=DEEP_JINJA.keys())
def test_deeply_nested_jinja_is_a_problem_naming_the_file(source: str) -> None:
    for env in (HTML_ENV, TEXT_ENV):
        with pytest.raises(ValidationError, match=TOO_DEEP) as caught:
            compile_jinja(env, source, "t/email.txt")
        assert [problem.source for problem in caught.value.problems] == ["t/email.txt"]


@pytest.mark.parametrize("snippet", DEEP_JINJA.values(), ids=DEEP_JINJA.keys())
def test_validation_and_preparation_name_deeply_nested_mjml(snippet: str) -> None:
    source = TemplateSource("t", template_files(f"<mj-text>{snippet}</mj-text>"))
    problems = check(source, MjmlCache())
    assert problems and all(problem.source == "email.mjml" for problem in problems)
    assert any(TOO_DEEP in problem.message for problem in problems)
    with pytest.raises(ValidationError, match=TOO_DEEP):
        prepare(source, MjmlCache())


def test_a_subject_nested_too_deeply_points_at_template_toml() -> None:
    subject = "{% if 1 %}" * 3000 + "x" + "{% endif %}" * 3000
    problems = check(TemplateSource("t", template_files("<mj-text>Hi</mj-text>", subject=subject)))
    assert [(p.source, p.field) for p in problems] == [("template.toml", "subject")]
    assert TOO_DEEP in problems[0].message


@pytest.mark.parametrize(
    "value",
    ["[" * 50_000 + "]" * 50_000, "{b=" * 5_000 + "1" + "}" * 5_000],
    ids=["array", "table"],
)
def test_a_template_toml_nested_too_deeply_is_a_problem(value: str) -> None:
    files = template_files("<mj-text>Hi</mj-text>")
    files["template.toml"] += f"deep = {value}\n"
    problems = check(TemplateSource("t", files))
    assert [problem.source for problem in problems] == ["template.toml"]
    assert TOO_DEEP in problems[0].message
