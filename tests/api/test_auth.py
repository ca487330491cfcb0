"""/v1/auth/* and /v1/api-keys: accounts, sign-in, refresh rotation, API keys."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import UserHandle, make_settings
from tests.fixtures.hashing import fast_password_hashing  # noqa: F401

PROBLEM = "application/problem+json"


def assert_problem(r: Any, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM), r.headers
    body = r.json()
    assert body["status"] == status and body["code"] == code, body
    return body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- register ------------------------------------------------------------------------------------
def test_register_then_sign_in(client: Any) -> None:
    r = client.post("/v1/auth/register", json={"email": "  Ada@Example.com ", "password": "long enough pw"})
    assert r.status_code == 202, r.text
    assert r.json() == {"status": "accepted", "email": "ada@example.com"}
    assert "password" not in r.text and "argon2" not in r.text
    t = client.post("/v1/auth/token", json={"email": "ada@example.com", "password": "long enough pw"})
    me = client.get("/v1/auth/me", headers=bearer(t.json()["access_token"])).json()
    assert me["email"] == "ada@example.com" and me["role"] == "user" and me["disabled"] is False
    assert me["credits"] == 100


def test_register_does_not_tell_whether_an_address_has_an_account(client: Any, alice: UserHandle) -> None:
    def answer(r: Any) -> tuple[int, Any, str]:
        return r.status_code, r.json(), r.headers["content-type"]

    new = client.post("/v1/auth/register", json={"email": "New@example.com", "password": "another password"})
    taken = client.post("/v1/auth/register", json={"email": "ALICE@example.com", "password": "another password"})
    assert answer(taken) == (202, {"status": "accepted", "email": "alice@example.com"}, "application/json")
    assert answer(new)[0] == 202 and answer(new)[1:] == (
        {"status": "accepted", "email": "new@example.com"}, "application/json")
    assert set(taken.headers) == set(new.headers)
    # The existing account is untouched: its password is still its own, the one sent does not sign in.
    assert client.post("/v1/auth/token", json={"email": alice.email, "password": alice.password}).status_code == 200
    assert_problem(client.post("/v1/auth/token", json={"email": alice.email, "password": "another password"}),
                   401, "invalid_credentials")


def test_register_invalid_email(client: Any) -> None:
    for email in ["not-an-email", "a@b", "two@@example.com", "sp ace@example.com", "", "x" * 65 + "@example.com"]:
        r = client.post("/v1/auth/register", json={"email": email, "password": "long enough pw"})
        assert_problem(r, 422, "invalid_email")
    assert_problem(client.post("/v1/auth/register", json={"email": "x" * 321, "password": "long enough pw"}),
                   422, "validation_error")


def test_register_short_password(client: Any) -> None:
    body = assert_problem(client.post("/v1/auth/register", json={"email": "x@example.com", "password": "short"}),
                          422, "validation_error")
    assert body["errors"][0]["field"] == "password"


def test_register_refuses_common_passwords(client: Any) -> None:
    for password in ["password1", "Password1", "iloveyou", "qwertyuiop", "  12345678 "]:
        body = assert_problem(client.post("/v1/auth/register", json={"email": "x@example.com", "password": password}),
                              422, "password_too_common")
        assert body["field"] == "password"
    # Nothing was created.
    assert_problem(client.post("/v1/auth/token", json={"email": "x@example.com", "password": "password1"}),
                   401, "invalid_credentials")


def test_common_password_list_ships_with_the_package() -> None:
    from reelforge.adapters import auth as crypto

    listed = crypto._common_passwords()
    assert len(listed) > 5000 and "password" in listed and "correct horse battery" not in listed
    assert all(len(p) >= 8 and p == p.lower() for p in listed)


def test_register_rejects_extra_or_missing_fields(client: Any) -> None:
    for payload in [
        {"email": "x@example.com", "password": "long enough pw", "role": "admin"},
        {"email": "x@example.com", "password": "long enough pw", "credits": 10**9},
        {"email": "x@example.com"},
        {"email": "x@example.com", "password": "p" * 1025},
        [],
    ]:
        body = assert_problem(client.post("/v1/auth/register", json=payload), 422, "validation_error")
        assert body["errors"], body
    # Nothing was created (the "role": "admin" attempt above in particular).
    t = client.post("/v1/auth/token", json={"email": "x@example.com", "password": "long enough pw"})
    assert_problem(t, 401, "invalid_credentials")


def test_register_malformed_json(client: Any) -> None:
    r = client.post("/v1/auth/register", content=b'{"email": ', headers={"Content-Type": "application/json"})
    assert_problem(r, 422, "validation_error")


@pytest.fixture
def closed_client(tmp_path: Path, db_url: str) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from reelforge.api.app import create_app
    from reelforge.container import Container

    c = Container(make_settings(tmp_path, db_url, auth={"allow_registration": False}))
    with TestClient(create_app(container=c)) as tc:
        yield tc
    c.close()


def test_registration_closed(closed_client: Any) -> None:
    r = closed_client.post("/v1/auth/register", json={"email": "x@example.com", "password": "long enough pw"})
    assert_problem(r, 403, "registration_closed")


# --- token, refresh, me --------------------------------------------------------------------------
def test_token_pair_and_me(client: Any, alice: UserHandle) -> None:
    r = client.post("/v1/auth/token", json={"email": "Alice@Example.com", "password": alice.password})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "bearer" and body["expires_in"] == 900
    assert body["access_token"].count(".") == 2 and body["refresh_token"].startswith("rft_")
    me = client.get("/v1/auth/me", headers=bearer(body["access_token"]))
    assert me.status_code == 200
    assert me.json()["id"] == alice.id and me.json()["email"] == "alice@example.com"


def test_wrong_password_and_unknown_email_look_the_same(client: Any, alice: UserHandle) -> None:
    a = assert_problem(client.post("/v1/auth/token", json={"email": alice.email, "password": "wrong password"}),
                       401, "invalid_credentials")
    b = assert_problem(client.post("/v1/auth/token", json={"email": "ghost@example.com", "password": "whatever1"}),
                       401, "invalid_credentials")
    assert a["detail"] == b["detail"]


def test_token_rejects_unknown_fields(client: Any, alice: UserHandle) -> None:
    r = client.post("/v1/auth/token", json={"email": alice.email, "password": alice.password, "scope": "admin"})
    assert_problem(r, 422, "validation_error")


def test_refresh_rotates_and_old_token_stops_working(client: Any, alice: UserHandle) -> None:
    pair = client.post("/v1/auth/token", json={"email": alice.email, "password": alice.password}).json()
    r = client.post("/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert r.status_code == 200, r.text
    new = r.json()
    assert new["refresh_token"] != pair["refresh_token"]
    assert client.get("/v1/auth/me", headers=bearer(new["access_token"])).status_code == 200
    # The new one works once.
    assert client.post("/v1/auth/refresh", json={"refresh_token": new["refresh_token"]}).status_code == 200
    assert_problem(client.post("/v1/auth/refresh", json={"refresh_token": new["refresh_token"]}),
                   401, "invalid_refresh_token")
    # The old refresh token was revoked by the rotation.
    assert_problem(client.post("/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}),
                   401, "invalid_refresh_token")


def test_replayed_refresh_token_revokes_its_family(client: Any, alice: UserHandle) -> None:
    def refresh(token: str) -> Any:
        return client.post("/v1/auth/refresh", json={"refresh_token": token})

    first = client.post("/v1/auth/token", json={"email": alice.email, "password": alice.password}).json()
    other = client.post("/v1/auth/token", json={"email": alice.email, "password": alice.password}).json()
    second = refresh(first["refresh_token"]).json()
    third = refresh(second["refresh_token"]).json()
    # The first token comes back after two rotations: someone holds a copy.
    assert_problem(refresh(first["refresh_token"]), 401, "invalid_refresh_token")
    # Every token descended from that sign-in is dead now, the newest included...
    assert_problem(refresh(third["refresh_token"]), 401, "invalid_refresh_token")
    assert_problem(refresh(second["refresh_token"]), 401, "invalid_refresh_token")
    # ...while another sign-in of the same account is a family of its own and goes on working.
    assert refresh(other["refresh_token"]).status_code == 200


def test_replayed_refresh_token_revokes_across_processes(client: Any, alice: UserHandle, settings: Any) -> None:
    """The family lives in the database: a replay seen by one API process revokes what another one issued."""
    from fastapi.testclient import TestClient

    from reelforge.api.app import create_app
    from reelforge.container import Container

    pair = client.post("/v1/auth/token", json={"email": alice.email, "password": alice.password}).json()
    rotated = client.post("/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}).json()
    other = Container(settings)
    try:
        with TestClient(create_app(container=other)) as second:
            assert_problem(second.post("/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}),
                           401, "invalid_refresh_token")
    finally:
        other.close()
    assert_problem(client.post("/v1/auth/refresh", json={"refresh_token": rotated["refresh_token"]}),
                   401, "invalid_refresh_token")


def test_refresh_with_garbage(client: Any) -> None:
    for token in ["rft_garbage", "", "x" * 512]:
        assert_problem(client.post("/v1/auth/refresh", json={"refresh_token": token}), 401,
                       "invalid_refresh_token")


def test_access_token_is_not_a_refresh_token(client: Any, alice: UserHandle) -> None:
    assert_problem(client.post("/v1/auth/refresh", json={"refresh_token": alice.token}), 401,
                   "invalid_refresh_token")


def test_refresh_token_too_long_is_validation_error(client: Any) -> None:
    assert_problem(client.post("/v1/auth/refresh", json={"refresh_token": "x" * 513}), 422, "validation_error")


def test_me_requires_auth(client: Any) -> None:
    r = client.get("/v1/auth/me")
    assert_problem(r, 401, "missing_credentials")
    assert r.headers["www-authenticate"] == "Bearer"


# --- password change -------------------------------------------------------------------------------
def test_change_password(client: Any, alice: UserHandle) -> None:
    other = client.post("/v1/auth/token", json={"email": alice.email, "password": alice.password}).json()
    r = alice.post("/v1/auth/password", json={"current_password": alice.password, "new_password": "a brand new secret"})
    assert r.status_code == 200, r.text
    pair = r.json()
    assert client.get("/v1/auth/me", headers=bearer(pair["access_token"])).status_code == 200
    # The old password no longer signs in; the new one does.
    assert_problem(client.post("/v1/auth/token", json={"email": alice.email, "password": alice.password}),
                   401, "invalid_credentials")
    assert client.post("/v1/auth/token", json={"email": alice.email, "password": "a brand new secret"}).status_code == 200
    # Other sessions' refresh tokens stopped working; this session's new one works.
    assert_problem(client.post("/v1/auth/refresh", json={"refresh_token": other["refresh_token"]}),
                   401, "invalid_refresh_token")
    assert client.post("/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}).status_code == 200


def test_change_password_refusals(client: Any, alice: UserHandle) -> None:
    body = assert_problem(alice.post("/v1/auth/password", json={"current_password": alice.password,
                                                                "new_password": "iloveyou1"}), 422, "password_too_common")
    assert body["field"] == "new_password"
    assert_problem(alice.post("/v1/auth/password", json={"current_password": alice.password, "new_password": "short"}),
                   422, "validation_error")
    body = assert_problem(alice.post("/v1/auth/password", json={"current_password": "not it at all",
                                                                "new_password": "a brand new secret"}),
                          403, "wrong_password")
    assert body["field"] == "current_password"
    # The password did not change.
    assert client.post("/v1/auth/token", json={"email": alice.email, "password": alice.password}).status_code == 200


def test_change_password_guesses_are_throttled(client: Any, alice: UserHandle) -> None:
    """A stolen access token is no way around the sign-in throttle to guess the current password."""
    for _ in range(5):
        assert alice.post("/v1/auth/password", json={"current_password": "guess guess",
                                                     "new_password": "a brand new secret"}).status_code == 403
    r = alice.post("/v1/auth/password", json={"current_password": alice.password, "new_password": "a brand new secret"})
    assert_problem(r, 429, "login_throttled")
    assert int(r.headers["retry-after"]) >= 1


# --- API keys ------------------------------------------------------------------------------------
def test_api_key_lifecycle(client: Any, alice: UserHandle) -> None:
    r = alice.post("/v1/api-keys", json={"name": "ci"})
    assert r.status_code == 201, r.text
    created = r.json()
    key = created["key"]
    assert key.startswith("rf_") and created["name"] == "ci" and created["revoked_at"] is None
    assert key.split("_")[1] == created["prefix"]

    # The key authenticates like a token.
    me = client.get("/v1/auth/me", headers=bearer(key))
    assert me.status_code == 200 and me.json()["id"] == alice.id
    job = client.post("/v1/jobs", headers=bearer(key), json={"kind": "system.noop"})
    assert job.status_code == 202, job.text

    # Shown once: the listing has no secret, and records the use.
    listed = alice.get("/v1/api-keys").json()["data"]
    assert [k["id"] for k in listed] == [created["id"]]
    assert "key" not in listed[0] and key not in str(listed)
    assert listed[0]["last_used_at"] is not None

    # Revoke: answered with the key's public view; the key stops working at once.
    r = alice.delete(f"/v1/api-keys/{created['id']}")
    assert r.status_code == 200, r.text
    assert r.json()["revoked_at"] is not None and "key" not in r.json()
    assert_problem(client.get("/v1/auth/me", headers=bearer(key)), 401, "invalid_api_key")
    # Revoking again is harmless.
    assert alice.delete(f"/v1/api-keys/{created['id']}").status_code == 200


def test_api_key_default_name_and_validation(client: Any, alice: UserHandle) -> None:
    r = alice.post("/v1/api-keys", json={})
    assert r.status_code == 201 and r.json()["name"] == "key"
    assert_problem(alice.post("/v1/api-keys", json={"name": ""}), 422, "validation_error")
    assert_problem(alice.post("/v1/api-keys", json={"name": "x", "scopes": ["admin"]}), 422, "invalid_scope")
    assert_problem(alice.post("/v1/api-keys", json={"name": "x", "role": "admin"}), 422, "validation_error")


def test_api_key_with_wrong_secret(client: Any, alice: UserHandle) -> None:
    key = alice.post("/v1/api-keys", json={"name": "k"}).json()["key"]
    prefix = key.split("_")[1]
    for bad in [f"rf_{prefix}_{'A' * 43}", f"rf_{prefix}", "rf_", "rf_nosuchprefix_secret", key + "x"]:
        assert_problem(client.get("/v1/auth/me", headers=bearer(bad)), 401, "invalid_api_key")


def test_api_keys_are_per_user(client: Any, alice: UserHandle, bob: UserHandle) -> None:
    key_id = alice.post("/v1/api-keys", json={"name": "mine"}).json()["id"]
    assert bob.get("/v1/api-keys").json()["data"] == []
    assert_problem(bob.delete(f"/v1/api-keys/{key_id}"), 404, "api_key_not_found")
    assert_problem(alice.delete("/v1/api-keys/does-not-exist"), 404, "api_key_not_found")
    # Bob's attempt revoked nothing.
    assert alice.get("/v1/api-keys").json()["data"][0]["revoked_at"] is None


def test_api_keys_require_auth(client: Any) -> None:
    for method, path in [("POST", "/v1/api-keys"), ("GET", "/v1/api-keys"), ("DELETE", "/v1/api-keys/abc")]:
        assert_problem(client.request(method, path, json={} if method == "POST" else None), 401,
                       "missing_credentials")
