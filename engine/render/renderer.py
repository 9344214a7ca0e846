"""Render a template for one recipient: subject, preheader, HTML, text and the MIME message.

This is the API the composition pipeline calls::

    renderer = Renderer(library, LinkSigner(secret), LinkConfig("https://mail.example.com"))
    email = renderer.render("picked-for-you", RenderContext(recipient, items, campaign))

Only Jinja runs per recipient; MJML was compiled once for the template version.
"""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from email.utils import parseaddr
from functools import cached_property, lru_cache, partial
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from engine.catalog import CatalogItem
from engine.render import mime
from engine.render.diagnostics import RenderError, problem_from
from engine.render.library import META_FILE, TemplateLibrary
from engine.render.links import (
    LONGEST_KEPT_LINK,
    Campaign,
    LinkConfig,
    LinkSigner,
    add_query,
    safe_url,
)
from engine.render.prepared import PreparedCache, PreparedTemplate, PreparedVariant
from engine.render.sandbox import RenderBudget, budget, render_text
from engine.render.text import html_to_text
from engine.render.validate import in_template_toml
from fatigue.clock import Clock, utc_now
from fatigue.errors import NotFoundError, Problem, ValidationError
from fatigue.identity import filled

log = logging.getLogger(__name__)
SAMPLE_CAMPAIGN = Campaign("preview", "Preview")
#: What every template sees from the renderer itself; extra variables may not replace them.
RESERVED_VARIABLES = frozenset(
    {"recipient", "items", "campaign", "unsubscribe_url", "preferences_url", "decision_id",
     "preheader"}
)  # fmt: skip
# What a catalog entry gives templates, blank: the fields of an item known by its id alone.
ITEM_DEFAULTS: dict[str, Any] = {
    key: value for key, value in CatalogItem("").as_template_dict().items() if key != "item_id"
}


@dataclass(frozen=True)
class RenderContext:
    """Who the email is for, what it shows and for which campaign, plus extra variables."""

    recipient: Mapping[str, Any]
    items: Sequence[Mapping[str, Any]]
    campaign: Campaign
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RenderedEmail:
    """One recipient's email, ready to hand to a sending platform."""

    template: str
    version: int | None
    locale: str
    subject: str
    preheader: str
    html: str
    text: str
    headers: Mapping[str, str]
    # Most callers never ask for the raw message, and writing it costs a sixth of a render:
    # it is written on first use, under the headers (and boundary) already returned.
    message: Callable[[], bytes] = field(repr=False, compare=False)

    @classmethod
    def made(
        cls,
        template: str,
        version: int | None,
        locale: str,
        subject: str,
        preheader: str,
        html: str,
        text: str,
        headers: Mapping[str, str],
        message: Callable[[], bytes],
    ) -> RenderedEmail:
        """Build an email with every field given: the same object as ``RenderedEmail(...)`` makes.

        As ``MessageParts.made``: one per email, its ``__dict__`` filled at once instead of
        nine ``object.__setattr__`` calls.
        """
        return filled(
            cls,
            dict(
                template=template, version=version, locale=locale, subject=subject,
                preheader=preheader, html=html, text=text, headers=headers, message=message,
            ),
        )  # fmt: skip

    @cached_property
    def mime_bytes(self) -> bytes:
        """Return the serialised ``multipart/alternative`` message."""
        return self.message()


class Renderer:
    """Renders templates from a library for recipients, with signed links and UTM tags."""

    def __init__(
        self,
        library: TemplateLibrary,
        signer: LinkSigner,
        links: LinkConfig,
        *,
        clock: Clock = utc_now,
        sender: str | None = None,
        cache: PreparedCache | None = None,
        limits: RenderBudget | None = None,
    ) -> None:
        self.library = library
        self.signer = signer
        self.links = links
        self.clock = clock
        self.sender = sender
        self.cache = cache if cache is not None else PreparedCache()  # an empty one is falsy
        self.limits = limits or RenderBudget()
        # Message-IDs name the sender's domain, else the host links point at.
        address = parseaddr(sender or "")[1]
        self._domain = (
            address.rpartition("@")[2] or urlsplit(links.base_url).hostname or "localhost"
        )

    def with_signer(self, signer: LinkSigner) -> Renderer:
        """Return this renderer signing links with ``signer`` (compiled templates shared)."""
        other = copy.copy(self)
        other.signer = signer
        return other

    def warm(self) -> None:
        """Compile the published templates now, so no email waits for MJML and its imports.

        Compiling one costs about a third of a second in a fresh process (most of it importing
        the MJML package), paid otherwise by the first recipient of every worker and helper.
        Templates saved but never published are skipped; one that fails is only logged (its
        own requests report the failure, as before). No more are compiled than the cache keeps.
        """
        compiled = 0
        for name in self.library.names():
            if compiled >= self.cache.size:
                break
            try:
                self.prepared(name)
            except NotFoundError:
                continue  # not published: nothing serves it yet
            except Exception as exc:  # one bad template must not stop a server
                log.warning("template %r not compiled ahead of traffic: %s", name, exc)
                continue
            compiled += 1

    def prepared(self, name: str, version: int | None = None) -> PreparedTemplate:
        """Return the compiled template ``name`` (published version unless ``version``)."""
        return self.cache.get(self.library.source(name, version))

    def render(
        self, template_name: str, context: RenderContext, version: int | None = None
    ) -> RenderedEmail:
        """Render ``template_name`` for ``context``; raise ``RenderError`` if the template fails."""
        prepared = self.prepared(template_name, version)
        return self.render_prepared(prepared, context)

    def preview(
        self,
        template_name: str,
        version: int | None = None,
        *,
        items: Sequence[Mapping[str, Any]] | None = None,
        recipient: Mapping[str, Any] | None = None,
    ) -> RenderedEmail:
        """Render with the template's sample data, or with supplied items / recipient."""
        prepared = self.prepared(template_name, version)
        return self.render_prepared(prepared, sample_context(prepared, items, recipient))

    def render_prepared(self, prepared: PreparedTemplate, context: RenderContext) -> RenderedEmail:
        """Render an already prepared template for ``context``."""
        most = prepared.template.max_items
        if most is not None and len(context.items) > most:  # a preview's picks, say
            context = replace(context, items=context.items[:most])
        recipient = dict(context.recipient)
        variant = prepared.variant(recipient.get("locale"))
        variables = self.variables(context)
        with budget(self.limits.fresh()):
            subject, preheader, html, text = _render_parts(prepared, variant, variables)
        version = prepared.version or 0
        parts = mime.MessageParts.made(
            subject=subject,
            text=text,
            html=html,
            unsubscribe_url=variables["unsubscribe_url"],
            to=recipient.get("email"),
            sender=self.sender,
            unsubscribe_mailto=self.links.unsubscribe_mailto,
            date=self.clock(),
            extra_headers=(("X-Rapport-Template", f"{prepared.template.name}/{version}"),),
            message_id=mime.message_id(context.extra.get("decision_id"), self._domain),
        )
        headers, boundary = mime.envelope(parts)
        return RenderedEmail.made(
            template=prepared.template.name,
            version=prepared.version,
            locale=variant.locale,
            subject=headers["Subject"],  # the subject on one line, as the header has it
            preheader=preheader,
            html=html,
            text=text,
            headers=MappingProxyType(headers),
            message=partial(mime.serialise, parts, dict(headers), boundary),
        )

    def variables(self, context: RenderContext) -> dict[str, Any]:
        """Return the variables a template sees for ``context`` (links signed and tagged)."""
        user_id = str(context.recipient.get("user_id", ""))
        campaign = context.campaign
        utm = campaign.utm()
        unsubscribe, preferences = self.signer.account_tokens(user_id, campaign.campaign_id)
        variables: dict[str, Any] = {
            "recipient": dict(context.recipient),
            "items": [self.item_variables(item, user_id, campaign, utm) for item in context.items],
            "campaign": campaign.as_template_dict(),
            "unsubscribe_url": self.links.unsubscribe_url(unsubscribe),
            "preferences_url": self.links.preferences_url(preferences),
        }
        variables.update(context.extra)
        return variables

    def item_variables(
        self,
        item: Mapping[str, Any],
        user_id: str,
        campaign: Campaign,
        utm: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Return one item as templates see it: UTM-tagged, click-tracked when configured."""
        if not isinstance(item, Mapping):
            raise ValidationError(Problem("each item must be a mapping", field="items"))
        # Every catalog field, blank unless given: an item the catalog barely describes still
        # renders instead of failing the whole email on ``item.image_url``.
        values = {**ITEM_DEFAULTS, **item}
        values["image_url"] = safe_url(values["image_url"])
        if not isinstance(values["url"], str):
            return values  # not text: left as it is, as safe_url leaves it
        tagged = _tagged_link(values["url"], utm or campaign.utm())
        if tagged and self.links.track_clicks:  # "" for a link safe_url refused
            token = self.signer.click_token(
                user_id, campaign.campaign_id, tagged, str(values.get("item_id", ""))
            )
            tagged = self.links.click_url(token)
        values["url"] = tagged
        return values


def _tagged_link(url: str, utm: dict[str, str]) -> str:
    """Return a catalog URL made safe and tagged with the campaign's UTM ("" if refused)."""
    if len(url) > LONGEST_KEPT_LINK:  # worked out each time, never kept
        return _tagged_link_of.__wrapped__(url, tuple(utm.items()))
    return _tagged_link_of(url, tuple(utm.items()))


# The same item's link is tagged for the same campaign in email after email: each pair is
# worked out once, about 1.5 us an email. Keyed by the URL and the parameters alone.
@lru_cache(maxsize=8192)
def _tagged_link_of(url: str, utm: tuple[tuple[str, str], ...]) -> str:
    safe = safe_url(url)
    return add_query(safe, dict(utm)) if safe else safe  # no link: nothing to tag


def _render_parts(
    prepared: PreparedTemplate, variant: PreparedVariant, variables: dict[str, Any]
) -> tuple[str, str, str, str]:
    name = prepared.template.name
    part = "subject"
    try:
        subject = render_text(variant.subject, variables)
        part = "preheader"
        preheader = " ".join(render_text(variant.preheader, variables).split())
        variables["preheader"] = preheader
        part = "html"
        html = render_text(variant.html, variables)
        part = "text"
        text = render_text(variant.text, variables) if variant.text else html_to_text(html)
    except MemoryError:
        raise
    except Exception as exc:  # any template runtime failure, limits (SecurityError) included
        parts = {"subject": variant.subject, "preheader": variant.preheader}
        parts.update({"html": variant.html, "text": variant.text or variant.html})
        filename = parts[part].filename or name
        problem = problem_from(exc, filename or name, field=part)
        if part == "html" or (part == "text" and variant.text is None):
            problem = _in_the_mjml(problem, prepared, variant)
        elif part in {"subject", "preheader"}:
            problem = _in_the_metadata(problem, prepared, variant, part)
        raise RenderError([problem], template=name) from exc
    return subject, preheader, html, text


_JINJA = re.compile(r"\{\{.*?\}\}|\{%.*?%\}")


def _in_the_mjml(problem: Problem, prepared: PreparedTemplate, variant: PreparedVariant) -> Problem:
    """Point a failure in the compiled HTML at the marketer's MJML line instead.

    MJML rewrites the layout, so the compiled file's line means nothing to whoever wrote the
    template; the Jinja at that line is still there, word for word, in the MJML.
    """
    if problem.line is None:
        return problem
    compiled = variant.html_source.splitlines()
    if not 0 < problem.line <= len(compiled):
        return problem
    mjml_file = prepared.template.variant(variant.locale).mjml_file
    mjml = prepared.template.files.get(mjml_file, "").splitlines()
    for snippet in _JINJA.findall(compiled[problem.line - 1]):
        found = next((n for n, line in enumerate(mjml, start=1) if snippet in line), None)
        if found is not None:
            source = f"{prepared.template.name}/{mjml_file}"
            return replace(problem, source=source, line=found)
    return problem


def _in_the_metadata(
    problem: Problem, prepared: PreparedTemplate, variant: PreparedVariant, part: str
) -> Problem:
    """Point a failed subject or preheader at its line in template.toml, named by its key.

    Source, line and field (``subject``, ``locales.fr.preheader``) are the ones validation on
    save gives, so the studio shows both alike.
    """
    source = prepared.template.variant(variant.locale)
    key = source.subject_key if part == "subject" else source.preheader_key
    meta = prepared.template.files.get(META_FILE, "")
    (placed,) = in_template_toml([problem], key, meta)
    return placed


def sample_context(
    prepared: PreparedTemplate,
    items: Sequence[Mapping[str, Any]] | None = None,
    recipient: Mapping[str, Any] | None = None,
) -> RenderContext:
    """Return a context built from the template's sample data, optionally overridden."""
    sample = dict(prepared.template.sample)
    sample_campaign = sample.pop("campaign", {})
    campaign = Campaign(
        str(sample_campaign.get("id", SAMPLE_CAMPAIGN.campaign_id)),
        str(sample_campaign.get("name", SAMPLE_CAMPAIGN.name)),
    )
    return RenderContext(
        recipient=recipient if recipient is not None else sample.pop("recipient", {}),
        items=items if items is not None else sample.pop("items", []),
        campaign=campaign,
        extra={k: v for k, v in sample.items() if k not in {"recipient", "items"}},
    )
