"""Fencing: a worker whose lease expired cannot commit anything, in-process and with real processes.

The attempt number is the fencing token: every worker write (checkpoint, progress, heartbeat, final
transition, release) runs `Tx.fence(job_id, attempt)` first, in the same transaction, and is refused
with StaleLease once the lease expired or another claim bumped the attempt.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import pytest

from reelforge import errors
from reelforge.runtime.checkpoints import DbCheckpoints
from reelforge.runtime.worker import Worker, _Running
from tests.reliability.conftest import WorkerProcs, balance, job_record, job_status, wait_until
from tests.reliability.pipelines import SLOW_PRICE, STEPS_PRICE, read_log


def _claim(container: Any, worker_id: str, lease_s: float) -> Any:
    with container.store.tx() as tx:
        job = tx.jobs.claim_job(worker_id, lease_s)
    assert job is not None
    return job


def _stale_writes_refused(container: Any, job: Any) -> None:
    """Every write path a worker has, tried with `job`'s (stale) attempt: all refused."""
    jobs = container.jobs
    cp = DbCheckpoints(container, job)
    cp.history("TaskSucceeded", "late", attempt=job.attempt)
    with pytest.raises(errors.StaleLease):
        cp.put("late", {"from": "the stale worker"})
    with pytest.raises(errors.StaleLease):
        jobs.succeed(job.id, job.attempt, {"from": "the stale worker"}, history=[("ExecutionSucceeded", None, {})])
    with pytest.raises(errors.StaleLease):
        jobs.fail(job.id, job.attempt, "boom", "late failure", retryable=False)
    with pytest.raises(errors.StaleLease):
        jobs.fail(job.id, job.attempt, "boom", "late failure", retryable=True)
    with pytest.raises(errors.StaleLease):
        jobs.cancelled(job.id, job.attempt)
    with pytest.raises(errors.StaleLease):
        jobs.release(job.id, job.attempt)
    with pytest.raises(errors.StaleLease), container.store.tx() as tx:  # the heartbeat's lease renewal
        tx.jobs.fence(job.id, job.attempt, container.settings.jobs.lease_s)

    # Progress goes through the worker's own writer: refused, and the run is flagged stale and stopped.
    w = Worker(container, maintenance=False)
    try:
        run = _Running(job)
        w._progress(run, 1.0, "late progress")
        assert run.stale.is_set() and run.cancel.is_set()
    finally:
        w.executor.shutdown()


def test_expired_lease_cannot_commit(container: Any, user: Any) -> None:
    """Lease expired, job reaped and claimed again: the first holder's writes all fail and change nothing."""
    job, _ = container.jobs.submit(user, "test.slow", {"step_s": 0.1})
    first = _claim(container, "worker-a", lease_s=0.3)
    assert first.attempt == 1

    # Lease expired but nobody reaped it yet: the holder is already fenced off (it must not revive).
    time.sleep(0.5)
    _stale_writes_refused(container, first)

    assert container.jobs.reap_expired_leases() == 1
    second = _claim(container, "worker-b", lease_s=30)
    assert second.id == job.id and second.attempt == 2
    _stale_writes_refused(container, first)

    rec = job_record(container, job.id)
    assert rec.job.status == "running" and rec.job.attempt == 2 and rec.job.worker_id == "worker-b"
    assert rec.job.outputs is None and rec.job.progress == 0.0 and rec.job.failures == 1
    assert rec.checkpoints == {}
    assert [(e.kind, e.amount) for e in rec.ledger] == [("reserve", -SLOW_PRICE)]
    assert rec.outbox == []
    # The only event of attempt 1 is the reaper's LeaseExpired; no late event of the stale worker.
    assert rec.types(1) == ["LeaseExpired"]
    assert rec.types() == ["JobQueued", "LeaseExpired"]

    # The current holder is unaffected: it commits, and the credits settle once.
    cp = DbCheckpoints(container, second)
    cp.put("s1", {"done": ["s1"]})
    container.jobs.succeed(job.id, 2, {"done": ["s1"]})
    rec = job_record(container, job.id)
    assert rec.job.status == "succeeded" and rec.job.outputs == {"done": ["s1"]}
    assert rec.checkpoints["s1"].attempt == 2
    assert [(e.kind, e.amount) for e in rec.ledger] == [("reserve", -SLOW_PRICE), ("settle", 0)]
    assert [e.type for e in rec.outbox] == ["job.succeeded"]
    _stale_writes_refused(container, first)  # and after the end, too
    _stale_writes_refused(container, second)


def test_lease_expiry_with_nobody_else_still_fences(container: Any, user: Any) -> None:
    """A job whose lease ran out goes back to the queue (one failure), even if its worker comes back."""
    job, _ = container.jobs.submit(user, "test.steps", {"n": 1, "items": [1]})
    first = _claim(container, "worker-a", lease_s=0.2)
    time.sleep(0.4)
    assert container.jobs.reap_expired_leases() == 1
    assert job_status(container, job.id) == "queued"
    _stale_writes_refused(container, first)
    rec = job_record(container, job.id)
    assert rec.job.failures == 1 and rec.job.error_code == "lease_expired"
    assert [(e.kind, e.amount) for e in rec.ledger] == [("reserve", -STEPS_PRICE)]


@pytest.mark.reliability
def test_sigstopped_worker_is_fenced_off(container: Any, user: Any, procs: WorkerProcs, tmp_path: Path) -> None:
    """SIGSTOP a worker mid-step for longer than its lease; another worker takes over and finishes; after
    SIGCONT the first one's late checkpoint and heartbeat are refused: the job keeps the second's outputs."""
    log = tmp_path / "effects.log"
    grant = balance(container, user.user_id)
    # Non-cooperative steps: the stopped worker's step runs to its end after SIGCONT and tries to checkpoint.
    job, _ = container.jobs.submit(user, "test.slow", {"log": str(log), "step_s": 0.8, "cooperative": False})
    a = procs.start(concurrency=1)

    def a_in_s2() -> bool:
        return any(e.path == "s2" and e.what == "start" and e.pid == a.pid for e in read_log(log))

    wait_until(a_in_s2, 30, "worker A to start step s2")
    procs.pause(a)  # SIGSTOP, mid-step (s2 lasts 0.8 s), outside any transaction
    stopped_at = time.monotonic()
    b = procs.start(concurrency=1)

    def finished() -> bool:
        return job_status(container, job.id) in ("succeeded", "failed", "dead", "cancelled")

    wait_until(finished, 60, "worker B to finish the job")
    assert time.monotonic() - stopped_at > container.settings.jobs.lease_s
    a.proc.send_signal(signal.SIGCONT)

    # A wakes up with its step done (time.sleep ran out) and tries to checkpoint it with attempt 1.
    wait_until(lambda: "lost its lease; its writes were refused" in a.log.read_text(), 20,
               "worker A to notice its writes were refused")
    assert a.alive() and b.alive()

    rec = job_record(container, job.id)
    job_ = rec.job
    assert job_.status == "succeeded" and job_.attempt == 2 and job_.failures == 1
    assert job_.outputs == {"done": ["s1", "s2", "s3", "s4"], "pid": b.pid, "attempt": 2}
    assert [(e.kind, e.amount) for e in rec.ledger] == [("reserve", -SLOW_PRICE), ("settle", 0)]
    assert balance(container, user.user_id) == grant - SLOW_PRICE
    assert [e.type for e in rec.outbox] == ["job.succeeded"]
    # s1 was A's (checkpointed before the stop) and never ran again; s2..s4 are B's, A's late s2 was dropped.
    assert rec.checkpoints["s1"].attempt == 1
    assert all(rec.checkpoints[s].attempt == 2 for s in ("s2", "s3", "s4"))
    effects = read_log(log)
    assert not [e for e in effects if e.checkpointed], "a checkpointed step ran again"
    assert [(e.what, e.pid) for e in effects if e.path == "s1"] == [("start", a.pid), ("end", a.pid)]
    s2 = [(e.what, e.pid, e.attempt) for e in effects if e.path == "s2"]
    assert ("start", a.pid, 1) in s2 and ("start", b.pid, 2) in s2 and ("end", b.pid, 2) in s2
    # History: nothing of attempt 1 after attempt 2 started (A's buffered history went nowhere).
    first_of_2 = min(e.id for e in rec.events if e.attempt == 2)
    late = [(e.type, e.path) for e in rec.events if e.attempt == 1 and e.id > first_of_2]
    assert late == []
    assert rec.count("LeaseExpired") == 1 and rec.count("JobSucceeded") == 1
    assert "ExecutionResumed" in rec.types(2) and ("TaskSkipped", "s1") in [(e.type, e.path) for e in rec.events]
