"""The account as a whole: the audit trail (admin's and the user's own), export (a streamed zip) and deletion
(re-authentication, personal data at once, the rest by the sweeper, the ledger kept anonymized), with the
applications' hooks."""

from __future__ import annotations

import io
import json
import threading
import time
import zipfile
from collections.abc import Iterator
from typing import Any

import pytest

from reelforge.runtime.maintenance import Maintenance
from tests.conftest import UserHandle, make_settings, register


@pytest.fixture
def client(tmp_path: Any, db_url: str) -> Iterator[Any]:
    yield from _client(tmp_path, db_url)


def _client(tmp_path: Any, db_url: str, apps: tuple[Any, ...] | None = None, **accounts: Any) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from reelforge.api.app import create_app
    from reelforge.container import Container

    c = Container(make_settings(tmp_path, db_url, rate_limit={"enabled": False},
                                accounts={"export_chunk_bytes": 65536, **accounts}), apps=apps)
    with TestClient(create_app(container=c)) as client:
        yield client
    c.close()


def admin_of(client: Any) -> UserHandle:
    from reelforge.domain.types import Role

    client.app.state.container.auth.register("root@example.com", "admin password 1", role=Role.admin)
    return UserHandle(client, "root@example.com", "admin password 1",
                      client.post("/v1/auth/token", json={"email": "root@example.com",
                                                          "password": "admin password 1"}).json()["access_token"],
                      "")


def store_asset(client: Any, owner: str, data: bytes, name: str = "picture.png") -> Any:
    return client.app.state.container.assets.store_output(owner_id=owner, job_id=None, data=data,
                                                          content_type="image/png", filename=name)


def delete_account(user: UserHandle, body: dict[str, Any]) -> Any:
    return user.client.request("DELETE", "/v1/account", headers=user.headers, json=body)


def code(r: Any) -> str:
    return str(r.json().get("code"))


# --- audit ----------------------------------------------------------------------------------------------------
def test_the_audit_trail_records_and_filters(client: Any) -> None:
    alice = register(client, "alice@example.com")
    bob = register(client, "bob@example.com")
    admin = admin_of(client)
    bad = client.post("/v1/auth/token", json={"email": "alice@example.com", "password": "wrong password!"},
                      headers={"X-Request-Id": "req-failed-1"})
    assert bad.status_code == 401
    client.post("/v1/auth/token", json={"email": "nobody@example.com", "password": "wrong password!"})
    admin.patch(f"/v1/admin/users/{bob.id}", json={"role": "admin"})
    admin.patch(f"/v1/admin/users/{bob.id}", json={"disabled": True})
    admin.post("/v1/admin/credits", json={"account_id": alice.id, "amount": 25, "note": "thanks"})

    everything = admin.get("/v1/admin/audit?limit=500").json()["data"]
    actions = [e["action"] for e in everything]
    for expected in ("auth.sign_in", "auth.sign_in_failed", "user.role_changed", "user.disabled",
                     "credits.granted"):
        assert expected in actions, (expected, actions)
    failed = next(e for e in everything if e["request_id"] == "req-failed-1")
    assert failed["action"] == "auth.sign_in_failed" and failed["target_id"] == alice.id
    assert failed["ip"] == "testclient" and failed["actor_id"] is None
    role = next(e for e in everything if e["action"] == "user.role_changed")
    assert role["details"] == {"from": "user", "to": "admin"} and role["target_id"] == bob.id
    assert everything == sorted(everything, key=lambda e: (e["ts"], e["id"]), reverse=True)

    # filters: action family, target, actor, time
    fam = admin.get("/v1/admin/audit?action=user").json()["data"]
    assert {e["action"] for e in fam} == {"user.role_changed", "user.disabled"}
    assert {e["target_id"] for e in admin.get(f"/v1/admin/audit?target={bob.id}").json()["data"]} == {bob.id}
    mine = admin.get(f"/v1/admin/audit?actor={alice.id}").json()["data"]
    assert mine and all(e["actor_id"] == alice.id for e in mine)
    assert admin.get("/v1/admin/audit?since=2999-01-01T00:00:00Z").json()["data"] == []
    assert len(admin.get("/v1/admin/audit?until=2999-01-01T00:00:00").json()["data"]) == len(everything[:50])

    # pages: a cursor continues where the last page ended, without repeats
    seen: list[str] = []
    url = "/v1/admin/audit?limit=2"
    while url:
        page = admin.get(url).json()
        seen += [e["id"] for e in page["data"]]
        url = f"/v1/admin/audit?limit=2&cursor={page['next_cursor']}" if page["next_cursor"] else ""
    assert seen == [e["id"] for e in everything]

    # the user's own trail: what concerns their account only
    own = alice.get("/v1/account/audit").json()["data"]
    assert {e["subject_id"] for e in own} == {alice.id}
    assert {"auth.sign_in", "auth.sign_in_failed", "credits.granted"} <= {e["action"] for e in own}


def test_audit_routes_refuse_bad_input_and_other_users(client: Any) -> None:
    alice = register(client, "alice@example.com")
    admin = admin_of(client)
    r = alice.get("/v1/admin/audit")
    assert r.status_code == 403 and code(r) == "admin_only"
    for url in ("/v1/admin/audit?cursor=%%%", "/v1/account/audit?cursor=bm9wZQ", "/v1/admin/audit?limit=0",
                "/v1/admin/audit?action=DROP%20TABLE", "/v1/admin/audit?since=yesterday",
                "/v1/admin/audit?since=2020-01-02T00:00:00Z&until=2020-01-01T00:00:00Z",
                "/v1/account/audit?limit=100000", "/v1/admin/audit?target=" + "x" * 200):
        r = admin.get(url)
        assert 400 <= r.status_code < 500 and r.json()["code"], (url, r.text)
    assert code(admin.get("/v1/account/audit?cursor=bm9wZQ")) == "invalid_cursor"
    assert code(admin.get("/v1/admin/audit?since=2020-01-02T00:00:00Z&until=2020-01-01T00:00:00Z")) == \
        "invalid_time_range"
    # bob's trail shows nothing of alice's
    bob = register(client, "bob@example.com")
    assert all(e["subject_id"] == bob.id for e in bob.get("/v1/account/audit").json()["data"])


def test_the_purchase_hook_records_in_the_callers_transaction(client: Any) -> None:
    alice = register(client, "alice@example.com")
    c = client.app.state.container
    with c.store.tx() as tx:
        c.audit.purchase(alice.id, 500, reference="cs_test_123", tx=tx)
    e = alice.get("/v1/account/audit?action=credits.purchased").json()["data"][0]
    assert e["details"] == {"amount": 500, "reference": "cs_test_123"}


# --- export ---------------------------------------------------------------------------------------------------
def test_export_is_a_streamed_zip_of_the_callers_data_only(client: Any) -> None:
    alice = register(client, "alice@example.com")
    bob = register(client, "bob@example.com")
    alice.post("/v1/api-keys", json={"name": "laptop"})
    assert alice.post("/v1/jobs", json={"kind": "system.noop", "input": {}}).status_code == 202
    big = bytes(range(256)) * (4 * 4096)  # 4 MiB, not compressible much
    mine = store_asset(client, alice.id, big)
    theirs = store_asset(client, bob.id, b"bob's picture")
    with client.stream("GET", "/v1/account/export", headers=alice.headers) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"] == "application/zip"
        assert "attachment" in r.headers["content-disposition"]
        chunks = [len(c) for c in r.iter_raw()]
    # Streamed in pieces: no piece holds the whole object (memory stays bounded by the chunk size).
    assert len(chunks) > 4 and max(chunks) < 1024 * 1024, chunks[:10]
    data = alice.get("/v1/account/export").content
    z = zipfile.ZipFile(io.BytesIO(data))
    names = set(z.namelist())
    assert {"account.json", "jobs.json", "credits.json", "assets.json", "api_keys.json", "audit.json"} <= names
    assert json.loads(z.read("account.json"))["email"] == "alice@example.com"
    assert z.read(f"assets/{mine.id}.png") == big
    assert not any(theirs.id in n for n in names)
    keys = json.loads(z.read("api_keys.json"))
    assert keys[0]["name"] == "laptop" and "key_hash" not in keys[0]
    assert [j["kind"] for j in json.loads(z.read("jobs.json"))] == ["system.noop"]
    assert b"password" not in z.read("account.json") and b"bob" not in z.read("assets.json")
    assert any(e["action"] == "account.exported" for e in alice.get("/v1/account/audit").json()["data"])


def test_export_needs_a_signed_in_caller(client: Any) -> None:
    r = client.get("/v1/account/export")
    assert r.status_code == 401 and code(r) == "missing_credentials"


# --- deletion -------------------------------------------------------------------------------------------------
def test_deleting_needs_reauthentication(client: Any) -> None:
    alice = register(client, "alice@example.com")
    for body, status, expected in (({}, 403, "reauthentication_required"),
                                   ({"password": "not the password"}, 403, "wrong_password"),
                                   ({"token": "rf_abc_def"}, 403, "reauthentication_required"),
                                   ({"token": "garbage"}, 403, "reauthentication_required"),
                                   ({"password": ""}, 422, "validation_error"),
                                   ({"password": "x", "extra": 1}, 422, "validation_error")):
        r = delete_account(alice, body)
        assert r.status_code == status and code(r) == expected, (body, r.text)
    r = client.request("DELETE", "/v1/account", headers={**alice.headers, "Content-Type": "application/json"},
                       content=b"{not json")
    assert r.status_code == 422
    # An old token does not count as a recent sign-in.
    import jwt

    from reelforge.adapters.auth import issue_access_token

    c = client.app.state.container
    claims = jwt.decode(alice.token, options={"verify_signature": False})
    claims["iat"] = claims["nbf"] = int(time.time()) - 3600
    claims["exp"] = claims["iat"] + 600
    old = jwt.encode(claims, c.settings.jwt_secret, algorithm="HS256")
    assert code(delete_account(alice, {"token": old})) == "reauthentication_required"
    # Another user's fresh token is no proof either.
    bob = register(client, "bob@example.com")
    assert code(delete_account(alice, {"token": bob.token})) == "reauthentication_required"
    # A fresh token of the account's own is.
    fresh, _ = issue_access_token(secret=c.settings.jwt_secret, issuer=c.settings.auth.jwt_issuer,
                                  user_id=alice.id, role="user", ttl_s=600)
    r = delete_account(alice, {"token": fresh})
    assert r.status_code == 202, r.text
    assert bob.get("/v1/auth/me").status_code == 200


def test_deletion_removes_personal_data_objects_and_records_and_keeps_the_ledger(client: Any) -> None:
    alice = register(client, "alice@example.com")
    bob = register(client, "bob@example.com")
    admin = admin_of(client)
    admin.post("/v1/admin/credits", json={"account_id": alice.id, "amount": 5, "note": "granted to alice"})
    raw_key = alice.post("/v1/api-keys", json={"name": "k"}).json()["key"]
    alice.post("/v1/jobs", json={"kind": "system.noop", "input": {}})
    alice.post("/v1/webhooks", json={"url": "https://example.com/hook"})
    mine = store_asset(client, alice.id, b"alice's picture")
    theirs = store_asset(client, bob.id, b"bob's picture")
    c = client.app.state.container

    r = delete_account(alice, {"password": alice.password})
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["status"] == "deleted" and body["deadline_at"] and body["finished_at"]
    # Signed out everywhere; the address is free again; nothing is left to sign in with.
    assert alice.get("/v1/auth/me").status_code == 401
    assert client.get("/v1/jobs", headers={"Authorization": f"Bearer {raw_key}"}).status_code == 401
    assert client.post("/v1/auth/token", json={"email": alice.email, "password": alice.password}).status_code == 401
    with c.store.tx(write=False) as tx:
        user = tx.accounts.user(alice.id)
        assert user.email == f"deleted-{alice.id}@deleted.invalid" and user.password_hash == "" and user.disabled
        assert tx.assets.asset(mine.id) is None and tx.assets.asset(theirs.id) is not None
        assert tx.jobs.jobs(owner_id=alice.id) == [] and tx.events.webhooks(alice.id) == []
        assert tx.accounts.api_keys(alice.id) == []
        ledger = tx.credits.ledger(alice.id)
        assert len(ledger) == 2 and all(e.note == "" for e in ledger)  # the starting and the admin grant
        trail = tx.audit.entries(subject_id=alice.id, limit=500)
    assert c.objects.head(mine.key) is None and c.objects.head(theirs.key) is not None
    assert trail and all(e.ip is None and e.details == {} for e in trail)
    assert {"account.deletion_requested", "account.deleted"} <= {e.action for e in trail}
    again = register(client, "alice@example.com")
    assert again.id != alice.id and again.get("/v1/auth/me").status_code == 200
    # bob is untouched
    assert bob.get(f"/v1/assets/{theirs.id}").status_code == 200


def test_the_sweeper_finishes_what_the_request_left(tmp_path: Any, db_url: str) -> None:
    for client in _client(tmp_path, db_url, delete_inline_objects=1):
        alice = register(client, "alice@example.com")
        assets = [store_asset(client, alice.id, f"picture {i}".encode()) for i in range(3)]
        r = delete_account(alice, {"password": alice.password})
        assert r.status_code == 202 and r.json()["status"] == "deleting", r.text
        c = client.app.state.container
        counts = Maintenance(c, "w1", stopping=threading.Event(), wake=threading.Event()).sweep()
        assert counts["accounts_deleted"] == 1
        assert c.accounts.status(alice.id).status == "deleted"
        assert all(c.objects.head(a.key) is None for a in assets)


def test_each_applications_hooks_export_and_delete_its_own_rows(tmp_path: Any, db_url: str) -> None:
    from reelforge.applications import AppManifest

    rows: dict[str, list[dict[str, Any]]] = {}

    def export(c: Any, account_id: str) -> Any:
        yield "notes", iter(rows.get(account_id, []))
        yield "settings", {"theme": "dark"}

    def delete(c: Any, account_id: str) -> None:
        rows.pop(account_id, None)

    app = AppManifest(name="notes", title="Notes", account_export=export, account_delete=delete)
    for client in _client(tmp_path, db_url, apps=(app,)):
        alice = register(client, "alice@example.com")
        rows[alice.id] = [{"id": i, "text": f"note {i}"} for i in range(3)]
        rows["someone-else"] = [{"id": 9}]
        z = zipfile.ZipFile(io.BytesIO(alice.get("/v1/account/export").content))
        assert json.loads(z.read("apps/notes/notes.json")) == rows[alice.id]
        assert json.loads(z.read("apps/notes/settings.json")) == {"theme": "dark"}
        assert delete_account(alice, {"password": alice.password}).status_code == 202
        assert alice.id not in rows and "someone-else" in rows
