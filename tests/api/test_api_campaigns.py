"""The campaign registry: an unknown campaign is a 422; the registry fills in and guards."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from api import create_app
from api.campaigns import CampaignRegistry
from fatigue.errors import ConfigurationError, ValidationError
from fatigue.rules import load_rules

REGISTRY = """
[campaigns.weekly-picks]
category = "recommendations"
kind = "promotional"
priority = 1
template = "picked-for-you"

[campaigns.digest]
kind = "editorial"
"""


@pytest.fixture
def registered(tmp_path: Path, settings, role_keys, clock):
    path = tmp_path / "campaigns.toml"
    path.write_text(REGISTRY)
    return create_app({**settings, "CAMPAIGNS_FILE": str(path), "CLOCK": clock}).test_client()


def compose(client, auth, body):
    return client.post("/v1/compose", json=body, headers=auth("platform"))


def test_an_unknown_campaign_is_a_422_naming_it_and_the_registered_ones(
    registered, auth, compose_request
):
    body = compose_request()
    body["campaign"]["id"] = "flash-sale"
    response = compose(registered, auth, body)
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    error = response.json["errors"][0]
    assert error["field"] == "campaign.id"
    assert "'flash-sale'" in error["message"] and "digest, weekly-picks" in error["message"]


def test_the_registry_fills_what_the_request_leaves_out(registered, auth, compose_request):
    body = compose_request(template=None)
    body["campaign"] = {"id": "weekly-picks"}  # template, category, kind from the registry
    response = compose(registered, auth, body)
    assert response.status_code == 200, response.json
    assert response.json["decision"]["action"] == "send"
    assert response.json["email"]["template"] == "picked-for-you"


def test_a_request_contradicting_the_registry_is_refused(registered, auth, compose_request):
    body = compose_request()
    body["campaign"]["kind"] = "transactional"  # would slip past the caps
    response = compose(registered, auth, body)
    assert response.status_code == 422
    assert response.json["errors"][0]["field"] == "campaign.kind"
    assert "'promotional', not 'transactional'" in response.json["errors"][0]["message"]


def test_competing_campaigns_are_each_checked(registered, auth, compose_request):
    body = compose_request(campaign=None)
    body.pop("campaign")
    body["campaigns"] = [{"id": "digest"}, {"id": "nope"}]
    response = compose(registered, auth, body)
    assert response.status_code == 422
    assert [e["field"] for e in response.json["errors"]] == ["campaigns.1.id"]


def test_every_unknown_or_contradicting_campaign_is_named_at_once(
    registered, auth, compose_request
):
    body = compose_request(campaign=None)
    body.pop("campaign")
    body["campaigns"] = [{"id": "nope"}, {"id": "weekly-picks", "kind": "transactional"}]
    response = compose(registered, auth, body)
    assert response.status_code == 422
    fields = [e["field"] for e in response.json["errors"]]
    assert fields == ["campaigns.0.id", "campaigns.1.kind"]


def test_a_batch_answers_an_unknown_campaign_on_its_own_line(registered, auth, compose_request):
    good = compose_request("12347", "b-1")
    bad = compose_request("12348", "b-2")
    bad["campaign"]["id"] = "flash-sale"
    response = registered.post(
        "/v1/compose/batch",
        data="".join(json.dumps(line) + "\n" for line in (good, bad)),
        headers={**auth("platform"), "Content-Type": "application/x-ndjson"},
    )
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert lines[0]["decision"]["action"] == "send"
    assert lines[1]["error"]["status"] == 422 and "flash-sale" in lines[1]["error"]["detail"]


def test_without_a_registry_a_campaign_needs_a_template(client, auth, compose_request):
    body = compose_request(template=None)
    response = compose(client, auth, body)
    assert response.status_code == 422
    assert response.json["errors"][0]["field"] == "campaign.template"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[campaigns.a\n", "cannot read"),
        ("[campaigns.a]\ncolour = 'red'\n", "unknown field(s) colour"),
        ("[campaigns.a]\nkind = 'loud'\n", "[campaigns.a]: kind:"),
        ("[other]\n", "only [campaigns.<id>]"),
    ],
)
def test_a_bad_registry_file_names_the_file_and_what_is_wrong(tmp_path, text, expected):
    path = tmp_path / "campaigns.toml"
    path.write_text(text)
    with pytest.raises(ConfigurationError) as caught:
        CampaignRegistry.load(path)
    assert str(path) in str(caught.value) and expected in str(caught.value)


def test_a_missing_registry_file_stops_the_app_at_start(tmp_path, settings, clock):
    app = create_app({**settings, "CAMPAIGNS_FILE": str(tmp_path / "nope.toml"), "CLOCK": clock})
    with pytest.raises(ConfigurationError, match="campaign registry not found"):
        app.extensions["rapport"].warm()


def test_the_registry_is_listed_for_platforms_marketers_and_engineers(registered, auth):
    for role in ("platform", "marketer", "engineer"):
        listed = registered.get("/v1/campaigns", headers=auth(role))
        assert listed.status_code == 200, role
    body = listed.json
    assert body["registry"] is True
    assert [c["id"] for c in body["campaigns"]] == ["digest", "weekly-picks"]
    assert body["campaigns"][1] == {"id": "weekly-picks", "category": "recommendations",
                                    "kind": "promotional", "priority": 1.0,
                                    "template": "picked-for-you"}  # fmt: skip


def test_without_a_registry_the_list_says_so(client, auth):
    assert client.get("/v1/campaigns", headers=auth("platform")).json == {
        "registry": False,
        "campaigns": [],
    }


def test_explain_asks_about_a_registered_campaign_by_its_query(registered, auth):
    def explain(query: str):
        return registered.get(f"/v1/users/42/fatigue?{query}", headers=auth("engineer"))

    events = {"events": [{"type": "unsubscribe", "user_id": "42", "category": "recommendations",
                          "timestamp": "2026-11-23T10:00:00Z"}]}  # fmt: skip
    assert registered.post("/v1/events", json=events, headers=auth("platform")).status_code == 202
    anything = explain("").json
    assert anything["next_allowed"]["promotional"]["at"] is not None
    assert anything["category"] is None and anything["campaign"] is None
    picks = explain("campaign=weekly-picks").json  # its category comes from the registry
    assert picks["category"] == "recommendations" and picks["campaign"] == "weekly-picks"
    assert picks["next_allowed"]["promotional"]["at"] is None
    assert explain("category=recommendations").json["next_allowed"]["promotional"]["at"] is None
    unknown = explain("campaign=flash-sale")
    assert unknown.status_code == 422 and unknown.json["errors"][0]["field"] == "campaign"
    assert "digest, weekly-picks" in unknown.json["errors"][0]["message"]
    other = explain("campaign=weekly-picks&category=sale")
    assert other.status_code == 422 and other.json["errors"][0]["field"] == "category"


FIXED_CATEGORIES = """
[campaigns.weekly-picks]
category = "recommendations"

[campaigns.spring-sale]
category = "sale"
"""
SCOPED_RULES = """\
[[caps]]
max = 1
per = "1d"
category = "recomendations"

[[caps]]
max = 1
per = "1d"
campaign = "flash-sale"
"""


def validate_rules(client, auth, text: str):
    return client.post(
        "/v1/fatigue/rules/validate", json={"toml": text}, headers=auth("engineer")
    ).json


def test_validation_reports_cap_scopes_no_registered_campaign_has(
    tmp_path, settings, role_keys, clock, auth
):
    path = tmp_path / "campaigns.toml"
    path.write_text(FIXED_CATEGORIES)
    client = create_app({**settings, "CAMPAIGNS_FILE": str(path), "CLOCK": clock}).test_client()
    verdict = validate_rules(client, auth, SCOPED_RULES)
    assert verdict["valid"] is False
    assert [(e["source"], e["line"], e["field"]) for e in verdict["errors"]] == [
        ("<request>", 4, "caps[0].category"),
        ("<request>", 9, "caps[1].campaign"),
    ]
    assert (
        "category 'recomendations' (categories: recommendations, sale)"
        in (verdict["errors"][0]["message"])
    )
    fixed = SCOPED_RULES.replace("recomendations", "recommendations").replace("flash-", "spring-")
    assert validate_rules(client, auth, fixed) == {"valid": True, "errors": []}


def test_a_registry_with_an_open_category_still_checks_campaigns(registered, auth):
    """``digest`` takes the request's category: only the campaign can be called unknown."""
    verdict = validate_rules(registered, auth, SCOPED_RULES)
    assert [e["field"] for e in verdict["errors"]] == ["caps[1].campaign"]


def test_without_a_registry_any_scope_is_valid(client, auth):
    assert validate_rules(client, auth, SCOPED_RULES)["valid"] is True


def test_the_start_check_names_the_rules_file_line_and_field(tmp_path):
    """What ``rapport serve`` runs at start (``CampaignRegistry.check``): one problem a line."""
    registry_path = tmp_path / "campaigns.toml"
    registry_path.write_text(FIXED_CATEGORIES)
    rules_path = tmp_path / "rules.toml"
    rules_path.write_text(SCOPED_RULES)
    registry = CampaignRegistry.load(registry_path)
    with pytest.raises(ValidationError) as caught:
        registry.check(load_rules(rules_path))
    assert [str(p).split(": ")[0] for p in caught.value.problems] == [
        f"{rules_path}:4 [caps[0].category]",
        f"{rules_path}:9 [caps[1].campaign]",
    ]
    assert str(registry_path) in caught.value.problems[0].message
    CampaignRegistry.load("").check(load_rules(rules_path))  # no registry: nothing to check


def test_rapport_serve_stops_at_start_on_a_cap_no_campaign_can_match(settings, tmp_path):
    from api.serve import check_settings

    registry_path = tmp_path / "campaigns.toml"
    registry_path.write_text(FIXED_CATEGORIES)
    rules_path = tmp_path / "rules.toml"
    rules_path.write_text(SCOPED_RULES)
    ready = {**settings, "STORE_URL": "memory://", "CAMPAIGNS_FILE": str(registry_path)}
    check_settings(ready)  # the bundled rules scope nothing the registry lacks
    with pytest.raises(ValidationError, match=r"caps\[0\]\.category"):
        check_settings({**ready, "RULES": str(rules_path)})


def test_resolution_is_kept_per_registry_and_per_fields_given(
    registered, compose_request, monkeypatch
):
    from api import compose as composing
    from api.schemas.compose import ComposeRequest
    from api.services import services

    def body(campaign):
        return ComposeRequest.model_validate(compose_request(template=None, campaign=campaign))

    omitted = body({"id": "weekly-picks"})
    given_default = body({"id": "weekly-picks", "category": ""})  # the same values, given
    with registered.application.app_context():
        first, again = composing.to_input(omitted), composing.to_input(body({"id": "weekly-picks"}))
        assert again == first and again.templates is not first.templates
        assert first.campaigns[0].category == "recommendations"
        with pytest.raises(ValidationError):
            composing.to_input(given_default)  # contradicts the registry, found before or not
        reloaded = CampaignRegistry.parse(REGISTRY.replace("recommendations", "picks"), Path("r"))
        services().provide("campaigns", reloaded)
        assert composing.to_input(omitted).campaigns[0].category == "picks"
        monkeypatch.setattr(composing, "RESOLVED_LIMIT", 2)
        for n in range(4):
            made = composing.to_input(body({"id": "digest", "template": f"t-{n}"}))
            assert made.templates == {"digest": f"t-{n}"} and len(composing._resolved) <= 2
