"""``POST /v1/compose``: decisions, rendering, idempotency, arbitration and errors."""

from __future__ import annotations

import io
import json
from email import message_from_string

import pytest

from .conftest import ON_EVERY_STORE, publish_subject_failing_for_three_items

pytestmark = ON_EVERY_STORE


def compose(client, auth, body):
    return client.post("/v1/compose", json=body, headers=auth("platform"))


def test_send_returns_the_rendered_email(client, auth, compose_request):
    response = compose(client, auth, compose_request())
    assert response.status_code == 200
    decision, email = response.json["decision"], response.json["email"]
    assert decision["action"] == "send" and decision["send_at"] is None
    assert decision["campaign_id"] == "weekly-picks"
    assert {"rule", "passed", "detail"} <= set(decision["reasons"][0])
    assert 3 <= len(decision["items"]) <= 4  # the email shows four unless asked otherwise
    assert all({"item_id", "relevance", "source"} <= set(item) for item in decision["items"])
    assert email["subject"] == "Ada, we picked these for you"
    assert email["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "http://localhost/u/" in email["headers"]["List-Unsubscribe"]
    first_item = decision["items"][0]["item_id"]
    assert first_item in email["html"] and "<mjml" not in email["html"]
    assert "Unsubscribe: http://localhost/u/" in email["text"]
    assert email["mime"] is None


def test_raw_mime_on_request(client, auth, compose_request):
    response = compose(client, auth, compose_request(include_mime=True))
    message = message_from_string(response.json["email"]["mime"])
    assert message["Subject"] == "Ada, we picked these for you"
    assert message.get_content_type() == "multipart/alternative"
    assert message["From"] == response.json["email"]["headers"]["From"]
    assert message["From"] == "Shop <news@shop.example.com>"


def test_the_raw_message_needs_a_sender(settings, clock, compose_request, auth, store_url):
    """RFC 5322 requires From: without RAPPORT_SENDER the raw message is refused, not broken."""
    from api import create_app

    app = create_app({**settings, "SENDER": "", "CLOCK": clock, "STORE_URL": store_url})
    response = compose(app.test_client(), auth, compose_request(include_mime=True))
    assert response.status_code == 422
    [error] = response.json["errors"]
    assert error["field"] == "include_mime" and "RAPPORT_SENDER" in error["message"]
    assert compose(app.test_client(), auth, compose_request()).status_code == 200


def test_a_configured_mailto_joins_the_one_click_link(
    settings, clock, compose_request, auth, store_url
):
    from api import create_app

    mailto = "leave@shop.example.com"
    app = create_app({**settings, "UNSUBSCRIBE_MAILTO": mailto, "CLOCK": clock,
                      "STORE_URL": store_url})  # fmt: skip
    headers = compose(app.test_client(), auth, compose_request()).json["email"]["headers"]
    assert headers["List-Unsubscribe"].startswith("<http://localhost/u/")
    assert headers["List-Unsubscribe"].endswith(", <mailto:leave@shop.example.com>")


@pytest.mark.parametrize("setting", ["SENDER", "UNSUBSCRIBE_MAILTO"])
def test_an_address_setting_that_is_not_one_address_stops_the_app(settings, setting, store_url):
    from api import create_app
    from fatigue.errors import ConfigurationError

    bad = {**settings, setting: "news@shop.example, other@shop.example", "STORE_URL": store_url}
    with pytest.raises(ConfigurationError, match=f"RAPPORT_{setting}"):
        create_app(bad).extensions["rapport"].get("renderer")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("email", "a,b@example.com", "is not one email address"),
        ("email", "a>b@example.com", "is not one email address"),
        ("email", "Zoë<zoe@example.com>", "is not one email address"),
        ("first_name", "Ada\x00Bob", "control character"),
        ("first_name", "Ada\x1b[31m", "control character"),
    ],
)
def test_recipient_text_that_would_break_the_email_is_refused(
    client, auth, compose_request, field, value, message
):
    body = compose_request()
    body["recipient"][field] = value
    response = compose(client, auth, body)
    assert response.status_code == 422
    [error] = response.json["errors"]
    assert error["field"] == f"recipient.{field}" and message in error["message"]


def test_a_blank_first_name_is_no_name_so_templates_fall_back(client, auth, compose_request):
    body = compose_request()
    body["recipient"]["first_name"] = " \u00a0 "
    email = compose(client, auth, body).json["email"]
    assert email["subject"].startswith("Hello, we picked these")
    body = compose_request("12348", key="padded")
    body["recipient"]["first_name"] = "  Ada "
    assert compose(client, auth, body).json["email"]["subject"].startswith("Ada, we picked")


def test_a_deferrable_request_waits_for_the_customers_best_hour(client, auth, compose_request):
    """At 12:00 in London, with no open history, the rules' default hour (10:00) is tomorrow's."""
    now = compose(client, auth, compose_request("12347", key="now")).json["decision"]
    assert now["action"] == "send"
    waiting = compose(client, auth, compose_request("12348", key="later", deferrable=True)).json
    decision = waiting["decision"]
    assert decision["action"] == "defer" and waiting["email"] is None
    assert decision["send_at"] == "2026-11-24T10:00:00Z"
    [deciding] = [reason for reason in decision["reasons"] if reason["deciding"]]
    assert deciding["rule"] == "send_time", deciding


def test_ids_too_long_for_the_unsubscribe_header_are_refused_and_nothing_is_counted(
    client, auth, compose_request
):
    long_id = "\U0001f600" * 200  # 200 characters, 800 bytes of UTF-8 in the signed token
    response = compose(client, auth, compose_request(long_id))
    assert response.status_code == 422
    [error] = response.json["errors"]
    assert error["field"] == "recipient.user_id" and "List-Unsubscribe" in error["message"]
    fatigue = client.get(f"/v1/users/{long_id}/fatigue", headers=auth("engineer"))
    assert fatigue.status_code == 200 and fatigue.json["recent_sends"] == 0


def test_a_retry_returns_the_same_decision_and_counts_once(client, auth, compose_request):
    first = compose(client, auth, compose_request(key="same")).json["decision"]
    again = compose(client, auth, compose_request(key="same")).json["decision"]
    assert again["id"] == first["id"] and again["action"] == "send"
    other = compose(client, auth, compose_request(key="another")).json["decision"]
    assert other["action"] == "defer"
    deciding = [reason for reason in other["reasons"] if reason["deciding"]]
    assert deciding and deciding[0]["rule"] in {"daily", "cooldown"}
    assert other["send_at"] > first["decided_at"]


def test_a_key_reused_for_another_campaign_is_409_and_the_first_send_stays_counted(
    client, auth, compose_request
):
    first = compose(client, auth, compose_request(key="reused")).json["decision"]
    assert first["action"] == "send"
    other_campaign = {"id": "spring-sale", "category": "sale", "kind": "promotional"}
    reused = compose(client, auth, compose_request(key="reused", campaign=other_campaign))
    assert reused.status_code == 409 and reused.content_type == "application/problem+json"
    assert "'weekly-picks'" in reused.json["detail"]
    state = client.get("/v1/users/12347/fatigue", headers=auth("engineer")).json
    assert state["recent_sends"] == 1
    assert compose(client, auth, compose_request(key="fresh")).json["decision"]["action"] == "defer"


def test_a_key_reused_for_another_address_is_409_not_a_send_to_it(client, auth, compose_request):
    """Same key, same campaign, another recipient address: not a retry; nothing is rendered."""
    first = compose(client, auth, compose_request(key="mine")).json
    assert first["decision"]["action"] == "send"
    assert first["email"]["headers"]["To"] == "ada@example.com"
    same = compose(client, auth, compose_request(key="mine")).json  # a real retry replays
    assert same["decision"]["id"] == first["decision"]["id"] and same["email"] is not None
    other = compose_request(key="mine")
    other["recipient"]["email"] = "mallory@example.com"
    reused = compose(client, auth, other)
    assert reused.status_code == 409 and "another request" in reused.json["detail"]
    assert "mallory" not in reused.text
    other = compose_request(key="mine", template="win-back", data={"offer": {"text": "x"}})
    assert compose(client, auth, other).status_code == 409  # another template: same answer
    state = client.get("/v1/users/12347/fatigue", headers=auth("engineer")).json
    assert state["recent_sends"] == 1


def test_data_with_a_number_past_64_bits_is_composed(client, auth, compose_request):
    """The idempotency digest wrote it with orjson, which refuses such integers: a 500."""
    body = compose_request(data={"offer": {"text": "x", "serial": 2**70}})
    assert compose(client, auth, body).status_code == 200


def test_the_items_recorded_as_sent_are_the_items_the_email_shows(client, auth, compose_request):
    """The governor chooses no more items than the email shows (``items``): the no-repeat rule
    then holds back what the customer saw, not picks the email left out."""
    answer = compose(client, auth, compose_request(items=3)).json
    shown = [item["item_id"] for item in answer["decision"]["items"]]
    assert answer["decision"]["action"] == "send" and len(shown) == 3
    assert all(f"/i/{item}?" in answer["email"]["text"] or item in answer["email"]["html"]
               for item in shown)  # fmt: skip
    template = next(r for r in answer["decision"]["reasons"] if r["rule"] == "template")
    assert template["detail"].startswith("3 item(s) chosen")
    later = compose(client, auth, compose_request(key="k-2", dry_run=True)).json["decision"]
    timeliness = next(r for r in later["reasons"] if r["rule"] == "timeliness")
    assert "excluded 3 sent recently" in timeliness["detail"]
    assert not set(shown) & {item["item_id"] for item in later["items"]}


def test_a_template_showing_three_items_gets_three_chosen_and_three_recorded(
    client, auth, compose_request
):
    """win-back's layout is one row of three (template.toml max_items = 3)."""
    answer = compose(client, auth, compose_request(template="win-back")).json
    shown = [item["item_id"] for item in answer["decision"]["items"]]
    assert answer["decision"]["action"] == "send" and len(shown) == 3
    assert all(item in answer["email"]["html"] for item in shown)
    later = compose(client, auth, compose_request(key="k-2", dry_run=True)).json["decision"]
    timeliness = next(r for r in later["reasons"] if r["rule"] == "timeliness")
    assert "excluded 3 sent recently" in timeliness["detail"]


def test_dry_run_records_nothing(client, auth, compose_request):
    dry = compose(client, auth, compose_request(key="dry", dry_run=True)).json
    assert dry["decision"]["action"] == "send" and dry["decision"]["dry_run"] is True
    assert dry["email"]["subject"]
    real = compose(client, auth, compose_request(key="real")).json["decision"]
    assert real["action"] == "send"


def test_competing_campaigns_are_arbitrated(client, auth, compose_request):
    body = compose_request(campaign=None)
    body.pop("campaign")
    body["campaigns"] = [
        {"id": "low", "category": "digest", "priority": 0.5, "template": "weekly-digest"},
        {"id": "high", "category": "recommendations", "priority": 3},
    ]
    response = compose(client, auth, body)
    assert response.status_code == 200
    decision = response.json["decision"]
    assert decision["campaign_id"] == "high"
    arbitration = [r for r in decision["reasons"] if r["rule"] == "arbitration"]
    assert any("low lost" in reason["detail"] for reason in arbitration)
    assert response.json["email"]["template"] == "picked-for-you"


def test_unknown_template_is_404_and_records_nothing(client, auth, compose_request):
    missing = compose(client, auth, compose_request(key="a", template="no-such-template"))
    assert missing.status_code == 404
    assert missing.content_type == "application/problem+json"
    assert "no-such-template" in missing.json["detail"]
    assert compose(client, auth, compose_request(key="b")).json["decision"]["action"] == "send"


def test_suppression_is_a_normal_answer(client, auth, compose_request):
    event = {"type": "unsubscribe", "user_id": "12347", "timestamp": "2026-11-23T11:00:00Z"}
    posted = client.post("/v1/events", json={"events": [event]}, headers=auth("platform"))
    assert posted.status_code == 202 and posted.json == {"accepted": 1, "rejected": []}
    response = compose(client, auth, compose_request())
    assert response.status_code == 200
    assert response.json["decision"]["action"] == "suppress"
    assert response.json["email"] is None
    deciding = [r for r in response.json["decision"]["reasons"] if r["deciding"]]
    assert deciding[0]["rule"] == "suppression"


@pytest.mark.parametrize("start", [b"", b"\xef\xbb\xbf"], ids=["plain", "byte-order-mark"])
def test_a_chunked_body_past_the_limit_is_413_not_a_cut_json_error(
    client, auth, app, compose_request, start
):
    app.config["MAX_CONTENT_LENGTH"] = 200
    response = client.post(
        "/v1/compose",
        input_stream=io.BytesIO(start + json.dumps(compose_request()).encode()),  # chunked
        headers={
            **auth("platform"),
            "Content-Type": "application/json",
            "Transfer-Encoding": "chunked",
        },
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert response.status_code == 413
    assert response.json["detail"] == "the request body is over the limit of 200 bytes"


def test_a_body_declared_as_something_else_is_415_naming_what_to_send(
    client, auth, compose_request
):
    body = json.dumps(compose_request())
    for declared in ("text/plain", "application/x-www-form-urlencoded"):
        response = client.post(
            "/v1/compose", data=body, headers={**auth("platform"), "Content-Type": declared}
        )
        assert response.status_code == 415, declared
        assert response.json["type"] == "/problems/unsupported-media-type"
        assert "Content-Type: application/json" in response.json["detail"]
    undeclared = client.post("/v1/compose", data=body, headers=auth("platform"))
    assert undeclared.status_code == 200  # no Content-Type at all: read as JSON


def test_numbers_and_booleans_must_be_json_numbers_and_booleans(client, auth, compose_request):
    """The spec says integer and boolean: "4" and "true" are refused, not coerced."""
    for changes, field in (({"items": "4"}, "items"), ({"dry_run": "true"}, "dry_run")):
        response = compose(client, auth, compose_request(**changes))
        assert response.status_code == 422, changes
        assert [e["field"] for e in response.json["errors"]] == [field]
    body = json.dumps(compose_request()).replace('"priority": 1', '"priority": NaN')
    nan = client.post(
        "/v1/compose", data=body, headers={**auth("platform"), "Content-Type": "application/json"}
    )
    assert nan.status_code == 422 and nan.json["errors"][0]["field"] == "campaign.priority"
    assert "finite" in nan.json["errors"][0]["message"]


def test_request_shape_errors_are_named(client, auth, compose_request):
    both = compose_request(campaigns=[{"id": "x"}])
    assert compose(client, auth, both).status_code == 422
    neither = compose_request()
    neither.pop("campaign")
    assert "exactly one" in compose(client, auth, neither).json["detail"]
    twice = compose_request(campaigns=[{"id": "x"}, {"id": "x"}])
    twice.pop("campaign")
    assert "distinct" in compose(client, auth, twice).json["detail"]
    bad_zone = compose_request()
    bad_zone["recipient"]["timezone"] = "Mars/Olympus"
    response = compose(client, auth, bad_zone)
    assert response.status_code == 422
    assert response.json["errors"][0]["field"] == "recipient.timezone"
    no_template = compose_request(template=None)
    assert "no template" in compose(client, auth, no_template).json["detail"]


def test_a_failed_render_releases_the_counted_send(client, auth, compose_request):
    publish_subject_failing_for_three_items(client, auth)
    failed = compose(client, auth, compose_request(key="broken", items=3))
    assert failed.status_code == 422
    assert failed.json["errors"][0]["field"] == "subject"
    explained = client.get("/v1/users/12347/fatigue", headers=auth("engineer")).json
    assert explained["recent_decisions"] == []  # no send is shown that never happened
    metrics = client.get("/metrics").text
    assert 'rapport_renders_total{outcome="failed",template="picked-for-you"}' in metrics
    after = compose(client, auth, compose_request(key="after"))
    assert after.json["decision"]["action"] == "send"


def test_answers_are_exactly_the_documented_schema(client, auth, compose_request):
    """The answer is built as plain data for speed; it must be what ComposeResponse writes."""
    from api.schemas.compose import ComposeResponse

    answers = [
        compose(client, auth, compose_request(key="shape-send", include_mime=True)).json,
        compose(client, auth, compose_request(key="shape-defer")).json,  # capped: no email
        compose(client, auth, compose_request("12348", "shape-dry", dry_run=True)).json,
    ]
    assert [a["decision"]["action"] for a in answers] == ["send", "defer", "send"]
    assert any(r["counter"] is not None for r in answers[1]["decision"]["reasons"])
    for shaped in answers:
        model = ComposeResponse.model_validate(shaped)
        assert model.model_dump(mode="json") == shaped


def test_a_transactional_email_its_template_cannot_fill_is_suppressed_not_an_error(
    settings, role_keys, clock, store_url, auth, compose_request, tmp_path
):
    """picked-for-you shows items[0]: with none relevant it used to fail rendering with a 422."""
    from api import create_app

    rules = tmp_path / "rules.toml"
    rules.write_text("[relevance]\nmin_relevance = 1.0\nmin_items = 1\n", encoding="utf-8")
    client = create_app(
        {**settings, "STORE_URL": store_url, "RULES": str(rules), "CLOCK": clock}
    ).test_client()
    body = compose_request()
    body["campaign"]["kind"] = "transactional"
    response = compose(client, auth, body)
    assert response.status_code == 200, response.json
    decision = response.json["decision"]
    assert decision["action"] == "suppress" and response.json["email"] is None
    template = next(reason for reason in decision["reasons"] if reason["rule"] == "template")
    assert template["detail"] == "0 item(s) chosen; the email's template shows at least 1"
    assert template["deciding"] is True


def test_a_request_rendering_fewer_items_than_its_template_shows_is_refused(
    client, auth, compose_request
):
    marketer = auth("marketer")
    current = client.get("/v1/templates/picked-for-you", headers=marketer).json
    edited = {key: current[key] for key in ("mjml", "subject", "preheader", "sample")}
    saved = client.put("/v1/templates/picked-for-you", json={**edited, "min_items": 3},
                       headers=marketer)  # fmt: skip
    client.post("/v1/templates/picked-for-you/publish", json=saved.json, headers=marketer)
    response = compose(client, auth, compose_request(items=2))
    assert response.status_code == 422
    [error] = response.json["errors"]
    assert error["field"] == "items"
    assert "shows at least 3 items; this request renders at most 2" in error["message"]
    assert compose(client, auth, compose_request(items=3)).status_code == 200


def test_an_item_without_a_usable_link_is_never_put_in_an_email(
    client, auth, app, clock, compose_request
):
    """A javascript: or blank catalog URL would render as href="" (the webmail page itself)."""
    from dataclasses import replace

    from engine.catalog import Catalog

    first = compose(client, auth, compose_request(key="before", dry_run=True)).json["decision"]
    top = first["items"][0]["item_id"]
    model = app.extensions["rapport"].get("model").model
    assert model.catalog is not None
    items = dict(model.catalog.items())
    items[top] = replace(items[top], url="javascript:alert(1)")
    model.catalog = Catalog(items)
    clock.advance(minutes=1)  # availability is recomputed once a minute
    again = compose(client, auth, compose_request(key="after", dry_run=True)).json
    assert top not in {item["item_id"] for item in again["decision"]["items"]}
    assert 'href=""' not in again["email"]["html"]


def test_extra_template_data_reaches_the_email(client, auth, compose_request):
    """win-back's offer: the sample shows it in previews, and `data` brings it to real emails."""
    offer = {"text": "15% off your next order", "code": "COMEBACK15"}
    body = compose_request(template="win-back", data={"offer": offer})
    email = compose(client, auth, body).json["email"]
    assert "COMEBACK15" in email["html"] and "COMEBACK15" in email["text"]
    assert email["preheader"].startswith("15% off your next order")
    plain = compose(client, auth, compose_request("12348", "k-2", template="win-back")).json
    assert "COMEBACK15" not in plain["email"]["html"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"unsubscribe_url": "https://evil.example"}, "set by Rapport itself"),
        ({"items": []}, "set by Rapport itself"),
        ({"not a name": 1}, "is not a template variable name"),
    ],
)
def test_extra_data_cannot_replace_what_rapport_sets(client, auth, compose_request, data, message):
    response = compose(client, auth, compose_request(data=data))
    assert response.status_code == 422
    [error] = response.json["errors"]
    assert error["field"] == "data" and message in error["message"]
