"""POST /v1/jobs/batch: up to 100 jobs in one transaction, all or none."""

from __future__ import annotations

from typing import Any

from tests.api.test_jobs import NOOP, assert_problem, image
from tests.conftest import UserHandle
from tests.fixtures.hashing import fast_password_hashing  # noqa: F401


def test_batch_queues_every_job(client: Any, alice: UserHandle) -> None:
    body = {"jobs": [{"kind": "system.noop", "input": {"echo": i}, "priority": i % 3} for i in range(5)]}
    r = alice.post("/v1/jobs/batch", json=body)
    assert r.status_code == 202, r.text
    data = r.json()["data"]
    assert [j["input"]["echo"] for j in data] == list(range(5))
    assert all(j["status"] == "queued" and j["kind"] == "system.noop" for j in data)
    assert [j["priority"] for j in data] == [0, 1, 2, 0, 1]
    listed = {j["id"] for j in alice.get("/v1/jobs").json()["data"]}
    assert listed == {j["id"] for j in data}
    hist = alice.get(f"/v1/jobs/{data[0]['id']}/history").json()["events"]
    assert [e["type"] for e in hist] == ["JobQueued"]


def test_batch_validation_error_reports_index_and_queues_nothing(client: Any, alice: UserHandle) -> None:
    jobs = [NOOP, image(), image(width="wide"), {"kind": "no.such.kind"}, NOOP]
    body = assert_problem(alice.post("/v1/jobs/batch", json={"jobs": jobs}), 422, "validation_error")
    by_index = {e["index"]: e for e in body["errors"]}
    assert set(by_index) == {2, 3}, body
    assert by_index[2]["field"] == "width"
    assert by_index[3]["code"] == "unknown_kind"
    assert "jobs[2]" in body["detail"]
    assert alice.get("/v1/jobs").json()["data"] == []
    assert alice.get("/v1/credits").json()["balance"] == 100


def test_batch_shape_errors_carry_the_index(client: Any, alice: UserHandle) -> None:
    body = assert_problem(alice.post("/v1/jobs/batch", json={"jobs": [NOOP, {"kind": "system.noop", "bogus": 1}]}),
                          422, "validation_error")
    assert body["errors"][0]["index"] == 1
    assert_problem(alice.post("/v1/jobs/batch", json={"jobs": []}), 422, "validation_error")
    assert_problem(alice.post("/v1/jobs/batch", json={"jobs": [NOOP] * 101}), 422, "validation_error")
    assert alice.get("/v1/jobs").json()["data"] == []


def test_batch_reserves_credits_per_job(client: Any, alice: UserHandle) -> None:
    jobs = [image(num_images=2), image(), NOOP]
    r = alice.post("/v1/jobs/batch", json={"jobs": jobs})
    assert r.status_code == 202, r.text
    data = r.json()["data"]
    assert [j["credits"] for j in data] == [2, 1, 0]
    assert [j["credits_state"] for j in data] == ["reserved", "reserved", "none"]
    assert alice.get("/v1/credits").json()["balance"] == 97


def test_batch_without_enough_credits_is_402_and_queues_nothing(client: Any, alice: UserHandle) -> None:
    jobs = [NOOP] + [image(num_images=4)] * 30  # 120 credits, alice has 100
    body = assert_problem(alice.post("/v1/jobs/batch", json={"jobs": jobs}), 402, "insufficient_credits")
    assert body["needed"] == 120 and body["balance"] == 100
    assert alice.get("/v1/jobs").json()["data"] == []
    assert alice.get("/v1/credits").json()["balance"] == 100


def test_batch_refuses_idempotency_keys(client: Any, alice: UserHandle) -> None:
    r = alice.post("/v1/jobs/batch", json={"jobs": [NOOP]}, headers={"Idempotency-Key": "k1"})
    assert_problem(r, 400, "idempotency_not_supported")
    assert alice.get("/v1/jobs").json()["data"] == []
