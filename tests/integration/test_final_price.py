"""A pipeline's final price (`Pipeline.settle`): what a succeeded job costs, from its outputs, at most what was
reserved at submit; the rest of the reservation is refunded with the settlement, in the same transaction. A
failing or excessive rule leaves the reservation as the price; a pipeline without one costs its reservation."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import make_settings, register, wait_for


@pytest.fixture
def env(tmp_path: Any, db_url: str) -> Iterator[tuple[Any, Any]]:
    from fastapi.testclient import TestClient

    from reelforge.api.app import create_app
    from reelforge.container import Container
    from reelforge.runtime.worker import Worker

    c = Container(make_settings(tmp_path, db_url, extra_pipelines=["tests.fixtures.priced_pipelines"]))
    w = Worker(c, concurrency=2)
    w.start()
    try:
        with TestClient(create_app(container=c)) as client:
            yield client, c
    finally:
        w.stop(grace_s=5)
        c.close()


def run(user: Any, kind: str, reserve: int, used: Any) -> dict[str, Any]:
    r = user.post("/v1/jobs", json={"kind": kind, "input": {"reserve": reserve, "used": used}})
    assert r.status_code in (200, 201, 202), r.text
    assert r.json()["credits"] == reserve and r.json()["credits_state"] == "reserved"
    job_id = r.json()["id"]
    return dict(wait_for(lambda: (j := user.get(f"/v1/jobs/{job_id}").json())["status"] == "succeeded" and j,
                         timeout=30))


@pytest.mark.parametrize(("kind", "reserve", "used", "cost"), [
    ("test.priced", 10, 3, 3),        # the unused part of the reservation comes back
    ("test.priced", 10, 0, 0),        # free in the end
    ("test.priced", 5, 9, 5),         # never more than was reserved
    ("test.priced", 6, "boom", 6),    # a rule that fails: the reservation is the price
    ("test.flat", 7, 1, 7),           # no rule: the reservation is the price
])
def test_final_price(env: tuple[Any, Any], kind: str, reserve: int, used: Any, cost: int) -> None:
    client, _ = env
    user = register(client, "payer@example.com")
    before = user.get("/v1/credits").json()["balance"]
    job = run(user, kind, reserve, used)
    assert job["credits"] == cost and job["credits_state"] == "settled"
    credits = user.get("/v1/credits").json()
    assert credits["balance"] == before - cost
    mine = [(e["kind"], e["amount"]) for e in credits["ledger"] if e["job_id"] == job["id"]]
    refund = [("refund", reserve - cost)] if cost < reserve else []
    assert sorted(mine) == sorted([("reserve", -reserve), *refund, ("settle", 0)]), mine
