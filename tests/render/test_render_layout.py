"""The template layout as the marketers' guide states it: locale files, template.toml lines,
text parts, byte-order marks, Jinja comments and the rules every template must follow."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.render.filters import date
from engine.render.library import BundledLibrary, TemplateSource, parse_template, read_folder
from engine.render.links import Campaign
from engine.render.mjml_compile import compile_mjml
from engine.render.renderer import RenderContext, Renderer
from engine.render.validate import check

from .render_helpers import DictLibrary, template_files

FRENCH = "<mj-text>Bonjour</mj-text>"


def with_locale(filename: str, table: str) -> dict[str, str]:
    """Return a template whose ``filename`` is a French layout, and a ``[locales.<table>]``."""
    files = template_files("<mj-text>Hello</mj-text>")
    files[filename] = template_files(FRENCH)["email.mjml"]
    files["template.toml"] += f'\n[locales.{table}]\nsubject = "Bonjour"\n'
    return files


def write_folder(folder: Path, files: dict[str, str], prefix: str = "") -> Path:
    folder.mkdir()
    for filename, text in files.items():
        (folder / filename).write_text(prefix + text, encoding="utf-8")
    return folder


# -- locale files ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "table", "customer"),
    [
        ("email.FR.mjml", "fr", "fr-FR"),
        ("email.fr_CA.mjml", "fr_CA", "fr-CA"),
        ("email.fr-ca.mjml", "fr-CA", "fr_CA"),
        ("email.es-419.mjml", "es-419", "es-419"),
    ],
)
def test_a_locale_file_is_matched_whatever_its_case_or_separator(
    filename, table, customer, tmp_path
) -> None:
    """These were skipped when the folder was read: they validated and readers got English."""
    source = read_folder(write_folder(tmp_path / "t", with_locale(filename, table)))
    assert filename in source.files
    assert check(source) == []
    assert parse_template(source).variant(customer).mjml_file == filename


@pytest.mark.parametrize("filename", ["email.french.mjml", "email.fr.html", "Email.fr.mjml"])
def test_a_misnamed_locale_file_is_refused_by_name(filename, tmp_path) -> None:
    files = with_locale(filename, "fr")
    source = read_folder(write_folder(tmp_path / "t", {**files, "notes.md": "mine"}))
    assert "notes.md" not in source.files  # not meant as part of the template: left alone
    [problem] = check(source)
    assert problem.source == filename
    assert problem.message == (
        "not a file the template layout knows; locale files are named email.<locale>.mjml or "
        "email.<locale>.txt, e.g. email.fr-CA.mjml"
    )


def test_two_spellings_of_one_locale_file_are_refused() -> None:
    files = with_locale("email.fr.mjml", "fr")
    files["email.FR.mjml"] = files["email.fr.mjml"]
    [problem] = check(TemplateSource("t", files))
    assert (problem.source, problem.field) == ("t", "email.fr.mjml")
    assert "email.FR.mjml is the file for [locales.fr]; keep one" in problem.message


@pytest.mark.parametrize(
    ("tables", "problem"),
    [
        ('[locales.en]\nsubject = "{{ recipeint.first_name }}"',
         "template.toml:4 [locales.en]: [locales.en] is the default locale ('en'); put its "
         "subject and preheader at the top level"),
        ('[locales.EN]\nsubject = "Hi"',
         "template.toml:4 [locales.EN]: [locales.EN] is the default locale ('en'); put its "
         "subject and preheader at the top level"),
        ('[locales.fr-CA]\nsubject = "Salut"\n[locales.fr_ca]\nsubject = "Allo"',
         "template.toml:6 [locales.fr_ca]: [locales.fr_ca] is the same locale as "
         "[locales.fr-CA]; keep one of the two"),
        ('[locales.french]\nsubject = "Salut"',
         "template.toml:4 [locales.french]: [locales.french]: not a locale code; write one "
         "like fr, fr-CA or es-419"),
    ],
)  # fmt: skip
def test_a_locale_table_that_would_change_nothing_is_refused(tables, problem) -> None:
    """``[locales.en]`` beside ``default_locale = "en"`` was ignored, misspelt variables too."""
    files = template_files("<mj-text>Hi</mj-text>")
    files["template.toml"] += f"\n{tables}\n"
    assert [str(p) for p in check(TemplateSource("t", files))] == [problem]
    # As before the check, a saved version holding one still renders (and ignores it).
    assert parse_template(TemplateSource("t", files)).variant("en").subject == "Hello"


# -- template.toml lines --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("toml", "problem"),
    [
        ('name = "t"\nsubject = "Hi"\n\n[locales.de]\nsubject = "{{ recipeint.name }}"',
         "template.toml:5 [locales.de.subject]: uses 'recipeint', which is neither a template "
         "variable nor in the sample data"),
        ('name = "t"\nsubject = "Hi"\npreheader = "{{ items|length }"',
         "template.toml:3 [preheader]: Jinja syntax error: unexpected '}'"),
        ('name = "t"\nsubject = """\nHello\n{{ x }\n"""',
         "template.toml:4 [subject]: Jinja syntax error: unexpected '}'"),
        ('name = "t"\nsubject = "Hi"\nmin_items = "1"',
         "template.toml:3 [min_items]: min_items must be a whole number from 0 to 50 (got '1')"),
        ('name = "t"\n[locales.de]\nsubject = "Hallo"',
         'template.toml:1 [subject]: subject is required: add subject = "..." before any '
         "[locales] table"),
        ('name = "t"\nsubject = " "',
         "template.toml:2 [subject]: subject is required (a string, not blank)"),
    ],
)  # fmt: skip
def test_template_toml_problems_name_the_line_the_key_is_on(toml, problem) -> None:
    """They named line 1 of the subject string, or no line at all."""
    files = template_files("<mj-text>Hi</mj-text>")
    files["template.toml"] = toml + "\n"
    assert str(problem) in [str(p) for p in check(TemplateSource("t", files))]


# -- text parts -----------------------------------------------------------------------------


@pytest.mark.parametrize("blank", ["", "  \n\n"])
def test_an_empty_text_part_is_refused_and_an_old_one_renders_as_absent(
    blank, signer, links
) -> None:
    files = {**template_files("<mj-text>Hi</mj-text>"), "email.txt": blank}
    [problem] = check(TemplateSource("t", files))
    assert (problem.source, problem.line) == ("email.txt", 1)
    assert "plain-text version is empty" in problem.message
    # A version saved before the check: its readers get text made from the HTML, with the link.
    renderer = Renderer(DictLibrary(TemplateSource("t", files)), signer, links)
    email = renderer.render("t", RenderContext({"user_id": "u1"}, [], Campaign("c1")))
    assert "Hi" in email.text and "/u/" in email.text


def test_a_text_part_that_renders_blank_needs_its_unsubscribe_link_too() -> None:
    files = {**template_files("<mj-text>Hi</mj-text>"), "email.txt": "{# to do #}"}
    [problem] = check(TemplateSource("t", files))
    assert (problem.source, problem.field) == ("email.txt", "unsubscribe_url")


def test_a_blank_locale_text_falls_back_as_if_it_were_absent() -> None:
    files = with_locale("email.fr.mjml", "fr")
    files["email.txt"] = "Hello\nUnsubscribe: {{ unsubscribe_url }}\n"
    files["email.fr.txt"] = "\n"
    template = parse_template(TemplateSource("t", files))
    assert template.variant("fr").text_file is None  # made from the French HTML
    assert [p.source for p in check(TemplateSource("t", files))] == ["email.fr.txt"]


# -- filters --------------------------------------------------------------------------------


def test_date_of_nothing_is_blank() -> None:
    assert date(None) == ""
    assert date("2010-12-09T08:26:00Z") == "9 December 2010"


@pytest.mark.parametrize(
    "expression",
    ["date", "round(2)", "abs", "upper", "title", "trim", "truncate(10)", "striptags", "e"],
)
def test_a_missing_value_renders_blank_through_a_filter(expression, signer, links) -> None:
    """The guide: a partly described item renders with its other fields blank."""
    mjml = f"<mj-text>[{{{{ items[0].published_at|{expression} }}}}]</mj-text>"
    sample = '{"recipient": {"user_id": "u1"}, "items": [{"published_at": null}]}'
    files = template_files(mjml, sample=sample)
    assert check(TemplateSource("t", files)) == []
    renderer = Renderer(DictLibrary(TemplateSource("t", files)), signer, links)
    item = {"item_id": "x1", "published_at": None}
    email = renderer.render("t", RenderContext({"user_id": "u1"}, [item], Campaign("c1")))
    assert "[]" in email.html and "None" not in email.html


def test_two_different_problems_on_one_line_are_both_reported() -> None:
    mjml = "<mj-text>{{ items[7].title }} {{ items[9].title }}</mj-text>"
    problems = check(TemplateSource("t", template_files(mjml)))
    messages = [p.message for p in problems if p.source == "email.mjml"]
    assert any("[7]" in m for m in messages) and any("[9]" in m for m in messages)


# -- byte-order marks and comments ----------------------------------------------------------


def test_files_saved_with_a_byte_order_mark_read_as_their_text(tmp_path) -> None:
    """Each was refused for something else: 'Invalid statement', 'Unexpected UTF-8 BOM'."""
    files = {**template_files("<mj-text>Hi</mj-text>"), "email.txt": "Hi {{ unsubscribe_url }}"}
    folder = write_folder(tmp_path / "t", files, prefix="\ufeff")
    assert (folder / "template.toml").read_bytes().startswith(b"\xef\xbb\xbf")
    source = read_folder(folder)
    assert check(source) == []
    assert not any(text.startswith("\ufeff") for text in source.files.values())
    bom_in_memory = {name: "\ufeff" + text for name, text in files.items()}  # API, studio
    assert check(TemplateSource("t", bom_in_memory)) == []


def test_a_jinja_comment_may_stand_inside_a_tag() -> None:
    files = template_files('<mj-text padding="10px" {# the brand guide says so #}>x</mj-text>')
    assert check(TemplateSource("t", files)) == []


@pytest.mark.parametrize(
    "comment", ["{# header section #}", "{#\n  a comment\n  on three lines\n#}"]
)
def test_a_jinja_comment_may_stand_between_sections(comment) -> None:
    """It was refused as 'directly inside <mj-body> is dropped by MJML'."""
    source = (
        f"<mjml>\n<mj-body>\n{comment}\n<mj-section>\n<mj-column>\n<mj-text>x</mj-text>\n"
        "</mj-column>\n</mj-section>\n</mj-body>\n</mjml>\n"
    )
    html = compile_mjml(source, "t.mjml").html
    assert "{#" not in html and "#}" not in html
    # Lines after a comment still name the marketer's line.
    broken = source.replace("<mj-text>x</mj-text>", '<mj-text width="{{ w }}">x</mj-text>')
    problems = check(TemplateSource("t", template_files("") | {"email.mjml": broken}))
    assert [p.line for p in problems if p.field == "width"] == [6 + comment.count("\n")]


# -- the rules every template must follow ---------------------------------------------------


@pytest.mark.parametrize(
    ("image", "tag"),
    [
        ('<mj-image src="{{ items[0].image_url }}" />', "mj-image"),
        ('<mj-image src="a.png" alt=" " />', "mj-image"),
        ('<mj-text><img src="a.png"></mj-text>', "img"),
    ],
)
def test_an_image_without_alt_text_is_refused_with_its_line(image, tag) -> None:
    sample = '{"recipient": {"user_id": "u1"}, "items": [{"image_url": "a.png"}]}'
    files = template_files(f"<mj-text>Hi</mj-text>\n{image}", sample=sample)
    [problem] = check(TemplateSource("t", files))
    assert str(problem).startswith(f"email.mjml:6 [alt]: <{tag}> has no alt text")


def test_image_defaults_in_mj_attributes_are_not_images() -> None:
    files = template_files('<mj-image src="a.png" alt="A mug" />')
    files["email.mjml"] = files["email.mjml"].replace(
        "<mjml>\n", '<mjml>\n<mj-head><mj-attributes><mj-image padding="0" />'
        "</mj-attributes></mj-head>\n",
    )  # fmt: skip
    assert check(TemplateSource("t", files)) == []


@pytest.mark.parametrize(
    ("footer", "problem"),
    [
        ('<a href="{{ unsubscribe_url }}">Unsubscribe</a>',
         'email.mjml [preferences_url]: no preference-centre link: add <a href="{{ '
         'preferences_url }}">Email preferences</a> to the footer'),
        ('<a href="{{ preferences_url }}">Email preferences</a>'
         '<a href="{{ unsubscribe_url }}"> </a>',
         "email.mjml:6 [unsubscribe_url]: the unsubscribe link shows no text, so nobody sees "
         'it: write <a href="{{ unsubscribe_url }}">Unsubscribe</a>'),
    ],
)  # fmt: skip
def test_the_footer_links_the_guide_requires_are_checked(footer, problem) -> None:
    files = template_files("<mj-text>Hi</mj-text>")
    files["email.mjml"] = files["email.mjml"].replace(
        '<mj-text><a href="{{ preferences_url }}">Email preferences</a> '
        '<a href="{{ unsubscribe_url }}">Unsubscribe</a></mj-text>',
        f"<mj-text>{footer}</mj-text>",
    )
    assert [str(p) for p in check(TemplateSource("t", files))] == [problem]


def test_a_button_or_an_image_with_alt_text_is_a_visible_link() -> None:
    footer = (
        '<mj-button href="{{ unsubscribe_url }}">Unsubscribe</mj-button>\n'
        '<mj-image src="p.png" alt="Email preferences" href="{{ preferences_url }}" />'
    )
    files = template_files(footer)
    files["email.mjml"] = files["email.mjml"].replace(
        '<mj-text><a href="{{ preferences_url }}">Email preferences</a> '
        '<a href="{{ unsubscribe_url }}">Unsubscribe</a></mj-text>\n',
        "",
    )
    assert check(TemplateSource("t", files)) == []


def test_every_bundled_template_still_follows_every_rule() -> None:
    library = BundledLibrary()
    assert {name: check(library.source(name)) for name in library.names()} == {
        name: [] for name in library.names()
    }


def test_two_problems_on_one_subject_line_are_both_named() -> None:
    files = template_files("<mj-text>Hi</mj-text>", subject="{{ frist }} {{ lsat }}")
    problems = check(TemplateSource("t", files))
    assert [(p.line, p.field, p.message.split(",")[0]) for p in problems] == [
        (2, "subject", "uses 'frist'"),
        (2, "subject", "uses 'lsat'"),
    ]
