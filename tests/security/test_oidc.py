"""Sign-in with an external OpenID Connect issuer's JWTs, against a local fake issuer (a real HTTP server with
discovery and JWKS documents): mapping identities to accounts, key rotation, unknown keys, wrong issuer, audience
and token use, algorithm confusion, expiry."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from tests.conftest import make_settings, register
from tests.fixtures.oidc_issuer import CLIENT_ID, Issuer, new_key

pytestmark = pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")


@pytest.fixture
def issuer() -> Iterator[Issuer]:
    i = Issuer()
    yield i
    i.close()


def oidc_client(tmp_path: Any, db_url: str, issuer: Issuer, **oidc: Any) -> Any:
    from fastapi.testclient import TestClient

    from reelforge.api.app import create_app
    from reelforge.container import Container

    settings = make_settings(tmp_path, db_url, oidc={"issuer": issuer.url, "audiences": [CLIENT_ID],
                                                     "jwks_min_refresh_s": 60, **oidc})
    c = Container(settings)
    client = TestClient(create_app(container=c))
    client.__enter__()
    return client


@pytest.fixture
def client(tmp_path: Any, db_url: str, issuer: Issuer) -> Iterator[Any]:
    c = oidc_client(tmp_path, db_url, issuer)
    yield c
    c.__exit__(None, None, None)
    c.app.state.container.close()


def me(client: Any, token: str) -> Any:
    return client.get("/v1/auth/me", headers={"Authorization": f"Bearer {token}"})


def code_of(r: Any) -> str:
    return str(r.json().get("code"))


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_a_first_sign_in_creates_an_account_and_maps_the_identity(client: Any, issuer: Issuer) -> None:
    r = me(client, issuer.token("sub-a", email="Ada@Example.com"))
    assert r.status_code == 200, r.text
    account = r.json()
    assert account["email"] == "ada@example.com" and account["credits"] == 100
    # The same identity, a new token: the same account, no second grant.
    again = me(client, issuer.token("sub-a", email="ada@example.com", iat=int(time.time()) - 1))
    assert again.json()["id"] == account["id"]
    # Every route takes it: the one authentication path.
    token = issuer.token("sub-a")
    assert client.get("/v1/jobs", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    key = client.post("/v1/api-keys", json={"name": "from oidc"}, headers={"Authorization": f"Bearer {token}"})
    assert key.status_code == 201, key.text
    audit = client.get("/v1/account/audit", headers={"Authorization": f"Bearer {token}"}).json()["data"]
    actions = [e["action"] for e in audit]
    assert "auth.identity_linked" in actions and "auth.sign_in" in actions and "key.created" in actions


def test_a_verified_address_links_to_the_existing_account(client: Any, issuer: Issuer) -> None:
    alice = register(client, "alice@example.com")
    r = me(client, issuer.token("sub-alice", email="alice@example.com", email_verified=True))
    assert r.json()["id"] == alice.id


def test_an_unverified_address_never_takes_an_existing_account(client: Any, issuer: Issuer) -> None:
    alice = register(client, "alice@example.com")
    r = me(client, issuer.token("sub-mallory", email="alice@example.com", email_verified=False))
    assert r.status_code == 200
    assert r.json()["id"] != alice.id and r.json()["email"].endswith("@users.invalid")
    # and the new account has no password anyone could sign in with
    from reelforge.adapters.auth import verify_password

    with client.app.state.container.store.tx(write=False) as tx:
        user = tx.accounts.user(r.json()["id"])
    assert user.password_hash == "" and not verify_password(user.password_hash, "not-a-real-password")


def test_cognito_access_tokens_are_checked_by_client_id(client: Any, issuer: Issuer) -> None:
    assert me(client, issuer.access_token("sub-c")).status_code == 200
    wrong = me(client, issuer.access_token("sub-c", client_id="another-client"))
    assert wrong.status_code == 401 and code_of(wrong) == "invalid_token"


def test_wrong_audience_issuer_and_token_use(client: Any, issuer: Issuer) -> None:
    for token in (issuer.token(aud="someone-else"), issuer.token(aud=None),
                  issuer.token(token_use="refresh"), issuer.token(aud=None, token_use="access")):
        r = me(client, token)
        assert r.status_code == 401 and code_of(r) == "invalid_token", r.text
    # Another issuer's token is not ours to verify: the local path refuses it.
    other = issuer.token(iss="https://evil.example.com")
    assert code_of(me(client, other)) == "invalid_token"
    assert me(client, issuer.token(aud=[CLIENT_ID, "x"])).status_code == 200


def test_expired_and_not_yet_valid(client: Any, issuer: Issuer) -> None:
    now = int(time.time())
    r = me(client, issuer.token(iat=now - 3600, exp=now - 600))
    assert r.status_code == 401 and code_of(r) == "token_expired"
    # within the leeway (30 s): accepted
    assert me(client, issuer.token("sub-leeway", iat=now - 700, exp=now - 5)).status_code == 200
    r = me(client, issuer.token(nbf=now + 3600))
    assert r.status_code == 401 and code_of(r) == "invalid_token"
    r = me(client, issuer.token(iat=now, exp=now + 7 * 86400))  # longer-lived than oidc.max_token_lifetime_s
    assert r.status_code == 401


def test_algorithm_confusion_and_none_are_refused(client: Any, issuer: Issuer) -> None:
    key = issuer.keys[0]
    pem = key.private.public_key().public_bytes(serialization.Encoding.PEM,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": key.kid}).encode())
    payload = b64(json.dumps(issuer.claims("sub-x")).encode())
    mac = hmac.new(pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    r = me(client, f"{header}.{payload}.{b64(mac)}")
    assert r.status_code == 401 and code_of(r) == "invalid_token"
    none = b64(json.dumps({"alg": "none", "typ": "JWT", "kid": key.kid}).encode())
    r = me(client, f"{none}.{payload}.")
    assert r.status_code == 401 and code_of(r) == "invalid_token"
    # An algorithm outside the pinned list (RS384 here), even with the issuer's own key, is refused.
    r = me(client, _resign_header(issuer, {"alg": "RS384"}))
    assert r.status_code == 401 and code_of(r) == "invalid_token"


def _resign_header(issuer: Issuer, header: dict[str, Any]) -> str:
    import jwt

    key = issuer.keys[0]
    return jwt.encode(issuer.claims("sub-y"), key.private, algorithm="RS384", headers={"kid": key.kid, **header})


def test_a_token_signed_by_an_unknown_key(client: Any, issuer: Issuer) -> None:
    assert me(client, issuer.token("sub-1")).status_code == 200
    fetched = issuer.jwks_fetches
    stranger = new_key()
    for _ in range(5):
        r = me(client, issuer.token("sub-1", key=stranger, jti=str(time.time_ns())))
        assert r.status_code == 401 and code_of(r) == "invalid_token"
    # One refetch for the unknown key id, then none within jwks_min_refresh_s: made-up ids cannot flood the issuer.
    assert issuer.jwks_fetches <= fetched + 1


def test_key_rotation_is_picked_up(tmp_path: Any, db_url: str, issuer: Issuer) -> None:
    client = oidc_client(tmp_path, db_url, issuer, jwks_min_refresh_s=0)
    try:
        assert me(client, issuer.token("sub-r")).status_code == 200
        old = issuer.keys[0]
        new = issuer.rotate("ES256")
        # A token with the new key id: the keys are fetched again and it verifies.
        r = me(client, issuer.token("sub-r", key=new))
        assert r.status_code == 200, r.text
        # The withdrawn key no longer verifies anything new.
        r = me(client, issuer.token("sub-r", key=old, jti="after-rotation"))
        assert r.status_code == 401
    finally:
        client.__exit__(None, None, None)
        client.app.state.container.close()


def test_an_unreachable_issuer_answers_503(tmp_path: Any, db_url: str, issuer: Issuer) -> None:
    issuer.down = True
    client = oidc_client(tmp_path, db_url, issuer)
    try:
        r = me(client, issuer.token("sub-d"))
        assert r.status_code == 503 and code_of(r) == "oidc_unavailable"
    finally:
        client.__exit__(None, None, None)
        client.app.state.container.close()


def test_local_tokens_and_keys_still_work(client: Any, issuer: Issuer) -> None:
    alice = register(client, "alice@example.com")
    assert me(client, alice.token).json()["id"] == alice.id


def test_settings_need_an_audience(tmp_path: Any) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        make_settings(tmp_path, "sqlite://", oidc={"issuer": "https://issuer.example.com"})
