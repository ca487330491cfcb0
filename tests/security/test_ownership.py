"""Another user's object is answered exactly like a missing one: 404, never 403, and nothing changes."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import UserHandle, make_settings
from tests.fixtures.hashing import fast_password_hashing  # noqa: F401

PROBLEM = "application/problem+json"


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Any:
    # Alice's webhook points at loopback (never called here: no worker runs).
    return make_settings(tmp_path, db_url, webhooks={"allow_private_targets": True})


def alice_objects(client: Any, alice: UserHandle) -> dict[str, str]:
    job = alice.post("/v1/jobs", json={"kind": "system.noop", "input": {"echo": 1}}).json()["id"]
    data = b"alice's bytes"
    up = alice.post("/v1/uploads", json={"content_type": "text/plain", "size": len(data)}).json()
    client.put(up["put"]["url"].removeprefix("http://testserver"), content=data, headers=up["put"]["headers"])
    asset = alice.post(f"/v1/uploads/{up['id']}/complete",
                       json={"sha256": hashlib.sha256(data).hexdigest()}).json()["id"]
    pending = alice.post("/v1/uploads", json={"content_type": "text/plain", "size": 5}).json()["id"]
    key = alice.post("/v1/api-keys", json={"name": "alice"}).json()["id"]
    hook = alice.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/hook"}).json()["id"]
    return {"job": job, "upload": up["id"], "pending": pending, "asset": asset, "key": key, "hook": hook}


def routes(ids: dict[str, str]) -> list[tuple[str, str, dict[str, Any] | None]]:
    return [
        ("GET", f"/v1/jobs/{ids['job']}", None),
        ("GET", f"/v1/jobs/{ids['job']}/history", None),
        ("GET", f"/v1/jobs/{ids['job']}/events", None),
        ("POST", f"/v1/jobs/{ids['job']}/cancel", None),
        ("GET", f"/v1/uploads/{ids['upload']}", None),
        ("POST", f"/v1/uploads/{ids['upload']}/complete", {}),
        ("POST", f"/v1/uploads/{ids['pending']}/complete", {}),
        ("POST", f"/v1/uploads/{ids['pending']}/abort", None),
        ("GET", f"/v1/assets/{ids['asset']}", None),
        ("DELETE", f"/v1/assets/{ids['asset']}", None),
        ("DELETE", f"/v1/api-keys/{ids['key']}", None),
        ("GET", f"/v1/webhooks/{ids['hook']}", None),
        ("DELETE", f"/v1/webhooks/{ids['hook']}", None),
        ("POST", f"/v1/webhooks/{ids['hook']}/test", None),
        ("GET", f"/v1/webhooks/{ids['hook']}/deliveries", None),
    ]


def comparable(r: Any) -> tuple[int, str, dict[str, Any]]:
    body = r.json()
    body.pop("instance", None)
    return r.status_code, r.headers["content-type"], body


def test_other_users_objects_look_missing(client: Any, alice: UserHandle, bob: UserHandle) -> None:
    ids = alice_objects(client, alice)
    missing = {k: "0" * 32 for k in ids}
    for (method, path, body), (_, missing_path, _) in zip(routes(ids), routes(missing), strict=True):
        theirs = client.request(method, path, headers=bob.headers, json=body)
        nothing = client.request(method, missing_path, headers=bob.headers, json=body)
        assert theirs.status_code == 404, (method, path, theirs.status_code, theirs.text)
        assert theirs.headers["content-type"].startswith(PROBLEM)
        assert comparable(theirs) == comparable(nothing), (method, path)

    # Nothing of alice's changed.
    assert alice.get(f"/v1/jobs/{ids['job']}").json()["status"] == "queued"
    assert alice.get(f"/v1/uploads/{ids['pending']}").json()["status"] == "pending"
    assert alice.get(f"/v1/assets/{ids['asset']}").status_code == 200
    assert alice.get("/v1/api-keys").json()["data"][0]["revoked_at"] is None
    assert alice.get(f"/v1/webhooks/{ids['hook']}").status_code == 200
    assert alice.get(f"/v1/webhooks/{ids['hook']}/deliveries").json()["data"] == []
    history = [e["type"] for e in alice.get(f"/v1/jobs/{ids['job']}/history").json()["events"]]
    assert history == ["JobQueued"]


def test_lists_are_scoped_to_the_caller(client: Any, alice: UserHandle, bob: UserHandle) -> None:
    ids = alice_objects(client, alice)
    assert bob.get("/v1/jobs").json()["data"] == []
    assert bob.get("/v1/jobs", params={"kind": "system.noop", "status": "queued"}).json()["data"] == []
    assert bob.get("/v1/assets").json()["data"] == []
    assert bob.get("/v1/assets", params={"job_id": ids["job"]}).json()["data"] == []
    assert bob.get("/v1/api-keys").json()["data"] == []
    assert bob.get("/v1/webhooks").json()["data"] == []
    ledger = bob.get("/v1/credits").json()["ledger"]
    assert [e["kind"] for e in ledger] == ["grant"] and all(e["job_id"] is None for e in ledger)
    # A cursor made from alice's listing shows bob nothing of hers either.
    alice.post("/v1/jobs", json={"kind": "system.noop"})
    cursor = alice.get("/v1/jobs", params={"limit": 1}).json()["next_cursor"]
    assert cursor and bob.get("/v1/jobs", params={"cursor": cursor}).json()["data"] == []
    # Secrets are per account.
    assert bob.get("/v1/webhooks/signing-secret").json()["secret"] != alice.get(
        "/v1/webhooks/signing-secret").json()["secret"]


def test_admin_role_does_not_open_other_users_objects(client: Any, alice: UserHandle, admin: UserHandle) -> None:
    ids = alice_objects(client, alice)
    # Admin powers are the /v1/admin routes; the user-facing routes stay owner-only.
    for method, path, body in routes(ids):
        r = client.request(method, path, headers=admin.headers, json=body)
        assert r.status_code == 404, (method, path, r.status_code)
    assert alice.get(f"/v1/jobs/{ids['job']}").json()["status"] == "queued"


def test_api_key_acts_only_for_its_owner(client: Any, alice: UserHandle, bob: UserHandle) -> None:
    ids = alice_objects(client, alice)
    bob_key = bob.post("/v1/api-keys", json={"name": "bob"}).json()["key"]
    headers = {"Authorization": f"Bearer {bob_key}"}
    assert client.get(f"/v1/jobs/{ids['job']}", headers=headers).status_code == 404
    assert client.delete(f"/v1/api-keys/{ids['key']}", headers=headers).status_code == 404
    assert client.get("/v1/auth/me", headers=headers).json()["id"] == bob.id


def test_signed_urls_do_not_cross_owners(client: Any, alice: UserHandle, bob: UserHandle) -> None:
    """Bob's PUT URL is bound to a key under bob's prefix; the signature cannot be moved to alice's key."""
    ids = alice_objects(client, alice)
    bob_up = bob.post("/v1/uploads", json={"content_type": "text/plain", "size": 4}).json()
    alice_url = alice.get(f"/v1/assets/{ids['asset']}").json()["download"]["url"]
    alice_path = alice_url.removeprefix("http://testserver").split("?")[0]
    query = bob_up["put"]["url"].split("?", 1)[1]
    r = client.put(f"{alice_path}?{query}", content=b"evil", headers={"Content-Type": "text/plain"})
    assert r.status_code == 403 and r.json()["code"] == "invalid_signature"
    assert client.get(alice_url.removeprefix("http://testserver")).content == b"alice's bytes"
