"""SIGTERM and cancel reach running steps of a real worker process.

- SIGTERM with a job longer than the grace period: the worker hands the job back (queued, JobReleased,
  no failure counted) and exits 0 promptly; the next worker resumes from the checkpoints.
- SIGTERM with a job shorter than the grace period: the worker finishes it, then exits 0.
- Cancel of a running job: the worker sees the flag at its next heartbeat and the job ends `cancelled`,
  refunded, within a couple of heartbeat intervals.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.conftest import WorkerProcs, balance, job_record, job_status, wait_until
from tests.reliability.pipelines import SLOW_PRICE, SLOW_STEPS, read_log

TERMINAL = ("succeeded", "failed", "dead", "cancelled")


def _started(log: Path, step: str, pid: int) -> bool:
    return any(e.what == "start" and e.path == step and e.pid == pid for e in read_log(log))


@pytest.mark.reliability
def test_sigterm_hands_back_a_long_job(container: Any, user: Any, procs: WorkerProcs, tmp_path: Path) -> None:
    log = tmp_path / "effects.log"
    grant = balance(container, user.user_id)
    grace = 1.0
    # Both start together (imports take seconds); B is paused before there is any work, so A gets the job
    # and the handed-back job stays visible in the queue until B is let go.
    a = procs.start(concurrency=1, shutdown_grace_s=grace)
    b = procs.start(concurrency=1)
    wait_until(lambda: all("started with" in w.log.read_text() for w in (a, b)), 30, "both workers to start")
    procs.pause(b)
    job, _ = container.jobs.submit(user, "test.slow", {"log": str(log), "step_s": 1.5})
    wait_until(lambda: _started(log, "s2", a.pid), 30, "worker A to reach step s2")

    t0 = time.monotonic()
    a.proc.send_signal(signal.SIGTERM)
    rc = a.proc.wait(30)
    took = time.monotonic() - t0
    assert rc == 0, a.tail()
    # The signal is seen within 0.5 s, then the grace period, a cooperative stop (ctx.sleep polls every
    # 0.2 s) and the release; the rest of the job (> 3 s) is not waited for. Slack for a loaded machine.
    assert took < grace + 4.0, f"worker A took {took:.1f}s to stop"

    # The step A was in when the grace ran out (s2, or s3 if s2 ended within the grace).
    effects = read_log(log)
    ended_by_a = [e.path for e in effects if e.what == "end" and e.pid == a.pid]
    in_flight = [e.path for e in effects if e.what == "start" and e.pid == a.pid and e.path not in ended_by_a]
    assert len(in_flight) == 1 and ended_by_a == list(SLOW_STEPS[:len(ended_by_a)]), effects
    assert ended_by_a and in_flight[0] != SLOW_STEPS[-1], "A finished the job: the grace was too long for the test"

    rec = job_record(container, job.id)
    assert rec.job.status == "queued" and rec.job.failures == 0 and rec.job.attempt == 1
    assert rec.job.worker_id is None and rec.job.lease_expires_at is None
    assert rec.types(1)[-1] == "JobReleased" and rec.count("LeaseExpired") == 0
    assert "TaskAborted" in rec.types(1) and "ExecutionAborted" in rec.types(1)
    assert {p: cp.attempt for p, cp in rec.checkpoints.items() if p in SLOW_STEPS} == {p: 1 for p in ended_by_a}
    assert [e.kind for e in rec.ledger] == ["reserve"]

    b.proc.send_signal(signal.SIGCONT)
    wait_until(lambda: job_status(container, job.id) in TERMINAL, 60, "worker B to finish the job")
    rec = job_record(container, job.id)
    assert rec.job.status == "succeeded" and rec.job.attempt == 2 and rec.job.failures == 0
    assert rec.job.outputs == {"done": list(SLOW_STEPS), "pid": b.pid, "attempt": 2}
    assert rec.count("JobReleased") == 1 and rec.count("LeaseExpired") == 0
    assert "ExecutionResumed" in rec.types(2)
    assert [e.path for e in rec.events if e.type == "TaskSkipped"] == ended_by_a
    # What A finished ran once; the step A was in ran again in B, and so did the rest.
    effects = read_log(log)
    assert not [e for e in effects if e.checkpointed], "a checkpointed step ran again"
    for step in SLOW_STEPS:
        runs = [(e.what, e.pid) for e in effects if e.path == step]
        if step in ended_by_a:
            assert runs == [("start", a.pid), ("end", a.pid)], (step, runs)
        elif step == in_flight[0]:
            assert runs == [("start", a.pid), ("start", b.pid), ("end", b.pid)], (step, runs)
        else:
            assert runs == [("start", b.pid), ("end", b.pid)], (step, runs)
    assert [(e.kind, e.amount) for e in rec.ledger] == [("reserve", -SLOW_PRICE), ("settle", 0)]
    assert balance(container, user.user_id) == grant - SLOW_PRICE


@pytest.mark.reliability
def test_sigterm_finishes_a_short_job_first(container: Any, user: Any, procs: WorkerProcs, tmp_path: Path) -> None:
    log = tmp_path / "effects.log"
    grace = 8.0
    job, _ = container.jobs.submit(user, "test.slow", {"log": str(log), "step_s": 0.4})
    a = procs.start(concurrency=1, shutdown_grace_s=grace)
    wait_until(lambda: _started(log, "s1", a.pid), 30, "worker A to start the job")

    t0 = time.monotonic()
    a.proc.send_signal(signal.SIGTERM)
    rc = a.proc.wait(30)
    took = time.monotonic() - t0
    assert rc == 0, a.tail()
    assert took < grace, f"worker took {took:.1f}s to stop"

    rec = job_record(container, job.id)
    assert rec.job.status == "succeeded" and rec.job.attempt == 1 and rec.job.failures == 0
    assert rec.job.outputs == {"done": list(SLOW_STEPS), "pid": a.pid, "attempt": 1}
    assert rec.count("JobReleased") == 0
    assert [(e.kind, e.amount) for e in rec.ledger] == [("reserve", -SLOW_PRICE), ("settle", 0)]
    assert [e.type for e in rec.outbox] == ["job.succeeded"]


@pytest.mark.reliability
def test_cancel_reaches_a_running_step(container: Any, user: Any, procs: WorkerProcs, tmp_path: Path) -> None:
    log = tmp_path / "effects.log"
    grant = balance(container, user.user_id)
    heartbeat = container.settings.jobs.heartbeat_s
    job, _ = container.jobs.submit(user, "test.slow", {"log": str(log), "step_s": 30})
    a = procs.start(concurrency=1)
    wait_until(lambda: _started(log, "s1", a.pid), 30, "the worker to start the job")

    t0 = time.monotonic()
    assert container.jobs.cancel(user, job.id).status == "running"  # flagged; the worker stops it
    wait_until(lambda: job_status(container, job.id) == "cancelled", 10, "the job to be cancelled", interval=0.02)
    took = time.monotonic() - t0
    # The next heartbeat sees the flag, the step's ctx.sleep polls it every 0.2 s, then one write: about
    # 2 heartbeats on a quiet machine. The bound leaves room for a loaded one, and is still far below the
    # 30 s the step would take if the cancel waited for it to end.
    assert took < 2 * heartbeat + 4.0, f"cancel took {took:.2f}s with heartbeat {heartbeat}s"
    print(f"cancel reached the running step in {took:.2f}s (heartbeat {heartbeat}s)")

    rec = job_record(container, job.id)
    assert rec.job.attempt == 1 and rec.job.outputs is None and rec.job.credits_state == "refunded"
    assert rec.count("CancelRequested") == 1 and rec.count("JobCancelled") == 1
    assert "ExecutionAborted" in rec.types(1)
    assert [(e.kind, e.amount) for e in rec.ledger] == [("reserve", -SLOW_PRICE), ("refund", SLOW_PRICE)]
    assert balance(container, user.user_id) == grant
    assert [e.type for e in rec.outbox] == ["job.cancelled"]
    assert [e.what for e in read_log(log)] == ["start"]
    assert a.alive()  # the worker goes on serving


def test_cancel_of_a_job_whose_worker_died(container: Any, user: Any) -> None:
    """Cancel flagged while running, then the worker dies before its next heartbeat: the reaper ends the
    job `cancelled` (not retried), refunded, with the same history and event as any other cancel."""
    grant = balance(container, user.user_id)
    job, _ = container.jobs.submit(user, "test.slow", {"step_s": 30})
    with container.store.tx() as tx:
        claimed = tx.jobs.claim_job("doomed-worker", 0.3)
    assert claimed is not None and claimed.id == job.id
    assert container.jobs.cancel(user, job.id).cancel_requested
    time.sleep(0.5)
    assert container.jobs.reap_expired_leases() == 1

    rec = job_record(container, job.id)
    assert rec.job.status == "cancelled" and rec.job.finished_at is not None
    assert rec.job.worker_id is None or rec.job.lease_expires_at is None
    assert [(e.kind, e.amount) for e in rec.ledger] == [("reserve", -SLOW_PRICE), ("refund", SLOW_PRICE)]
    assert balance(container, user.user_id) == grant
    assert [e.type for e in rec.outbox] == ["job.cancelled"]
    assert rec.types() == ["JobQueued", "CancelRequested", "LeaseExpired", "JobCancelled"]
