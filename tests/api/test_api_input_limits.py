"""Hostile template and rule text gets a prompt validation answer, never a 500 or a stray folder.

Each case was reproduced against the running API: a filter chain in a subject ran for 21 s
before its 422, ``evil%0A`` saved a folder named ``evil\\n``, and deeply nested TOML or Jinja
answered 500.
"""

from __future__ import annotations

from pathlib import Path

import pytest

NAME = "/v1/templates/picked-for-you"


@pytest.fixture
def marketer(auth):
    return auth("marketer")


def put(client, marketer, path=NAME, **changes):
    base = client.get(NAME, headers=marketer).json
    body = {"mjml": base["mjml"], "subject": base["subject"], "sample": base["sample"]}
    body.update(changes, note="test")
    return client.put(path, json=body, headers=marketer)


def test_a_growing_filter_chain_in_a_subject_is_refused_at_the_size_limit(client, marketer):
    subject = "{% set s = '%' * 99999 %}{{ (s" + "|urlencode" * 50 + ")|length }}"
    response = put(client, marketer, subject=subject)
    assert response.status_code == 422
    errors = response.json["errors"]
    assert [error["field"] for error in errors] == ["subject"]
    assert "limit 100,000" in errors[0]["message"]


@pytest.mark.parametrize("name", ["evil%0A", "evil%0D%0A", "evil%0A%0A"])
def test_a_template_name_ending_in_a_newline_is_refused(client, marketer, settings, name):
    response = put(client, marketer, path=f"/v1/templates/{name}")
    assert response.status_code in (404, 422), response.json
    listed = client.get("/v1/templates", headers=marketer).json["templates"]
    assert not any("\n" in template["name"] for template in listed)
    folders = Path(settings["TEMPLATES_DIR"]).iterdir()
    assert not any("\n" in folder.name or "\r" in folder.name for folder in folders)


@pytest.mark.parametrize(
    "toml",
    ["a = " + "[" * 50_000 + "]" * 50_000, "a = " + "{b=" * 5_000 + "1" + "}" * 5_000],
    ids=["arrays", "inline-tables"],
)
def test_rules_nested_too_deeply_are_invalid_not_an_error(client, auth, toml):
    response = client.post(
        "/v1/fatigue/rules/validate", json={"toml": toml}, headers=auth("engineer")
    )
    assert response.status_code == 200
    assert response.json["valid"] is False
    assert "nests too deeply" in response.json["errors"][0]["message"]


@pytest.mark.parametrize(
    "snippet",
    ["{% if 1 %}" * 3000 + "x" + "{% endif %}" * 3000, "{{ 1" + "|abs" * 20_000 + " }}"],
    ids=["ifs", "filters"],
)
def test_mjml_nested_too_deeply_is_a_422_naming_the_file(client, marketer, snippet):
    base = client.get(NAME, headers=marketer).json["mjml"]
    mjml = base.replace("</mj-body>", f"<mj-section><mj-column><mj-text>{snippet}</mj-text>"
                        "</mj-column></mj-section></mj-body>")  # fmt: skip
    response = put(client, marketer, mjml=mjml)
    assert response.status_code == 422
    errors = response.json["errors"]
    assert any("nests too deeply" in error["message"] for error in errors)
    assert all(error.get("source") in ("email.mjml", None) for error in errors), errors
