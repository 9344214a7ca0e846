"""The studio's pages through Flask's test client: sign-in, CSRF, roles, errors, saving."""

from __future__ import annotations

import json
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
        form = draft_form(token, min_items=typed)
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


def test_a_bad_fewest_items_is_shown_beside_the_templates_own_problems(client, keys, app):
    token = signed_in(client, keys["marketer"])
    form = draft_form(token, min_items="51", subject="{{ recipient.first_name }} {% if %}")
    answer = client.post(
        f"/studio/templates/{TEMPLATE}/draft", json=form, headers={"X-CSRF-Token": token}
    )
    assert sorted(p["target"] for p in answer.json["problems"]) == ["min_items", "subject"]
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


def test_the_test_email_refuses_a_draft_with_problems(client, keys):
    token = signed_in(client, keys["marketer"])
    form = draft_form(token, subject="{{ nope }}")
    answer = client.post(f"/studio/templates/{TEMPLATE}/test.eml", data=form)
    assert answer.status_code == 422 and "nope" in answer.text


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
    assert lines["cap: weekly"].startswith("At most 3 per 1 week (calendar")
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
