"""Saving through the API edits template.toml in place, and edits locale variants."""

from __future__ import annotations

import tomllib

import pytest

NAME = "/v1/templates/picked-for-you"
FR_MJML = """<mjml>
<mj-head><mj-preview>{{ preheader }}</mj-preview></mj-head>
<mj-body>
<mj-section><mj-column>
<mj-text>Bonjour {{ recipient.first_name }}, {{ items[0].title }}</mj-text>
<mj-text><a href="{{ unsubscribe_url }}">Se désabonner</a>
<a href="{{ preferences_url }}">Préférences</a></mj-text>
</mj-column></mj-section>
</mj-body>
</mjml>
"""


@pytest.fixture
def marketer(auth):
    return auth("marketer")


def latest(client, marketer, version):
    return client.get(f"{NAME}/versions/{version}", headers=marketer).json


def put(client, marketer, **changes):
    """Save over the published version with ``changes`` (what the studio and scripts send)."""
    base = client.get(NAME, headers=marketer).json
    body = {"mjml": base["mjml"], "subject": base["subject"], "sample": base["sample"]}
    return client.put(NAME, json={**body, **changes}, headers=marketer)


def diff(client, marketer, old, new):
    return client.get(f"{NAME}/diff?from={old}&to={new}", headers=marketer).json["diff"]


def changed_lines(text, filename="template.toml"):
    """Return the lines a unified diff adds or removes in ``filename``."""
    lines, current = [], None
    for line in text.splitlines():
        if line.startswith(("--- ", "+++ ")):
            current = line.rsplit("/", 1)[-1]
        elif line[:1] in "+-" and current == filename:
            lines.append(line)
    return lines


def test_changing_the_subject_changes_only_the_subject_line(client, marketer):
    before = client.get(NAME, headers=marketer).json["files"]["template.toml"]
    assert put(client, marketer, subject="{{ items|length }} picks").json == {"version": 2}
    after = latest(client, marketer, 2)["files"]["template.toml"]
    assert after.count("#") == before.count("#") == 2  # both comments kept
    assert "[locales]" not in after  # no empty table the marketer never wrote
    assert after.splitlines()[0] == before.splitlines()[0]  # order kept
    lines = changed_lines(diff(client, marketer, 1, 2))
    assert [line.split(" = ")[0] for line in lines] == ["-subject", "+subject"]


def test_a_save_changing_nothing_changes_no_file(client, marketer):
    template = client.get(NAME, headers=marketer).json
    body = {key: template[key] for key in ("mjml", "subject", "preheader", "sample", "text")}
    saved = client.put(NAME, json={**body, "min_items": template["min_items"]}, headers=marketer)
    assert saved.json == {"version": 2}
    assert diff(client, marketer, 1, 2) == ""
    assert latest(client, marketer, 2)["locales"] == template["locales"]


def test_a_version_lists_its_locales_and_round_trips(client, marketer):
    template = client.get(NAME, headers=marketer).json
    fr = template["locales"]["fr"]
    assert fr["subject"].startswith("{{ recipient.first_name|default('Bonjour'")
    assert fr["mjml"] == template["files"]["email.fr.mjml"]
    assert fr["text"] == template["files"]["email.fr.txt"]
    assert put(client, marketer, locales=template["locales"]).json == {"version": 2}
    assert diff(client, marketer, 1, 2) == ""


def test_a_save_without_locales_keeps_every_variant(client, marketer):
    assert put(client, marketer, subject="New subject").json == {"version": 2}
    saved = latest(client, marketer, 2)
    assert set(saved["locales"]) == {"fr"}
    assert {"email.fr.mjml", "email.fr.txt"} <= set(saved["files"])


def test_a_new_locale_is_stored_as_the_library_stores_it_and_previews(client, marketer):
    locales = {"de": {"subject": "Hallo {{ recipient.first_name }}", "preheader": "Für Sie"}}
    assert put(client, marketer, locales=locales).json == {"version": 2}
    files = latest(client, marketer, 2)["files"]
    meta = tomllib.loads(files["template.toml"])
    assert meta["locales"]["de"] == locales["de"] and "fr" in meta["locales"]
    assert "[locales]" not in files["template.toml"]
    assert "email.de.mjml" not in files  # no layout of its own: the default's is used
    preview = client.post(
        f"{NAME}/preview",
        json={"version": 2, "data": {"recipient": {"first_name": "Ada", "locale": "de-AT"}}},
        headers=marketer,
    ).json
    assert preview["subject"] == "Hallo Ada" and preview["preheader"] == "Für Sie"


def test_a_locale_part_is_replaced_kept_or_removed(client, marketer):
    change = {"fr": {"mjml": FR_MJML, "subject": "Salut {{ recipient.first_name }}",
                     "text": None}}  # fmt: skip
    assert put(client, marketer, locales=change).json == {"version": 2}
    fr = latest(client, marketer, 2)["locales"]["fr"]
    assert fr["mjml"] == FR_MJML and fr["subject"].startswith("Salut")
    assert fr["preheader"].startswith("{{ items|length }} trouvailles")  # not given: kept
    assert fr["text"] is None  # removed: its text comes from its own HTML
    preview = client.post(
        f"{NAME}/preview",
        json={"version": 2, "data": {"recipient": {"first_name": "Zoé", "locale": "fr-CA"}}},
        headers=marketer,
    ).json
    assert preview["subject"] == "Salut Zoé" and "Se désabonner" in preview["text"]
    lines = changed_lines(diff(client, marketer, 1, 2))
    assert [line.split(" = ")[0] for line in lines] == ["-subject", "+subject"]


def test_a_locale_given_as_null_is_removed_with_its_files(client, marketer):
    assert put(client, marketer, locales={"fr": None}).json == {"version": 2}
    saved = latest(client, marketer, 2)
    assert saved["locales"] == {}
    assert not any(name.startswith("email.fr.") for name in saved["files"])
    assert "locales" not in saved["files"]["template.toml"]  # no empty table left behind
    preview = client.post(
        f"{NAME}/preview",
        json={"version": 2, "data": {"recipient": {"locale": "fr"}}},
        headers=marketer,
    ).json
    assert "sélection" not in preview["subject"]


def test_a_broken_locale_is_refused_naming_its_field_and_line(client, marketer):
    broken = FR_MJML.replace("{{ items[0].title }}", "{{ items[0].title ")
    response = put(client, marketer, locales={"fr": {"mjml": broken}})
    assert response.status_code == 422
    assert response.content_type == "application/problem+json"
    errors = response.json["errors"]
    assert errors and all(error["field"] == "locales.fr.mjml" for error in errors)
    assert any(error["line"] == 5 and error["source"] == "email.fr.mjml" for error in errors)
    subject = put(client, marketer, locales={"de": {"subject": "Hallo {{ recipient.nickname }}"}})
    assert subject.status_code == 422
    assert [e["field"] for e in subject.json["errors"]] == ["locales.de.subject"]
    assert "nickname" in subject.json["errors"][0]["message"]


@pytest.mark.parametrize(
    ("locales", "field"),
    [
        ({"french": {"subject": "x"}}, "locales.french.[key]"),
        ({"fr": {"subjet": "x"}}, "locales.fr.subjet"),
        ({"fr": {"subject": "two\nlines"}}, "locales.fr.subject"),
        ({"en": {"subject": "x"}}, "locales.en"),  # the default: the top-level fields
        ({"EN": {"subject": "x"}}, "locales.EN"),  # spelt otherwise, still the default
    ],
)
def test_locales_of_the_wrong_shape_are_named(client, marketer, locales, field):
    response = put(client, marketer, locales=locales)
    assert response.status_code == 422
    assert field in [error["field"] for error in response.json["errors"]]


def test_a_new_template_saved_with_a_locale_previews_in_it(client, marketer):
    picked = client.get(NAME, headers=marketer).json
    body = {
        "mjml": picked["mjml"],
        "subject": "Hello {{ recipient.first_name }}",
        "sample": picked["sample"],
        "min_items": 1,
        "locales": {"fr": {"subject": "Bonjour {{ recipient.first_name }}"}},
    }
    assert client.put("/v1/templates/new-picks", json=body, headers=marketer).status_code == 201
    meta = client.get("/v1/templates/new-picks", headers=marketer).json["files"]["template.toml"]
    assert tomllib.loads(meta) == {
        "name": "new-picks",
        "description": "",
        "subject": body["subject"],
        "preheader": "",
        "default_locale": "en",
        "min_items": 1,
        "locales": {"fr": {"subject": "Bonjour {{ recipient.first_name }}"}},
    }
    assert "[locales]" not in meta
    preview = client.post(
        "/v1/templates/new-picks/preview",
        json={"version": 1, "data": {"recipient": {"first_name": "Zoé", "locale": "fr-CA"}}},
        headers=marketer,
    ).json
    assert preview["subject"] == "Bonjour Zoé"


def stored_over(settings, client, marketer, edit):
    """Store version 2 as another tool wrote it (not validated), then return its files."""
    from pathlib import Path

    from engine.render.store_files import FileTemplateStore

    client.get(NAME, headers=marketer)  # the app seeds its store with the bundled templates
    lenient = FileTemplateStore(Path(settings["TEMPLATES_DIR"]), validator=lambda source: None)
    files = dict(lenient.read("picked-for-you", 1).files)
    edit(files)
    assert lenient.save("picked-for-you", files, "old-tool", "by hand").version == 2
    return files


def test_a_sample_sent_back_unchanged_keeps_its_text(client, marketer, settings):
    import json

    def compact(files):
        files["sample.json"] = json.dumps(json.loads(files["sample.json"]))

    files = stored_over(settings, client, marketer, compact)
    sample = json.loads(files["sample.json"])
    assert put(client, marketer, sample=sample, base=2).json == {"version": 3}
    assert latest(client, marketer, 3)["files"]["sample.json"] == files["sample.json"]


def test_an_unknown_key_in_a_locale_table_is_dropped_on_save(client, marketer, settings):
    def misspell(files):
        files["template.toml"] += 'subjet = "typo"\n'  # inside [locales.fr], the last table

    stored_over(settings, client, marketer, misspell)
    assert put(client, marketer, base=2).json == {"version": 3}
    saved = latest(client, marketer, 3)
    assert "subjet" not in saved["files"]["template.toml"]
    assert saved["locales"]["fr"]["subject"].startswith("{{ recipient.first_name")


def test_a_default_locale_table_stored_before_it_was_refused_is_dropped_on_save(
    client, marketer, settings
):
    """[locales.en] with default_locale en never did anything; left, it refused every save."""

    def default_table(files):
        files["template.toml"] += '\n[locales.en]\nsubject = "never sent"\n'

    stored_over(settings, client, marketer, default_table)
    assert put(client, marketer, base=2).json == {"version": 3}
    saved = latest(client, marketer, 3)
    assert "[locales.en]" not in saved["files"]["template.toml"]
    assert saved["locales"]["fr"]["subject"].startswith("{{ recipient.first_name")


def test_a_sample_value_changed_only_in_type_is_saved(client, marketer):
    sample = client.get(NAME, headers=marketer).json["sample"]
    sample["items"][0]["in_stock"] = 1  # was true: equal in Python, not in JSON or Jinja
    assert put(client, marketer, sample=sample).json == {"version": 2}
    assert '"in_stock": 1' in latest(client, marketer, 2)["files"]["sample.json"]


def test_a_variant_is_edited_whatever_case_its_code_was_saved_in(client, marketer):
    """The library matches fr, FR and fr_fr alike; an edit must reach the variant, not twin it."""
    saved = put(client, marketer, locales={"IT": {"subject": "Ciao", "mjml": FR_MJML}})
    assert saved.status_code == 201, saved.json
    version = saved.json["version"]
    client.post(f"{NAME}/publish", json={"version": version}, headers=marketer)
    files = latest(client, marketer, version)["files"]
    assert "email.IT.mjml" in files
    again = put(client, marketer, locales={"it": {"subject": "Salve"}})
    assert again.status_code == 201, again.json
    edited = latest(client, marketer, again.json["version"])
    assert [k for k in edited["locales"] if k.lower() == "it"] == ["IT"]
    assert edited["locales"]["IT"]["subject"] == "Salve"
    assert edited["locales"]["IT"]["mjml"] == FR_MJML
    client.post(f"{NAME}/publish", json=again.json, headers=marketer)
    removed = put(client, marketer, locales={"it": None})
    files = latest(client, marketer, removed.json["version"])["files"]
    assert not [name for name in files if name.lower().startswith("email.it.")]
