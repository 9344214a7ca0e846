"""``POST /v1/recommendations`` through the test client, against the trained demo model."""

from __future__ import annotations

from pathlib import Path


def test_known_customer_gets_personal_picks_with_catalog(client, auth):
    response = client.post(
        "/v1/recommendations", json={"user_id": "12347", "n": 5}, headers=auth("platform")
    )
    assert response.status_code == 200
    body = response.json
    assert body["user_id"] == "12347" and body["model_version"]
    picks = body["recommendations"]
    assert [pick["rank"] for pick in picks] == [1, 2, 3, 4, 5]
    assert all(pick["source"] == "cf" for pick in picks)
    assert all(0.0 <= pick["relevance"] <= 1.0 for pick in picks)
    assert all(pick["item"]["item_id"] == pick["item_id"] for pick in picks)


def test_unknown_customer_gets_the_cold_start_and_filters_apply(client, auth):
    response = client.post(
        "/v1/recommendations",
        json={"user_id": "never-seen", "n": 4, "filters": {"include_categories": ["kitchen"]}},
        headers=auth("platform"),
    )
    assert response.status_code == 200
    picks = response.json["recommendations"]
    assert len(picks) == 4
    assert {pick["source"] for pick in picks} <= {"popular", "trending"}
    assert {pick["item"]["category"] for pick in picks} == {"kitchen"}


def test_excluded_items_never_come_back(client, auth):
    first = client.post(
        "/v1/recommendations", json={"user_id": "12347", "n": 3}, headers=auth("platform")
    ).json["recommendations"]
    banned = [pick["item_id"] for pick in first]
    again = client.post(
        "/v1/recommendations",
        json={"user_id": "12347", "n": 3, "filters": {"exclude_items": banned}},
        headers=auth("platform"),
    ).json["recommendations"]
    assert not {pick["item_id"] for pick in again} & set(banned)


def test_new_customer_with_recent_clicks_is_folded_in(client, auth):
    response = client.post(
        "/v1/recommendations",
        json={"user_id": "new-42", "n": 3, "recent": [{"item_id": "85123A", "event": "view"}]},
        headers=auth("platform"),
    )
    assert response.status_code == 200
    assert response.json["recommendations"][0]["source"] == "similar"


def test_an_event_the_model_does_not_weigh_is_named_not_ignored(client, auth):
    recent = [{"item_id": "85123A", "event": "view"}, {"item_id": "22197", "event": "purchse"}]
    response = client.post(
        "/v1/recommendations",
        json={"user_id": "new-42", "recent": recent},
        headers=auth("platform"),
    )
    assert response.status_code == 422
    [error] = response.json["errors"]
    assert error["field"] == "recent.1.event" and "'purchse'" in error["message"]
    assert "purchase" in error["message"]  # what the model does weigh


def test_malformed_json_names_the_line(client, auth):
    response = client.post("/v1/recommendations", data='{\n"user_id": }', headers=auth("platform"))
    assert response.status_code == 400
    assert response.content_type == "application/problem+json"
    assert response.json["errors"][0]["line"] == 2


def test_wrong_fields_are_each_named(client, auth):
    response = client.post(
        "/v1/recommendations",
        json={"user_id": "", "n": 1000, "colour": "red"},
        headers=auth("platform"),
    )
    assert response.status_code == 422
    fields = {error["field"] for error in response.json["errors"]}
    assert fields == {"user_id", "n", "colour"}


def test_empty_body_is_a_clear_400(client, auth):
    response = client.post("/v1/recommendations", headers=auth("platform"))
    assert response.status_code == 400
    assert "empty" in response.json["detail"]


def test_out_of_stock_and_expired_items_are_never_offered(
    client, auth, settings, clock, tmp_path, compose_request
):
    import csv

    from click.testing import CliRunner

    from api import create_app
    from engine.cli import train

    top = [p["item_id"] for p in client.post(
        "/v1/recommendations", json={"user_id": "12347", "n": 4}, headers=auth("platform")
    ).json["recommendations"]]  # fmt: skip
    demo = Path(__file__).resolve().parents[2] / "engine" / "demo_data"
    with (demo / "catalog.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        if row["item_id"] in top[:2]:
            row["in_stock"] = "false"
        elif row["item_id"] in top[2:]:
            row["expires_at"] = "2026-11-01T00:00:00Z"  # before the test clock's today
    catalog = tmp_path / "catalog.csv"
    with catalog.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    result = CliRunner().invoke(train, [
        "--interactions", str(demo / "interactions.csv.gz"), "--catalog", str(catalog),
        "--default-event", "purchase", "--model-dir", str(tmp_path / "model")])  # fmt: skip
    assert result.exit_code == 0, result.output
    stocked = create_app({**settings, "MODEL_DIR": str(tmp_path / "model"), "CLOCK": clock})

    def picks(**filters):
        body = {"user_id": "12347", "n": 8, "filters": filters}
        answer = stocked.test_client().post(
            "/v1/recommendations", json=body, headers=auth("platform")
        )
        return {pick["item_id"] for pick in answer.json["recommendations"]}

    assert not picks() & set(top)
    assert set(top) <= picks(available_only=False)
    composed = (
        stocked.test_client()
        .post("/v1/compose", json=compose_request(), headers=auth("platform"))
        .json["decision"]
    )
    assert composed["items"] and not {item["item_id"] for item in composed["items"]} & set(top)
