"""The hot job read (api/hot.py): same bytes as the FastAPI route, and the route for everything it does not answer."""

from __future__ import annotations

import logging
import sqlite3
from typing import Any

import pytest
from sqlalchemy import text, update

from reelforge.adapters.db.models import Job
from reelforge.api import hot
from reelforge.api.routes import jobs as job_routes
from tests.api.test_jobs import NOOP, assert_problem
from tests.conftest import UserHandle
from tests.fixtures.hashing import fast_password_hashing  # noqa: F401


@pytest.fixture
def route_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Job ids read by the FastAPI route: a request that adds none was answered by the hot read."""
    calls: list[str] = []
    real = job_routes.read_owned_job

    def counting(db: Any, job_id: str, owner_id: str) -> Any:
        calls.append(job_id)
        return real(db, job_id, owner_id)

    monkeypatch.setattr(job_routes, "read_owned_job", counting)
    return calls


def hot_layer(app: Any) -> hot.HotReads:
    layer = app.middleware_stack
    while layer is not None and not isinstance(layer, hot.HotReads):
        layer = getattr(layer, "app", None)
    assert layer is not None, "HotReads is not in the app's middleware stack"
    return layer


def set_job(container: Any, job_id: str, **values: Any) -> None:
    with container.db.engine.begin() as conn:
        conn.execute(update(Job.__table__).where(Job.__table__.c.id == job_id).values(**values))


def via_route_then_hot(app: Any, user: UserHandle, job_id: str, route_reads: list[str]) -> tuple[Any, Any]:
    app.state.principal_cache.clear()  # a cold cache: the route authenticates and answers
    n = len(route_reads)
    cold = user.get(f"/v1/jobs/{job_id}")
    assert route_reads[n:] == [job_id]
    warm = user.get(f"/v1/jobs/{job_id}")
    assert route_reads[n:] == [job_id], "the second read should not have reached the route"
    return cold, warm


def test_hot_read_sends_the_routes_bytes(app: Any, client: Any, alice: UserHandle, container: Any,
                                         route_reads: list[str]) -> None:
    queued = alice.post("/v1/jobs", json=NOOP, headers={"Idempotency-Key": "hot-1"}).json()
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
        cold, warm = via_route_then_hot(app, alice, job_id, route_reads)
        assert cold.status_code == warm.status_code == 200
        assert warm.content == cold.content
        assert warm.headers["content-type"] == cold.headers["content-type"] == "application/json"
        assert warm.headers["content-length"] == str(len(warm.content))
        assert warm.headers["x-request-id"] and warm.headers["x-request-id"] != cold.headers["x-request-id"]
    body = alice.get(f"/v1/jobs/{failed['id']}").json()
    assert body["error"] == {"code": "step_failed", "message": "boom ✗"} and body["cancel_requested"] is True
    assert body["progress"] == {"fraction": 0.0, "message": ""}


def test_what_the_hot_read_does_not_answer_goes_to_the_route(app: Any, client: Any, alice: UserHandle,
                                                            bob: UserHandle, route_reads: list[str]) -> None:
    job = alice.post("/v1/jobs", json=NOOP).json()
    assert alice.get(f"/v1/jobs/{job['id']}").status_code == 200
    assert bob.get("/v1/auth/me").status_code == 200  # bob's principal is cached too
    n = len(route_reads)
    # Another owner's job, a missing one: the route answers its 404 (and reads).
    assert_problem(bob.get(f"/v1/jobs/{job['id']}"), 404, "job_not_found")
    assert_problem(alice.get("/v1/jobs/0123456789abcdef0123456789abcdef"), 404, "job_not_found")
    assert len(route_reads) == n + 2
    # No credentials, a wrong token, a path with more segments, other methods: never the hot read.
    assert_problem(client.get(f"/v1/jobs/{job['id']}"), 401, "missing_credentials")
    assert_problem(client.get(f"/v1/jobs/{job['id']}", headers={"Authorization": "Bearer rf_0123456789ab_x"}), 401,
                   "invalid_api_key")
    assert_problem(client.get(f"/v1/jobs/{job['id']}", headers={"Authorization": f"Basic {alice.token}"}), 401,
                   "missing_credentials")
    assert alice.get(f"/v1/jobs/{job['id']}/history").status_code == 200
    assert alice.client.head(f"/v1/jobs/{job['id']}", headers=alice.headers).status_code in (200, 405)
    assert_problem(alice.get(f"/v1/jobs/{'x' * 200}"), 404, "job_not_found")
    # The hot read still answers alice's own job.
    m = len(route_reads)
    assert alice.get(f"/v1/jobs/{job['id']}").status_code == 200 and len(route_reads) == m


def test_revoked_key_and_disabled_account_stop_the_hot_read(app: Any, client: Any, alice: UserHandle,
                                                            admin: UserHandle, route_reads: list[str]) -> None:
    job = alice.post("/v1/jobs", json=NOOP).json()
    created = alice.post("/v1/api-keys", json={"name": "poller"}).json()
    as_key = {"Authorization": f"Bearer {created['key']}"}
    assert client.get(f"/v1/jobs/{job['id']}", headers=as_key).status_code == 200
    n = len(route_reads)
    assert client.get(f"/v1/jobs/{job['id']}", headers=as_key).status_code == 200 and len(route_reads) == n
    assert alice.delete(f"/v1/api-keys/{created['id']}").status_code == 200
    assert_problem(client.get(f"/v1/jobs/{job['id']}", headers=as_key), 401, "invalid_api_key")
    assert alice.get(f"/v1/jobs/{job['id']}").status_code == 200
    assert admin.patch(f"/v1/admin/users/{alice.id}", json={"disabled": True}).status_code == 200
    assert_problem(alice.get(f"/v1/jobs/{job['id']}"), 401, "invalid_token")


def test_hot_answers_are_counted_and_logged(app: Any, client: Any, alice: UserHandle, container: Any,
                                            route_reads: list[str], caplog: pytest.LogCaptureFixture) -> None:
    job = alice.post("/v1/jobs", json=NOOP).json()
    assert alice.get(f"/v1/jobs/{job['id']}").status_code == 200
    n = len(route_reads)
    with caplog.at_level(logging.INFO, logger="reelforge.access"):
        r = alice.get(f"/v1/jobs/{job['id']}", headers={"X-Request-ID": "hot-read-1"})
    assert r.status_code == 200 and len(route_reads) == n and r.headers["x-request-id"] == "hot-read-1"
    lines = [rec for rec in caplog.records if rec.name == "reelforge.access" and job["id"] in rec.getMessage()]
    assert lines and lines[-1].__dict__.get("account_id") == alice.id and lines[-1].__dict__["status"] == 200
    metrics = client.get("/metrics").text
    series = [line for line in metrics.splitlines()
              if line.startswith("reelforge_http_requests_total{") and 'route="/v1/jobs/{job_id}"' in line
              and 'method="GET"' in line and 'status="200"' in line]
    assert len(series) == 1 and float(series[0].rsplit(" ", 1)[1]) == 2.0, series


def test_a_failed_hot_read_goes_to_the_route(app: Any, client: Any, alice: UserHandle, container: Any,
                                             route_reads: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    job = alice.post("/v1/jobs", json=NOOP).json()
    assert alice.get(f"/v1/jobs/{job['id']}").status_code == 200
    n = len(route_reads)
    if container.db.dialect == "sqlite":
        def busy(*_a: Any) -> Any:
            raise sqlite3.OperationalError("database is locked")

        monkeypatch.setattr(hot, "read_owned_job_dbapi", busy)
        r = alice.get(f"/v1/jobs/{job['id']}")
        assert r.status_code == 200 and r.json()["id"] == job["id"] and len(route_reads) == n + 1
        monkeypatch.undo()
    else:
        assert alice.get(f"/v1/jobs/{job['id']}").status_code == 200 and len(route_reads) == n
        # Every connection of the database goes away under the API (a failover, a restart).
        with container.db.engine.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              "WHERE datname = current_database() AND pid <> pg_backend_pid()"))
            conn.commit()
        r = alice.get(f"/v1/jobs/{job['id']}")
        assert r.status_code == 200 and r.json()["id"] == job["id"] and len(route_reads) == n + 1
    m = len(route_reads)
    assert alice.get(f"/v1/jobs/{job['id']}").status_code == 200 and len(route_reads) == m  # hot again


def test_hot_read_connections_close_at_shutdown(app: Any, container: Any, alice: UserHandle) -> None:
    from fastapi.testclient import TestClient

    with TestClient(app) as c:
        job = c.post("/v1/jobs", json=NOOP, headers=alice.headers).json()
        for _ in range(2):
            assert c.get(f"/v1/jobs/{job['id']}", headers=alice.headers).status_code == 200
        layer = hot_layer(app)
        pools = list(layer._pg_pools.values())
        if container.db.dialect == "sqlite":  # a connection per thread, closed with it; no pool
            assert not pools and layer.sqlite_path
            return
        assert len(pools) == 1 and len(pools[0].idle) == 1
        conn = pools[0].idle[0]
    assert conn.closed and not hot_layer(app)._pg_pools
