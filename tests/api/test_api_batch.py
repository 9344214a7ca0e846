"""``POST /v1/compose/batch``: NDJSON in, NDJSON out, one answer line per input line, in order."""

from __future__ import annotations

import io
import json
import logging

from .conftest import ON_EVERY_STORE, publish_subject_failing_for_three_items

pytestmark = ON_EVERY_STORE


def ndjson(lines) -> str:
    return "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)


def post_batch(client, auth, lines):
    return client.post(
        "/v1/compose/batch",
        data=ndjson(lines),
        headers={**auth("platform"), "Content-Type": "application/x-ndjson"},
    )


def answers(response) -> list[dict]:
    return [json.loads(line) for line in response.text.splitlines()]


def test_every_line_answered_in_order(client, auth, compose_request):
    users = [str(12347 + n) for n in range(300)]  # more than one chunk
    response = post_batch(client, auth, [compose_request(u, f"b-{u}") for u in users])
    assert response.status_code == 200
    assert response.mimetype == "application/x-ndjson"
    lines = answers(response)
    assert [line["line"] for line in lines] == list(range(1, 301))
    assert [line["user_id"] for line in lines] == users
    actions = {line["decision"]["action"] for line in lines}
    assert "send" in actions
    for line in lines:
        assert ("email" in line) == (line["decision"]["action"] == "send")


def test_bad_lines_are_answered_where_they_stand(client, auth, compose_request):
    lines = [
        compose_request("12347", "a"),
        "{not json",
        {**compose_request("12348", "b"), "template": "missing-template"},
        {"recipient": {"user_id": "x"}},
        "",
        compose_request("12349", "c"),
    ]
    got = answers(post_batch(client, auth, lines))
    assert [line["line"] for line in got] == [1, 2, 3, 4, 6]
    assert got[0]["decision"]["user_id"] == "12347"
    assert got[1]["error"]["type"] == "/problems/malformed-request"
    assert got[1]["error"]["errors"][0]["line"] == 2
    assert got[1]["error"]["detail"].startswith("line:2: Invalid JSON: ")
    assert "at column" in got[1]["error"]["detail"] and "at line" not in got[1]["error"]["detail"]
    assert got[2]["error"]["type"] == "/problems/not-found" and got[2]["user_id"] == "12348"
    assert got[3]["error"]["type"] == "/problems/validation" and got[3]["user_id"] == "x"
    assert {e["field"] for e in got[3]["error"]["errors"]} >= {"idempotency_key"}
    assert got[4]["decision"]["user_id"] == "12349"


def test_an_empty_audience_is_refused_not_answered_with_nothing(client, auth):
    for body in ("", "\n\n", "\ufeff\n"):
        response = client.post(
            "/v1/compose/batch",
            data=body,
            headers={**auth("platform"), "Content-Type": "application/x-ndjson"},
        )
        assert response.status_code == 422, body
        assert response.json["detail"].startswith("body: the audience is empty"), response.json


def test_a_key_reused_for_another_request_is_a_409_line(client, auth, compose_request):
    first = compose_request("12350", "dup")
    assert post_batch(client, auth, [first]).status_code == 200
    other = compose_request("12350", "dup")
    other["recipient"]["email"] = "someone.else@example.com"
    [got] = answers(post_batch(client, auth, [other]))
    assert got["error"]["type"] == "/problems/conflict" and got["error"]["status"] == 409
    assert got["user_id"] == "12350" and "base" not in got["error"]["detail"]


def test_a_line_failing_after_parsing_names_its_line_and_field(client, auth, compose_request):
    untemplated = compose_request("12350", "d")
    del untemplated["template"]  # and the campaign names none either
    [got] = answers(post_batch(client, auth, [untemplated]))
    error = got["error"]
    assert error["type"] == "/problems/validation" and got["line"] == 1
    assert error["detail"].startswith("line:1 campaign.template: ")
    assert [(e["line"], e["field"]) for e in error["errors"]] == [(1, "campaign.template")]


def test_a_byte_order_mark_before_the_first_line_is_skipped(client, auth, compose_request):
    body = "\ufeff" + ndjson([compose_request("12347", "bom-1"), compose_request("12348", "bom-2")])
    response = client.post(
        "/v1/compose/batch",
        data=body.encode("utf-8"),
        headers={**auth("platform"), "Content-Type": "application/x-ndjson"},
    )
    assert [line["decision"]["user_id"] for line in answers(response)] == ["12347", "12348"]
    single = client.post(
        "/v1/compose",
        data=("\ufeff" + json.dumps(compose_request("12349", "bom-3"))).encode("utf-8"),
        headers={**auth("platform"), "Content-Type": "application/json"},
    )
    assert single.status_code == 200


def test_batch_decisions_count_like_single_ones(client, auth, compose_request):
    first = answers(post_batch(client, auth, [compose_request("12347", "one")]))[0]
    assert first["decision"]["action"] == "send"
    retry = answers(post_batch(client, auth, [compose_request("12347", "one")]))[0]
    assert retry["decision"]["id"] == first["decision"]["id"]
    later = answers(post_batch(client, auth, [compose_request("12347", "two")]))[0]
    assert later["decision"]["action"] == "defer"


def _totals(client) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name in {"rapport_decisions_total", "rapport_renders_total"}:
                key = sample.name + sample.labels.get("outcome", "")
                totals[key] = totals.get(key, 0.0) + sample.value
    return totals


def test_metrics_count_every_line_of_a_batch_once(client, auth, compose_request):
    """Counted per chunk, not per line: the totals must still add up to the lines answered."""
    users = [str(12347 + n) for n in range(150)]  # two chunks
    lines = [compose_request(u, f"m-{u}") for u in users] + ["{not json"]
    before = _totals(client)
    got = answers(post_batch(client, auth, lines))
    after = _totals(client)
    sends = sum(1 for line in got if line.get("decision", {}).get("action") == "send")
    decided = after["rapport_decisions_total"] - before.get("rapport_decisions_total", 0.0)
    rendered = after["rapport_renders_totalok"] - before.get("rapport_renders_totalok", 0.0)
    assert (decided, rendered) == (150, sends) and sends > 0


def test_metrics_count_a_chunk_composed_one_by_one_once(app, client, auth, compose_request,
                                                       monkeypatch):  # fmt: skip
    """When a chunk fails together, its lines are composed (and counted) one at a time."""
    composer = app.extensions["rapport"].get("composer")
    together = composer.compose_many

    def failing_together(requests):
        if len(requests) > 1:
            raise RuntimeError("a bug in composing several at once")
        return together(requests)

    monkeypatch.setattr(composer, "compose_many", failing_together)
    users = [str(12347 + n) for n in range(20)]
    before = _totals(client)
    got = answers(post_batch(client, auth, [compose_request(u, f"f-{u}") for u in users]))
    after = _totals(client)
    assert [line["line"] for line in got] == list(range(1, 21))
    sends = sum(1 for line in got if line.get("decision", {}).get("action") == "send")
    decided = after["rapport_decisions_total"] - before.get("rapport_decisions_total", 0.0)
    rendered = after["rapport_renders_totalok"] - before.get("rapport_renders_totalok", 0.0)
    assert (decided, rendered) == (20, sends) and sends > 0


def test_oversize_audience_stops_with_a_problem_line(client, auth, compose_request, app):
    app.config["MAX_BATCH_RECIPIENTS"] = 3
    lines = [compose_request(str(12347 + n), f"o-{n}") for n in range(5)]
    got = answers(post_batch(client, auth, lines))
    assert len(got) == 4
    assert got[-1]["error"]["type"] == "/problems/too-large" and got[-1]["line"] == 4


def test_batch_body_limit(client, auth, compose_request, app):
    app.config["MAX_BATCH_BYTES"] = 2000
    lines = [compose_request(str(12347 + n), f"l-{n}") for n in range(20)]
    response = post_batch(client, auth, lines)
    assert response.status_code == 413
    assert response.content_type == "application/problem+json"
    assert response.json["detail"] == "the request body is over the limit of 2,000 bytes"


def test_a_chunked_audience_past_the_byte_limit_ends_with_a_problem_line(
    client, auth, compose_request, app
):
    """Without Content-Length the limit is found while streaming: answered lines stand."""
    app.config["MAX_BATCH_BYTES"] = 2000
    body = ndjson([compose_request(str(12347 + n), f"c-{n}") for n in range(20)]).encode()
    response = client.post(
        "/v1/compose/batch",
        input_stream=io.BytesIO(body),  # chunked: no length known up front
        headers={
            **auth("platform"),
            "Content-Type": "application/x-ndjson",
            "Transfer-Encoding": "chunked",
        },
        environ_overrides={"wsgi.input_terminated": True},
    )
    got = answers(response)
    assert response.status_code == 200 and 2 <= len(got) < 20
    assert all("decision" in line for line in got[:-1])
    assert got[-1]["error"]["type"] == "/problems/too-large"
    assert got[-1]["error"]["detail"] == "the request body is over the limit of 2,000 bytes"
    assert got[-1]["line"] == len(got)


def test_answer_lines_are_exactly_the_documented_schema(client, auth, compose_request):
    """Lines are built as plain data for speed; each must be what BatchLine writes."""
    from api.schemas.compose import BatchLine

    lines = answers(
        post_batch(client, auth, [compose_request("12347", "s1"), compose_request("12347", "s2"),
                                  "{not json", compose_request("12348", "s3", include_mime=True)])
    )  # fmt: skip
    assert ["email" in line for line in lines] == [True, False, False, True]
    assert "error" in lines[2]
    for line in lines:
        assert BatchLine.model_validate(line).model_dump(mode="json", exclude_none=True) == line


def chunked(client, auth, stream):
    return client.post(
        "/v1/compose/batch",
        input_stream=stream,
        headers={**auth("platform"), "Content-Type": "application/x-ndjson",
                 "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )  # fmt: skip


def test_a_line_too_long_to_be_one_request_is_answered_as_such(client, auth, compose_request, app):
    """A single compose is refused past MAX_CONTENT_LENGTH; so is one batch line, alone."""
    app.config["MAX_CONTENT_LENGTH"] = 4000
    huge = compose_request("12348", "h-2", data={"blob": "x" * 50_000})
    lines = [compose_request("12347", "h-1"), huge, compose_request("12349", "h-3")]
    got = answers(chunked(client, auth, io.BytesIO(ndjson(lines).encode())))
    assert [line["line"] for line in got] == [1, 2, 3]
    assert "decision" in got[0] and "decision" in got[2]
    assert got[1]["error"]["type"] == "/problems/too-large"
    assert "longer than 4,000 bytes" in got[1]["error"]["detail"]


class BrokenUpload:
    """An upload whose client goes away after ``body``: the next read finds it gone."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    def readable(self) -> bool:
        return True

    def tell(self) -> int:  # the test client measures the body from where it starts
        return 0

    def seek(self, offset: int, whence: int = 0) -> int:
        return 0

    def read(self, size: int = -1) -> bytes:
        from werkzeug.exceptions import ClientDisconnected

        if not self.body:
            raise ClientDisconnected()
        data, self.body = self.body, b""
        return data


def test_an_upload_broken_off_answers_what_arrived_without_an_error(
    client, auth, compose_request, caplog
):
    caplog.set_level(logging.INFO, logger="api.compose")
    lines = [compose_request(str(12347 + n), f"b-{n}") for n in range(5)]
    response = chunked(client, auth, BrokenUpload(ndjson(lines).encode()))
    assert response.status_code == 200
    assert [line["line"] for line in answers(response)] == [1, 2, 3, 4, 5]
    assert "ended early after line 5" in caplog.text
    assert not [record for record in caplog.records if record.levelname == "ERROR"]


def test_answer_lines_are_byte_for_byte_the_documented_decision_without_nulls(app, compose_request):
    """The line's decision is built directly, shared reasons and items encoded once: the bytes
    must be what encoding ``decision_answer`` without its nulls writes."""
    import orjson

    from api.compose import _email_answer, _line, _present, _reason, decision_answer, to_input
    from api.schemas.compose import ComposeRequest

    requests = [compose_request(f"new-{n}", f"n-{n}") for n in range(3)]  # share their picks
    requests += [compose_request("12347", "known"), compose_request("12348", "dry", dry_run=True)]
    requests += [compose_request("new-0", "again")]  # a second email inside the cooldown
    with app.test_request_context():
        bodies = [ComposeRequest.model_validate(request) for request in requests]
        composer = app.extensions["rapport"].get("composer")
        compositions = composer.compose_many([to_input(body) for body in bodies])
        compositions += composer.compose_many([to_input(bodies[-1])])  # replayed
    actions = [composition.decision.action.value for composition in compositions]
    assert actions.count("send") >= 4 and len(set(actions)) >= 2, actions
    lines = zip(bodies + bodies[-1:], compositions, strict=True)
    for number, (body, composition) in enumerate(lines, 1):
        shaped = decision_answer(composition.decision, lambda reason: _present(_reason(reason)))
        expected: dict = {"line": number, "user_id": body.recipient.user_id,
                          "decision": _present(shaped)}  # fmt: skip
        if composition.email is not None:
            expected["email"] = _present(_email_answer(composition.email, False))
        assert _line(number, body, composition) == orjson.dumps(
            expected, option=orjson.OPT_APPEND_NEWLINE
        )


def _recorded_sends(app, user_id: str) -> int:
    from fatigue.store.base import StateQuery

    store = app.extensions["rapport"].get("governor").store
    return len(store.load([StateQuery(user_id, 0.0, 0.0)])[0].sends)


def test_a_customer_twice_in_one_chunk_is_decided_in_order_across_slices(
    client, auth, compose_request, monkeypatch
):
    """The store decides a slice while the one before renders: order is still input order."""
    monkeypatch.setattr("engine.compose.DECIDE_SLICE", 2)
    lines = [compose_request(u, f"o-{n}") for n, u in enumerate(["a", "b", "c", "a", "d", "a"])]
    got = answers(post_batch(client, auth, lines))
    actions = [line["decision"]["action"] for line in got]
    assert actions[0] == "send" and actions[3] != "send" and actions[5] != "send", actions
    assert [actions[n] for n in (1, 2, 4)] == ["send"] * 3


def test_a_render_failing_while_the_next_slice_is_decided_costs_its_own_line_only(
    app, client, auth, compose_request, monkeypatch
):
    """A slice decided in the store, never rendered (the one before it failed), is not lost:
    the chunk's lines are composed again one by one and its decisions replay by their keys."""
    monkeypatch.setattr("engine.compose.DECIDE_SLICE", 2)
    publish_subject_failing_for_three_items(client, auth)
    users = [f"s{n}" for n in range(6)]
    lines = [compose_request(u, f"f-{u}", **({"items": 3} if u == "s1" else {})) for u in users]
    got = answers(post_batch(client, auth, lines))
    assert [line["line"] for line in got] == list(range(1, 7))
    assert got[1]["error"]["type"] == "/problems/validation", got[1]
    assert all(got[n]["decision"]["action"] == "send" for n in (0, 2, 3, 4, 5))
    # Each send recorded once (s2 and s3 were decided before s1 failed), the failed one released.
    assert [_recorded_sends(app, u) for u in users] == [1, 0, 1, 1, 1, 1]
    again = answers(post_batch(client, auth, [compose_request("s9", "after")]))
    assert again[0]["decision"]["action"] == "send"  # the store's connections are still sound


def test_a_batch_email_is_the_documented_email_without_nulls(store_url):
    """A single answer's email has every ``EmailOut`` field in its order; a batch line's the
    same without its nulls, with or without a template version and the raw message."""
    from api.compose import _email_answer, _email_line
    from api.schemas.compose import EmailOut
    from engine.render.renderer import RenderedEmail

    for version in (None, 3):
        email = RenderedEmail.made(
            template="t", version=version, locale="en", subject="S", preheader="", html="<p>",
            text="p", headers={"X-A": "1"}, message=lambda: b"raw \xc3\xa9 \xff",
        )  # fmt: skip
        for include_mime in (False, True):
            full = _email_answer(email, include_mime)
            assert list(full) == list(EmailOut.model_fields)
            assert full == EmailOut.model_validate(full).model_dump()
            line = _email_line(email, include_mime)
            assert line == {key: value for key, value in full.items() if value is not None}
            assert list(line) == [key for key, value in full.items() if value is not None]
            assert ("mime" in line) == include_mime and ("template_version" in line) == bool(
                version
            )
