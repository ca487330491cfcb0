"""The read paths' shared pieces: the principal cache (and its invalidation) and the job read on the event loop."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest

from reelforge.api import convert
from reelforge.api.deps import PrincipalCache, _jwt_exp
from reelforge.domain.types import Principal, Role
from tests.api.test_jobs import NOOP, assert_problem
from tests.conftest import UserHandle
from tests.fixtures.hashing import fast_password_hashing  # noqa: F401


def me(client: Any, bearer: str) -> Any:
    return client.get("/v1/auth/me", headers={"Authorization": f"Bearer {bearer}"})


@pytest.fixture
def lookups(container: Any, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every call to AuthService.authenticate (a database read), so a test can tell a cache hit from a miss."""
    calls: list[str] = []
    real = container.auth.authenticate

    def counting(bearer: str) -> Principal:
        calls.append(bearer)
        return real(bearer)

    monkeypatch.setattr(container.auth, "authenticate", counting)
    return calls


def old_read(container: Any, user: UserHandle, job_id: str) -> dict[str, Any]:
    """What the route answered before: the ORM read through JobsService.get and the same conversion."""
    p = Principal(user_id=user.id, email=user.email, role=Role.user)
    return convert.job(container.jobs.get(p, job_id)).model_dump(mode="json")


# --- GET /v1/jobs/{id} -------------------------------------------------------------------------------
def test_job_read_answers_what_the_orm_read_did(client: Any, alice: UserHandle, container: Any, worker: Any) -> None:
    queued = alice.post("/v1/jobs", json=NOOP, headers={"Idempotency-Key": "fast-1"}).json()
    done = alice.post("/v1/jobs", json={"kind": "system.noop", "input": {"echo": "é ✓"}}, params={"wait": 20}).json()
    assert done["status"] == "succeeded" and queued["status"] in ("queued", "running", "succeeded")
    for job_id in (queued["id"], done["id"]):
        r = alice.get(f"/v1/jobs/{job_id}")
        assert r.status_code == 200 and r.headers["content-type"] == "application/json"
        assert r.json() == old_read(container, alice, job_id)
    body = alice.get(f"/v1/jobs/{done['id']}").json()
    assert body["outputs"] == {"echo": "é ✓"} and body["started_at"] and body["finished_at"]
    assert body["cancel_requested"] is False and body["progress"]["fraction"] == 1.0
    assert alice.get(f"/v1/jobs/{queued['id']}").json()["idempotency_key"] == "fast-1"


def test_job_read_is_owner_only(client: Any, alice: UserHandle, bob: UserHandle, admin: UserHandle) -> None:
    job = alice.post("/v1/jobs", json=NOOP).json()
    missing = assert_problem(alice.get("/v1/jobs/0123456789abcdef0123456789abcdef"), 404, "job_not_found")
    other = assert_problem(bob.get(f"/v1/jobs/{job['id']}"), 404, "job_not_found")
    assert {k: v for k, v in other.items() if k != "instance"} == {k: v for k, v in missing.items()
                                                                   if k != "instance"}
    # As before (owned() without admin_ok): an admin reads other users' jobs through the admin API only.
    assert_problem(admin.get(f"/v1/jobs/{job['id']}"), 404, "job_not_found")
    assert alice.get(f"/v1/jobs/{job['id']}").status_code == 200


def test_job_read_needs_auth(client: Any, alice: UserHandle) -> None:
    job = alice.post("/v1/jobs", json=NOOP).json()
    assert_problem(client.get(f"/v1/jobs/{job['id']}"), 401, "missing_credentials")
    assert_problem(client.get(f"/v1/jobs/{job['id']}", headers={"Authorization": "Bearer not.a.jwt"}), 401,
                   "invalid_token")
    assert_problem(client.get(f"/v1/jobs/{job['id']}", headers={"Authorization": "Bearer rf_0123456789ab_x"}), 401,
                   "invalid_api_key")


# --- principal cache -----------------------------------------------------------------------------------
def test_principal_is_cached_per_token(client: Any, alice: UserHandle, lookups: list[str]) -> None:
    job = alice.post("/v1/jobs", json=NOOP).json()
    before = len(lookups)
    for _ in range(5):
        assert alice.get(f"/v1/jobs/{job['id']}").status_code == 200
    assert len(lookups) == before  # served from memory: no authentication read
    # A bad token is never cached: each try is checked again.
    for _ in range(2):
        assert me(client, "not.a.jwt").status_code == 401
    assert lookups[-2:] == ["not.a.jwt", "not.a.jwt"]


def test_revoked_key_stops_at_once(client: Any, alice: UserHandle, lookups: list[str]) -> None:
    created = alice.post("/v1/api-keys", json={"name": "ci"}).json()
    key = created["key"]
    assert me(client, key).status_code == 200
    n = len(lookups)
    assert me(client, key).status_code == 200 and len(lookups) == n  # cached
    assert alice.delete(f"/v1/api-keys/{created['id']}").status_code == 200
    assert_problem(me(client, key), 401, "invalid_api_key")


def test_disabled_account_stops_at_once(client: Any, alice: UserHandle, admin: UserHandle,
                                        lookups: list[str]) -> None:
    key = alice.post("/v1/api-keys", json={"name": "ci"}).json()["key"]
    assert me(client, alice.token).status_code == 200 and me(client, key).status_code == 200
    n = len(lookups)
    assert me(client, alice.token).status_code == 200 and len(lookups) == n  # cached
    assert admin.patch(f"/v1/admin/users/{alice.id}", json={"disabled": True}).status_code == 200
    assert_problem(me(client, alice.token), 401, "invalid_token")
    assert_problem(me(client, key), 401, "account_disabled")
    assert admin.patch(f"/v1/admin/users/{alice.id}", json={"disabled": False}).status_code == 200
    assert me(client, alice.token).status_code == 200


def test_role_change_applies_at_once(client: Any, alice: UserHandle, admin: UserHandle,
                                     lookups: list[str]) -> None:
    assert_problem(alice.get("/v1/admin/users"), 403, "admin_only")
    n = len(lookups)
    assert_problem(alice.get("/v1/admin/users"), 403, "admin_only")
    assert len(lookups) == n  # the plain-user principal is cached
    assert admin.patch(f"/v1/admin/users/{alice.id}", json={"role": "admin"}).status_code == 200
    assert alice.get("/v1/admin/users").status_code == 200
    assert admin.patch(f"/v1/admin/users/{alice.id}", json={"role": "user"}).status_code == 200
    assert_problem(alice.get("/v1/admin/users"), 403, "admin_only")


def test_other_accounts_stay_cached(client: Any, alice: UserHandle, bob: UserHandle, admin: UserHandle,
                                    lookups: list[str]) -> None:
    assert me(client, bob.token).status_code == 200
    n = len(lookups)
    admin.patch(f"/v1/admin/users/{alice.id}", json={"disabled": True})
    m = len(lookups)  # the admin's own requests may have been looked up; bob's must not be
    assert me(client, bob.token).status_code == 200 and len(lookups) == m and m >= n


# --- PrincipalCache unit ---------------------------------------------------------------------------------
def _p(user_id: str = "u1") -> Principal:
    return Principal(user_id=user_id, email=f"{user_id}@example.com", role=Role.user)


def test_cache_entry_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    cache = PrincipalCache(ttl_s=5)
    cache.put("k", _p(), generation=cache.generation)
    assert cache.get("k") == _p()
    now[0] += 5.01
    assert cache.get("k") is None and len(cache) == 0


def test_cache_never_outlives_the_jwt() -> None:
    cache = PrincipalCache(ttl_s=60)
    cache.put("k", _p(), generation=cache.generation, exp=time.time() - 1)
    assert cache.get("k") is None
    cache.put("k", _p(), generation=cache.generation, exp=time.time() + 30)
    assert cache.get("k") == _p()


def test_cache_invalidation_is_per_account_and_beats_a_racing_lookup() -> None:
    cache = PrincipalCache(ttl_s=60)
    cache.put("a1", _p("a"), generation=cache.generation)
    cache.put("a2", _p("a"), generation=cache.generation)
    cache.put("b1", _p("b"), generation=cache.generation)
    started = cache.generation  # a lookup for "a" began here...
    cache.invalidate_user("a")  # ...the account changed while it read the database...
    cache.put("a3", _p("a"), generation=started)  # ...so its (possibly stale) answer is not kept
    assert cache.get("a1") is None and cache.get("a2") is None and cache.get("a3") is None
    assert cache.get("b1") == _p("b")
    assert PrincipalCache(ttl_s=0).get("x") is None
    off = PrincipalCache(ttl_s=0)
    off.put("x", _p(), generation=off.generation)
    assert off.get("x") is None and PrincipalCache.key("t") != "t"


def test_jwt_exp_reads_the_claim(alice: UserHandle) -> None:
    payload = alice.token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert _jwt_exp(alice.token) == float(claims["exp"]) > time.time()
    assert _jwt_exp("garbage") is None and _jwt_exp("a.b.c") is None
