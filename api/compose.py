"""``POST /v1/compose`` and ``POST /v1/compose/batch``: decide, then render when it is a send.

A suppression or deferral is a normal 200 answer with its reasons. The batch endpoint reads an
NDJSON audience line by line and streams one answer line per recipient as soon as its chunk is
decided, so neither side holds the audience in memory; the client must read the answer while
it sends (curl does; see docs/api.md).
"""

from __future__ import annotations

import itertools
import logging
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from datetime import datetime
from functools import lru_cache
from typing import IO, Any, NamedTuple

import orjson
import pydantic
from flask import Blueprint, Response, current_app, request, stream_with_context
from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge

from api.auth import Role
from api.batch_pool import BatchPool, Chunk, Oversize, Stop
from api.campaigns import CampaignRegistry
from api.metrics import DECISIONS, RENDERS, STORE_ERRORS, StorePart
from api.problems import PROBLEM_TYPES, describe, too_large_detail
from api.routing import JSON, NDJSON, UTF8_BOM, operation, pydantic_problems
from api.schemas.common import ProblemDocument, ProblemError
from api.schemas.compose import (
    BatchLine,
    CampaignIn,
    ComposeRequest,
    ComposeResponse,
)
from api.services import services, settle_pending
from engine.compose import ComposeInput, Composition
from engine.render.diagnostics import RenderError
from engine.render.renderer import RenderedEmail
from fatigue.domain import Campaign, Candidate, ContentKind, Decision, Reason, Recipient
from fatigue.errors import (
    ConflictError,
    NotFoundError,
    Problem,
    RapportError,
    StoreError,
    ValidationError,
)
from fatigue.identity import ByIdentity, encoded_once

bp = Blueprint("compose", __name__)
log = logging.getLogger(__name__)
CHUNK = 128  # recipients scored through the model together in the batch endpoint
READ_BLOCK = 32 * 1024  # about 100 lines of a usual audience: under a chunk


@operation(
    bp,
    "/v1/compose",
    "POST",
    roles=(Role.PLATFORM,),
    body=ComposeRequest,
    response=ComposeResponse,
    summary="Decide whether to email one recipient, with what; render it when the answer is send.",
    extra_responses={409: "The idempotency key was already used for another campaign"},
)
def compose(body: ComposeRequest) -> Response:
    """Compose for one recipient."""
    settle_pending()
    composition = _composed(to_input(body))
    return Response(orjson.dumps(answer(composition, body.include_mime)), mimetype=JSON)


@operation(
    bp,
    "/v1/compose/batch",
    "POST",
    roles=(Role.PLATFORM,),
    body=ComposeRequest,
    response=BatchLine,
    request_media=NDJSON,
    response_media=NDJSON,
    summary="Compose for an NDJSON audience, streamed back as NDJSON, one line per recipient.",
)
def compose_batch() -> Response:
    """Stream one answer line per input line, in input order."""
    request.max_content_length = int(current_app.config["MAX_BATCH_BYTES"])
    limit = int(current_app.config["MAX_BATCH_RECIPIENTS"])
    chunks = _numbered_chunks(request.stream, limit)
    first = next(chunks, None)  # read before answering: an empty audience is a 422, not a 200
    if first is None:
        raise ValidationError(Problem(
            "the audience is empty: send one compose request per line (NDJSON)", field="body"
        ))  # fmt: skip
    chunks = itertools.chain([first], chunks)
    pool: BatchPool | None = services().get("batch_pool")
    lines = pool.answers(chunks, answer_chunk) if pool is not None else _answers(chunks)
    return Response(stream_with_context(lines), mimetype=NDJSON)


def to_input(body: ComposeRequest, registry: CampaignRegistry | None = None) -> ComposeInput:
    """Translate the request schema into the pipeline's domain values (422 if incomplete).

    ``registry`` is the app's campaign registry when the caller has it already (a batch chunk
    looks it up once: through Flask's context, about 1 us a line).
    """
    recipient = body.recipient
    if registry is None:
        registry = services().get("campaigns")
    campaigns, templates = _campaigns_of(body, registry)
    if body.include_mime and not current_app.config.get("SENDER"):
        # A message with no From breaks RFC 5322 and is refused by mail servers.
        raise ValidationError(Problem(
            "the raw message needs a From address: set RAPPORT_SENDER "
            "(e.g. 'Shop <news@shop.example>')", field="include_mime",
        ))  # fmt: skip
    # Built at once (``made``): one of each per batch line.
    return ComposeInput.made(
        recipient=Recipient.made(
            user_id=recipient.user_id,
            email=recipient.email or "",
            first_name=recipient.first_name,
            locale=recipient.locale,
            timezone=recipient.timezone or "",
            attributes=dict(recipient.attributes),
        ),
        campaigns=campaigns,
        templates=dict(templates),
        idempotency_key=body.idempotency_key,
        dry_run=body.dry_run,
        items=body.items,
        deferrable=body.deferrable,
        data=body.data,
    )


class _Resolved(NamedTuple):
    """A request's campaigns completed from one registry, as the pipeline takes them."""

    registry: CampaignRegistry
    campaigns: tuple[Campaign, ...]
    templates: dict[str, str]  # campaign id -> template name


#: Campaign sets kept before the cache starts again: a batch names the same few again and again.
RESOLVED_LIMIT = 1024
_resolved: dict[tuple[Any, ...], _Resolved] = {}


def _campaigns_of(
    body: ComposeRequest, registry: CampaignRegistry
) -> tuple[tuple[Campaign, ...], dict[str, str]]:
    """Return the pipeline's campaigns and templates for ``body``, resolved once per set.

    A batch's lines name the same campaigns line after line; resolving them through the
    registry and building each ``Campaign`` cost about 4 us a line. The key holds everything
    resolution reads (each campaign's values and which fields the request gave, the default
    template) and the registry by identity: a registry loaded again is resolved again.
    Problems are never kept: such a request is resolved, and refused, each time.
    """
    single = body.campaign
    key = (
        id(registry),
        body.template,
        None if single is None else _campaign_key(single),
        *map(_campaign_key, body.campaigns),
    )
    found = _resolved.get(key)
    if found is None or found.registry is not registry:
        campaigns = resolved_campaigns(body, registry)
        found = _Resolved(
            registry,
            tuple(
                Campaign(c.id, c.category, ContentKind(c.kind.value), c.priority) for c in campaigns
            ),
            {c.id: str(c.template or body.template) for c in campaigns},
        )
        if len(_resolved) >= RESOLVED_LIMIT:
            _resolved.clear()
        _resolved[key] = found
    return found.campaigns, found.templates


def _campaign_key(campaign: CampaignIn) -> tuple[Any, ...]:
    return (
        campaign.id,
        campaign.category,
        campaign.kind,
        campaign.priority,
        campaign.template,
        frozenset(campaign.model_fields_set),
    )


def resolved_campaigns(body: ComposeRequest, registry: CampaignRegistry) -> list[CampaignIn]:
    """Complete each campaign from the registry; every one must end up with a template."""
    named = [("campaign", body.campaign)] if body.campaign is not None else [
        (f"campaigns.{n}", campaign) for n, campaign in enumerate(body.campaigns)
    ]  # fmt: skip
    campaigns: list[CampaignIn] = []
    problems: list[Problem] = []
    for where, campaign in named:  # every campaign checked, so every problem is named at once
        try:
            resolved = registry.resolve(campaign, where)
        except ValidationError as exc:
            problems.extend(exc.problems)
            continue
        campaigns.append(resolved)
        if resolved.template is None and body.template is None:
            message = f"campaign {resolved.id!r} has no template (set 'template')"
            problems.append(Problem(message, field=f"{where}.template"))
    if problems:
        raise ValidationError(problems)
    return campaigns


def answer(composition: Composition, include_mime: bool = False) -> dict[str, Any]:
    """Shape a composition as ``ComposeResponse`` does, counting it in the metrics.

    Built as plain data and encoded by orjson: building the pydantic models only to serialise
    them cost more than rendering the email. tests/api/test_api_compose.py holds the two
    shapes equal; the models stay the documented schema.
    """
    _count([composition])
    email = composition.email
    rendered = None if email is None else _email_answer(email, include_mime)
    return {"decision": decision_answer(composition.decision), "email": rendered}


def _count(compositions: Sequence[Composition]) -> None:
    """Count decisions and renders in the metrics, once per set of labels.

    A batch chunk's decisions mostly share their labels, and every increment takes a lock and
    writes the multiprocess metrics file: per recipient, that was a thirtieth of a batch.
    """
    decided: Counter[tuple[str, str]] = Counter()
    rendered: Counter[str] = Counter()
    for composition in compositions:
        decision = composition.decision
        deciding = decision.deciding
        decided[decision.action._value_, deciding.rule if deciding else "none"] += 1
        if composition.email is not None:
            rendered[composition.email.template] += 1
    for (action, rule), count in decided.items():
        DECISIONS.labels(action, rule).inc(count)
        if rule == "store":  # on_store_error answered instead
            STORE_ERRORS.labels(StorePart.STATE_STORE).inc(count)
    for template, count in rendered.items():
        RENDERS.labels(template, "ok").inc(count)


def _email_answer(email: RenderedEmail, include_mime: bool) -> dict[str, Any]:
    """``EmailOut`` as plain data: the batch line's email with its two nullable fields."""
    answer = _email_line(email, include_mime)
    mime = answer.pop("mime", None)  # put back last, after the version: EmailOut's order
    answer["template_version"] = email.version
    answer["mime"] = mime
    return answer


def decision_answer(
    decision: Decision, shape: Callable[[Reason], dict[str, Any]] | None = None
) -> dict[str, Any]:
    """Return ``decision`` as ``DecisionOut`` shapes it (each reason through ``shape``)."""
    shape = shape or _reason
    return {
        "id": decision.decision_id, "action": decision.action.value,
        "user_id": decision.user_id, "campaign_id": decision.campaign,
        "send_at": _timestamp(decision.send_at), "decided_at": _timestamp(decision.decided_at),
        "dry_run": decision.dry_run,
        "reasons": [shape(reason) for reason in decision.reasons],
        "items": [
            {"item_id": item.item_id, "relevance": item.relevance, "source": item.source}
            for item in decision.items
        ],
    }  # fmt: skip


# Reasons are immutable and most are shared between decisions (their builders are cached), so
# each is shaped once. The dicts are only read (encoded), never changed.
@lru_cache(maxsize=4096)
def _reason(reason: Reason) -> dict[str, Any]:
    return {
        "rule": reason.rule, "passed": reason.passed, "detail": reason.detail,
        "counter": _number(reason.counter), "limit": _number(reason.limit),
        "deciding": reason.deciding,
    }  # fmt: skip


def _number(value: float | None) -> float | None:
    return None if value is None else float(value)  # ReasonOut declares floats


def _timestamp(moment: datetime | None) -> str | None:
    """ISO 8601 as pydantic writes it: ``Z`` for UTC."""
    return None if moment is None else _iso_z(moment)


def _pydantic_iso(moment: datetime) -> str:
    text = moment.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


# A chunk's decisions share the moment they were made at: one datetime object, written once.
_iso_z: Callable[[datetime], str] = ByIdentity(_pydantic_iso)


def _answers(chunks: Iterator[Chunk]) -> Iterator[bytes]:
    # A chunk's lines are decided together, so they go out together: one write (and one
    # chunked-encoding frame) per chunk rather than per line, as the helpers' answers do.
    for chunk in chunks:
        yield b"".join(answer_chunk(chunk))


def _numbered_chunks(stream: IO[bytes], limit: int) -> Iterator[Chunk]:
    """Cut the audience into chunks of numbered lines (blank ones skipped but counted).

    Past ``limit`` recipients, or past the byte limit of a chunked body, the last chunk ends
    with a ``Stop`` saying which.
    """
    chunk: Chunk = []
    seen = number = 0
    longest = int(current_app.config["MAX_CONTENT_LENGTH"])  # a line is one compose request
    try:
        for number, raw in enumerate(_read_lines(stream, longest), start=1):
            if not isinstance(raw, Oversize) and not raw.strip():
                continue
            seen += 1
            if seen > limit:
                chunk.append((number, Stop(f"over {limit} recipients")))
                break
            chunk.append((number, raw))
            if len(chunk) >= CHUNK:
                yield chunk
                chunk = []
    except RequestEntityTooLarge:  # a chunked body past MAX_BATCH_BYTES, found while streaming
        chunk.append((number + 1, Stop(too_large_detail())))
    except ClientDisconnected:  # the upload broke off: what arrived is answered, if anyone reads
        log.info("a batch upload ended early after line %d (the client went away)", number)
    if chunk:
        yield chunk


def answer_chunk(chunk: Chunk) -> Iterator[bytes]:
    """Parse one chunk's lines and yield their answers as NDJSON, in input order."""
    parsed: list[tuple[int, Prepared | bytes]] = []  # a request ready to compose, or its answer
    registry: CampaignRegistry = services().get("campaigns")
    for number, raw in chunk:
        if isinstance(raw, Stop | Oversize):
            parsed.append((number, _problem_line(number, "too-large", raw.detail)))
            continue
        try:
            # ``model_validate_json(raw, strict=True)`` without its Python frame around the
            # validator: it only checks its by_alias/by_name arguments, which are not given.
            body = ComposeRequest.__pydantic_validator__.validate_json(raw, strict=True)
        except pydantic.ValidationError as exc:
            parsed.append((number, _invalid_line(number, exc, _user_id_of(raw))))
        else:
            parsed.append((number, _checked(number, body, registry)))
    yield from _compose_chunk(parsed)


def _read_lines(
    stream: IO[bytes], longest: int, block: int = READ_BLOCK
) -> Iterator[bytes | Oversize]:
    """Split the body into lines, reading blocks (iterating the stream reads tiny ones).

    A block is read whole before any of its lines is answered, so it is kept small enough that
    a slow producer sees answers after about one chunk of lines. A line longer than ``longest``
    is dropped as it streams past (an ``Oversize`` in its place): kept, each block rescanned it.
    """
    pending, skipping = b"", False
    data = stream.read(block).removeprefix(UTF8_BOM)  # editors save NDJSON with one
    while data:
        if skipping:  # inside an oversize line: drop bytes until its end
            end = data.find(b"\n")
            if end < 0:
                data = stream.read(block)
                continue
            data, skipping = data[end + 1 :], False
        pending += data
        *lines, pending = pending.split(b"\n")
        yield from lines
        if len(pending) > longest:
            yield Oversize(f"a line longer than {longest:,} bytes (one compose request's limit)")
            pending, skipping = b"", True
        data = stream.read(block)
    if pending and not skipping:
        yield pending


def _checked(number: int, body: ComposeRequest, registry: CampaignRegistry) -> Prepared | bytes:
    """Return ``body`` with its pipeline input, or its error line (the chunk goes on)."""
    try:
        return Prepared(body, to_input(body, registry))
    except ValidationError as exc:
        return _validation_line(number, body, exc)


def _compose_chunk(chunk: list[tuple[int, Prepared | bytes]]) -> Iterator[bytes]:
    """Compose a chunk's valid lines together; if that fails, isolate failures one by one."""
    valid = [(number, entry) for number, entry in chunk if isinstance(entry, Prepared)]
    answers: dict[int, bytes] = {}
    try:
        settle_pending()
        results = services().get("composer").compose_many([e.input for _, e in valid])
        for (number, entry), composition in zip(valid, results, strict=True):
            answers[number] = _line(number, entry.body, composition)
    except Exception:  # isolate whoever failed; the others' decisions replay by idempotency
        answers = {number: _one_line(number, entry) for number, entry in valid}
    else:
        _count(results)
    for number, answer_or_entry in chunk:
        yield answer_or_entry if isinstance(answer_or_entry, bytes) else answers[number]


class Prepared(NamedTuple):
    """A batch line that parsed and checked out: its request and the pipeline's input."""

    body: ComposeRequest
    input: ComposeInput


def _one_line(number: int, entry: Prepared) -> bytes:
    """Compose one recipient of a failed chunk, turning its own failure into an error line."""
    body = entry.body
    try:
        composition = _composed(entry.input)
    except ValidationError as exc:
        return _validation_line(number, body, exc)
    except ConflictError as exc:  # an idempotency key reused for another request
        return _problem_line(number, "conflict", str(exc), body.recipient.user_id)
    except NotFoundError as exc:
        return _problem_line(number, "not-found", str(exc), body.recipient.user_id)
    except StoreError as exc:
        return _problem_line(number, "unavailable", str(exc), body.recipient.user_id)
    except RapportError as exc:
        return _problem_line(number, "http-error", str(exc), body.recipient.user_id)
    except Exception:  # a bug must cost one line of the stream, not the whole stream
        log.exception("composing line %d of a batch failed", number)
        return _problem_line(number, "internal", "internal error; it has been logged",
                             body.recipient.user_id)  # fmt: skip
    _count([composition])
    return _line(number, body, composition)


def _composed(request: ComposeInput) -> Composition:
    """Compose one recipient, counting a failed render against its template."""
    try:
        result: Composition = services().get("composer").compose(request)
    except RenderError as exc:
        RENDERS.labels(exc.template or "unknown", "failed").inc()
        raise
    return result


def _line(number: int, body: ComposeRequest, composition: Composition) -> bytes:
    """One ``BatchLine`` as ``model_dump_json(exclude_none=True)`` writes it: no nulls."""
    line: dict[str, Any] = {
        "line": number, "user_id": body.recipient.user_id,
        "decision": _decision_line(composition.decision),
    }  # fmt: skip
    email = composition.email
    if email is not None:
        line["email"] = _email_line(email, body.include_mime)
    return orjson.dumps(line, option=orjson.OPT_APPEND_NEWLINE)  # no second copy of 22 KB


def _email_line(email: RenderedEmail, include_mime: bool) -> dict[str, Any]:
    """``EmailOut`` without its nulls, built directly (a batch line per send).

    Only the template version and the raw message can be null; ``_email_answer`` adds them.
    """
    answer: dict[str, Any] = {
        "subject": email.subject, "preheader": email.preheader, "html": email.html,
        "text": email.text, "headers": dict(email.headers), "template": email.template,
    }  # fmt: skip
    if email.version is not None:
        answer["template_version"] = email.version
    if include_mime:
        answer["mime"] = email.mime_bytes.decode("utf-8", "replace")
    return answer


def _decision_line(decision: Decision) -> dict[str, Any]:
    """``decision_answer`` without its nulls, built directly (a batch line per recipient).

    Reasons and item lists are shared between a chunk's decisions (their builders keep them),
    so each is encoded once, as an orjson fragment: the same bytes as encoding it in place.
    """
    # ``_value_``: the member's value as it is stored; ``.value`` is a Python-level property of
    # the enum class, read three times per batch recipient (here, metrics, decision log).
    answer: dict[str, Any] = {"id": decision.decision_id, "action": decision.action._value_,
                              "user_id": decision.user_id}  # fmt: skip
    if decision.campaign is not None:
        answer["campaign_id"] = decision.campaign
    if decision.send_at is not None:
        answer["send_at"] = _iso_z(decision.send_at)
    answer["decided_at"] = _iso_z(decision.decided_at)
    answer["dry_run"] = decision.dry_run
    answer["reasons"] = _reason_line.many(decision.reasons)
    answer["items"] = _items_line(decision.items)
    return answer


def _present(data: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in data.items() if value is not None}


_reason_line: ByIdentity[Reason, orjson.Fragment] = encoded_once(
    lambda reason: _present(_reason(reason))
)
_items_line: ByIdentity[tuple[Candidate, ...], orjson.Fragment] = encoded_once(
    lambda items: [
        {"item_id": item.item_id, "relevance": item.relevance, "source": item.source}
        for item in items
    ]
)


def _validation_line(number: int, body: ComposeRequest, exc: ValidationError) -> bytes:
    problems = [replace(problem, source="line", line=number) for problem in exc.problems]
    errors = [ProblemError(**vars(problem)) for problem in problems]
    detail = "; ".join(describe(problem) for problem in problems)
    return _problem_line(number, "validation", detail, body.recipient.user_id, errors)


def _user_id_of(raw: bytes) -> str | None:
    """Return the user id a line that failed validation names, if it names one."""
    try:
        recipient = orjson.loads(raw).get("recipient")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    user_id = recipient.get("user_id") if isinstance(recipient, dict) else None
    # Echoed as sent, so the platform can match it, but never more than an id's length.
    return user_id if isinstance(user_id, str) and 0 < len(user_id) <= 200 else None


def _invalid_line(number: int, exc: pydantic.ValidationError, user_id: str | None) -> bytes:
    problems = pydantic_problems(exc, "line", number)
    errors = [ProblemError(**vars(problem)) for problem in problems]
    slug = (
        "malformed-request"
        if any(e["type"] == "json_invalid" for e in exc.errors())
        else ("validation")
    )
    return _problem_line(number, slug, "; ".join(str(p) for p in problems), user_id, errors)


def _problem_line(
    number: int,
    slug: str,
    detail: str,
    user_id: str | None = None,
    errors: list[ProblemError] | None = None,
) -> bytes:
    kind = PROBLEM_TYPES[slug]
    problem = ProblemDocument(
        type=kind.uri, title=kind.title, status=kind.status, detail=detail, errors=errors
    )
    line = BatchLine(line=number, user_id=user_id, error=problem)
    return line.model_dump_json(exclude_none=True).encode() + b"\n"
