"""Bearer authentication: forged, expired, tampered and malformed tokens all answer 401 problem+json."""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

import jwt
import pytest

from tests.conftest import UserHandle
from tests.fixtures.hashing import fast_password_hashing  # noqa: F401

# Forged tokens are signed with short or odd keys on purpose.
pytestmark = pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")

PROBLEM = "application/problem+json"
PUBLIC = {("POST", "/v1/auth/register"), ("POST", "/v1/auth/token"), ("POST", "/v1/auth/refresh"),
          # the console's sign-in, refresh and sign-out: credentials are the body or the session cookie
          # (tests/security/test_session_cookie.py)
          ("POST", "/v1/auth/session"), ("POST", "/v1/auth/session/refresh"), ("DELETE", "/v1/auth/session"),
          # an OAuth redirect back from the provider brings no token: its single-use state names the account
          # (tests/apps/film/test_youtube_oauth.py)
          ("GET", "/v1/film/youtube/callback"),
          # Stripe signs its webhooks over the raw body (tests/api/test_billing.py)
          ("POST", "/v1/billing/stripe/webhook"),
          # the links of verification and reset mails, and asking for a reset: their token is the credential
          # (tests/security/test_mail_tokens.py)
          ("POST", "/v1/auth/verify"), ("POST", "/v1/auth/password/forgot"), ("POST", "/v1/auth/password/reset")}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def assert_401(r: Any, code: str | None = None) -> dict[str, Any]:
    assert r.status_code == 401, r.text
    assert r.headers["content-type"].startswith(PROBLEM), r.headers
    assert r.headers["www-authenticate"] == "Bearer"
    body = r.json()
    assert body["status"] == 401 and body["code"], body
    if code:
        assert body["code"] == code, body
    return body


def me(client: Any, token: str) -> Any:
    # Bytes, so that non-ASCII garbage goes on the wire as it is.
    return client.get("/v1/auth/me", headers={"Authorization": f"Bearer {token}".encode()})


def claims_for(user: UserHandle, **over: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {"sub": user.id, "role": "user", "iat": now, "nbf": now, "exp": now + 600, "iss": "reelforge",
              "typ": "access", "jti": uuid.uuid4().hex}
    claims.update(over)
    return {k: v for k, v in claims.items() if v is not None}


@pytest.fixture
def secret(settings: Any) -> str:
    return str(settings.jwt_secret)


def test_a_real_token_works(client: Any, alice: UserHandle, secret: str) -> None:
    assert me(client, alice.token).status_code == 200
    # And so does one we mint with the server's key and claims (the forgeries below differ in one thing each).
    assert me(client, jwt.encode(claims_for(alice), secret, algorithm="HS256")).status_code == 200


def test_alg_none(client: Any, alice: UserHandle) -> None:
    for alg in ["none", "None", "NONE"]:
        header = b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
        payload = b64(json.dumps(claims_for(alice, role="admin")).encode())
        assert_401(me(client, f"{header}.{payload}."), "invalid_token")
        assert_401(me(client, f"{header}.{payload}"), "invalid_token")


def test_wrong_key(client: Any, alice: UserHandle, secret: str) -> None:
    for key in ["another-secret-" + "y" * 40, secret + "x", secret[:-1], ""]:
        forged = jwt.encode(claims_for(alice), key or "k", algorithm="HS256")
        assert_401(me(client, forged), "invalid_token")


def test_other_algorithms_refused_even_with_the_right_key(client: Any, alice: UserHandle, secret: str) -> None:
    for alg in ["HS384", "HS512"]:
        assert_401(me(client, jwt.encode(claims_for(alice), secret, algorithm=alg)), "invalid_token")


def test_expired(client: Any, alice: UserHandle, secret: str) -> None:
    past = int(time.time()) - 3600
    token = jwt.encode(claims_for(alice, iat=past - 900, nbf=past - 900, exp=past), secret, algorithm="HS256")
    body = assert_401(me(client, token), "token_expired")
    assert "expired" in body["detail"].lower()


def test_not_yet_valid(client: Any, alice: UserHandle, secret: str) -> None:
    future = int(time.time()) + 3600
    token = jwt.encode(claims_for(alice, nbf=future, exp=future + 600), secret, algorithm="HS256")
    assert_401(me(client, token), "invalid_token")


def test_tampered_payload(client: Any, alice: UserHandle, bob: UserHandle) -> None:
    header, payload, sig = alice.token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    for change in [{"role": "admin"}, {"sub": bob.id}, {"exp": claims["exp"] + 86400}]:
        forged = b64(json.dumps({**claims, **change}).encode())
        assert_401(me(client, f"{header}.{forged}.{sig}"), "invalid_token")
    # A flipped signature character, and a signature moved from another token.
    flipped = ("A" if sig[0] != "A" else "B") + sig[1:]
    assert_401(me(client, f"{header}.{payload}.{flipped}"), "invalid_token")
    assert_401(me(client, f"{header}.{payload}.{bob.token.split('.')[2]}"), "invalid_token")


def test_wrong_issuer_and_missing_claims(client: Any, alice: UserHandle, secret: str) -> None:
    for over in [{"iss": "someone-else"}, {"iss": None}, {"exp": None}, {"sub": None}, {"iat": None},
                 {"typ": "refresh"}, {"typ": None}, {"sub": 12345}, {"sub": "no-such-user"}]:
        token = jwt.encode(claims_for(alice, **over), secret, algorithm="HS256")
        assert_401(me(client, token), "invalid_token")


def signed(claims: Any, secret: str) -> str:
    """A token with exactly these claims (json as given: PyJWT's encoder would refuse some of them)."""
    import hashlib
    import hmac

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims).encode())
    sig = b64(hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest())
    return f"{head}.{body}.{sig}"


def test_malformed_registered_claims(client: Any, alice: UserHandle, secret: str) -> None:
    now = int(time.time())
    assert me(client, signed(claims_for(alice), secret)).status_code == 200
    for over in [{"exp": str(now + 600)}, {"exp": True}, {"exp": [now + 600]}, {"exp": {"t": now}},
                 {"exp": 10**30}, {"exp": now + 86400}, {"iat": True}, {"iat": str(now)}, {"iat": now + 601},
                 {"nbf": str(now)}, {"nbf": False}, {"jti": 5}, {"typ": ["access"]}, {"iss": ["reelforge"]}]:
        assert_401(me(client, signed(claims_for(alice, **over), secret)), "invalid_token")
    # A payload that is not a JSON object at all.
    for payload in [[1, 2], "exp", 3]:
        assert_401(me(client, signed(payload, secret)), "invalid_token")


def test_refresh_token_is_not_an_access_token(client: Any, alice: UserHandle) -> None:
    pair = client.post("/v1/auth/token", json={"email": alice.email, "password": alice.password}).json()
    assert_401(me(client, pair["refresh_token"]), "invalid_token")
    # It still works where it belongs.
    assert client.post("/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}).status_code == 200


def test_garbage_bearer(client: Any) -> None:
    for token in ["garbage", "a.b.c", "a.b", "....", "eyJhbGciOiJIUzI1NiJ9.e30.", "\u00e9t\u00e9", "x" * 8000,
                  "rf_", "rf_abc", "rf_abc_def", b64(b"{}") + "." + b64(b"{}") + "."]:
        body = assert_401(me(client, token))
        assert body["code"] in ("invalid_token", "invalid_api_key"), body


def test_missing_or_malformed_authorization_header(client: Any, alice: UserHandle) -> None:
    for value in [None, "", "Bearer", "Bearer ", "Basic YWxpY2U6cHc=", alice.token, f"Token {alice.token}",
                  f"Bearer{alice.token}"]:
        headers = {} if value is None else {"Authorization": value}
        assert_401(client.get("/v1/auth/me", headers=headers), "missing_credentials")
    # The scheme is case-insensitive.
    assert client.get("/v1/auth/me", headers={"Authorization": f"bearer {alice.token}"}).status_code == 200


def test_token_of_disabled_or_demoted_user(client: Any, alice: UserHandle, admin: UserHandle,
                                           secret: str) -> None:
    # A token that claims admin for a plain user gives no admin rights: the role comes from the database.
    token = jwt.encode(claims_for(alice, role="admin"), secret, algorithm="HS256")
    r = client.get("/v1/admin/users", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 403 and r.json()["code"] == "admin_only"
    admin.patch(f"/v1/admin/users/{alice.id}", json={"disabled": True})
    assert_401(me(client, alice.token), "invalid_token")


def test_every_route_requires_auth(client: Any, alice: UserHandle) -> None:
    """Walk the OpenAPI document: every /v1 operation but sign-up/sign-in answers 401 without a valid bearer."""
    paths = client.get("/openapi.json").json()["paths"]
    checked = 0
    for path, ops in paths.items():
        if not path.startswith("/v1/"):
            continue
        url = path.replace("{", "").replace("}", "")  # /v1/jobs/{job_id} -> /v1/jobs/job_id
        for method in ops:
            if (method.upper(), path) in PUBLIC:
                continue
            # Three unauthenticated writes per route: past the per-address write limit the guard would answer 429
            # before authentication (as it should); this test is about authentication.
            client.app.state.container.ip_limiter.reset()
            for headers, code in [({}, "missing_credentials"),
                                  ({"Authorization": "Bearer not.a.jwt"}, "invalid_token"),
                                  ({"Authorization": "Bearer rf_0123456789ab_nope"}, "invalid_api_key")]:
                r = client.request(method.upper(), url, headers=headers, json={})
                assert r.status_code == 401, (method, path, r.status_code, r.text)
                assert_401(r, code)
            checked += 1
    assert checked >= 25
