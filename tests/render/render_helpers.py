"""Helpers for the rendering tests: in-memory libraries and minimal template files."""

from __future__ import annotations

from engine.render.library import TemplateSource


class DictLibrary:
    """A library over in-memory sources, for templates written inside a test."""

    def __init__(self, *sources: TemplateSource) -> None:
        self.sources = {source.name: source for source in sources}

    def names(self) -> list[str]:
        return sorted(self.sources)

    def source(self, name: str, version: int | None = None) -> TemplateSource:
        return self.sources[name]


def template_files(mjml_body: str, *, subject: str = "Hello", sample: str | None = None):
    """Return the files of a minimal valid template whose body section holds ``mjml_body``."""
    mjml = (
        "<mjml>\n<mj-body>\n<mj-section>\n<mj-column>\n"
        f"{mjml_body}\n"
        '<mj-text><a href="{{ preferences_url }}">Email preferences</a> '
        '<a href="{{ unsubscribe_url }}">Unsubscribe</a></mj-text>\n'
        "</mj-column>\n</mj-section>\n</mj-body>\n</mjml>\n"
    )
    return {
        "template.toml": f'name = "t"\nsubject = """{subject}"""\n',
        "email.mjml": mjml,
        "sample.json": sample or '{"recipient": {"user_id": "u1"}, "items": []}',
    }
