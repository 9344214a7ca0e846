"""The studio's pages through Flask's test client: sign-in, CSRF, roles, errors, saving."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from api.web.readable import describe_rules
from fatigue.rules import default_rules

from .studio_helpers import csrf_of

TEMPLATE = "picked-for-you"


def signed_in(client: Any, key: str) -> str:
    """Sign ``client`` in with ``key``; return the session's CSRF token."""
    token = csrf_of(client.get("/studio/login").text)
    answer = client.post("/studio/login", data={"api_key": key, "csrf_token": token})
    assert answer.status_code == 303, answer.text
    return csrf_of(client.get("/studio/login").text)


def draft_form(token: str, **changes: str) -> dict[str, str]:
    """The editor's form for the bundled template, with fields replaced."""
    folder = Path(__file__).resolve().parents[2] / "templates" / TEMPLATE
    form = {
        "csrf_token": token,
        "base": "1",
        "subject": "{{ recipient.first_name }}, picked for you",
        "preheader": "",
        "mjml": (folder / "email.mjml").read_text(encoding="utf-8"),
        "sample": (folder / "sample.json").read_text(encoding="utf-8"),
        "note": "a change",
    }
    form.update(changes)
    return form


def test_sign_in_needs_the_csrf_token(client, keys):
    answer = client.post("/studio/login", data={"api_key": keys["marketer"]})
    assert answer.status_code == 400
    assert answer.mimetype == "text/html"
    assert "security token is missing" in answer.text


def test_cross_site_posts_are_refused_even_with_a_token(client, keys):
    token = signed_in(client, keys["marketer"])
    answer = client.post(
        f"/studio/templates/{TEMPLATE}/publish/1",
        data={"csrf_token": token},
        headers={"Origin": "https://evil.example"},
    )
    assert answer.status_code == 400 and "another site" in answer.text


def test_the_session_cookie_is_httponly_samesite_and_holds_no_key(client, keys):
    token = csrf_of(client.get("/studio/login").text)
    answer = client.post("/studio/login", data={"api_key": keys["marketer"], "csrf_token": token})
    cookie = answer.headers["Set-Cookie"]
    assert cookie.startswith("rapport_studio=")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert keys["marketer"] not in cookie


def test_a_new_session_on_sign_in_discards_the_old_token(client, keys):
    before = csrf_of(client.get("/studio/login").text)
    after = signed_in(client, keys["marketer"])
    assert before != after


def test_sign_in_only_redirects_inside_the_studio(client, keys):
    token = csrf_of(client.get("/studio/login").text)
    for target, expected in [
        ("https://evil.example/studio/x", "/studio/"),
        ("//evil.example/studio/x", "/studio/"),
        ("/studio/fatigue/customers?user_id=1", "/studio/fatigue/customers?user_id=1"),
    ]:
        client.post("/studio/logout", data={"csrf_token": token})
        token = csrf_of(client.get("/studio/login").text)
        data = {"api_key": keys["engineer"], "csrf_token": token, "next": target}
        answer = client.post("/studio/login", data=data)
        assert answer.headers["Location"] == expected
        token = csrf_of(client.get("/studio/login").text)


def test_a_platform_key_cannot_sign_in(client, keys):
    token = csrf_of(client.get("/studio/login").text)
    answer = client.post("/studio/login", data={"api_key": keys["platform"], "csrf_token": token})
    assert answer.status_code == 401
    assert "no marketer, engineer or admin role" in answer.text


def test_an_admin_key_opens_both_halves(client, keys):
    signed_in(client, keys["admin"])
    assert client.get("/studio/templates").status_code == 200
    assert client.get("/studio/fatigue").status_code == 200


def test_removing_a_key_from_the_file_signs_its_session_out(client, keys, settings):
    signed_in(client, keys["marketer"])
    assert client.get("/studio/templates").status_code == 200
    path = Path(settings["API_KEYS_FILE"])
    document = json.loads(path.read_text())
    document["keys"] = [k for k in document["keys"] if k["name"] != "marketer-key"]
    path.write_text(json.dumps(document))
    answer = client.get("/studio/templates")
    assert answer.status_code == 303
    assert answer.headers["Location"].startswith("/studio/login?next=/studio/templates")


def test_sign_out_forgets_the_session(client, keys):
    token = signed_in(client, keys["marketer"])
    assert client.post("/studio/logout", data={"csrf_token": token}).status_code == 303
    assert client.get("/studio/templates").status_code == 303


def test_an_engineer_session_cannot_publish_even_with_a_valid_token(client, keys, app):
    token = signed_in(client, keys["engineer"])
    store = app.extensions["rapport"].get("templates")
    before = store.publication(TEMPLATE)
    answer = client.post(f"/studio/templates/{TEMPLATE}/publish/1", data={"csrf_token": token})
    assert answer.status_code == 403
    assert store.publication(TEMPLATE) == before


def test_unknown_pages_and_missing_templates_are_html_not_tracebacks(client, keys):
    signed_in(client, keys["marketer"])
    for path in ("/studio/no/such/page", "/studio/templates/no-such-template"):
        answer = client.get(path)
        assert answer.status_code == 404 and answer.mimetype == "text/html"
        assert "Traceback" not in answer.text
    answer = client.get(f"/studio/templates/{TEMPLATE}/diff?from=1&to=x")
    assert answer.status_code == 422 and "must be a version number" in answer.text
    assert client.get("/v1/templates/nothing").mimetype == "application/problem+json"


def test_scripts_get_json_errors_when_signed_out(client):
    csrf = csrf_of(client.get("/studio/login").text)
    answer = client.post(
        f"/studio/templates/{TEMPLATE}/draft", json={}, headers={"X-CSRF-Token": csrf}
    )
    assert answer.status_code == 401 and answer.json["title"] == "Signed out"


def test_studio_pages_send_a_content_security_policy(client, keys):
    signed_in(client, keys["marketer"])
    answer = client.get(f"/studio/templates/{TEMPLATE}")
    assert "script-src 'self'" in answer.headers["Content-Security-Policy"]
    assert answer.headers["Cache-Control"] == "no-store"
    assert answer.headers["X-Frame-Options"] == "DENY"


def test_a_save_with_problems_keeps_the_draft_and_stores_nothing(client, keys, app):
    token = signed_in(client, keys["marketer"])
    store = app.extensions["rapport"].get("templates")
    broken = draft_form(token, mjml="<mjml><mj-body>{{ oops( }}</mj-body></mjml>")
    answer = client.post(f"/studio/templates/{TEMPLATE}", data=broken)
    assert answer.status_code == 422
    assert "email.mjml line 1" in answer.text
    assert "{{ oops( }}" in answer.text  # the marketer's text is still there
    assert [v.version for v in store.versions(TEMPLATE)] == [1]


def test_a_save_needs_a_change_note(client, keys, app):
    token = signed_in(client, keys["marketer"])
    answer = client.post(f"/studio/templates/{TEMPLATE}", data=draft_form(token, note=" "))
    assert answer.status_code == 422 and "a change note is needed" in answer.text
    assert len(app.extensions["rapport"].get("templates").versions(TEMPLATE)) == 1


def test_a_save_records_the_author_and_note_and_publishes_nothing(client, keys, app):
    token = signed_in(client, keys["marketer"])
    answer = client.post(f"/studio/templates/{TEMPLATE}", data=draft_form(token))
    assert answer.status_code == 303
    store = app.extensions["rapport"].get("templates")
    latest = store.versions(TEMPLATE)[-1]
    assert (latest.version, latest.author, latest.note) == (2, "marketer-key", "a change")
    assert store.publication(TEMPLATE).version == 1


def test_the_editor_shows_keeps_and_saves_the_fewest_items(client, keys, app):
    token = signed_in(client, keys["marketer"])
    page = client.get(f"/studio/templates/{TEMPLATE}").text
    assert 'name="min_items"' in page and 'value="1"' in page
    store = app.extensions["rapport"].get("templates")
    for typed, kept in (("", 1), ("2", 2)):  # blank keeps the opened version's
        base = str(store.versions(TEMPLATE)[-1].version)  # each save builds on the latest
        form = draft_form(token, min_items=typed, base=base)
        answer = client.post(f"/studio/templates/{TEMPLATE}", data=form)
        assert answer.status_code == 303
        files = store.read(TEMPLATE, store.versions(TEMPLATE)[-1].version).files
        assert f"min_items = {kept}" in files["template.toml"]
    for typed in ("two", "51"):
        form = draft_form(token, min_items=typed)
        answer = client.post(
            f"/studio/templates/{TEMPLATE}/draft", json=form, headers={"X-CSRF-Token": token}
        )
        assert [p["target"] for p in answer.json["problems"]] == ["min_items"]


def test_the_editor_saves_the_most_items_and_names_a_bad_one(client, keys, app):
    token = signed_in(client, keys["marketer"])
    page = client.get(f"/studio/templates/{TEMPLATE}").text
    assert 'name="max_items"' in page and "Most items the email shows" in page
    answer = client.post(f"/studio/templates/{TEMPLATE}", data=draft_form(token, max_items="4"))
    assert answer.status_code == 303
    store = app.extensions["rapport"].get("templates")
    files = store.read(TEMPLATE, store.versions(TEMPLATE)[-1].version).files
    assert "max_items = 4" in files["template.toml"]
    reopened = client.get(f"/studio/templates/{TEMPLATE}").text
    field = reopened.split('id="max_items"')[1].split(">")[0]
    assert 'value="4"' in field  # the saved version opens with it
    for typed, said in (("0", "from 1 to 50"), ("x", "from 1 to 50")):
        form = draft_form(token, max_items=typed, base="2")
        checked = client.post(
            f"/studio/templates/{TEMPLATE}/draft", json=form, headers={"X-CSRF-Token": token}
        )
        [problem] = checked.json["problems"]
        assert problem["target"] == "max_items" and said in problem["message"]
    below = draft_form(token, min_items="3", max_items="2", base="2")
    checked = client.post(
        f"/studio/templates/{TEMPLATE}/draft", json=below, headers={"X-CSRF-Token": token}
    )
    assert any("max_items 2 is below min_items 3" in p["message"] for p in checked.json["problems"])


def test_a_bad_fewest_items_is_shown_beside_the_templates_own_problems(client, keys, app):
    token = signed_in(client, keys["marketer"])
    form = draft_form(token, min_items="51", subject="{{ recipient.first_name }} {% if %}")
    answer = client.post(
        f"/studio/templates/{TEMPLATE}/draft", json=form, headers={"X-CSRF-Token": token}
    )
    assert sorted(p["target"] for p in answer.json["problems"]) == ["min_items", "subject"]
    [subject] = [p for p in answer.json["problems"] if p["target"] == "subject"]
    assert subject["line"] is None  # a line of the generated template.toml meant nothing here
    saved = client.post(f"/studio/templates/{TEMPLATE}", data=form)
    assert saved.status_code == 422
    shown = saved.text.split('id="initial-problems">')[1].split("</script>")[0]
    assert sorted(p["target"] for p in json.loads(shown)) == ["min_items", "subject"]
    store = app.extensions["rapport"].get("templates")
    assert store.versions(TEMPLATE)[-1].version == 1  # nothing saved


def test_the_draft_preview_names_each_problem_with_its_editor_field_and_line(client, keys):
    token = signed_in(client, keys["marketer"])
    form = draft_form(token, sample='{"recipient": {}, \n "items": [}')
    answer = client.post(
        f"/studio/templates/{TEMPLATE}/draft", json=form, headers={"X-CSRF-Token": token}
    )
    [problem] = answer.json["problems"]
    assert (problem["target"], problem["line"]) == ("sample", 2)
    assert answer.json["preview"] is None


def shown_problems(html: str) -> list[dict[str, Any]]:
    """Return the problems an editor page was rendered with."""
    found: list[dict[str, Any]] = json.loads(
        html.split('id="initial-problems">')[1].split("</script>")[0]
    )
    return found


def test_the_test_email_refuses_a_draft_with_problems_in_the_editor(client, keys):
    token = signed_in(client, keys["marketer"])
    form = draft_form(token, subject="{{ nope }} changed", user_id="12347")
    answer = client.post(f"/studio/templates/{TEMPLATE}/test.eml", data=form)
    assert answer.status_code == 422 and answer.mimetype == "text/html"
    assert 'id="editor-form"' in answer.text  # the editor, not an error page
    assert 'value="{{ nope }} changed"' in answer.text  # with the marketer's draft
    assert 'value="12347"' in answer.text
    assert [p["target"] for p in shown_problems(answer.text)] == ["subject"]


def test_a_bad_history_file_is_named_with_its_line_and_column(client, keys):
    token = signed_in(client, keys["engineer"])
    from io import BytesIO

    history = (
        b"timestamp,user_id,type,campaign\n2026-01-05T10:00:00Z,u1,request,c\nnot-a-time,u1,open,\n"
    )
    answer = client.post(
        "/studio/fatigue/simulate",
        data={
            "csrf_token": token,
            "rules": "",
            "action": "simulate",
            "history": (BytesIO(history), "last-month.csv"),
        },
        content_type="multipart/form-data",
    )
    assert answer.status_code == 422
    assert "last-month.csv line 3 [timestamp]" in answer.text


def test_an_oversized_upload_gets_a_page_naming_the_limit(client, keys, app):
    token = signed_in(client, keys["engineer"])
    app.config["MAX_CONTENT_LENGTH"] = 64 * 1024
    from io import BytesIO

    answer = client.post(
        "/studio/fatigue/simulate",
        data={"csrf_token": token, "history": (BytesIO(b"x" * 100_000), "big.csv")},
        content_type="multipart/form-data",
    )
    assert answer.status_code == 413 and "64 KiB" in answer.text


@pytest.mark.parametrize("too_long", ["x" * 201])
def test_customer_lookup_refuses_absurd_ids(client, keys, too_long):
    signed_in(client, keys["engineer"])
    answer = client.get(f"/studio/fatigue/customers?user_id={too_long}")
    assert answer.status_code == 422 and "at most 200 characters" in answer.text


def test_every_default_rule_reads_as_a_sentence():
    lines = {line.name: line.sentence for line in describe_rules(default_rules())}
    assert lines["cap: daily"] == "At most 1 per 1 day (rolling window) on email."
    assert lines["cap: weekly"] == (
        "At most 3 per calendar week (Monday to Sunday, the customer's local time) on email."
    )
    assert lines["cooldown"] == ("At least 16 hours between two non-transactional messages.")
    assert "21:00 and 08:00" in lines["quiet hours"]
    assert lines["engagement"].startswith("After 5 ignored messages the cadence drops to 1 per")
    assert "5% of customers never receive promotional mail" in lines["holdout"]


def test_customer_lookup_names_the_reduced_cadence_tier_the_governor_applies(client, keys, clock):
    platform = {"Authorization": f"Bearer {keys['platform']}"}
    for number in range(5):  # five sends three days apart, none opened: five ignored
        body = {
            "idempotency_key": f"tier-{number}",
            "recipient": {"user_id": "12347", "email": "ada@example.com"},
            "template": TEMPLATE,
            "campaign": {"id": "weekly-picks", "kind": "promotional"},
        }
        answer = client.post("/v1/compose", json=body, headers=platform)
        assert answer.json["decision"]["action"] == "send", answer.json
        clock.advance(days=3)
    signed_in(client, keys["engineer"])
    page = client.get("/studio/fatigue/customers?user_id=12347").text
    assert "reduced cadence (5 ignored in a row; never engaged)" in page
    assert "engagement:reduced:1" in page


def test_customer_lookup_lists_the_last_decisions_with_their_reasons(client, keys):
    platform = {"Authorization": f"Bearer {keys['platform']}"}
    answers = []
    for key in ("first", "second"):  # a send, then a deferral by the daily cap or the cooldown
        body = {
            "idempotency_key": key,
            "recipient": {"user_id": "12347", "email": "ada@example.com"},
            "template": TEMPLATE,
            "campaign": {"id": "weekly-picks", "kind": "promotional"},
        }
        answers.append(client.post("/v1/compose", json=body, headers=platform).json["decision"])
    assert [a["action"] for a in answers] == ["send", "defer"]
    signed_in(client, keys["engineer"])
    page = client.get("/studio/fatigue/customers?user_id=12347").text
    table = page.split('id="recent-decisions"')[1].split("</table>")[0]
    rows = table.split('<tr class="decision">')[1:]
    assert [answers[1]["id"] in rows[0], answers[0]["id"] in rows[1]] == [True, True]
    deciding = next(r for r in answers[1]["reasons"] if r["deciding"])
    assert f"<strong>{deciding['rule']}</strong>" in rows[0] and "defer</span> until" in rows[0]
    assert all(f"<strong>{r['rule']}</strong>" in rows[0] for r in answers[1]["reasons"])
    assert "weekly-picks" in rows[1] and "<details>" in rows[1]
    assert 'id="recent-sends"' in page  # the recorded sends are still shown


def unsubscribe_path(message: bytes) -> str:
    """Return the path of the one-click link in a message's List-Unsubscribe header."""
    import email
    from email import policy

    header = email.message_from_bytes(message, policy=policy.default)["List-Unsubscribe"]
    found = re.search(r"<https?://[^/>]+(/u/[^>]+)>", str(header))
    assert found, header
    return found.group(1)


def test_a_test_email_for_a_real_customer_unsubscribes_nobody(client, keys, app):
    token = signed_in(client, keys["marketer"])
    for user_id in ("12350", ""):  # a real customer, and the sample recipient
        form = draft_form(token, user_id=user_id)
        message = client.post(f"/studio/templates/{TEMPLATE}/test.eml", data=form)
        assert message.status_code == 200, message.text
        path = unsubscribe_path(message.data)
        answer = client.post(path, data={"List-Unsubscribe": "One-Click"})
        assert answer.status_code == 400 and "not valid" in answer.text
        assert client.get(path).status_code == 400
    governor = app.extensions["rapport"].get("governor")
    assert governor.explain("12350").suppression == {}
    sample = json.loads(draft_form(token)["sample"])["recipient"]["user_id"]
    assert governor.explain(sample).suppression == {}


def test_the_editor_says_links_in_previews_do_nothing(client, keys):
    signed_in(client, keys["marketer"])
    assert "links in previews do nothing" in client.get(f"/studio/templates/{TEMPLATE}").text


def test_a_save_after_the_session_ended_asks_to_sign_in_again(client, keys):
    token = signed_in(client, keys["marketer"])
    client.delete_cookie("rapport_studio")  # expired, or cleared
    editor = f"http://localhost/studio/templates/{TEMPLATE}?version=1"
    answer = client.post(
        f"/studio/templates/{TEMPLATE}", data=draft_form(token), headers={"Referer": editor}
    )
    assert answer.status_code == 401 and "You were signed out; sign in again" in answer.text
    assert f'name="next" value="/studio/templates/{TEMPLATE}?version=1"' in answer.text
    preview = client.post(
        f"/studio/templates/{TEMPLATE}/draft", json={}, headers={"X-CSRF-Token": token}
    )
    assert preview.status_code == 401
    assert preview.json["detail"] == "You were signed out; sign in again."


def test_a_form_from_before_signing_in_again_says_so(client, keys):
    token = signed_in(client, keys["marketer"])
    signed_in(client, keys["marketer"])  # another tab signed out and in: a new token
    editor = f"http://localhost/studio/templates/{TEMPLATE}"
    answer = client.post(
        f"/studio/templates/{TEMPLATE}", data=draft_form(token), headers={"Referer": editor}
    )
    assert answer.status_code == 400 and "signed in again" in answer.text
    assert f'href="/studio/templates/{TEMPLATE}"' in answer.text


def test_a_save_over_a_newer_version_is_refused_until_asked_for(app, keys):
    first, second = app.test_client(), app.test_client()
    token_a = signed_in(first, keys["marketer"])
    token_b = signed_in(second, keys["admin"])  # both opened version 1
    saved = first.post(f"/studio/templates/{TEMPLATE}", data=draft_form(token_a, note="A's"))
    assert saved.status_code == 303
    mine = draft_form(token_b, subject="B's subject", note="B's change")
    refused = second.post(f"/studio/templates/{TEMPLATE}", data=mine)
    assert refused.status_code == 409
    [problem] = shown_problems(refused.text)
    assert "version 2" in problem["message"] and "marketer-key" in problem["message"]
    assert problem["standing"] is True
    assert 'value="B&#39;s subject"' in refused.text and 'value="B&#39;s change"' in refused.text
    assert 'name="overwrite" value="2"' in refused.text
    store = app.extensions["rapport"].get("templates")
    assert [v.version for v in store.versions(TEMPLATE)] == [1, 2]
    deliberate = second.post(f"/studio/templates/{TEMPLATE}", data={**mine, "overwrite": "2"})
    assert deliberate.status_code == 303
    assert (store.versions(TEMPLATE)[-1].version, store.versions(TEMPLATE)[-1].author) == (
        3,
        "admin-key",
    )
    again = second.post(f"/studio/templates/{TEMPLATE}", data={**mine, "overwrite": "2"})
    assert again.status_code == 409 and "version 3" in shown_problems(again.text)[0]["message"]


def test_an_oversized_draft_answers_with_the_editor_naming_the_limit(client, keys, app):
    token = signed_in(client, keys["marketer"])
    app.config["MAX_CONTENT_LENGTH"] = 64 * 1024
    big = draft_form(token, mjml="<mjml><mj-body>" + "x" * 100_000 + "</mj-body></mjml>")
    for path in ("", "/test.eml"):
        answer = client.post(f"/studio/templates/{TEMPLATE}{path}?base=1", data=big)
        assert answer.status_code == 413 and 'id="editor-form"' in answer.text
        [problem] = shown_problems(answer.text)
        assert "64 KiB" in problem["message"] and "upload" not in problem["message"]
        assert problem["standing"] is True
    preview = client.post(
        f"/studio/templates/{TEMPLATE}/draft", json=big, headers={"X-CSRF-Token": token}
    )
    assert preview.status_code == 413 and "64 KiB" in preview.json["detail"]
    assert "upload" not in preview.json["detail"]


def test_oversized_simulation_input_answers_with_the_simulate_page(client, keys, app):
    token = signed_in(client, keys["engineer"])
    app.config["MAX_CONTENT_LENGTH"] = 64 * 1024
    answer = client.post(
        "/studio/fatigue/simulate", data={"csrf_token": token, "rules": "#" * 100_000}
    )
    assert answer.status_code == 413 and 'id="simulate-form"' in answer.text
    assert "64 KiB" in answer.text and 'data-restore-rules="true"' in answer.text


def test_too_long_fields_are_named_on_their_editor_fields(client, keys):
    token = signed_in(client, keys["marketer"])
    form = draft_form(token, mjml="x" * 200_001, subject="s" * 1_001)
    answer = client.post(
        f"/studio/templates/{TEMPLATE}/draft", json=form, headers={"X-CSRF-Token": token}
    )
    shown = {p["target"]: p for p in answer.json["problems"]}
    assert sorted(shown) == ["mjml", "subject"]
    assert shown["mjml"]["source"] == "Email body" and "200000" in shown["mjml"]["message"]
    assert shown["subject"]["source"] == "Subject"


def test_customer_lookup_says_why_and_since_when_a_customer_is_suppressed(client, keys):
    platform = {"Authorization": f"Bearer {keys['platform']}"}
    event = {
        "type": "unsubscribe",
        "user_id": "12347",
        "campaign_id": "weekly-picks",
        "timestamp": "2026-11-20T09:30:00Z",
    }
    answer = client.post("/v1/events", json={"events": [event]}, headers=platform)
    assert answer.json["accepted"] == 1
    signed_in(client, keys["engineer"])
    page = client.get("/studio/fatigue/customers?user_id=12347").text
    facts = page.split('id="customer-facts"')[1].split("</dl>")[0]
    assert "unsubscribed from all marketing email on 2026-11-20 09:30 UTC" in facts
    assert "(campaign weekly-picks)" in facts
    assert "reason" not in facts and "{" not in facts


def test_customer_lookup_for_a_category_counts_its_unsubscribe(client, keys):
    platform = {"Authorization": f"Bearer {keys['platform']}"}
    event = {"type": "unsubscribe", "user_id": "12347", "category": "sale",
             "timestamp": "2026-11-20T09:30:00Z"}  # fmt: skip
    assert client.post("/v1/events", json={"events": [event]}, headers=platform).status_code == 202
    signed_in(client, keys["engineer"])

    def promotional(query: str) -> str:
        page = client.get(f"/studio/fatigue/customers?user_id=12347{query}").text
        return page.split('id="next-heading"')[1].split("</h3>")[0]  # its heading

    assert "not allowed" not in promotional("")  # mail outside "sale" may go
    assert "not allowed" in promotional("&category=sale")
    page = client.get("/studio/fatigue/customers?user_id=12347&category=sale").text
    assert "in category sale" in page and 'name="category" value="sale"' in page
    too_long = client.get(f"/studio/fatigue/customers?user_id=12347&category={'c' * 101}")
    assert too_long.status_code == 422 and "a category is at most 100 characters" in too_long.text


def test_calendar_caps_of_days_and_weeks_read_as_calendar_periods():
    from fatigue.rules_schema import parse_rules

    text = """
[[caps]]
name = "today"
max = 1
per = "1d"
calendar = true

[[caps]]
name = "fortnight"
max = 4
per = "2w"
calendar = true
"""
    rules, problems = parse_rules(text, "caps")
    assert not problems
    lines = {line.name: line.sentence for line in describe_rules(rules)}
    assert lines["cap: today"].startswith("At most 1 per calendar day (midnight to midnight")
    assert lines["cap: fortnight"].startswith("At most 4 per 2 calendar weeks (Monday to")


def test_the_preview_says_when_a_customer_is_not_known_to_the_model(client, keys):
    token = signed_in(client, keys["marketer"])

    def preview(user_id: str) -> Any:
        form = draft_form(token, user_id=user_id)
        return client.post(
            f"/studio/templates/{TEMPLATE}/draft", json=form, headers={"X-CSRF-Token": token}
        ).json

    assert preview("12347")["showing"] == "customer 12347's recommendations"
    unknown = preview("nobody-xyz")
    assert unknown["preview"] is not None and unknown["error"] is None
    assert "nobody-xyz is not known to the model" in unknown["showing"]
    assert "a new customer gets" in unknown["showing"]
    absurd = preview("x" * 201)
    assert absurd["preview"] is None and "at most 200 characters" in absurd["error"]


def test_every_page_names_an_icon_the_studio_serves(client, keys):
    icon = re.compile(r'<link rel="icon" href="([^"]+)" type="image/svg\+xml">')
    pages = [client.get("/studio/login").text]
    signed_in(client, keys["marketer"])
    pages += [client.get(f"/studio/templates/{TEMPLATE}").text, client.get("/studio/nope").text]
    found = [icon.search(page) for page in pages]
    assert all(found), "a page without the icon makes browsers ask for /favicon.ico (404)"
    [href] = {match.group(1) for match in found if match}
    with client.get(href) as answer:  # a static file: closed, or its handle leaks
        assert answer.status_code == 200 and answer.mimetype == "image/svg+xml"
        assert answer.text.lstrip().startswith("<svg")


def test_favicon_ico_is_served_for_pages_outside_the_studio(client):
    with client.get("/favicon.ico") as answer:  # the unsubscribe pages name no icon
        assert answer.status_code == 200 and answer.mimetype == "image/svg+xml"


def test_a_live_check_racing_a_save_cannot_take_its_saved_message(client, keys, app):
    """The editor checks the draft while a save redirects: its answer, carrying the session as
    it was before the save, must not replace the cookie holding "Saved version 2"."""
    token = signed_in(client, keys["marketer"])
    before = client.get_cookie("rapport_studio").value  # the cookie the live check was sent with
    saved = client.post(f"/studio/templates/{TEMPLATE}", data=draft_form(token))
    assert saved.status_code == 303
    client.set_cookie("rapport_studio", before)  # as the browser sends it, mid-flight
    check = client.post(f"/studio/templates/{TEMPLATE}/draft", json=draft_form(token),
                        headers={"X-CSRF-Token": token})  # fmt: skip
    assert check.status_code == 200
    assert "rapport_studio=" not in check.headers.get("Set-Cookie", "")
    page = client.get(f"/studio/templates/{TEMPLATE}")  # a page still slides the session along
    assert "rapport_studio=" in page.headers.get("Set-Cookie", "")


def test_signing_in_while_the_keys_file_is_damaged_is_a_503_page_logged_once(
    settings, keys, clock, caplog
):
    """It answered 500 'Server misconfigured' with the file's path and a line per page."""
    from api import create_app

    path = Path(settings["API_KEYS_FILE"])
    path.write_text(path.read_text()[:40])  # cut short by a bad deploy
    client = create_app({**settings, "CLOCK": clock}).test_client()
    for _ in range(3):
        token = csrf_of(client.get("/studio/login").text)
        answer = client.post(
            "/studio/login", data={"api_key": keys["marketer"], "csrf_token": token}
        )
        assert answer.status_code == 503 and "API keys file cannot be read" in answer.text
        assert str(path) not in answer.text
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1, errors
