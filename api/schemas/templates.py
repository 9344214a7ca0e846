"""Schemas of the template endpoints: versions, saving, publishing, diffs and previews."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    StringConstraints,
    WithJsonSchema,
    field_validator,
)
from pydantic_core import PydanticCustomError

from api.schemas.common import Identifier, Strict
from engine.render.library import LOCALE_CODE, MAX_MIN_ITEMS

Text = Annotated[str, StringConstraints(max_length=200_000)]
Line = Annotated[str, StringConstraints(max_length=1_000)]
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _one_line(value: str) -> str:
    """Refuse control characters in a subject or preheader, in words (not pydantic's regex)."""
    found = _CONTROL.search(value)
    if found:
        names = {"\t": "a tab", "\n": "a line break", "\r": "a line break"}
        what = names.get(found.group(), "a control character")
        raise PydanticCustomError(
            "one_line",
            "must be one line of plain text: it contains {what} at character {position}; "
            "remove it (an email header cannot hold it)",
            {"what": what, "position": found.start() + 1},
        )
    return value


# A subject or preheader: one line of text, so no control characters (a header cannot hold them).
# The pattern is kept in the schema (clients see the rule) but checked by ``_one_line``.
HeaderLine = Annotated[
    str,
    StringConstraints(max_length=1_000),
    AfterValidator(_one_line),
    WithJsonSchema({"type": "string", "maxLength": 1_000, "pattern": r"^[^\x00-\x1f\x7f]*$"}),
]
# A locale variant's code, as its file names spell it (email.fr.mjml, email.fr-CA.txt).
# As the library names locale files: fr, fr-CA, es-419, zh-Hant (case and _ or - as written).
Locale = Annotated[str, StringConstraints(max_length=35, pattern=rf"^{LOCALE_CODE}$")]
MAX_LOCALES = 50


class VersionOut(BaseModel):
    """One saved version: who saved it, when and why."""

    version: int
    author: str
    created_at: datetime
    note: str
    content_hash: str


class PublicationOut(BaseModel):
    """The published version and the earlier ones a rollback returns to (newest last)."""

    version: int
    published_by: str
    published_at: datetime
    previous: list[int]


class TemplateSummary(BaseModel):
    """A template in the list."""

    name: str
    latest_version: int
    published_version: int | None


class TemplateList(BaseModel):
    """Every template."""

    templates: list[TemplateSummary]


class LocaleOut(BaseModel):
    """A locale variant's own parts; null where it uses the default variant's."""

    mjml: str | None
    subject: str | None
    preheader: str | None
    text: str | None


class TemplateOut(BaseModel):
    """One version of a template: its editable parts and all of its files."""

    name: str
    version: int
    published: bool
    subject: str
    preheader: str
    mjml: str
    text: str | None
    sample: dict[str, Any]
    #: The fewest items the email shows: never sent with fewer (template.toml's min_items).
    min_items: int
    #: The most its layout shows (template.toml's max_items): never chosen more; null: any.
    max_items: int | None = None
    files: dict[str, str]
    #: Each locale variant (``[locales.xx]`` in template.toml) with its own parts.
    locales: dict[str, LocaleOut]
    versions: list[VersionOut]
    publication: PublicationOut | None


class LocaleSave(Strict):
    """A locale variant's own parts (Jinja, like the default's).

    A part left out keeps the latest version's; ``null`` removes it, so the variant uses the
    default variant's (its own HTML makes its text when it has its own MJML but no text).
    """

    mjml: Text | None = None
    subject: HeaderLine | None = None
    preheader: HeaderLine | None = None
    text: Text | None = None


class TemplateSave(Strict):
    """A new version: the MJML body, subject and preheader (Jinja), sample data and a note.

    ``text`` replaces the plain-text version; left out, the previous one is kept; ``null``
    removes it, so the text part is derived from the HTML. ``preheader`` likewise: left out,
    kept; ``null``, none. ``description`` and, when not given, ``sample``, ``min_items``,
    ``max_items`` and ``locales`` keep their previous values.
    """

    mjml: Text
    subject: HeaderLine
    preheader: HeaderLine | None = Field(
        default=None, description="Left out: the latest version's is kept; `null`: none."
    )
    sample: dict[str, Any] | None = None
    note: Line = ""
    text: Text | None = Field(
        default=None,
        description="The plain-text part (Jinja). Left out: the latest version's is kept; "
        "`null`: removed, so the text part is made from the HTML.",
    )
    min_items: int | None = Field(default=None, ge=0, le=MAX_MIN_ITEMS)
    max_items: int | None = Field(
        default=None, ge=1, le=MAX_MIN_ITEMS, description="The most items the layout shows."
    )
    locales: dict[Locale, LocaleSave | None] | None = Field(
        default=None,
        max_length=MAX_LOCALES,
        description='Locale variants to add or change (`{"fr": {"subject": ...}}`), or '
        '`null` to remove one (`{"fr": null}`); variants not named are kept.',
    )
    base: int | None = Field(
        default=None,
        ge=1,
        description="The version this change was made from: when someone saved a newer one "
        "since, the save is refused (409) rather than silently undoing their change.",
    )


class SavedVersion(BaseModel):
    """The number the saved version got (it is not published yet)."""

    version: int


class PublishIn(Strict):
    """Which version to publish."""

    version: int = Field(ge=1)


class DiffQuery(Strict):
    """Two versions to compare."""

    old: int = Field(ge=1, alias="from")
    new: int = Field(ge=1, alias="to")


class DiffOut(BaseModel):
    """A unified diff of every file between two versions."""

    name: str
    old: int
    new: int
    diff: str


class PreviewData(Strict):
    """What replaces the template's sample: the recipient, the items, or both."""

    recipient: dict[str, Any] | None = Field(
        default=None, description="What templates see as `recipient` (`locale` picks the variant)."
    )
    items: list[dict[str, Any]] | None = Field(
        default=None, max_length=100, description="What templates see as `items`."
    )

    @field_validator("recipient")
    @classmethod
    def _locale_is_text(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and not isinstance(value.get("locale", ""), str | None):
            raise ValueError("recipient.locale must be a string such as 'fr'")
        return value


class PreviewIn(Strict):
    """Preview a version (published by default) with sample data, given data or a real user."""

    version: int | None = Field(default=None, ge=1)
    data: PreviewData | None = Field(
        default=None, description="Replaces sample parts: `recipient`, `items`."
    )
    user_id: Identifier | None = Field(
        default=None, description="Preview with this customer's real recommendations."
    )


class PreviewOut(BaseModel):
    """The rendered preview."""

    subject: str
    preheader: str
    html: str
    text: str
