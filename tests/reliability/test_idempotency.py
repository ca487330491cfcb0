"""Idempotency under a real race: 50 concurrent POST /v1/jobs with one Idempotency-Key make one job.

The API runs in a real uvicorn server (a background thread, its own port); each client thread has its own
HTTP connection and they all fire at the same instant from a barrier, so the requests really overlap in
the server's thread pool and in the database.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
import uvicorn

from tests.reliability.conftest import balance, wait_until
from tests.reliability.pipelines import STEPS_PRICE

CLIENTS = 50


@pytest.fixture
def server_url(container: Any) -> Iterator[str]:
    from reelforge.api.app import create_app

    config = uvicorn.Config(create_app(container=container), host="127.0.0.1", port=0, log_level="warning",
                            access_log=False, lifespan="off", limit_concurrency=None, backlog=256)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    wait_until(lambda: server.started, 20, "uvicorn to start")
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def _token(url: str) -> tuple[str, str]:
    with httpx.Client(base_url=url, timeout=30) as c:
        r = c.post("/v1/auth/register", json={"email": "racer@example.com", "password": "correct horse battery"})
        assert r.status_code == 202, r.text
        t = c.post("/v1/auth/token", json={"email": "racer@example.com", "password": "correct horse battery"})
        assert t.status_code == 200, t.text
        token = t.json()["access_token"]
        return token, c.get("/v1/auth/me", headers={"Authorization": f"Bearer {token}"}).json()["id"]


@pytest.mark.reliability
def test_concurrent_submits_with_one_key_make_one_job(container: Any, server_url: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from reelforge.adapters.db.repositories import JobRepository

    token, user_id = _token(server_url)
    inserts = []  # how many requests got past the read check and tried to insert: the race the key must win
    add_job = JobRepository.add_job

    def counting_add_job(self: JobRepository, **values: Any) -> Any:
        inserts.append(values.get("idempotency_key"))
        return add_job(self, **values)

    monkeypatch.setattr(JobRepository, "add_job", counting_add_job)
    grant = balance(container, user_id)
    body = {"kind": "test.steps", "input": {"n": 5, "items": [1, 2, 3]}}
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": "race-1"}
    barrier = threading.Barrier(CLIENTS)

    def post(_: int) -> tuple[int, dict[str, Any]]:
        with httpx.Client(base_url=server_url, timeout=60) as c:
            c.get("/healthz")  # open the connection first, so that the POSTs start together
            barrier.wait(30)
            r = c.post("/v1/jobs", json=body, headers=headers)
            return r.status_code, r.json()

    t0 = time.monotonic()
    with ThreadPoolExecutor(CLIENTS) as pool:
        answers = list(pool.map(post, range(CLIENTS)))
    print(f"{CLIENTS} concurrent submits in {time.monotonic() - t0:.2f}s; {len(inserts)} reached the insert")

    assert [code for code, _ in answers] == [202] * CLIENTS, answers
    ids = {a["id"] for _, a in answers}
    assert len(ids) == 1
    (job_id,) = ids
    with container.store.tx(write=False) as tx:
        jobs = list(tx.jobs.jobs(owner_id=user_id, limit=100))
        ledger = list(tx.credits.ledger(user_id))
        events = [e.type for e in tx.jobs.events(job_id)]
    assert [j.id for j in jobs] == [job_id]
    assert sorted((e.kind, e.amount) for e in ledger) == [("grant", grant), ("reserve", -STEPS_PRICE)]
    assert events == ["JobQueued"]
    assert balance(container, user_id) == grant - STEPS_PRICE

    # Same key, another body: refused, and nothing changes.
    with httpx.Client(base_url=server_url, timeout=30) as c:
        other = {"kind": "test.steps", "input": {"n": 6, "items": [1, 2, 3]}}
        r = c.post("/v1/jobs", json=other, headers=headers)
        assert r.status_code == 409, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["code"] == "idempotency_key_reused"
        # The first body again still replays the job.
        r = c.post("/v1/jobs", json=body, headers=headers)
        assert r.status_code == 202 and r.json()["id"] == job_id
        assert r.headers.get("Idempotent-Replayed") == "true"
    with container.store.tx(write=False) as tx:
        assert len(list(tx.jobs.jobs(owner_id=user_id, limit=100))) == 1
    assert balance(container, user_id) == grant - STEPS_PRICE
