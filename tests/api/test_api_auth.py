"""Every declared endpoint x every role: 401 without a valid key, 403 with the wrong role."""

from __future__ import annotations

import pytest

from api import create_app
from api.auth import Role
from api.openapi import operations

DECLARED = operations(create_app({"SECRET_KEY": "x" * 32}))
PROTECTED = [(path, method, spec) for path, method, spec in DECLARED if spec.roles]


def concrete(path: str) -> str:
    return (
        path.replace("{name}", "picked-for-you")
        .replace("{user_id}", "42")
        .replace("{version}", "1")
    )


def test_every_v1_endpoint_is_protected():
    v1 = {(path, method) for path, method, _ in DECLARED if path.startswith("/v1/")}
    assert v1 == {(path, method) for path, method, _ in PROTECTED}
    assert len(PROTECTED) >= 16


@pytest.mark.parametrize(
    ("path", "method", "spec"), PROTECTED, ids=[f"{m.upper()} {p}" for p, m, _ in PROTECTED]
)
def test_endpoint_by_role(client, role_keys, path, method, spec):
    url = concrete(path)
    anonymous = client.open(url, method=method.upper())
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
    forged = client.open(url, method=method.upper(), headers={"Authorization": "Bearer rpk_x"})
    assert forged.status_code == 401
    basic = client.open(url, method=method.upper(), headers={"Authorization": "Basic Zm9vOmJhcg=="})
    assert basic.status_code == 401
    for role in Role:
        headers = {"Authorization": f"Bearer {role_keys[role]}"}
        response = client.open(url, method=method.upper(), headers=headers)
        allowed = role is Role.ADMIN or role in spec.roles
        if allowed:
            assert response.status_code not in (401, 403), (role, response.json)
        else:
            assert response.status_code == 403, (role, response.status_code)
            assert response.json["type"] == "/problems/forbidden"


def test_a_401_says_what_is_wrong_with_the_authorization_header(client):
    for header, detail in (
        (None, "missing 'Authorization: Bearer <key>' header"),
        ("Basic Zm9vOmJhcg==", "the Authorization header uses the 'Basic' scheme"),
        ("Bearer ", "the Authorization header has no key after 'Bearer'"),
        ("rpk_secret-part", "the Authorization header has no scheme; send 'Bearer <key>'"),
        ("rpk_secret-part x", "the Authorization header has no scheme; send 'Bearer <key>'"),
        ("Basic", "the Authorization header uses the 'Basic' scheme"),
        ("Bearer rpk_unknown", "unknown API key"),
    ):
        headers = {} if header is None else {"Authorization": header}
        answer = client.post("/v1/compose", json={}, headers=headers)
        assert answer.status_code == 401 and answer.json["detail"].startswith(detail), header
        assert "secret" not in answer.text  # a key sent without its scheme is never repeated


def test_roles_follow_the_design():
    expected = {
        "/v1/compose": Role.PLATFORM,
        "/v1/compose/batch": Role.PLATFORM,
        "/v1/recommendations": Role.PLATFORM,
        "/v1/events": Role.PLATFORM,
        "/v1/templates": Role.MARKETER,
        "/v1/templates/{name}/publish": Role.MARKETER,
        "/v1/fatigue/rules": Role.ENGINEER,
        "/v1/fatigue/simulate": Role.ENGINEER,
        "/v1/users/{user_id}/fatigue": Role.ENGINEER,
    }
    found = {path: spec.roles for path, _, spec in PROTECTED}
    for path, role in expected.items():
        assert found[path] == (role,), path


def test_public_endpoints_need_no_key(client):
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"):
        assert client.get(path).status_code == 200, path
