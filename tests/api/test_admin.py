"""/v1/admin/{queue,workers,system,alarms,stats}, /v1/admin/jobs/{id}/redrive and /v1/jobs/{id}/retry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import UserHandle, make_settings, wait_for
from tests.fixtures.hashing import fast_password_hashing  # noqa: F401

PROBLEM = "application/problem+json"
NOOP = {"kind": "system.noop", "input": {"echo": 1}}
IMAGE = {"kind": "image.generate", "input": {"prompt": "a red circle", "width": 64, "height": 64, "steps": 2,
                                             "seed": 7, "num_images": 1, "model": "tiny-sd"}}
ADMIN_ROUTES = [
    ("GET", "/v1/admin/queue"), ("GET", "/v1/admin/workers"), ("GET", "/v1/admin/system"),
    ("GET", "/v1/admin/alarms"), ("GET", "/v1/admin/stats"), ("POST", "/v1/admin/jobs/0123456789abcdef/redrive"),
]


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Any:
    # Callback URLs on loopback (nothing listens there; no test delivers to them).
    return make_settings(tmp_path, db_url, webhooks={"allow_private_targets": True})


def assert_problem(r: Any, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM), r.headers
    body = r.json()
    assert body["code"] == code, body
    return body


def fail_job(container: Any, job_id: str, *, dead: bool = False) -> None:
    """Claim the job as a worker would and fail its attempt: `failed` (permanent) or `dead` (retries used up)."""
    with container.store.tx() as tx:
        job = tx.jobs.claim_job("test-worker", 30)
    assert job is not None and job.id == job_id, "the test expects exactly this job to be queued"
    if dead:
        with container.store.tx() as tx:
            tx.jobs.update_job(job_id, failures=job.max_attempts - 1)
    container.jobs.fail(job_id, job.attempt, "transient_error", "failed on purpose", retryable=dead)


def balance(user: UserHandle) -> int:
    return int(user.get("/v1/credits").json()["balance"])


def history_types(user: UserHandle, job_id: str) -> list[str]:
    return [e["type"] for e in user.get(f"/v1/jobs/{job_id}/history").json()["events"]]


# --- access ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("method", "path"), ADMIN_ROUTES)
def test_admin_routes_need_an_admin(client: Any, alice: UserHandle, admin: UserHandle, method: str,
                                    path: str) -> None:
    assert_problem(client.request(method, path), 401, "missing_credentials")
    assert_problem(alice.client.request(method, path, headers=alice.headers), 403, "admin_only")
    r = admin.client.request(method, path, headers=admin.headers)
    if method == "GET":
        assert r.status_code == 200, r.text
    else:
        assert_problem(r, 404, "job_not_found")


def test_retry_needs_credentials(client: Any, alice: UserHandle) -> None:
    job = alice.post("/v1/jobs", json=NOOP).json()
    assert_problem(client.post(f"/v1/jobs/{job['id']}/retry"), 401, "missing_credentials")


# --- queue -------------------------------------------------------------------------------------------------
def test_queue_depth_age_and_dead(client: Any, container: Any, alice: UserHandle, admin: UserHandle) -> None:
    empty = admin.get("/v1/admin/queue").json()
    assert empty == {"depth": [], "oldest_queued_age_s": 0.0, "running": [], "dead": []}
    doomed = alice.post("/v1/jobs", json=NOOP).json()
    fail_job(container, doomed["id"], dead=True)
    queued = [alice.post("/v1/jobs", json=NOOP).json() for _ in range(2)]
    with container.store.tx() as tx:
        running = tx.jobs.claim_job("w-1", 30)
    assert running is not None and running.id == queued[0]["id"]

    body = admin.get("/v1/admin/queue").json()
    assert {(d["kind"], d["status"], d["count"]) for d in body["depth"]} == {
        ("system.noop", "queued", 1), ("system.noop", "running", 1)}
    assert body["oldest_queued_age_s"] >= 0
    (run,) = body["running"]
    assert run["job_id"] == running.id and run["worker_id"] == "w-1" and run["owner_id"] == alice.id
    assert run["attempt"] == 1 and 0 < run["lease_expires_in_s"] <= 30 and run["progress"] == 0
    (dead,) = body["dead"]
    assert dead["job_id"] == doomed["id"] and dead["status"] == "dead" and dead["error"]["code"] == "transient_error"
    assert dead["failures"] == dead["max_attempts"] and dead["finished_at"].endswith("Z")


# --- redrive -----------------------------------------------------------------------------------------------
def test_redrive_requeues_and_reserves_credits_again(client: Any, container: Any, alice: UserHandle,
                                                     admin: UserHandle) -> None:
    job = alice.post("/v1/jobs", json=IMAGE).json()
    assert job["credits"] == 1 and balance(alice) == 99
    fail_job(container, job["id"], dead=True)
    dead = alice.get(f"/v1/jobs/{job['id']}").json()
    assert dead["status"] == "dead" and dead["credits_state"] == "refunded" and balance(alice) == 100

    r = admin.post(f"/v1/admin/jobs/{job['id']}/redrive")
    assert r.status_code == 200, r.text
    back = r.json()
    assert back["id"] == job["id"] and back["status"] == "queued" and back["error"] is None
    assert back["credits_state"] == "reserved" and back["finished_at"] is None and back["expires_at"] is None
    assert balance(alice) == 99
    with container.store.tx() as tx:
        row = tx.jobs.job(job["id"])
        assert row is not None and row.failures == 0 and row.attempt == 1
    kinds = [e["kind"] for e in alice.get("/v1/credits").json()["ledger"]]
    assert kinds[:3] == ["reserve", "refund", "reserve"]
    assert history_types(alice, job["id"])[-1] == "JobRedriven"

    # Queued now: not redrivable again.
    assert_problem(admin.post(f"/v1/admin/jobs/{job['id']}/redrive"), 409, "job_not_redrivable")


def test_redrive_without_credits_is_402(client: Any, container: Any, alice: UserHandle, admin: UserHandle) -> None:
    job = alice.post("/v1/jobs", json=IMAGE).json()
    fail_job(container, job["id"])
    assert alice.get(f"/v1/jobs/{job['id']}").json()["status"] == "failed"
    r = admin.post("/v1/admin/credits", json={"account_id": alice.id, "amount": -100})
    assert r.status_code == 201, r.text
    assert_problem(admin.post(f"/v1/admin/jobs/{job['id']}/redrive"), 402, "insufficient_credits")
    after = alice.get(f"/v1/jobs/{job['id']}").json()
    assert after["status"] == "failed" and after["credits_state"] == "refunded" and balance(alice) == 0
    assert "JobRedriven" not in history_types(alice, job["id"])


def test_redriven_job_runs_to_success(client: Any, container: Any, alice: UserHandle, admin: UserHandle,
                                      request: pytest.FixtureRequest) -> None:
    job = alice.post("/v1/jobs", json=NOOP).json()
    fail_job(container, job["id"])
    assert admin.post(f"/v1/admin/jobs/{job['id']}/redrive").status_code == 200
    request.getfixturevalue("worker")
    done = wait_for(lambda: (j := alice.get(f"/v1/jobs/{job['id']}").json())["status"] == "succeeded" and j)
    assert done["outputs"] == {"echo": 1} and done["attempt"] == 2


def test_redrive_refuses_live_and_succeeded_jobs(client: Any, alice: UserHandle, admin: UserHandle,
                                                 worker: Any) -> None:
    job = alice.post("/v1/jobs", json=NOOP, params={"wait": 30}).json()
    assert job["status"] == "succeeded"
    assert_problem(admin.post(f"/v1/admin/jobs/{job['id']}/redrive"), 409, "job_not_redrivable")


# --- retry -------------------------------------------------------------------------------------------------
def test_retry_makes_a_new_job(client: Any, container: Any, alice: UserHandle) -> None:
    body = {**IMAGE, "callback_url": "http://127.0.0.1:9/hook", "priority": 5}
    job = alice.post("/v1/jobs", json=body).json()
    fail_job(container, job["id"])
    assert balance(alice) == 100

    r = alice.post(f"/v1/jobs/{job['id']}/retry")
    assert r.status_code == 202, r.text
    new = r.json()
    assert r.headers["location"] == f"/v1/jobs/{new['id']}"
    assert new["id"] != job["id"] and new["status"] == "queued" and new["attempt"] == 0
    assert (new["kind"], new["input"], new["callback_url"], new["priority"]) == (
        job["kind"], job["input"], "http://127.0.0.1:9/hook", 5)
    assert new["credits"] == 1 and new["credits_state"] == "reserved" and balance(alice) == 99
    assert history_types(alice, new["id"]) == ["JobQueued", "RetryOf"]
    assert history_types(alice, job["id"])[-1] == "RetriedAs"
    # The old job is untouched.
    assert alice.get(f"/v1/jobs/{job['id']}").json()["status"] == "failed"


def test_retry_cancelled_and_dead_jobs(client: Any, container: Any, alice: UserHandle) -> None:
    cancelled = alice.post("/v1/jobs", json=NOOP).json()
    assert alice.post(f"/v1/jobs/{cancelled['id']}/cancel").json()["status"] == "cancelled"
    assert alice.post(f"/v1/jobs/{cancelled['id']}/retry").status_code == 202
    with container.store.tx() as tx:  # the retry is queued; take it out of the way
        tx.jobs.update_job(alice.get("/v1/jobs").json()["data"][0]["id"], status="cancelled")
    dead = alice.post("/v1/jobs", json=NOOP).json()
    fail_job(container, dead["id"], dead=True)
    assert alice.post(f"/v1/jobs/{dead['id']}/retry").status_code == 202


def test_retry_refuses_live_jobs_and_others_jobs(client: Any, alice: UserHandle, bob: UserHandle) -> None:
    job = alice.post("/v1/jobs", json=NOOP).json()
    assert_problem(alice.post(f"/v1/jobs/{job['id']}/retry"), 409, "job_not_retryable")
    assert_problem(bob.post(f"/v1/jobs/{job['id']}/retry"), 404, "job_not_found")
    assert_problem(alice.post("/v1/jobs/0123456789abcdef0123456789abcdef/retry"), 404, "job_not_found")


def test_retry_of_succeeded_job_is_409(client: Any, alice: UserHandle, worker: Any) -> None:
    job = alice.post("/v1/jobs", json=NOOP, params={"wait": 30}).json()
    assert job["status"] == "succeeded"
    assert_problem(alice.post(f"/v1/jobs/{job['id']}/retry"), 409, "job_not_retryable")


def test_retry_without_credits_is_402(client: Any, container: Any, alice: UserHandle, admin: UserHandle) -> None:
    job = alice.post("/v1/jobs", json=IMAGE).json()
    fail_job(container, job["id"])
    admin.post("/v1/admin/credits", json={"account_id": alice.id, "amount": -100})
    assert_problem(alice.post(f"/v1/jobs/{job['id']}/retry"), 402, "insufficient_credits")


# --- workers, system -----------------------------------------------------------------------------------------
def test_workers(client: Any, admin: UserHandle, worker: Any) -> None:
    body = admin.get("/v1/admin/workers").json()
    (w,) = [w for w in body["data"] if w["id"] == worker.worker_id]
    assert w["status"] == "running" and w["concurrency"] == worker.concurrency and w["pid"] > 0
    assert w["hostname"] and 0 <= w["heartbeat_age_s"] < 10 and w["started_at"].endswith("Z")


def test_system(client: Any, admin: UserHandle, alice: UserHandle, worker: Any, db_url: str) -> None:
    alice.post("/v1/jobs", json=IMAGE, params={"wait": 60})
    body = admin.get("/v1/admin/system").json()
    from reelforge import __version__

    assert body["version"] == __version__
    assert body["database"] == ("sqlite" if db_url.startswith("sqlite") else "postgresql")
    assert body["models"] == admin.get("/v1/models").json()["data"]
    assert body["storage"]["assets"] == 2 and body["storage"]["bytes"] > 0  # the PNG and its metadata
    assert body["storage"]["backend"] == "local"
    assert body["workers"]["live"] == 1 and body["workers"]["slots"] == worker.concurrency


def _stale_worker(container: Any, worker_id: str, *, age_s: float, status: str = "running") -> None:
    """A registration whose last heartbeat is `age_s` old: what a worker killed with SIGKILL leaves behind."""
    from sqlalchemy import update

    from reelforge.adapters.db import models as m

    with container.store.tx() as tx:
        tx.ops.worker_heartbeat(worker_id, hostname="gone-host", pid=4242, concurrency=1, status=status)
        tx.s.execute(update(m.Worker).where(m.Worker.id == worker_id)
                     .values(heartbeat_at=tx.now() - age_s))


def test_a_worker_without_heartbeat_is_reported_lost(client: Any, container: Any, admin: UserHandle,
                                                     worker: Any) -> None:
    lost_after = container.stats.lost_after_s
    _stale_worker(container, "gone-host:4242:dead", age_s=lost_after + 120)
    _stale_worker(container, "gone-host:4243:late", age_s=lost_after / 2)
    _stale_worker(container, "gone-host:4244:done", age_s=lost_after + 120, status="stopped")
    by_id = {w["id"]: w for w in admin.get("/v1/admin/workers").json()["data"]}
    dead = by_id["gone-host:4242:dead"]
    assert dead["status"] == "lost" and dead["reported_status"] == "running"
    assert dead["heartbeat_age_s"] > lost_after
    assert by_id["gone-host:4243:late"]["status"] == "running"  # late, but within the threshold
    assert by_id["gone-host:4244:done"]["status"] == "stopped"
    assert by_id[worker.worker_id]["status"] == "running"
    system = admin.get("/v1/admin/system").json()["workers"]
    assert system == {"total": 4, "live": 2, "lost": 1, "slots": worker.concurrency + 1}


def test_a_dead_worker_seen_by_its_supervisor_is_lost_and_its_jobs_requeued(client: Any, container: Any,
                                                                            admin: UserHandle,
                                                                            alice: UserHandle) -> None:
    job = alice.post("/v1/jobs", json=NOOP).json()
    with container.store.tx() as tx:
        tx.ops.worker_heartbeat("gone-host:4242:dead", hostname="gone-host", pid=4242, concurrency=1)
        claimed = tx.jobs.claim_job("gone-host:4242:dead", 300)
    assert claimed is not None and claimed.id == job["id"]
    assert container.jobs.worker_died("gone-host", 4242) == 1
    (w,) = admin.get("/v1/admin/workers").json()["data"]
    assert w["status"] == "lost" and w["reported_status"] == "lost"
    after = alice.get(f"/v1/jobs/{job['id']}").json()
    assert after["status"] == "queued" and after["error"]["code"] == "lease_expired"
    assert container.jobs.worker_died("gone-host", 4242) == 0  # once


# --- alarms, stats -----------------------------------------------------------------------------------------
def test_alarms_rules_and_state(client: Any, container: Any, admin: UserHandle, alice: UserHandle) -> None:
    body = admin.get("/v1/admin/alarms").json()
    rules = {r["name"]: r for r in body["rules"]}
    assert set(rules) == {"job_failure_rate", "queue_age", "worker_heartbeat", "model_error_rate"}
    assert rules["job_failure_rate"]["threshold"] == 0.05 and rules["job_failure_rate"]["window_s"] == 900
    assert rules["queue_age"]["threshold"] == 600 and rules["model_error_rate"]["threshold"] == 0.10
    assert body["active"] == [] and body["recent"] == []

    # A due job and no worker: the heartbeat rule fires.
    alice.post("/v1/jobs", json=NOOP)
    container.alarms.evaluate()
    body = admin.get("/v1/admin/alarms").json()
    (active,) = body["active"]
    assert active["rule"] == "worker_heartbeat" and active["state"] == "alarm" and active["raised_at"]
    (event,) = body["recent"]
    assert event["key"] == "worker_heartbeat" and event["event"] == "raised" and event["ts"].endswith("Z")


def test_stats(client: Any, container: Any, admin: UserHandle, alice: UserHandle,
               request: pytest.FixtureRequest) -> None:
    cancelled = alice.post("/v1/jobs", json=NOOP).json()
    assert alice.post(f"/v1/jobs/{cancelled['id']}/cancel").json()["status"] == "cancelled"
    request.getfixturevalue("worker")
    for _ in range(2):
        assert alice.post("/v1/jobs", json=NOOP, params={"wait": 30}).json()["status"] == "succeeded"
    assert alice.post("/v1/jobs", json=IMAGE, params={"wait": 60}).json()["status"] == "succeeded"
    container.alarms.evaluate()  # records a queue-depth sample

    body = admin.get("/v1/admin/stats", params={"hours": 3}).json()
    assert body["hours"] == 3 and len(body["jobs_per_hour"]) == 3
    hours = [h["hour"] for h in body["jobs_per_hour"]]
    assert hours == sorted(hours) and all(h.endswith(":00:00.000000Z") for h in hours)
    now = body["jobs_per_hour"][-1]
    assert (now["succeeded"], now["cancelled"], now["failed"], now["dead"]) == (3, 1, 0, 0)
    kinds = {d["kind"]: d for d in body["duration_by_kind"]}
    assert kinds["system.noop"]["count"] == 2 and kinds["image.generate"]["count"] == 1
    assert 0 <= kinds["system.noop"]["p50_s"] <= kinds["system.noop"]["p95_s"]
    assert [c["credits"] for c in body["credits_used_per_hour"]] == [0, 0, 1]
    samples = body["queue_depth"]  # the worker's own alarm tick records one too
    assert samples and samples[-1]["depth"] == 0 and all(s["ts"].endswith("Z") for s in samples)
    assert_problem(admin.get("/v1/admin/stats", params={"hours": 0}), 422, "validation_error")
