"""The console's sign-in (`/v1/auth/session`): the refresh token lives in an HttpOnly, SameSite=Strict cookie
sent only to the session routes, never in an answer a script can read; it rotates and sign-out revokes it."""

from __future__ import annotations

from collections.abc import Iterator
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import UserHandle, make_settings
from tests.fixtures.hashing import fast_password_hashing  # noqa: F401

PROBLEM = "application/problem+json"


def set_cookie(r: Any) -> SimpleCookie:
    jar: SimpleCookie = SimpleCookie()
    for header in r.headers.get_list("set-cookie"):
        jar.load(header)
    return jar


def sign_in(client: Any, user: UserHandle) -> Any:
    r = client.post("/v1/auth/session", json={"email": user.email, "password": user.password})
    assert r.status_code == 200, r.text
    return r


def test_the_refresh_token_is_an_httponly_strict_cookie_of_the_session_routes(client: Any, alice: UserHandle) -> None:
    r = sign_in(client, alice)
    body = r.json()
    assert set(body) == {"access_token", "token_type", "expires_in"} and "rft_" not in r.text
    assert r.headers["cache-control"] == "no-store"
    morsel = set_cookie(r)["reelforge_session"]
    assert morsel.value.startswith("rft_")
    assert morsel["httponly"] and morsel["samesite"] == "strict" and morsel["path"] == "/v1/auth/session"
    assert int(morsel["max-age"]) == 30 * 24 * 3600
    assert not morsel["secure"]  # plain http here; see the https case below
    assert client.get("/v1/auth/me", headers={"Authorization": f"Bearer {body['access_token']}"}).status_code == 200


def test_refresh_rotates_the_cookie(client: Any, alice: UserHandle) -> None:
    first = set_cookie(sign_in(client, alice))["reelforge_session"].value
    r = client.post("/v1/auth/session/refresh")
    assert r.status_code == 200, r.text
    assert set(r.json()) == {"access_token", "token_type", "expires_in"}
    second = set_cookie(r)["reelforge_session"].value
    assert second != first
    # The old refresh token was spent by the rotation.
    client.cookies.clear()
    r = client.post("/v1/auth/session/refresh", headers={"Cookie": f"reelforge_session={first}"})
    assert r.status_code == 401 and r.json()["code"] == "invalid_refresh_token"


def test_refresh_without_a_cookie_is_401(client: Any) -> None:
    r = client.post("/v1/auth/session/refresh")
    assert r.status_code == 401 and r.headers["content-type"].startswith(PROBLEM)
    assert r.json()["code"] == "invalid_refresh_token"


def test_sign_out_revokes_the_refresh_token_and_removes_the_cookie(client: Any, alice: UserHandle) -> None:
    token = set_cookie(sign_in(client, alice))["reelforge_session"].value
    r = client.delete("/v1/auth/session")
    assert r.status_code == 204
    gone = set_cookie(r)["reelforge_session"]
    assert gone.value == "" and gone["path"] == "/v1/auth/session" and int(gone["max-age"]) == 0
    r = client.post("/v1/auth/refresh", json={"refresh_token": token})
    assert r.status_code == 401 and r.json()["code"] == "invalid_refresh_token"
    assert client.delete("/v1/auth/session").status_code == 204  # signed out already: still fine


def test_wrong_password_sets_no_cookie(client: Any, alice: UserHandle) -> None:
    r = client.post("/v1/auth/session", json={"email": alice.email, "password": "wrong password"})
    assert r.status_code == 401 and r.json()["code"] == "invalid_credentials"
    assert "set-cookie" not in r.headers


@pytest.fixture
def https_client(tmp_path: Path, sqlite_url: str) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from reelforge.api.app import create_app
    from reelforge.container import Container

    c = Container(make_settings(tmp_path, sqlite_url, public_url="https://media.example.com"))
    with TestClient(create_app(container=c)) as client:
        yield client
    c.close()


def test_the_cookie_is_secure_behind_https(https_client: Any) -> None:
    https_client.post("/v1/auth/register", json={"email": "ada@example.com", "password": "a long password"})
    r = https_client.post("/v1/auth/session", json={"email": "ada@example.com", "password": "a long password"})
    assert r.status_code == 200, r.text
    assert set_cookie(r)["reelforge_session"]["secure"]
