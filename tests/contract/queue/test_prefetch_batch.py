"""Prefetch (claim_jobs), batched finishing (succeed_many) and prefetch release, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from reelforge import errors
from reelforge.domain.types import Principal, Role
from reelforge.runtime.finisher import Finisher
from reelforge.runtime.worker import Worker
from reelforge.services.jobs import SucceedItem


@pytest.fixture
def owner(container: Any) -> Principal:
    u = container.auth.register("prefetch@example.com", "password-123", grant=1000)
    return Principal(user_id=u.id, email=u.email, role=Role.user)


def submit(container: Any, owner: Principal, echo: Any = None, priority: int = 0) -> Any:
    job, _ = container.jobs.submit(owner, "system.noop", {"echo": echo}, priority=priority)
    return job


def claim_many(container: Any, limit: int, worker: str = "w1", lease_s: float = 30) -> list[Any]:
    with container.store.tx() as tx:
        return tx.jobs.claim_jobs(worker, lease_s, None, limit)


def events(container: Any, job_id: str) -> list[str]:
    with container.store.tx(write=False) as tx:
        return [e.type for e in tx.jobs.events(job_id)]


def test_claim_jobs_order_and_limit(container: Any, owner: Principal) -> None:
    low = submit(container, owner, "low", priority=-5)
    first = submit(container, owner, "first")
    second = submit(container, owner, "second")
    high = submit(container, owner, "high", priority=10)
    third = submit(container, owner, "third")
    with container.store.tx() as tx:  # one submit per millisecond at least (the SQLite clock's resolution)
        now = tx.now()
        for i, j in enumerate((low, first, second, high, third)):
            tx.jobs.update_job(j.id, run_at=now - 10, created_at=now - 10 + i * 0.01)
    got = claim_many(container, 3)
    assert [j.id for j in got] == [high.id, first.id, second.id]
    assert all(j.status == "running" and j.attempt == 1 and j.worker_id == "w1" for j in got)
    assert all(j.lease_expires_at > container.store.now() + 20 for j in got)
    rest = claim_many(container, 3)
    assert [j.id for j in rest] == [third.id, low.id]
    assert claim_many(container, 3) == []


def test_claim_jobs_is_exclusive_under_concurrency(container: Any, owner: Principal) -> None:
    ids = {submit(container, owner, i).id for i in range(40)}
    taken: list[list[str]] = []
    lock = threading.Lock()

    def claimer(n: int) -> None:
        while True:
            got = claim_many(container, 3, worker=f"w{n}")
            if not got:
                return
            with lock:
                taken.append([j.id for j in got])

    threads = [threading.Thread(target=claimer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    flat = [jid for batch in taken for jid in batch]
    assert len(flat) == len(set(flat)) == 40  # every job once, none twice
    assert set(flat) == ids
    assert all(len(b) <= 3 for b in taken)


def test_succeed_many_one_lost_lease_others_commit(container: Any, owner: Principal) -> None:
    for i in range(3):
        submit(container, owner, i)
    a, b, c = claim_many(container, 3)
    with container.store.tx() as tx:  # b's lease ran out (a reaper or another worker may take it)
        tx.jobs.update_job(b.id, lease_expires_at=tx.now() - 1)
    items = [SucceedItem(j.id, j.attempt, {"echo": j.id}, [("TaskSucceeded", "noop", {"duration_s": 0.0})],
                         {"noop": {"echo": j.id}}) for j in (a, b, c)]
    results = container.jobs.succeed_many(items)
    assert isinstance(results[1], errors.StaleLease)
    assert results[0].status == "succeeded" and results[2].status == "succeeded"
    with container.store.tx(write=False) as tx:
        for j in (a, c):
            row = tx.jobs.job(j.id)
            assert row.status == "succeeded" and row.outputs == {"echo": j.id} and row.lease_expires_at is None
            assert tx.jobs.checkpoint(j.id, "noop").output == {"echo": j.id}
        stale = tx.jobs.job(b.id)
        assert stale.status == "running" and stale.outputs is None and stale.attempt == 1
        assert tx.jobs.checkpoint(b.id, "noop") is None
        outbox = [(e.type, e.subject_id) for e in tx.events.events_after(0)]
    assert ("job.succeeded", a.id) in outbox and ("job.succeeded", c.id) in outbox
    assert all(subject != b.id for _, subject in outbox)
    assert events(container, a.id)[-2:] == ["TaskSucceeded", "JobSucceeded"]
    assert "JobSucceeded" not in events(container, b.id) and "TaskSucceeded" not in events(container, b.id)


def test_finisher_reports_each_jobs_outcome(container: Any, owner: Principal) -> None:
    for i in range(3):
        submit(container, owner, i)
    good, lost, late = claim_many(container, 3)
    with container.store.tx() as tx:
        tx.jobs.update_job(lost.id, lease_expires_at=tx.now() - 1)
    fin = Finisher(container.jobs, window_s=0.05, max_batch=16)
    outcome: dict[str, Any] = {}
    reported = threading.Event()

    def report(job_id: str) -> Any:
        def done(out: Any) -> None:
            outcome[job_id] = out
            if len(outcome) == 2:
                reported.set()
        return done

    threads = [threading.Thread(target=fin.submit, args=(SucceedItem(j.id, j.attempt, {"ok": True}), report(j.id)))
               for j in (good, lost)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert reported.wait(10)
    fin.close()
    assert outcome[good.id].status == "succeeded"
    assert isinstance(outcome[lost.id], errors.StaleLease)
    # After close() a success commits in the calling thread, before submit() returns.
    fin.submit(SucceedItem(late.id, late.attempt, {"ok": True}), report(late.id))
    assert outcome[late.id].status == "succeeded"


def test_prefetched_jobs_renewed_and_released_on_shutdown(container: Any, owner: Principal) -> None:
    container.settings.jobs.prefetch = 4
    jobs = [submit(container, owner, i) for i in range(3)]
    w = Worker(container, concurrency=1, worker_id="prefetcher", maintenance=False)
    w.job_s_avg = 0.01  # its recent jobs were short: it prefetches
    first = w._claim()
    assert first is not None and first.id == jobs[0].id
    assert [j.id for j in w.prefetched] == [jobs[1].id, jobs[2].id]
    with container.store.tx() as tx:  # leases short: the heartbeat renews the prefetched ones in one UPDATE
        for j in jobs:
            tx.jobs.update_job(j.id, lease_expires_at=tx.now() + 1)
    w._renew([], list(w.prefetched))
    with container.store.tx(write=False) as tx:
        assert all(tx.jobs.job(j.id).lease_expires_at > tx.now() + 5 for j in jobs[1:])  # lease_s is 10 here
    w.stop(grace_s=0)
    assert not w.prefetched
    with container.store.tx(write=False) as tx:
        for j in jobs[1:]:
            row = tx.jobs.job(j.id)
            assert row.status == "queued" and row.worker_id is None and row.failures == 0
        assert tx.jobs.job(jobs[0].id).status == "running"  # claimed by the slot, not a prefetched one
    assert events(container, jobs[1].id)[-1] == "JobReleased"


def test_prefetched_job_cancelled_while_waiting(container: Any, owner: Principal) -> None:
    container.settings.jobs.prefetch = 2
    jobs = [submit(container, owner, i) for i in range(2)]
    w = Worker(container, concurrency=1, worker_id="prefetcher", maintenance=False)
    w.job_s_avg = 0.01
    w._claim()
    waiting = list(w.prefetched)
    assert [j.id for j in waiting] == [jobs[1].id]
    container.jobs.cancel(owner, jobs[1].id)  # running (claimed): flagged
    w._renew([], waiting)
    assert not w.prefetched
    with container.store.tx(write=False) as tx:
        assert tx.jobs.job(jobs[1].id).status == "cancelled"


def test_prefetch_follows_recent_job_durations(container: Any, owner: Principal) -> None:
    container.settings.jobs.prefetch = None  # the default: 4 per slot
    container.settings.jobs.prefetch_max_job_s = 1.0
    jobs = [submit(container, owner, i) for i in range(12)]
    w = Worker(container, concurrency=2, worker_id="adaptive", maintenance=False)
    assert w.prefetch == 8
    # Nothing ran here yet: one job per claim, whatever the queue holds. (Jobs submitted within the same
    # millisecond tie on created_at, so this test looks at how many are claimed, not which.)
    ids = {j.id for j in jobs}
    taken: set[str] = set()

    def claim() -> list[str]:
        first = w._claim()
        got = [first.id, *(j.id for j in w.prefetched)] if first is not None else []
        w.prefetched.clear()  # (left leased; this test only looks at claim sizes)
        assert not taken & set(got) and set(got) <= ids
        taken.update(got)
        return got

    assert w.claim_limit() == 1 and len(claim()) == 1
    for _ in range(3):
        w._ran(0.002)
    assert w.claim_limit() == 8 and len(claim()) == 8
    for _ in range(3):  # long jobs now: the moving average crosses the bound within a few of them
        w._ran(30.0)
    assert w.job_s_avg is not None and w.job_s_avg >= 1.0
    assert w.claim_limit() == 1 and len(claim()) == 1
    for _ in range(40):
        w._ran(0.01)
    assert w.claim_limit() == 8
    container.settings.jobs.prefetch_max_job_s = 0.0  # never prefetch
    assert Worker(container, concurrency=2, worker_id="never", maintenance=False).claim_limit() == 1


def test_worker_measures_job_run_time(container: Any, owner: Principal) -> None:
    job = submit(container, owner, "timed")
    w = Worker(container, concurrency=1, worker_id="timer", maintenance=False)
    claimed = w._claim()
    assert claimed is not None and claimed.id == job.id and w.job_s_avg is None
    w.execute(claimed)
    assert w.job_s_avg is not None and 0 < w.job_s_avg < 5
    with container.store.tx(write=False) as tx:
        assert tx.jobs.job(job.id).status == "succeeded"


def test_slot_goes_on_while_its_success_commits(container: Any, owner: Principal,
                                                caplog: pytest.LogCaptureFixture) -> None:
    good, lost = submit(container, owner, "good"), submit(container, owner, "lost")
    w = Worker(container, concurrency=2, worker_id="handoff", maintenance=False)
    # A long window and no in-flight shortcut: the batch commits 0.5 s after the first success arrives.
    w.finisher = Finisher(container.jobs, window_s=0.5, max_batch=16)
    try:
        a, b = w._claim(), w._claim()
        assert {a.id, b.id} == {good.id, lost.id}
        if a.id == lost.id:
            a, b = b, a
        with container.store.tx() as tx:  # `lost` runs out of lease while it runs (another worker may take it)
            tx.jobs.update_job(b.id, lease_expires_at=tx.now() - 1)
        t0 = time.monotonic()
        w.execute(a)
        w.execute(b)
        assert time.monotonic() - t0 < 0.4  # neither slot waited for the commit
        with w._lock:
            assert set(w.running) == {a.id, b.id}  # still held (their leases renewed) until the batch commits
        with container.store.tx(write=False) as tx:
            assert tx.jobs.job(a.id).status == "running"
        deadline = time.monotonic() + 10
        while w.running and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not w.running
        with container.store.tx(write=False) as tx:
            assert tx.jobs.job(a.id).status == "succeeded" and tx.jobs.job(a.id).outputs == {"echo": "good"}
            assert tx.jobs.job(b.id).status == "running" and tx.jobs.job(b.id).outputs is None
        assert any("lost its lease" in r.getMessage() and b.id in r.getMessage() for r in caplog.records)
    finally:
        w.finisher.close()
