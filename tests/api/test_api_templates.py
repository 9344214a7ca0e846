"""Template endpoints: list, read, save with validation, diff, publish, roll back, preview."""

from __future__ import annotations

from pathlib import Path

import pytest

NAME = "/v1/templates/picked-for-you"


@pytest.fixture
def marketer(auth):
    return auth("marketer")


def current(client, marketer):
    return client.get(NAME, headers=marketer).json


def save(client, marketer, **changes):
    base = current(client, marketer)
    body = {
        "mjml": base["mjml"],
        "subject": base["subject"],
        "preheader": base["preheader"],
        "sample": base["sample"],
        "note": "test",
    }
    body.update(changes)
    return client.put(NAME, json=body, headers=marketer)


def test_bundled_templates_are_listed_as_published_version_one(client, marketer):
    listed = client.get("/v1/templates", headers=marketer).json["templates"]
    names = {entry["name"]: entry for entry in listed}
    assert {"picked-for-you", "weekly-digest", "win-back", "cart-follow-up"} <= set(names)
    assert names["picked-for-you"]["published_version"] == 1
    template = current(client, marketer)
    assert template["published"] is True and template["version"] == 1
    assert "<mjml" in template["mjml"] and template["subject"]
    assert "template.toml" in template["files"]


def test_save_publish_diff_and_roll_back(client, marketer, auth, compose_request):
    saved = save(client, marketer, subject="Fresh picks for {{ recipient.first_name }}")
    assert saved.status_code == 201 and saved.json == {"version": 2}
    assert current(client, marketer)["version"] == 1  # saved, not live
    version = client.get(f"{NAME}/versions/2", headers=marketer).json
    assert version["subject"].startswith("Fresh picks") and version["published"] is False
    assert version["versions"][-1]["author"] == "key-marketer"

    diff = client.get(f"{NAME}/diff?from=1&to=2", headers=marketer).json["diff"]
    assert '+subject = "Fresh picks' in diff

    published = client.post(f"{NAME}/publish", json={"version": 2}, headers=marketer)
    assert published.status_code == 200 and published.json["previous"] == [1]
    email = client.post("/v1/compose", json=compose_request(), headers=auth("platform")).json
    assert email["email"]["subject"] == "Fresh picks for Ada"
    assert email["email"]["template_version"] == 2

    rolled = client.post(f"{NAME}/rollback", headers=marketer).json
    assert rolled["version"] == 1 and rolled["previous"] == []
    again = client.post(
        "/v1/compose", json=compose_request("12348", "k-2"), headers=auth("platform")
    ).json
    if again["email"]:
        assert again["email"]["template_version"] == 1
    assert client.post(f"{NAME}/rollback", headers=marketer).status_code == 404


def test_min_items_is_shown_kept_changed_and_checked(client, marketer):
    assert current(client, marketer)["min_items"] == 1
    assert save(client, marketer).json == {"version": 2}  # not given: kept
    assert client.get(f"{NAME}/versions/2", headers=marketer).json["min_items"] == 1
    assert save(client, marketer, min_items=2).json == {"version": 3}
    assert client.get(f"{NAME}/versions/3", headers=marketer).json["min_items"] == 2
    refused = save(client, marketer, min_items=-1)
    assert refused.status_code == 422
    assert [e["field"] for e in refused.json["errors"]] == ["min_items"]


def test_a_save_without_sample_or_preheader_keeps_the_latest_ones(client, marketer):
    before = current(client, marketer)
    body = {"mjml": before["mjml"], "subject": "{{ recipient.first_name }}, fresh picks"}
    assert client.put(NAME, json=body, headers=marketer).json == {"version": 2}
    saved = client.get(f"{NAME}/versions/2", headers=marketer).json
    assert saved["sample"] == before["sample"] and saved["sample"]["recipient"]
    assert saved["preheader"] == before["preheader"] != ""
    emptied = client.put(NAME, json={**body, "sample": {}, "preheader": ""}, headers=marketer)
    assert emptied.status_code == 422  # given: replaced (and this sample lacks first_name)
    assert any("first_name" in e["message"] for e in emptied.json["errors"])


def test_a_save_built_on_an_older_version_is_refused_when_base_is_given(client, marketer):
    assert save(client, marketer, base=1, note="first").json == {"version": 2}
    stale = save(client, marketer, base=1, subject="Another change")
    assert stale.status_code == 409 and stale.json["type"] == "/problems/conflict"
    assert "version 2 of 'picked-for-you' was saved by key-marketer" in stale.json["detail"]
    assert "(first)" in stale.json["detail"]
    assert save(client, marketer, base=2).json == {"version": 3}  # built on the latest
    assert save(client, marketer).json == {"version": 4}  # no base: saved over, as before


def test_invalid_template_is_refused_with_lines(client, marketer):
    broken = "<mjml>\n<mj-body>\n<mj-section>\n<mj-column>\n<mj-text>{{ items[0].title </mj-text>"
    response = save(client, marketer, mjml=broken + "\n</mj-column></mj-section></mj-body></mjml>")
    assert response.status_code == 422
    assert response.content_type == "application/problem+json"
    errors = response.json["errors"]
    assert errors and all({"line", "message"} <= set(error) for error in errors)
    assert any(error["line"] == 5 for error in errors)
    assert client.get("/v1/templates", headers=marketer).json["templates"][0]["latest_version"] == 1


def test_a_control_character_in_the_subject_is_named_as_the_subject(client, marketer):
    current = client.get(NAME, headers=marketer).json
    for subject in ("Sale\x7fnow", "two\nlines"):
        body = {"mjml": current["mjml"], "subject": subject}
        response = client.put(NAME, json=body, headers=marketer)
        assert response.status_code == 422
        assert [e["field"] for e in response.json["errors"]] == ["subject"]


def test_preview_with_sample_data_given_data_and_a_real_customer(client, marketer):
    sample = client.post(f"{NAME}/preview", json={}, headers=marketer).json
    assert sample["subject"] and "<html" in sample["html"] and sample["text"]
    given = client.post(
        f"{NAME}/preview",
        json={"data": {"recipient": {"first_name": "Grace"}}},
        headers=marketer,
    ).json
    assert given["subject"].startswith("Grace")
    real = client.post(f"{NAME}/preview", json={"user_id": "12347"}, headers=marketer).json
    assert real["html"] != sample["html"]
    # As many picks as a compose for them shows by default: the email they would get.
    assert real["preheader"].startswith("4 finds") and "picked 4 things" in real["text"]
    # No more than a template's layout shows (win-back: one row of three).
    row = client.post("/v1/templates/win-back/preview", json={"user_id": "12347"},
                      headers=marketer).json  # fmt: skip
    assert row["html"].count('width="160"') == 3  # each item's picture; four were recommended
    # A template needing more than a default compose shows is previewed with what it needs.
    current = client.get(NAME, headers=marketer).json
    saved = client.put(NAME, headers=marketer, json={
        "mjml": current["mjml"], "subject": current["subject"], "min_items": 6})  # fmt: skip
    assert saved.status_code == 201, saved.json
    asked = {"user_id": "12347", "version": saved.json["version"]}
    six = client.post(f"{NAME}/preview", json=asked, headers=marketer).json
    assert "picked 6 things" in six["text"]


def test_the_links_in_a_preview_for_a_real_customer_unsubscribe_nobody(client, marketer, app):
    import re

    real = client.post(f"{NAME}/preview", json={"user_id": "12350"}, headers=marketer).json
    paths = re.findall(r'href="https?://[^/"]+(/[up]/[^"]+)"', real["html"])
    assert {path[:3] for path in paths} == {"/p/", "/u/"}  # preferences, unsubscribe
    for path in paths:
        answer = client.post(path, data={"choice": "unsubscribe"})
        assert answer.status_code == 400 and "not valid" in answer.text
    assert app.extensions["rapport"].get("governor").explain("12350").suppression == {}


def test_a_customer_preview_of_a_version_using_the_first_name_renders(client, marketer):
    subject = "{{ recipient.first_name }}, fresh picks"
    assert save(client, marketer, subject=subject).json == {"version": 2}
    real = client.post(f"{NAME}/preview", json={"version": 2, "user_id": "12347"},
                       headers=marketer)  # fmt: skip
    assert real.status_code == 200
    sample_name = current(client, marketer)["sample"]["recipient"]["first_name"]
    assert real.json["subject"] == f"{sample_name}, fresh picks"


def test_preview_data_of_the_wrong_shape_is_named(client, marketer):
    for data, field in (
        ({"items": 5}, "data.items"),
        ({"items": ["a"]}, "data.items.0"),
        ({"recipient": "bob"}, "data.recipient"),
        ({"recipient": [1]}, "data.recipient"),
        ({"recipient": {"locale": 5}}, "data.recipient"),
        ({"recipients": {}}, "data.recipients"),
    ):
        response = client.post(f"{NAME}/preview", json={"data": data}, headers=marketer)
        assert response.status_code == 422, data
        assert field in [error["field"] for error in response.json["errors"]], data
    with_user = {"data": {"recipient": "bob"}, "user_id": "12347"}
    assert client.post(f"{NAME}/preview", json=with_user, headers=marketer).status_code == 422


def test_unknown_templates_and_versions_are_404(client, marketer):
    assert client.get("/v1/templates/nope", headers=marketer).status_code == 404
    assert client.get(f"{NAME}/versions/99", headers=marketer).status_code == 404
    missing = client.post(f"{NAME}/publish", json={"version": 99}, headers=marketer)
    assert missing.status_code == 404 and missing.content_type == "application/problem+json"
    assert client.post("/v1/templates/nope/preview", json={}, headers=marketer).status_code == 404
    assert client.get(f"{NAME}/diff?from=1", headers=marketer).status_code == 422


def test_a_version_stored_with_an_unknown_key_can_still_be_saved_over(client, marketer, settings):
    """Keys refused since (a typo such as min_item) are dropped, not carried into every save."""
    from engine.render.store_files import FileTemplateStore

    name = NAME.rsplit("/", 1)[-1]
    current(client, marketer)  # the app seeds its store with the bundled templates
    lenient = FileTemplateStore(Path(settings["TEMPLATES_DIR"]), validator=lambda source: None)
    files = dict(lenient.read(name, 1).files)
    files["template.toml"] += "min_item = 2\n"
    assert lenient.save(name, files, "old-tool", "saved before keys were checked").version == 2
    saved = save(client, marketer)
    assert saved.status_code == 201, saved.json
    stored = client.get(f"{NAME}/versions/3", headers=marketer).json["files"]["template.toml"]
    assert "min_item " not in stored and "min_items = 1" in stored


def test_an_unknown_attribute_or_invalid_value_is_refused_with_its_line(client, marketer):
    mjml = current(client, marketer)["mjml"]
    lines = mjml.splitlines()
    (at,) = [n for n, line in enumerate(lines, start=1) if "picked {{ items|length }}" in line]
    lines[at - 1] = lines[at - 1].replace("<mj-text>", '<mj-text font-wieght="bold" padding="x">')
    response = save(client, marketer, mjml="\n".join(lines))
    assert response.status_code == 422
    errors = {e["field"]: e for e in response.json["errors"]}
    assert errors.keys() == {"font-wieght", "padding"}
    assert all(e["line"] == at and e["source"] == "email.mjml" for e in errors.values())
    assert "font-weight" in errors["font-wieght"]["message"]


def test_a_tab_in_the_subject_is_refused_in_plain_words(client, marketer):
    response = save(client, marketer, subject="Sale\tnow")
    assert response.status_code == 422
    (error,) = response.json["errors"]
    assert error["field"] == "subject" and "a tab" in error["message"]
    assert "pattern" not in error["message"] and "\\x00" not in error["message"]


def test_text_null_removes_the_text_part_and_left_out_keeps_it(client, marketer):
    assert "email.txt" in current(client, marketer)["files"]
    assert save(client, marketer).json == {"version": 2}  # left out: kept
    kept = client.get(f"{NAME}/versions/2", headers=marketer).json
    assert kept["text"] and "email.txt" in kept["files"]
    assert save(client, marketer, text=None).json == {"version": 3}  # null: removed
    removed = client.get(f"{NAME}/versions/3", headers=marketer).json
    assert removed["text"] is None and "email.txt" not in removed["files"]
    assert "email.fr.txt" in removed["files"]  # a variant's own text is its own business
    preview = client.post(f"{NAME}/preview", json={"version": 3}, headers=marketer).json
    assert "Unsubscribe" in preview["text"]  # made from the HTML


def test_preheader_null_removes_it_and_left_out_keeps_it(client, marketer):
    """Read as ``text`` is: ``null`` used to keep the previous preheader."""
    assert current(client, marketer)["preheader"]
    body = {key: value for key, value in current(client, marketer).items()
            if key in ("mjml", "subject", "sample")}  # fmt: skip
    assert client.put(NAME, json=body, headers=marketer).json == {"version": 2}  # left out
    assert client.get(f"{NAME}/versions/2", headers=marketer).json["preheader"]
    assert save(client, marketer, preheader=None).json == {"version": 3}
    assert client.get(f"{NAME}/versions/3", headers=marketer).json["preheader"] == ""
