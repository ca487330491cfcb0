"""API key scopes: read-only and per-application keys, enforced on every route (walked from the OpenAPI document)
in the one authentication path, and on the job kinds a key may submit."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import UserHandle, make_settings, register
from tests.security.test_jwt import PUBLIC


@pytest.fixture
def client(tmp_path: Any, db_url: str) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from reelforge.api.app import create_app
    from reelforge.container import Container

    c = Container(make_settings(tmp_path, db_url, rate_limit={"enabled": False}))
    with TestClient(create_app(container=c)) as client:
        yield client
    c.close()


def key(user: UserHandle, scopes: list[str] | None, name: str = "k") -> str:
    r = user.post("/v1/api-keys", json={"name": name, **({"scopes": scopes} if scopes is not None else {})})
    assert r.status_code == 201, r.text
    assert r.json()["scopes"] == (sorted(scopes) if scopes is not None else None)
    return str(r.json()["key"])


def app_routes(client: Any) -> dict[tuple[str, str], str]:
    """(METHOD, /v1 path) -> application, from each application's registration (its manifest's routers)."""
    out: dict[tuple[str, str], str] = {}
    for application in client.app.state.container.apps:
        for router in application.routers():
            for route in router.routes:
                for method in getattr(route, "methods", ()):
                    out[(method, "/v1" + route.path)] = application.name
    return out


def operations(client: Any) -> Iterator[tuple[str, str, str]]:
    paths = client.get("/openapi.json").json()["paths"]
    for path, ops in paths.items():
        if not path.startswith("/v1/"):
            continue
        for method in ops:
            if (method.upper(), path) in PUBLIC:
                continue
            yield method.upper(), path, path.replace("{", "").replace("}", "")


def insufficient(r: Any) -> str | None:
    if r.status_code == 403 and r.json().get("code") == "insufficient_scope":
        return str(r.json().get("scope"))
    return None


def test_a_read_only_key_reads_and_cannot_write_on_every_route(client: Any) -> None:
    alice = register(client, "alice@example.com")
    read = {"Authorization": f"Bearer {key(alice, ['read'])}"}
    full = {"Authorization": f"Bearer {key(alice, None, 'full')}"}
    writes = reads = 0
    for method, path, url in operations(client):
        r = client.request(method, url, headers=read, json={})
        if method in ("GET", "HEAD"):
            assert insufficient(r) is None, (method, path, r.text)
            reads += 1
        else:
            assert insufficient(r) == "write", (method, path, r.status_code, r.text)
            writes += 1
            # The same call with a full-access key is not refused for its scope (whatever else it answers).
            assert insufficient(client.request(method, url, headers=full, json={})) is None, (method, path)
    assert writes >= 20 and reads >= 20


def test_an_application_key_reaches_its_application_and_the_core_only(client: Any) -> None:
    alice = register(client, "alice@example.com")
    owners = app_routes(client)
    apps = sorted(set(owners.values()))
    assert len(apps) >= 2, "needs two installed applications with routes"
    checked = 0
    # Every key first: the walk calls the sign-out routes too, which end alice's session (not her keys).
    keys = {allowed: key(alice, ["write", f"app:{allowed}"], allowed) for allowed in apps}
    for allowed in apps:
        headers = {"Authorization": f"Bearer {keys[allowed]}"}
        for method, path, url in operations(client):
            owner = owners.get((method, path))
            r = client.request(method, url, headers=headers, json={})
            if owner is None or owner == allowed:
                assert insufficient(r) is None, (allowed, method, path, r.text)
            else:
                assert insufficient(r) == f"app:{owner}", (allowed, method, path, r.status_code, r.text)
                checked += 1
    assert checked >= 10


def test_an_application_key_submits_only_its_own_and_the_cores_job_kinds(client: Any) -> None:
    alice = register(client, "alice@example.com")
    kind_apps = client.app.state.container.jobs.kind_apps
    kind, owner = next(iter(sorted(kind_apps.items())))
    other = next(a.name for a in client.app.state.container.apps if a.name != owner)
    headers = {"Authorization": f"Bearer {key(alice, ['write', f'app:{other}'])}"}
    r = client.post("/v1/jobs", headers=headers, json={"kind": kind, "input": {}})
    assert insufficient(r) == f"app:{owner}", r.text
    r = client.post("/v1/jobs/batch", headers=headers, json={"jobs": [{"kind": kind, "input": {}}]})
    assert r.status_code in (403, 207, 422) and "insufficient_scope" in r.text, r.text
    r = client.post("/v1/jobs", headers=headers, json={"kind": "system.noop", "input": {}})
    assert r.status_code == 202, r.text


def test_scopes_are_checked_and_a_key_cannot_escalate(client: Any) -> None:
    alice = register(client, "alice@example.com")
    for bad in (["admin"], ["app:nope"], ["app:"], [], ["app:" + "x" * 40], ["read"] * 2 + ["APP:X"]):
        r = alice.post("/v1/api-keys", json={"scopes": bad})
        assert r.status_code == 422 and r.json()["code"] in ("invalid_scope", "validation_error"), (bad, r.text)
    assert alice.post("/v1/api-keys", json={"scopes": "read"}).status_code == 422
    key(alice, None, "full")
    read = {"Authorization": f"Bearer {key(alice, ['read', 'write'])}"}
    # A limited key may make keys within its own scopes only.
    apps = sorted(a.name for a in client.app.state.container.apps)
    limited = {"Authorization": f"Bearer {key(alice, ['write', f'app:{apps[0]}'])}"}
    ok = client.post("/v1/api-keys", headers=limited, json={"scopes": ["read", f"app:{apps[0]}"]})
    assert ok.status_code == 201, ok.text
    for scopes in (None, ["write"], ["write", f"app:{apps[1]}"]):
        body = {"scopes": scopes} if scopes is not None else {}
        r = client.post("/v1/api-keys", headers=limited, json=body)
        assert r.status_code == 403 and r.json()["code"] == "scope_escalation", (scopes, r.text)
    assert client.post("/v1/api-keys", headers=read, json={}).status_code == 403
    listed = alice.get("/v1/api-keys").json()["data"]
    assert any(k["scopes"] == ["read", "write"] for k in listed) and any(k["scopes"] is None for k in listed)


def test_a_revoked_scoped_key_and_the_audit_trail(client: Any) -> None:
    alice = register(client, "alice@example.com")
    r = alice.post("/v1/api-keys", json={"name": "ro", "scopes": ["read"]})
    key_id, raw = r.json()["id"], r.json()["key"]
    assert client.get("/v1/jobs", headers={"Authorization": f"Bearer {raw}"}).status_code == 200
    assert alice.delete(f"/v1/api-keys/{key_id}").status_code == 200
    assert client.get("/v1/jobs", headers={"Authorization": f"Bearer {raw}"}).status_code == 401
    trail = alice.get("/v1/account/audit?action=key").json()["data"]
    assert [e["action"] for e in trail] == ["key.revoked", "key.created"]
    assert trail[1]["details"]["scopes"] == ["read"] and trail[0]["target_id"] == key_id
