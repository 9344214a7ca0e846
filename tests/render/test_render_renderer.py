"""The renderer: compile once per version, Jinja per recipient, clear errors, previews."""

from __future__ import annotations

import pytest

from engine.render.diagnostics import RenderError
from engine.render.library import TemplateSource
from engine.render.links import Campaign
from engine.render.renderer import RenderContext, Renderer
from engine.render.store import MemoryTemplateStore
from fatigue.errors import ValidationError

from .render_helpers import DictLibrary, template_files

ITEM = {
    "item_id": "9",
    "title": "Lamp",
    "url": "https://s.example/9",
    "image_url": "https://s.example/9.jpg",
    "price": 12,
    "currency": "GBP",
}


def context(**recipient) -> RenderContext:
    return RenderContext({"user_id": "u1", **recipient}, [ITEM], Campaign("c1"))


def test_mjml_is_compiled_once_per_version_for_many_recipients(renderer) -> None:
    for index in range(25):
        renderer.render("picked-for-you", context(first_name=f"R{index}"))
    assert renderer.cache.mjml.compilations == 2  # the default and the French variant


def test_recipient_data_never_reaches_the_mjml_parser(renderer) -> None:
    hostile = "<mj-section><mj-raw>{{ 7*7 }}</mj-raw></mj-section><script>x()</script>"
    rendered = renderer.render("picked-for-you", context(first_name=hostile))
    assert "&lt;mj-section&gt;&lt;mj-raw&gt;{{ 7*7 }}" in rendered.html
    assert "<script>" not in rendered.html and "49" not in rendered.subject


def test_a_missing_recipient_value_is_a_render_error_with_the_line(signer, links, clock) -> None:
    files = template_files("<mj-text>{{ recipient.first_name }}</mj-text>")
    files["sample.json"] = '{"recipient": {"user_id": "u1", "first_name": "Ann"}}'
    renderer = Renderer(DictLibrary(TemplateSource("t", files)), signer, links, clock=clock)
    with pytest.raises(RenderError) as caught:
        renderer.render("t", context())
    (problem,) = caught.value.problems
    assert "first_name" in problem.message and problem.field == "html"
    assert (problem.source, problem.line) == ("t/email.mjml", 5)  # the marketer's line


def test_recipient_data_the_template_cannot_handle_is_a_render_error(signer, links, clock) -> None:
    """Valid against its sample, a template can still fail on other data: a 422, not a 500."""
    body = "<mj-text>{% for k, v in recipient.prefs|dictsort %}{{ k }}{% endfor %}</mj-text>"
    files = template_files(body)
    files["sample.json"] = '{"recipient": {"user_id": "u1", "prefs": {"a": 1}}}'
    renderer = Renderer(DictLibrary(TemplateSource("t", files)), signer, links, clock=clock)
    with pytest.raises(RenderError) as caught:
        renderer.render("t", context(prefs=[1]))  # a list has no .items()
    (problem,) = caught.value.problems
    assert problem.field == "html"
    assert (problem.source, problem.line) == ("t/email.mjml", 5)


def test_items_must_be_mappings(renderer) -> None:
    with pytest.raises(ValidationError, match="mapping"):
        renderer.render("picked-for-you", RenderContext({"user_id": "u"}, ["x"], Campaign("c")))


def test_preview_with_supplied_items_and_a_stored_version(signer, links, clock, bundle) -> None:
    store = MemoryTemplateStore(clock=clock)
    files = dict(bundle.source("picked-for-you").files)
    store.save("picked-for-you", files, "ann", "v1")
    files["template.toml"] = files["template.toml"].replace("we picked these", "fresh picks")
    store.save("picked-for-you", files, "ann", "v2")
    store.publish("picked-for-you", 1, "ann")
    renderer = Renderer(store, signer, links, clock=clock)
    assert renderer.preview("picked-for-you").subject == "Amelia, we picked these for you"
    assert renderer.preview("picked-for-you", 2).subject == "Amelia, fresh picks for you"
    supplied = renderer.preview("picked-for-you", items=[ITEM])
    assert "Lamp" in supplied.html and "£12.00" in supplied.text
    assert supplied.version == 1
    assert supplied.headers["X-Rapport-Template"] == "picked-for-you/1"


def test_a_failure_in_the_layout_names_the_mjml_line_not_the_compiled_one(
    signer, links, clock
) -> None:
    """MJML rewrites the layout: line 5 of email.mjml is somewhere past line 200 when compiled."""
    files = template_files("<mj-text>Hi {{ recipient.nickname }}</mj-text>")
    assert files["email.mjml"].splitlines()[4] == "<mj-text>Hi {{ recipient.nickname }}</mj-text>"
    renderer = Renderer(DictLibrary(TemplateSource("t", files)), signer, links, clock=clock)
    with pytest.raises(RenderError) as caught:
        renderer.render("t", RenderContext({"user_id": "u1"}, [], Campaign("c1")))
    [problem] = caught.value.problems
    assert (problem.source, problem.line, problem.field) == ("t/email.mjml", 5, "html")


def test_warming_compiles_no_more_templates_than_the_cache_keeps() -> None:
    """Past the cache's size, compiling more at start would only push out the first ones."""
    from engine.render.library import BundledLibrary
    from engine.render.links import LinkConfig, LinkSigner
    from engine.render.prepared import PreparedCache

    class Counted(BundledLibrary):
        def __init__(self) -> None:
            super().__init__()
            self.asked: list[str] = []

        def source(self, name: str, version: int | None = None) -> TemplateSource:
            self.asked.append(name)
            return super().source(name, version)

    library = Counted()
    renderer = Renderer(library, LinkSigner("a-secret-of-sixteen+"), LinkConfig("https://m.example"),
                        cache=PreparedCache(size=2))  # fmt: skip
    renderer.warm()
    assert len(library.names()) >= 4
    assert library.asked == library.names()[:2] and len(renderer.cache) == 2


def test_an_email_made_at_once_is_the_email_its_constructor_makes(renderer) -> None:
    import dataclasses
    import inspect

    from engine.render.renderer import RenderedEmail

    names = [field.name for field in dataclasses.fields(RenderedEmail)]
    assert list(inspect.signature(RenderedEmail.made).parameters) == names  # none forgotten
    rendered = renderer.render("picked-for-you", context(first_name="Ann"))
    values = {name: getattr(rendered, name) for name in names}
    made, built = RenderedEmail.made(**values), RenderedEmail(**values)
    assert made == built and vars(made) == vars(built)
    assert repr(made) == repr(built)
    assert made.mime_bytes is made.mime_bytes  # written once, on first use
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.subject = "changed"  # type: ignore[misc]
