"""The queue contract, on every engine that holds the job table (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from reelforge import errors
from reelforge.domain.types import Principal, Role


@pytest.fixture
def owner(container: Any) -> Principal:
    u = container.auth.register("queue@example.com", "password-123", grant=1000)
    return Principal(user_id=u.id, email=u.email, role=Role.user)


def submit(container: Any, owner: Principal, **kw: Any) -> Any:
    job, _ = container.jobs.submit(owner, "system.noop", {"echo": kw.pop("echo", None)}, **kw)
    return job


def claim(container: Any, worker: str = "w1", lease_s: float = 30, kinds: list[str] | None = None) -> Any:
    with container.store.tx() as tx:
        return tx.jobs.claim_job(worker, lease_s, kinds)


def test_claim_order_priority_then_age(container: Any, owner: Principal) -> None:
    low = submit(container, owner, echo="low", priority=-5)
    first = submit(container, owner, echo="first")
    second = submit(container, owner, echo="second")
    high = submit(container, owner, echo="high", priority=10)
    order = [claim(container).id for _ in range(4)]
    assert order == [high.id, first.id, second.id, low.id]
    assert claim(container) is None


def test_claim_bumps_attempt_and_sets_lease(container: Any, owner: Principal) -> None:
    job = submit(container, owner)
    got = claim(container, lease_s=30)
    assert got.id == job.id and got.status == "running" and got.attempt == 1 and got.worker_id == "w1"
    assert got.lease_expires_at > container.store.now() + 20


def test_delayed_job_is_not_claimed_before_run_at(container: Any, owner: Principal) -> None:
    job = submit(container, owner)
    with container.store.tx() as tx:
        tx.jobs.update_job(job.id, run_at=tx.now() + 60)
    assert claim(container) is None
    with container.store.tx() as tx:
        tx.jobs.update_job(job.id, run_at=tx.now() - 1)
    assert claim(container).id == job.id


def test_kinds_filter(container: Any, owner: Principal) -> None:
    submit(container, owner)
    assert claim(container, kinds=["image.generate"]) is None
    assert claim(container, kinds=["system.noop"]) is not None


def test_concurrent_claims_take_each_job_once(container: Any, owner: Principal) -> None:
    jobs = {submit(container, owner, echo=i).id for i in range(30)}
    taken: list[str] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        while True:
            job = claim(container, worker=f"w{n}")
            if job is None:
                return
            with lock:
                taken.append(job.id)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(taken) == sorted(jobs)


def test_fence_renews_and_refuses_stale(container: Any, owner: Principal) -> None:
    submit(container, owner)
    job = claim(container, lease_s=30)
    with container.store.tx() as tx:
        renewed = tx.jobs.fence(job.id, job.attempt, 120)
    assert renewed.lease_expires_at > job.lease_expires_at + 60
    with pytest.raises(errors.StaleLease), container.store.tx() as tx:
        tx.jobs.fence(job.id, job.attempt - 1)


def test_expired_lease_is_reaped_and_reclaimed_with_new_token(container: Any, owner: Principal) -> None:
    submit(container, owner)
    job = claim(container, lease_s=0.2)
    time.sleep(0.4)
    with pytest.raises(errors.StaleLease), container.store.tx() as tx:
        tx.jobs.fence(job.id, job.attempt)  # an expired lease no longer proves ownership
    assert container.jobs.reap_expired_leases() == 1
    again = claim(container, worker="w2")
    assert again.id == job.id and again.attempt == job.attempt + 1 and again.failures == 1
    with pytest.raises(errors.StaleLease), container.store.tx() as tx:
        tx.jobs.fence(job.id, job.attempt)


def test_lease_expiry_past_max_attempts_is_dead_and_refunded(container: Any, owner: Principal) -> None:
    job, _ = container.jobs.submit(owner, "image.generate", {
        "prompt": "x", "width": 64, "height": 64, "steps": 1, "guidance_scale": 1, "num_images": 1,
        "model": "tiny-sd"})
    balance = container.credits.balance(owner)
    for _ in range(job.max_attempts):
        got = claim(container, lease_s=0.05)
        assert got is not None and got.id == job.id
        time.sleep(0.1)
        container.jobs.reap_expired_leases()
    final = container.jobs.get(owner, job.id)
    assert final.status == "dead" and final.failures == job.max_attempts
    assert container.credits.balance(owner) == balance + job.credits
    assert claim(container) is None
