"""The read routes' one request path: `GET /v1/jobs/{id}` and `GET /v1/assets/{id}` through FastAPI, reading on the
event loop (adapters/db/reads.py) and answering pre-serialized bytes with an ETag."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from typing import Any

import pytest
from pydantic_core import to_json
from sqlalchemy import text, update

from reelforge.adapters.db import reads as reads_module
from reelforge.adapters.db.models import Asset, Job
from reelforge.api import convert
from reelforge.domain.types import Principal, Role
from tests.api.test_jobs import NOOP, assert_problem
from tests.conftest import UserHandle
from tests.fixtures.hashing import fast_password_hashing  # noqa: F401


def set_row(container: Any, model: Any, row_id: str, **values: Any) -> None:
    with container.db.engine.begin() as conn:
        conn.execute(update(model.__table__).where(model.__table__.c.id == row_id).values(**values))


def set_job(container: Any, job_id: str, **values: Any) -> None:
    set_row(container, Job, job_id, **values)


def as_principal(user: UserHandle) -> Principal:
    return Principal(user_id=user.id, email=user.email, role=Role.user)


@pytest.fixture
def thread_reads(container: Any, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """SQL of every read done on a threadpool thread (the fallback), so a test can tell it from the loop's."""
    calls: list[str] = []
    real = reads_module.AsyncReads._pooled

    def counting(self: Any, q: Any, params: dict[str, Any]) -> Any:
        calls.append(q.sql)
        return real(self, q, params)

    monkeypatch.setattr(reads_module.AsyncReads, "_pooled", counting)
    return calls


# --- the answer -----------------------------------------------------------------------------------------------
def test_job_read_sends_the_schemas_bytes(client: Any, alice: UserHandle, container: Any,
                                          thread_reads: list[str]) -> None:
    queued = alice.post("/v1/jobs", json=NOOP, headers={"Idempotency-Key": "read-1"}).json()
    odd = alice.post("/v1/jobs", json={"kind": "system.noop", "input": {"echo": "é ✓ \u2028 \x1f \"q\" </>"}}).json()
    failed = alice.post("/v1/jobs", json=NOOP).json()
    # Values whose JSON spelling differs between serializers (exponents, big and tiny floats, unicode, nesting).
    set_job(container, odd["id"], status="succeeded", progress=0.123456789, progress_message="démo",
            outputs={"f": [1e-05, 1e16, 0.1, -0.0, 2.5e-308], "n": {"deep": [None, True, 12345678901234567]},
                     "s": "\u00e9\u4e2d\U0001f600"},
            started_at=1_700_000_000.000001, finished_at=1_700_000_001.5)
    set_job(container, failed["id"], status="failed", error_code="step_failed", error_message="boom ✗",
            progress=0.0, progress_message="", cancel_requested=True, finished_at=1_700_000_002.0)
    for job_id in (queued["id"], odd["id"], failed["id"]):
        r = alice.get(f"/v1/jobs/{job_id}")
        schema = convert.job(container.jobs.get(as_principal(alice), job_id)).model_dump_json().encode()
        assert r.status_code == 200 and r.content == schema
        assert r.headers["content-type"] == "application/json"
        assert r.headers["content-length"] == str(len(r.content))
        assert r.headers["etag"] == convert.etag_of(r.content) and r.headers["x-request-id"]
    body = alice.get(f"/v1/jobs/{failed['id']}").json()
    assert body["error"] == {"code": "step_failed", "message": "boom ✗"} and body["cancel_requested"] is True
    assert body["progress"] == {"fraction": 0.0, "message": ""}
    if container.db.dialect == "sqlite" or container.db.is_postgres:
        assert thread_reads == []  # every read ran on the event loop


def test_the_routes_answer_their_errors(client: Any, alice: UserHandle, bob: UserHandle) -> None:
    job = alice.post("/v1/jobs", json=NOOP).json()
    assert alice.get(f"/v1/jobs/{job['id']}").status_code == 200
    assert_problem(bob.get(f"/v1/jobs/{job['id']}"), 404, "job_not_found")
    assert_problem(alice.get("/v1/jobs/0123456789abcdef0123456789abcdef"), 404, "job_not_found")
    assert_problem(client.get(f"/v1/jobs/{job['id']}"), 401, "missing_credentials")
    assert_problem(client.get(f"/v1/jobs/{job['id']}", headers={"Authorization": "Bearer rf_0123456789ab_x"}), 401,
                   "invalid_api_key")
    assert_problem(client.get(f"/v1/jobs/{job['id']}", headers={"Authorization": f"Basic {alice.token}"}), 401,
                   "missing_credentials")
    assert alice.get(f"/v1/jobs/{job['id']}/history").status_code == 200
    assert alice.client.head(f"/v1/jobs/{job['id']}", headers=alice.headers).status_code in (200, 405)
    assert_problem(alice.get(f"/v1/jobs/{'x' * 200}"), 404, "job_not_found")
    for bad in ("-1", "nan", "abc", "3601"):
        assert_problem(alice.get(f"/v1/jobs/{job['id']}", params={"wait": bad}), 422, "validation_error")
    assert_problem(bob.get("/v1/assets/0123456789abcdef0123456789abcdef"), 404, "asset_not_found")


def test_revoked_key_and_disabled_account_are_refused_at_once(client: Any, alice: UserHandle,
                                                              admin: UserHandle) -> None:
    job = alice.post("/v1/jobs", json=NOOP).json()
    created = alice.post("/v1/api-keys", json={"name": "poller"}).json()
    as_key = {"Authorization": f"Bearer {created['key']}"}
    for _ in range(2):  # the second answer comes from the principal cache
        assert client.get(f"/v1/jobs/{job['id']}", headers=as_key).status_code == 200
    assert alice.delete(f"/v1/api-keys/{created['id']}").status_code == 200
    assert_problem(client.get(f"/v1/jobs/{job['id']}", headers=as_key), 401, "invalid_api_key")
    assert alice.get(f"/v1/jobs/{job['id']}").status_code == 200
    assert admin.patch(f"/v1/admin/users/{alice.id}", json={"disabled": True}).status_code == 200
    assert_problem(alice.get(f"/v1/jobs/{job['id']}"), 401, "invalid_token")


def test_reads_are_counted_and_logged_under_the_route_template(client: Any, alice: UserHandle, admin: UserHandle,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    job = alice.post("/v1/jobs", json=NOOP).json()
    assert alice.get(f"/v1/jobs/{job['id']}").status_code == 200
    with caplog.at_level(logging.INFO, logger="reelforge.access"):
        r = alice.get(f"/v1/jobs/{job['id']}", headers={"X-Request-ID": "read-1"})
    assert r.status_code == 200 and r.headers["x-request-id"] == "read-1"
    lines = [rec for rec in caplog.records if rec.name == "reelforge.access" and job["id"] in rec.getMessage()]
    assert lines and lines[-1].__dict__.get("account_id") == alice.id and lines[-1].__dict__["status"] == 200
    metrics = admin.get("/metrics").text
    series = [line for line in metrics.splitlines()
              if line.startswith("reelforge_http_requests_total{") and 'route="/v1/jobs/{job_id}"' in line
              and 'method="GET"' in line and 'status="200"' in line]
    assert len(series) == 1 and float(series[0].rsplit(" ", 1)[1]) == 2.0, series


# --- the event-loop reads' fallbacks and shutdown --------------------------------------------------------------
def test_a_failed_loop_read_is_done_on_a_thread(client: Any, alice: UserHandle, container: Any,
                                                thread_reads: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    job = alice.post("/v1/jobs", json=NOOP).json()
    assert alice.get(f"/v1/jobs/{job['id']}").status_code == 200 and thread_reads == []
    if container.db.dialect == "sqlite":
        def busy(*_a: Any) -> Any:
            raise sqlite3.OperationalError("database is locked")

        with monkeypatch.context() as m:
            m.setattr(reads_module.AsyncReads, "_sqlite", busy)
            r = alice.get(f"/v1/jobs/{job['id']}")
        assert r.status_code == 200 and r.json()["id"] == job["id"] and len(thread_reads) == 1
    else:
        # Every connection of the database goes away under the API (a failover, a restart).
        with container.db.engine.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              "WHERE datname = current_database() AND pid <> pg_backend_pid()"))
            conn.commit()
        r = alice.get(f"/v1/jobs/{job['id']}")
        assert r.status_code == 200 and r.json()["id"] == job["id"] and len(thread_reads) == 1
    n = len(thread_reads)
    assert alice.get(f"/v1/jobs/{job['id']}").status_code == 200 and len(thread_reads) == n  # on the loop again


def test_read_connections_close_at_shutdown(app: Any, container: Any, alice: UserHandle) -> None:
    from fastapi.testclient import TestClient

    with TestClient(app) as c:
        job = c.post("/v1/jobs", json=NOOP, headers=alice.headers).json()
        for _ in range(2):
            assert c.get(f"/v1/jobs/{job['id']}", headers=alice.headers).status_code == 200
        reads = container.db.reads
        assert reads.open_connections() == 1  # one per event-loop thread (SQLite), one idle per loop (PostgreSQL)
    assert reads.open_connections() == 0


# --- ETag / If-None-Match ------------------------------------------------------------------------------------
def test_job_etag_answers_304_until_the_job_changes(client: Any, alice: UserHandle, container: Any) -> None:
    job = alice.post("/v1/jobs", json=NOOP).json()
    first = alice.get(f"/v1/jobs/{job['id']}")
    etag = first.headers["etag"]
    assert etag.startswith('"') and first.headers["cache-control"] == "private, no-cache"
    for header in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        r = alice.get(f"/v1/jobs/{job['id']}", headers={"If-None-Match": header})
        assert r.status_code == 304 and r.content == b"" and r.headers["etag"] == etag
    set_job(container, job["id"], progress=0.5, progress_message="half")
    r = alice.get(f"/v1/jobs/{job['id']}", headers={"If-None-Match": etag})
    assert r.status_code == 200 and r.headers["etag"] != etag and r.json()["progress"]["fraction"] == 0.5


def test_asset_etag_answers_304_while_the_copy_is_current(client: Any, alice: UserHandle, bob: UserHandle,
                                                          container: Any) -> None:
    asset = container.assets.store_output(owner_id=alice.id, job_id=None, data=b"hello", content_type="text/plain")
    first = alice.get(f"/v1/assets/{asset.id}")
    assert first.status_code == 200 and first.json()["download"]["url"]
    assert first.content == convert.asset(asset, None).model_copy(
        update={"download": convert.signed(_download(first))}).model_dump_json().encode()
    etag = first.headers["etag"]
    r = alice.get(f"/v1/assets/{asset.id}", headers={"If-None-Match": etag})
    assert r.status_code == 304 and r.content == b"" and r.headers["etag"] == etag
    assert_problem(bob.get(f"/v1/assets/{asset.id}", headers={"If-None-Match": etag}), 404, "asset_not_found")
    # A copy whose download URL has less than half of its lifetime left is sent again, with a new URL.
    fields = to_json(convert.asset_fields(container.assets.get(as_principal(alice), asset.id)))
    soon = str(int(time.time()) + 60)
    stale = f'"{convert.digest(fields, soon)}.{soon}"'
    r = alice.get(f"/v1/assets/{asset.id}", headers={"If-None-Match": stale})
    assert r.status_code == 200 and r.headers["etag"] != stale
    # A changed asset is sent again.
    set_row(container, Asset, asset.id, metadata={"label": "new"})
    r = alice.get(f"/v1/assets/{asset.id}", headers={"If-None-Match": etag})
    assert r.status_code == 200 and r.json()["metadata"] == {"label": "new"}


def _download(r: Any) -> Any:
    from types import SimpleNamespace

    from reelforge.api.schemas.common import iso

    d = r.json()["download"]
    exp = d["expires_at"]
    expires = next(float(t) for t in [r.headers["etag"].strip('"').split(".")[1]])
    assert iso(expires) == exp
    return SimpleNamespace(url=d["url"], method=d["method"], headers=d["headers"], expires_at=expires)


# --- long poll -------------------------------------------------------------------------------------------------
def test_long_poll_answers_when_the_status_changes(client: Any, alice: UserHandle, container: Any) -> None:
    job = alice.post("/v1/jobs", json=NOOP).json()
    assert job["status"] == "queued"
    timer = threading.Timer(0.4, set_job, (container, job["id"]), {"status": "running", "started_at": time.time()})
    timer.start()
    t0 = time.monotonic()
    r = alice.get(f"/v1/jobs/{job['id']}", params={"wait": 20})
    elapsed = time.monotonic() - t0
    timer.join()
    assert r.status_code == 200 and r.json()["status"] == "running" and 0.3 <= elapsed < 5
    # No change: the answer comes when the wait is over, with the same job.
    t0 = time.monotonic()
    r = alice.get(f"/v1/jobs/{job['id']}", params={"wait": 0.5})
    assert r.status_code == 200 and r.json()["status"] == "running" and time.monotonic() - t0 >= 0.45


def test_long_poll_with_an_etag_waits_for_any_change(client: Any, alice: UserHandle, container: Any) -> None:
    job = alice.post("/v1/jobs", json=NOOP).json()
    etag = alice.get(f"/v1/jobs/{job['id']}").headers["etag"]
    t0 = time.monotonic()
    r = alice.get(f"/v1/jobs/{job['id']}", params={"wait": 0.4}, headers={"If-None-Match": etag})
    assert r.status_code == 304 and time.monotonic() - t0 >= 0.35
    timer = threading.Timer(0.3, set_job, (container, job["id"]), {"progress": 0.25})
    timer.start()
    r = alice.get(f"/v1/jobs/{job['id']}", params={"wait": 20}, headers={"If-None-Match": etag})
    timer.join()
    assert r.status_code == 200 and r.json()["progress"]["fraction"] == 0.25 and r.headers["etag"] != etag


def test_long_poll_is_bounded_and_ended_jobs_answer_at_once(client: Any, alice: UserHandle, container: Any,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    job = alice.post("/v1/jobs", json=NOOP).json()
    monkeypatch.setattr(container.settings.jobs, "max_wait_s", 0.3)
    t0 = time.monotonic()
    assert alice.get(f"/v1/jobs/{job['id']}", params={"wait": 3600}).status_code == 200
    assert time.monotonic() - t0 < 2.5
    set_job(container, job["id"], status="succeeded", finished_at=time.time())
    monkeypatch.setattr(container.settings.jobs, "max_wait_s", 60)
    etag = alice.get(f"/v1/jobs/{job['id']}").headers["etag"]
    t0 = time.monotonic()
    r = alice.get(f"/v1/jobs/{job['id']}", params={"wait": 30}, headers={"If-None-Match": etag})
    assert r.status_code == 304 and time.monotonic() - t0 < 2


def test_watch_ends_when_the_caller_leaves(client: Any, alice: UserHandle, container: Any) -> None:
    import asyncio

    job = alice.post("/v1/jobs", json=NOOP).json()
    checks: list[float] = []

    async def gone() -> bool:
        checks.append(time.monotonic())
        return len(checks) >= 2

    async def main() -> Any:
        try:
            return await container.jobs.watch(as_principal(alice), job["id"], 30, lambda _j: False, gone=gone)
        finally:
            await container.db.close_reads()

    t0 = time.monotonic()
    out = asyncio.run(main())
    assert out.id == job["id"] and len(checks) == 2 and time.monotonic() - t0 < 2


# --- one authentication for every read route ---------------------------------------------------------------------
def v1_get_paths(app: Any) -> list[str]:
    """Every GET route of the app under /v1, as the app dispatches them (the /v1 index and any route outside it),
    with its path parameters filled in."""
    import re

    from fastapi.routing import iter_route_contexts

    from reelforge.api.routing import served_routes

    paths = []
    for path, methods in [*served_routes(app.routes),
                          *((ctx.path or "", ctx.methods) for ctx in iter_route_contexts(app.routes))]:
        if "GET" in (methods or ()) and path.startswith("/v1/"):
            paths.append(re.sub(r"\{[^}:]+:path\}", "a/b", re.sub(r"\{[^}:]+\}", "a" * 32, path)))
    return paths


def test_every_read_route_enforces_authentication(app: Any, client: Any, alice: UserHandle, admin: UserHandle,
                                                  container: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A disabled account's token, a revoked API key and a rule added to authentication stop every GET route under
    /v1 at once, with the principal cache warm: a route added later is covered without touching this test."""
    paths = v1_get_paths(app)
    assert "/v1/jobs/" + "a" * 32 in paths and "/v1/assets/" + "a" * 32 in paths and len(paths) > 20
    created = admin.post("/v1/api-keys", json={"name": "reader"}).json()
    as_key = {"Authorization": f"Bearer {created['key']}"}

    def warm(headers: dict[str, str]) -> None:
        assert client.get("/v1/auth/me", headers=headers).status_code == 200

    from tests.security.test_jwt import PUBLIC

    public = {path for method, path in PUBLIC if method == "GET"}  # no token by design (an OAuth redirect back)
    paths = [p for p in paths if p not in public]

    def not_refused(headers: dict[str, str]) -> list[tuple[str, int]]:
        return [(p, r.status_code) for p in paths
                if (r := client.get(p, headers=headers)).status_code not in (401, 403)]

    # A rule added to authentication (an account suspension, say) applies to every route through deps.principal.
    warm(admin.headers)
    real = container.auth.authenticate

    def suspended(bearer: str) -> Principal:
        p = real(bearer)
        if p.user_id == admin.id:
            from reelforge import errors

            raise errors.Forbidden("Account suspended", code="account_suspended")
        return p

    monkeypatch.setattr(container.auth, "authenticate", suspended)
    app.state.principal_cache.clear()
    assert not_refused(admin.headers) == [] and not_refused(as_key) == []
    monkeypatch.setattr(container.auth, "authenticate", real)
    # A revoked key, then a disabled account (both tokens cached first).
    warm(as_key)
    assert admin.delete(f"/v1/api-keys/{created['id']}").status_code == 200
    assert not_refused(as_key) == []
    warm(alice.headers)
    assert admin.patch(f"/v1/admin/users/{alice.id}", json={"disabled": True}).status_code == 200
    assert not_refused(alice.headers) == []
