"""Every bundled template: valid, renders to HTML a real HTML5 parser accepts, alt text, links."""

from __future__ import annotations

import email
from email import policy
from html.parser import HTMLParser

import html5lib
import pytest

from engine.render.library import BundledLibrary
from engine.render.links import Campaign
from engine.render.renderer import RenderContext
from engine.render.validate import check

NAMES = BundledLibrary().names()


class Inventory(HTMLParser):
    """Collects images and links with their visible text."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[dict[str, str | None]] = []
        self.links: list[tuple[str, str]] = []
        self._href: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs))
        elif tag == "a":
            self._href, self._text = dict(attrs).get("href"), []

    def handle_data(self, data):
        if self._href is not None:
            self._text.append(data)

    def handle_endtag(self, tag):
        if tag == "a" and self._href is not None:
            self.links.append((self._href, " ".join("".join(self._text).split())))
            self._href = None


def test_the_four_required_templates_are_bundled() -> None:
    assert {"picked-for-you", "weekly-digest", "win-back", "cart-follow-up"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_bundled_template_validates(name, bundle) -> None:
    assert check(bundle.source(name)) == []


@pytest.mark.parametrize("name", NAMES)
def test_html_is_accepted_by_a_strict_html5_parser(name, renderer) -> None:
    rendered = renderer.preview(name)
    parser = html5lib.HTMLParser(strict=True)
    parser.parse(rendered.html)  # raises ParseError on the first spec violation
    assert parser.errors == []


@pytest.mark.parametrize("name", NAMES)
def test_every_image_has_alt_text_and_every_item_is_shown(name, renderer) -> None:
    rendered = renderer.preview(name)
    inventory = Inventory()
    inventory.feed(rendered.html)
    assert inventory.images
    assert all((image.get("alt") or "").strip() for image in inventory.images)
    sample_titles = [item["title"] for item in renderer.prepared(name).template.sample["items"]]
    assert sample_titles[0] in rendered.html


@pytest.mark.parametrize("name", NAMES)
def test_visible_unsubscribe_and_preference_links(name, renderer, signer) -> None:
    rendered = renderer.preview(name)
    inventory = Inventory()
    inventory.feed(rendered.html)
    texts = {href: text for href, text in inventory.links}
    unsubscribe = [href for href in texts if "/u/" in href]
    preferences = [href for href in texts if "/p/" in href]
    assert unsubscribe and preferences
    assert texts[unsubscribe[0]].lower() == "unsubscribe"
    assert texts[preferences[0]]
    token = unsubscribe[0].rsplit("/", 1)[1]
    sample_user = renderer.prepared(name).template.sample["recipient"]["user_id"]
    assert signer.verify_unsubscribe(token).user_id == sample_user
    assert unsubscribe[0] in rendered.text and preferences[0] in rendered.text


@pytest.mark.parametrize("name", NAMES)
def test_all_parts_are_filled(name, renderer) -> None:
    rendered = renderer.preview(name)
    assert rendered.subject and "{" not in rendered.subject
    assert rendered.preheader and rendered.preheader in rendered.html
    assert rendered.preheader not in rendered.text  # the hidden preview line is not body text
    assert "{{" not in rendered.html and "{%" not in rendered.html
    message = email.message_from_bytes(rendered.mime_bytes, policy=policy.default)
    assert message.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in message.iter_parts()] == [
        "text/plain",
        "text/html",
    ]


def test_locale_variant_with_fallback(renderer) -> None:
    prepared = renderer.prepared("picked-for-you")
    assert prepared.variant("fr-CA").locale == "fr"
    assert prepared.variant("fr").locale == "fr"
    assert prepared.variant("de-DE").locale == "en"
    assert prepared.variant(None).locale == "en"
    french = renderer.preview(
        "picked-for-you", recipient={"user_id": "1", "first_name": "Léa", "locale": "fr-FR"}
    )
    assert french.locale == "fr"
    assert french.subject == "Léa, notre sélection pour vous"
    assert 'lang="fr"' in french.html


@pytest.mark.parametrize("name", ["picked-for-you", "weekly-digest", "win-back", "cart-follow-up"])
def test_bundled_templates_render_an_item_the_catalog_barely_describes(name, renderer) -> None:
    """Only an id (and the engine's relevance): every other field renders blank, not an error."""
    item = {"item_id": "x1", "relevance": 0.3, "source": "cf"}
    context = RenderContext({"user_id": "u1"}, [item, item, item], Campaign("c1"))
    assert "x1" not in renderer.render(name, context).subject


@pytest.mark.parametrize("locale", ["fr", "fr-FR", "fr_FR", "FR", "Fr-CA", " fr "])
def test_a_locale_is_matched_whatever_its_case_or_separator(locale, renderer) -> None:
    item = {"item_id": "1", "title": "Tasse", "url": "https://s.example/1", "price": 2.0}
    context = RenderContext({"user_id": "u1", "locale": locale}, [item] * 3, Campaign("c1"))
    email = renderer.render("picked-for-you", context)
    assert email.locale == "fr" and "notre sélection" in email.subject


def test_a_text_part_without_the_unsubscribe_link_is_refused() -> None:
    """Readers of the plain-text part have no other way out than the URL written in it."""
    from engine.render.library import TemplateSource

    from .render_helpers import template_files

    files = {**template_files("<mj-text>Hi</mj-text>"), "email.txt": "Hi {{ recipient.user_id }}\n"}
    [problem] = check(TemplateSource("t", files))
    assert (problem.source, problem.field) == ("email.txt", "unsubscribe_url")
    files["email.txt"] += "Unsubscribe: {{ unsubscribe_url }}\n"
    assert check(TemplateSource("t", files)) == []


def test_a_name_set_inside_an_if_is_the_templates_own() -> None:
    from engine.render.library import TemplateSource

    from .render_helpers import template_files

    body = (
        "<mj-text>{% if items %}{% set first = items[0] %}Top: {{ first.title }}{% endif %}"
        "</mj-text>"
    )
    sample = '{"recipient": {"user_id": "u1"}, "items": [{"title": "Mug"}]}'
    assert check(TemplateSource("t", template_files(body, sample=sample))) == []
    misspelt = template_files("<mj-text>{{ recipeint.first_name }}</mj-text>", sample=sample)
    assert [p.field for p in check(TemplateSource("t", misspelt))] == ["recipeint"]


def test_a_locale_with_its_own_layout_but_no_text_gets_text_from_its_own_html() -> None:
    """The default email.txt is another language: a German email had English text."""
    from engine.render.library import TemplateSource, parse_template

    from .render_helpers import template_files

    files = template_files("<mj-text>Hello</mj-text>")
    files["email.txt"] = "Hello\nUnsubscribe: {{ unsubscribe_url }}\n"
    files["email.de.mjml"] = files["email.mjml"].replace("Hello", "Hallo")
    files["template.toml"] += '\n[locales.de]\nsubject = "Hallo"\n'
    template = parse_template(TemplateSource("t", files))
    assert template.variant("de").text_file is None  # derived from the German HTML
    assert template.variant("en").text_file == "email.txt"
    del files["template.toml"]
    files["template.toml"] = 'name = "t"\nsubject = "Hello"\n'
    problems = check(TemplateSource("t", files))
    assert [p.field for p in problems] == ["email.de.mjml"]
    assert "[locales.de]" in problems[0].message


@pytest.mark.parametrize("name", NAMES)
def test_every_bundled_template_showing_items_0_declares_it_needs_one(name, bundle) -> None:
    from engine.render.library import parse_template

    template = parse_template(bundle.source(name))
    assert "items[0]" in "".join(bundle.source(name).files.values())
    assert template.min_items == 1


@pytest.mark.parametrize(
    ("value", "said"),
    [("0", "from 1 to 50"), ("51", "from 1 to 50"), ("true", "from 1 to 50"),
     ("2.5", "from 1 to 50"), ("1", "max_items 1 is below min_items 2: no email could ever")],
)  # fmt: skip
def test_max_items_is_a_small_whole_number_no_smaller_than_min_items(value, said) -> None:
    from engine.render.library import TemplateSource, parse_template

    from .render_helpers import template_files

    files = template_files("<mj-text>Hi</mj-text>")
    files["template.toml"] += f"min_items = 2\nmax_items = {value}\n"
    [problem] = check(TemplateSource("t", files))
    assert (problem.source, problem.field) == ("template.toml", "max_items")
    assert said in problem.message and problem.line is not None
    files["template.toml"] = files["template.toml"].replace(f"max_items = {value}", "max_items = 3")
    assert check(TemplateSource("t", files)) == []
    assert parse_template(TemplateSource("t", files)).shown(4) == 3


@pytest.mark.parametrize("value", ["-1", "51", "1.5", "true", '"1"'])
def test_min_items_must_be_a_small_whole_number(value) -> None:
    from engine.render.library import TemplateSource

    from .render_helpers import template_files

    files = template_files("<mj-text>Hi</mj-text>")
    files["template.toml"] += f"min_items = {value}\n"
    [problem] = check(TemplateSource("t", files))
    assert (problem.source, problem.field) == ("template.toml", "min_items")
    assert "from 0 to 50" in problem.message


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("min_item = 1", "template.toml:4 [min_item]: unknown key 'min_item' (did you mean "
         "'min_items'?)"),
        ('defualt_locale = "en"', "template.toml:4 [defualt_locale]: unknown key "
         "'defualt_locale' (did you mean 'default_locale'?)"),
        ("colour = 1", "template.toml:4 [colour]: unknown key 'colour' (allowed: name, "
         "description, subject, preheader, variables, default_locale, min_items, max_items, "
         "locales)"),
        ('[locales.fr]\nsubjet = "Salut"', "template.toml:5 [locales.fr.subjet]: unknown key "
         "'subjet' in [locales.fr] (did you mean 'subject'?)"),
    ],
)  # fmt: skip
def test_unknown_keys_in_template_toml_are_refused(line: str, problem: str) -> None:
    """A misspelt ``min_items`` was ignored: the template read as needing no items at all."""
    from engine.render.library import TemplateSource, parse_template

    from .render_helpers import template_files

    files = template_files("<mj-text>Hi</mj-text>")
    files["template.toml"] += f"\n{line}\n"
    assert [str(p) for p in check(TemplateSource("t", files))] == [problem]
    # A version saved before keys were checked still renders: only saving refuses them.
    assert parse_template(TemplateSource("t", files)).name == "t"


def test_an_unreadable_template_toml_adds_no_problems_that_depend_on_it() -> None:
    from engine.render.library import TemplateSource

    from .render_helpers import template_files

    files = template_files("<mj-text>Hi</mj-text>")
    files["email.fr.mjml"] = files["email.mjml"]
    files["template.toml"] += '\n[locales.fr]\nsubject = "Salut\n'  # unterminated string
    problems = check(TemplateSource("t", files))
    assert [(p.source, p.line) for p in problems] == [("template.toml", 5)]
    assert problems[0].message.startswith("not valid TOML")


def test_a_name_mismatch_does_not_hide_the_other_problems() -> None:
    from engine.render.library import TemplateSource

    from .render_helpers import template_files

    files = template_files("<mj-text>Hi {{ x }</mj-text>")
    problems = check(TemplateSource("renamed", files))
    assert [str(p) for p in problems] == [
        "template.toml:1 [name]: name 't' differs from 'renamed'",
        "email.mjml:5: Jinja syntax error: unexpected '}'",
    ]


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ('locales = "fr"', "template.toml:4 [locales]: locales must be tables"),
        ("[locales]\nfr = 1", "template.toml:4 [locales]: locales must be tables"),
        ("variables = 5", "template.toml:4 [variables]: variables must be a list of names"),
    ],
)
def test_a_template_toml_value_of_the_wrong_shape_is_a_problem_not_a_crash(line, problem) -> None:
    from engine.render.library import TemplateSource

    from .render_helpers import template_files

    files = template_files("<mj-text>Hi</mj-text>")
    files["template.toml"] += f"\n{line}\n"
    [found] = check(TemplateSource("t", files))
    assert str(found).startswith(problem)


def test_an_index_past_the_sample_list_is_named_as_an_index():
    from engine.render.library import TemplateSource

    from .render_helpers import template_files

    files = template_files("<mj-text>{{ items[0].title }}</mj-text>",
                           sample='{"recipient": {"user_id": "u1"}, "items": []}')  # fmt: skip
    problems = check(TemplateSource("t", files))
    [problem] = [p for p in problems if "entry" in p.message]
    assert problem.message.startswith("reads entry [0] of a list the sample data has too few")
    assert ".0" not in str(problem)


@pytest.mark.parametrize("name", NAMES)
def test_html_is_ascii_and_reads_as_the_characters_written(name, renderer) -> None:
    rendered = renderer.preview(name)
    shown: list[str] = []
    reader = HTMLParser()  # convert_charrefs: the text as a mail client shows it
    reader.handle_data = shown.append  # type: ignore[method-assign]
    reader.feed(rendered.html)
    assert rendered.html.isascii() and "&#183;" in rendered.html
    assert "Email preferences · Unsubscribe" in " ".join("".join(shown).split())
