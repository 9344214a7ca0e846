"""``/v1/events``, the fatigue endpoints and the unsubscribe pages."""

from __future__ import annotations

import json
from pathlib import Path

from api import create_app
from engine.interactions import load_interactions
from fatigue.errors import StoreError
from fatigue.store.base import StateQuery

from .conftest import ON_EVERY_STORE


def events(client, auth, batch):
    return client.post("/v1/events", json={"events": batch}, headers=auth("platform"))


def logged(settings) -> list[dict]:
    directory = Path(settings["EVENT_LOG_DIR"])
    return [
        json.loads(line)
        for path in sorted(directory.glob("events-*.jsonl"))
        for line in path.read_text().splitlines()
    ]


@ON_EVERY_STORE
def test_valid_events_are_logged_and_bad_ones_named(client, auth, settings):
    batch = [
        {"type": "view", "user_id": "7", "timestamp": "2026-11-23T10:00:00Z", "item_id": "85123A"},
        {"type": "teleport", "user_id": "7", "timestamp": "2026-11-23T10:00:00Z"},
        {"type": "open", "user_id": "7", "timestamp": "2026-11-23T10:00:00"},
        {
            "type": "click",
            "user_id": "7",
            "timestamp": "2026-11-23T10:01:00+01:00",
            "item_id": "22730",
            "campaign_id": "weekly-picks",
            "decision_id": "d1",
        },
        "not an object",
    ]
    response = events(client, auth, batch)
    assert response.status_code == 202
    assert response.json["accepted"] == 2
    rejected = {item["index"]: item["error"] for item in response.json["rejected"]}
    assert set(rejected) == {1, 2, 4}
    assert "type" in rejected[1] and "timezone" in rejected[2]
    records = logged(settings)
    assert [r["event"] for r in records] == ["view", "click"]
    assert records[1]["timestamp"] == "2026-11-23T09:01:00+00:00"  # logged in UTC
    assert records[1]["campaign_id"] == "weekly-picks" and records[1]["event_id"]


@ON_EVERY_STORE
def test_events_change_fatigue_state_at_once(client, auth):
    batch = [{"type": "complaint", "user_id": "55", "timestamp": "2026-11-23T11:00:00Z"}]
    assert events(client, auth, batch).status_code == 202
    state = client.get("/v1/users/55/fatigue", headers=auth("engineer")).json
    assert "complaint" in state["suppression"]
    assert state["suppressions"] == [{
        "scope": "complaint", "reason": "complaint", "since": "2026-11-23T11:00:00Z",
        "campaign": None,
        "description": "marked an email as spam, which stops all marketing email on "
                       "2026-11-23 11:00 UTC",
    }]  # fmt: skip
    assert state["next_allowed"]["promotional"]["at"] is None


@ON_EVERY_STORE
def test_one_moment_reported_with_two_offsets_is_one_event(client, auth, settings):
    """The digest hashes the moment in UTC: an offset is not a different event."""
    batch = [
        {"type": "bounce_soft", "user_id": "tz", "timestamp": "2026-11-23T07:00:00Z"},
        {"type": "bounce_soft", "user_id": "tz", "timestamp": "2026-11-23T08:00:00+01:00"},
        {"type": "purchase", "user_id": "tz", "timestamp": "2026-11-23T07:00:00Z",
         "item_id": "22730"},
        {"type": "purchase", "user_id": "tz", "timestamp": "2026-11-23T02:00:00-05:00",
         "item_id": "22730"},
    ]  # fmt: skip
    assert events(client, auth, batch).status_code == 202
    state = client.get("/v1/users/tz/fatigue", headers=auth("engineer")).json
    assert state["soft_bounces"] == 1
    log = next(Path(settings["EVENT_LOG_DIR"]).glob("interactions-*.jsonl"))
    assert len(load_interactions(log)) == 1


def test_a_value_training_would_refuse_is_refused_here(client, auth):
    """Training refuses a value past 1,000,000 with its whole file: the API must not log it."""
    batch = [{"type": "purchase", "user_id": "b", "timestamp": "2026-11-23T07:00:00Z",
              "item_id": "22730", "value": 5_000_000}]  # fmt: skip
    response = events(client, auth, batch)
    assert response.json["accepted"] == 0
    [rejected] = response.json["rejected"]
    assert rejected["index"] == 0 and "value" in rejected["error"]


@ON_EVERY_STORE
def test_a_batch_retried_after_a_store_failure_counts_once(client, auth, app, settings):
    """The platform retries a 503'd batch whole; what was applied before must not count twice."""
    batch = [
        {"type": "bounce_soft", "user_id": "61", "timestamp": "2026-11-23T10:00:00Z"},
        {"type": "purchase", "user_id": "61", "timestamp": "2026-11-23T10:01:00Z",
         "item_id": "85123A"},
        {"type": "open", "user_id": "61", "timestamp": "2026-11-23T10:02:00Z"},
    ]  # fmt: skip
    store = app.extensions["rapport"].get("governor").store
    real_apply, calls = store.apply, []

    def fails_on_the_third(change):  # a store that drops mid-batch: not causable on cue
        calls.append(change)
        if len(calls) == 3:
            raise StoreError("connection reset")
        return real_apply(change)

    store.apply = fails_on_the_third
    assert events(client, auth, batch).status_code == 503
    assert events(client, auth, batch).status_code == 202
    state = client.get("/v1/users/61/fatigue", headers=auth("engineer")).json
    assert state["soft_bounces"] == 1 and state["last_engaged"] == "2026-11-23T10:02:00Z"
    trained = load_interactions(sorted(Path(settings["EVENT_LOG_DIR"]).glob("interactions-*")))
    assert len(trained) == 1  # logged twice, read once


def test_events_training_could_not_read_are_rejected_where_they_stand(client, auth, settings):
    at = "2026-11-23T10:00:00Z"
    batch = [
        {"type": "purchase", "user_id": "7", "timestamp": at, "item_id": "85123A", "value": 0},
        {"type": "view", "user_id": "7 ", "timestamp": at, "item_id": "85123A"},
        {"type": "view", "user_id": "7", "timestamp": at, "item_id": " "},
        {"type": "open", "user_id": "7", "timestamp": "0001-01-01T00:00:00+14:00"},
        {"type": "open", "user_id": "7", "timestamp": "9999-12-31T23:59:59-14:00"},
        {"type": "open", "user_id": "7", "timestamp": "2026-11-25T12:00:01Z"},  # 2 days ahead
        {"type": "send_failed", "user_id": "7", "timestamp": at},
        {"type": "view", "user_id": "7", "timestamp": at, "item_id": "22730"},
    ]
    response = events(client, auth, batch)
    assert response.status_code == 202 and response.json["accepted"] == 1
    rejected = {item["index"]: item["error"] for item in response.json["rejected"]}
    assert sorted(rejected) == [0, 1, 2, 3, 4, 5, 6]
    assert rejected[0].startswith("value") and rejected[1].startswith("user_id")
    assert all(rejected[n].startswith("timestamp: must be between 2000-01-01") for n in (3, 4, 5))
    assert "decision_id" in rejected[6]
    [path] = Path(settings["EVENT_LOG_DIR"]).glob("interactions-*.jsonl")
    assert list(load_interactions(path).item_ids) == ["22730"]


def test_oversize_and_malformed_batches(client, auth, app):
    app.config["MAX_EVENTS_PER_REQUEST"] = 2
    event = {"type": "open", "user_id": "1", "timestamp": "2026-11-23T10:00:00Z"}
    too_many = events(client, auth, [event] * 3)
    assert too_many.status_code == 413 and "limit is 2" in too_many.json["detail"]
    assert events(client, auth, []).status_code == 422
    broken = client.post("/v1/events", data="{", headers=auth("platform"))
    assert broken.status_code == 400


def test_request_body_limit_is_enforced(client, auth, app):
    app.config["MAX_EVENTS_BYTES"] = 1024
    event = {"type": "open", "user_id": "1", "timestamp": "2026-11-23T10:00:00Z"}
    response = events(client, auth, [event] * 50)
    assert response.status_code == 413
    assert response.content_type == "application/problem+json"
    assert "1,024 bytes" in response.json["detail"]


def test_the_default_limits_take_as_many_events_as_one_request_may_hold(client, auth, app):
    limit = app.config["MAX_EVENTS_PER_REQUEST"]
    event = {"type": "open", "user_id": "42", "timestamp": "2026-11-22T10:00:00Z",
             "item_id": None, "campaign_id": "weekly-picks", "decision_id": None}  # fmt: skip
    batch = [{**event, "user_id": f"customer-{n:06d}"} for n in range(limit)]
    assert len(json.dumps({"events": batch})) > app.config["MAX_CONTENT_LENGTH"]
    response = events(client, auth, batch)
    assert response.status_code == 202 and response.json["accepted"] == limit


def test_rules_in_force_and_validation(client, auth):
    rules = client.get("/v1/fatigue/rules", headers=auth("engineer")).json
    assert "bundled" in rules["source"] and "[[caps]]" in rules["toml"]
    good = client.post(
        "/v1/fatigue/rules/validate", json={"toml": rules["toml"]}, headers=auth("engineer")
    )
    assert good.json == {"valid": True, "errors": []}
    bad = client.post(
        "/v1/fatigue/rules/validate",
        json={"toml": '[[caps]]\nname = "d"\nmax = -1\nper = "1d"\n'},
        headers=auth("engineer"),
    ).json
    assert bad["valid"] is False
    assert bad["errors"][0]["line"] == 3 and bad["errors"][0]["field"] == "caps[0].max"


def test_rules_shown_are_the_ones_read_at_start_not_the_file_edited_since(
    settings, role_keys, clock, auth, tmp_path
):
    """The governor reads its rule file once; showing the file as edited since would mislead."""
    path = tmp_path / "rules.toml"
    path.write_text('[[caps]]\nname = "daily"\nmax = 1\nper = "1d"\n', encoding="utf-8")
    client = create_app({**settings, "RULES": str(path), "CLOCK": clock}).test_client()
    before = client.get("/v1/fatigue/rules", headers=auth("engineer")).json
    path.write_text('[[caps]]\nname = "edited"\nmax = 9\nper = "1d"\n', encoding="utf-8")
    after = client.get("/v1/fatigue/rules", headers=auth("engineer")).json
    assert before["source"] == after["source"] == str(path)
    assert 'name = "daily"' in after["toml"] and "edited" not in after["toml"]


def test_a_customer_id_in_a_path_is_checked_like_one_in_a_body(client, auth):
    for bad in ("a%00b", "%20", "x" * 201, "%2042"):
        response = client.get(f"/v1/users/{bad}/fatigue", headers=auth("engineer"))
        assert response.status_code == 422, bad
        assert response.json["errors"][0]["field"] == "user_id"
    assert client.get("/v1/users/42/fatigue", headers=auth("engineer")).status_code == 200


def test_rule_text_is_never_read_as_a_path(client, auth):
    response = client.post(
        "/v1/fatigue/rules/validate", json={"toml": "/etc/passwd"}, headers=auth("engineer")
    ).json
    assert response["valid"] is False
    assert "root:" not in json.dumps(response)


@ON_EVERY_STORE
def test_explain_counts_sends(client, auth, compose_request):
    client.post("/v1/compose", json=compose_request(), headers=auth("platform"))
    state = client.get("/v1/users/12347/fatigue", headers=auth("engineer")).json
    assert state["recent_sends"] == 1 and state["user_id"] == "12347"
    assert state["next_allowed"]["promotional"]["at"] > state["at"]
    zone = client.get("/v1/users/12347/fatigue?timezone=Mars/Base", headers=auth("engineer"))
    assert zone.status_code == 422 and zone.json["errors"][0]["field"] == "timezone"


def unsubscribe_path(client, auth, compose_request) -> str:
    email = client.post("/v1/compose", json=compose_request(), headers=auth("platform")).json
    header = email["email"]["headers"]["List-Unsubscribe"]
    url = header.strip("<>").split(">")[0]
    return url.removeprefix("http://localhost")


@ON_EVERY_STORE
def test_one_click_unsubscribe_works_without_auth(client, auth, compose_request, settings):
    path = unsubscribe_path(client, auth, compose_request)
    page = client.get(path)
    assert page.status_code == 200 and 'method="post"' in page.text
    assert client.get("/v1/users/12347/fatigue", headers=auth("engineer")).json["suppression"] == {}
    done = client.post(path, data={"List-Unsubscribe": "One-Click"})
    assert done.status_code == 200 and "unsubscribed" in done.text
    assert "Set-Cookie" not in done.headers and "Location" not in done.headers
    state = client.get("/v1/users/12347/fatigue", headers=auth("engineer")).json
    assert "all" in state["suppression"]
    assert logged(settings)[-1]["event"] == "unsubscribe"
    again = client.post("/v1/compose", json=compose_request(key="k-2"), headers=auth("platform"))
    assert again.json["decision"]["action"] == "suppress"
    [deciding] = [reason for reason in again.json["decision"]["reasons"] if reason["deciding"]]
    # In words, not the JSON the store keeps: a platform shows it to its support staff.
    assert deciding["detail"] == (
        "suppressed: unsubscribed from all marketing email on 2026-11-23 12:00 UTC "
        "(campaign weekly-picks)"
    )


@ON_EVERY_STORE
def test_forged_and_expired_links_are_refused(client, auth, compose_request, clock):
    path = unsubscribe_path(client, auth, compose_request)
    assert client.post(path[:-3] + "xyz").status_code == 400
    clock.advance(days=61)
    assert client.post(path).status_code == 410
    assert "expired" in client.get(path).text


@ON_EVERY_STORE
def test_preferences_page_unsubscribes_and_resubscribes(client, auth, compose_request):
    email = client.post("/v1/compose", json=compose_request(), headers=auth("platform")).json
    text = email["email"]["text"]
    path = text.split("Email preferences: http://localhost")[1].split()[0]
    assert "receive our marketing email" in client.get(path).text
    client.post(path, data={"choice": "unsubscribe"})
    assert "do not receive" in client.get(path).text
    client.post(path, data={"choice": "resubscribe"})
    assert "You receive" in client.get(path).text
    assert client.post(path, data={"choice": "maybe"}).status_code == 400
    # A browser may post the form as multipart: still the page, not a JSON 415.
    posted = client.post(path, data={"choice": "unsubscribe"}, content_type="multipart/form-data")
    assert posted.status_code == 200 and "do not receive" in posted.text


def test_a_zone_folder_is_an_unknown_zone_not_a_server_error(client, auth, compose_request):
    """``ZoneInfo("Europe")`` opens a folder: the whole batch answered 500 and was retried."""
    batch = [
        {"type": "open", "user_id": "z", "timestamp": "2026-11-23T10:00:00Z"},
        {"type": "open", "user_id": "z", "timestamp": "2026-11-23T10:01:00Z",
         "timezone": "Europe"},
    ]  # fmt: skip
    answer = events(client, auth, batch)
    assert answer.status_code == 202 and answer.json["accepted"] == 1
    assert answer.json["rejected"] == [
        {"index": 1, "error": "timezone: unknown IANA time zone 'Europe'"}
    ]
    body = compose_request()
    body["recipient"]["timezone"] = "America"
    refused = client.post("/v1/compose", json=body, headers=auth("platform"))
    assert refused.status_code == 422 and "unknown IANA time zone" in refused.text


def history(days: int = 7) -> list[dict]:
    def items(day: int, hour: int) -> list[dict]:
        # Fresh items every time, so only the caps and cooldown hold mail back.
        return [
            {"item_id": f"i{day}-{hour}-{n}", "relevance": 0.5, "category": f"c{n % 3}"}
            for n in range(4)
        ]

    return [
        {
            "timestamp": f"2026-01-{5 + day:02d}T{10 + hour * 3:02d}:00:00Z",
            "user_id": "u1",
            "type": "request",
            "campaign": f"camp{hour}",
            "category": "sale",
            "timezone": "Europe/London",
            "items": items(day, hour),
        }
        for day in range(days)
        for hour in range(3)
    ]


def test_simulation_compares_proposed_rules_with_those_in_force(client, auth):
    loose = '[[caps]]\nname = "daily"\nmax = 3\nper = "1d"\n'
    response = client.post(
        "/v1/fatigue/simulate",
        json={"history": history(), "rules": loose},
        headers=auth("engineer"),
    )
    assert response.status_code == 200, response.json
    in_force, proposed = response.json["runs"]
    assert in_force["label"] == "in force" and proposed["label"] == "proposed"
    assert in_force["total"]["requests"] == proposed["total"]["requests"] == 21
    assert in_force["total"]["sent"] < proposed["total"]["sent"]
    assert sum(in_force["weekly"]) >= 1
    limiting = {entry["rule"] for entry in in_force["deciding"] if entry["action"] != "send"}
    assert limiting & {"daily", "cooldown", "weekly"}, in_force["deciding"]


def test_simulation_names_bad_history_records_and_rules(client, auth):
    records = history(1)
    records[1]["timestamp"] = "yesterday"
    response = client.post(
        "/v1/fatigue/simulate", json={"history": records}, headers=auth("engineer")
    )
    assert response.status_code == 422
    error = response.json["errors"][0]
    assert error["line"] == 2 and error["field"] == "timestamp" and error["source"] == "history"
    bad_rules = client.post(
        "/v1/fatigue/simulate",
        json={"history": history(1), "rules": "[[caps]]\nmax = 'x'\n"},
        headers=auth("engineer"),
    )
    assert bad_rules.status_code == 422 and bad_rules.json["errors"][0]["line"]


def test_item_events_feed_the_next_training_run(client, auth, settings):
    from engine.interactions import load_interactions

    batch = [
        {"type": "view", "user_id": "7", "timestamp": "2026-11-23T10:00:00Z", "item_id": "85123A"},
        {
            "type": "click",
            "user_id": "7",
            "timestamp": "2026-11-23T10:01:00Z",
            "item_id": "22730",
            "campaign_id": "weekly-picks",
        },
        {
            "type": "purchase",
            "user_id": "7",
            "timestamp": "2026-11-23T10:05:00Z",
            "item_id": "22730",
            "value": 2,
        },
        {"type": "open", "user_id": "7", "timestamp": "2026-11-23T09:59:00Z"},
    ]
    assert events(client, auth, batch).json["accepted"] == 4
    [path] = Path(settings["EVENT_LOG_DIR"]).glob("interactions-*.jsonl")
    loaded = load_interactions(path)
    assert len(loaded) == 3
    assert [json.loads(line)["event"] for line in path.read_text().splitlines()] == [
        "view",
        "email_click",
        "purchase",
    ]


def test_tracked_clicks_are_recorded_then_redirected(settings, clock, auth, compose_request):
    from api import create_app

    client = create_app({**settings, "TRACK_CLICKS": "true", "CLOCK": clock}).test_client()
    answer = client.post("/v1/compose", json=compose_request(), headers=auth("platform")).json
    html = answer["email"]["html"]
    link = html.split('href="http://localhost/c/')[1].split('"')[0]
    response = client.get(f"/c/{link}")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("https://shop.example.com/items/")
    assert "utm_campaign=weekly-picks" in response.headers["Location"]
    state = client.get("/v1/users/12347/fatigue", headers=auth("engineer")).json
    assert state["last_engaged"] is not None
    [path] = Path(settings["EVENT_LOG_DIR"]).glob("interactions-*.jsonl")
    assert json.loads(path.read_text().splitlines()[-1])["event"] == "email_click"
    [click] = [event for event in logged(settings) if event["event"] == "click"]
    assert click["via"] == "link" and click["campaign_id"] == "weekly-picks"
    assert len(click["event_id"]) == 24  # as a click reported to /v1/events would have
    assert client.get(f"/c/{link[:-2]}xx").status_code == 400


def test_a_customer_whose_id_holds_a_slash_can_be_explained(client, auth, compose_request):
    """Compose and events take "a/b" as a customer id; the explanation must too."""
    decided = client.post("/v1/compose", json=compose_request("a/b", "slash-1"),
                          headers=auth("platform"))  # fmt: skip
    assert decided.status_code == 200
    for path in ("/v1/users/a%2Fb/fatigue", "/v1/users/a/b/fatigue"):
        response = client.get(path, headers=auth("engineer"))
        assert response.status_code == 200, response.json
        assert response.json["user_id"] == "a/b"
        assert response.json["recent_decisions"][0]["id"] == decided.json["decision"]["id"]


@ON_EVERY_STORE
def test_a_send_failed_releases_only_its_own_customers_send(client, auth, compose_request):
    sent = client.post(
        "/v1/compose", json=compose_request("sf2", "k-sf2"), headers=auth("platform")
    )
    decision = sent.json["decision"]
    assert decision["action"] == "send"
    failed = {
        "type": "send_failed",
        "timestamp": decision["decided_at"],
        "decision_id": decision["id"],
    }
    not_ours = {**failed, "user_id": "sf2", "decision_id": "d1"}
    response = events(client, auth, [{**failed, "user_id": "someone-else"}, not_ours])
    rejected = {item["index"]: item["error"] for item in response.json["rejected"]}
    assert response.json["accepted"] == 0
    assert "another customer" in rejected[0] and "not a decision id" in rejected[1]
    state = client.get("/v1/users/sf2/fatigue", headers=auth("engineer")).json
    assert state["recent_sends"] == 1  # still counted against sf2's caps
    assert events(client, auth, [{**failed, "user_id": "sf2"}]).json["accepted"] == 1
    assert client.get("/v1/users/sf2/fatigue", headers=auth("engineer")).json["recent_sends"] == 0


def test_an_amount_must_be_a_json_number(client, auth):
    at = "2026-11-23T10:00:00Z"
    purchase = {"type": "purchase", "user_id": "7", "timestamp": at, "item_id": "85123A"}
    batch = [{**purchase, "value": True}, {**purchase, "value": "3"}, {**purchase, "value": 3}]
    response = events(client, auth, batch)
    assert response.json["accepted"] == 1
    assert [item["index"] for item in response.json["rejected"]] == [0, 1]
    assert all(item["error"].startswith("value") for item in response.json["rejected"])


def test_a_timestamp_must_be_an_rfc3339_date_time_with_an_offset_or_unix_seconds(client, auth):
    """As the spec says: a date-time string or a number; never digits in a string."""
    stamps = [
        "1763805600000",  # read as milliseconds before
        "1763805600",
        1763805600000,  # milliseconds, which pydantic alone would take as such
        "2026-11-23 10:00:00Z",
        "2026-11-23T10:00Z",
        "2026-11-23T10:00:00",
        "2026-11-23T10:00:00+01:00",
        1763805600,
        1763805600.5,
    ]
    batch = [{"type": "open", "user_id": "ts", "timestamp": stamp} for stamp in stamps]
    response = events(client, auth, batch)
    assert response.status_code == 202 and response.json["accepted"] == 3
    rejected = {item["index"]: item["error"] for item in response.json["rejected"]}
    assert set(rejected) == set(range(6))
    assert all(error.startswith("timestamp: ") for error in rejected.values())
    assert "send Unix seconds as a number" in rejected[0] and "milliseconds?" in rejected[2]
    assert "has no offset (timezone)" in rejected[5]
    schema = client.get("/openapi.json").json["components"]["schemas"]["EventIn"]
    declared = schema["properties"]["timestamp"]["anyOf"]
    assert {"type": "string", "format": "date-time"} in declared and {"type": "number"} in declared


@ON_EVERY_STORE
def test_opens_count_the_customers_utc_hour_and_the_audiences_local_hour(client, auth, app):
    """API events carry no zone unless given one: the customer's hours are kept in UTC."""
    batch = [
        {"type": "open", "user_id": "ny", "timestamp": "2026-11-23T15:10:00Z"},
        {"type": "click", "user_id": "ny", "timestamp": "2026-11-23T10:20:00-05:00",
         "timezone": "America/New_York"},
        {"type": "open", "user_id": "ny", "timestamp": "2026-11-23T15:30:00Z",
         "timezone": "Mars/Olympus"},
    ]  # fmt: skip
    response = events(client, auth, batch)
    assert response.json["accepted"] == 2
    [rejected] = response.json["rejected"]
    assert rejected["index"] == 2
    assert rejected["error"] == "timezone: unknown IANA time zone 'Mars/Olympus'"
    store = app.extensions["rapport"].get("governor").store
    [state] = store.load([StateQuery("ny", 0.0, 0.0)])
    assert state.hours[15] == 2 and sum(state.hours) == 2
    # The bundled rules' default zone is London: 15:10 there, 10:20 in New York.
    assert state.audience_hours[15] == 1 and state.audience_hours[10] == 1


def test_an_events_zone_is_logged_but_is_not_part_of_its_id(client, auth, settings):
    at = "2026-11-23T15:10:00Z"
    batch = [
        {"type": "open", "user_id": "z", "timestamp": at},
        {"type": "open", "user_id": "z", "timestamp": at, "timezone": "America/New_York"},
    ]
    assert events(client, auth, batch).json["accepted"] == 2
    first, second = logged(settings)
    assert "timezone" not in first and second["timezone"] == "America/New_York"
    assert first["event_id"] == second["event_id"]


def _rejected_by_reason(client) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    return {
        sample.labels["reason"]: sample.value
        for family in text_string_to_metric_families(client.get("/metrics").text)
        for sample in family.samples
        if sample.name == "rapport_events_rejected_total"
    }


def test_rejected_events_are_counted_by_why(client, auth):
    """On call, a jump in rejected events says which kind of mistake the platform makes."""
    at = "2026-11-23T10:00:00Z"
    good = {"type": "open", "user_id": "r7", "timestamp": at}
    batch = [
        good, {**good, "type": "opened"}, {**good, "timestamp": "2099-01-01T00:00:00Z"},
        {**good, "timestamp": "1999-12-31T00:00:00Z"},
        {"type": "send_failed", "user_id": "r7", "timestamp": at, "decision_id": "d1"},
    ]  # fmt: skip
    before = _rejected_by_reason(client)
    assert events(client, auth, batch).json["accepted"] == 1
    after = _rejected_by_reason(client)
    grew = {reason: after[reason] - before.get(reason, 0.0) for reason in after}
    assert {k: v for k, v in grew.items() if v} == {
        "invalid": 1, "out_of_time": 2, "not_their_decision": 1
    }  # fmt: skip
