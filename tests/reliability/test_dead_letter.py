"""Dead letters: a job that keeps failing stops after max_attempts, ends `dead` and gets its credits back;
an error that retrying cannot fix ends `failed` after one attempt, also refunded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from reelforge import errors
from tests.reliability.conftest import WorkerProcs, balance, job_record, job_status, wait_until
from tests.reliability.pipelines import ALWAYS_FAILS, FAIL_PRICE, read_log

TERMINAL = ("succeeded", "failed", "dead", "cancelled")


def _check_dead(container: Any, job_id: str, grant: int, user_id: str) -> Any:
    rec = job_record(container, job_id)
    job = rec.job
    assert job.status == "dead", (job.status, job.error_code)
    assert job.max_attempts == ALWAYS_FAILS.max_attempts == 3
    assert job.attempt == 3 and job.failures == 3
    assert job.error_code == errors.TransientError.code and job.outputs is None
    assert rec.count("JobStarted") == 3
    assert rec.count("JobRetryScheduled") == 2 and rec.count("JobDead") == 1
    assert rec.count("ExecutionFailed") == 3
    assert [(e.kind, e.amount) for e in rec.ledger] == [("reserve", -FAIL_PRICE), ("refund", FAIL_PRICE)]
    assert job.credits_state == "refunded"
    assert balance(container, user_id) == grant
    assert [e.type for e in rec.outbox] == ["job.failed"]
    assert rec.outbox[0].payload["status"] == "dead"
    return rec


def test_always_failing_job_ends_dead_and_refunded(container: Any, user: Any, worker: Any, tmp_path: Path) -> None:
    log = tmp_path / "effects.log"
    grant = balance(container, user.user_id)
    job, _ = container.jobs.submit(user, "test.always_fails", {"log": str(log)})
    wait_until(lambda: job_status(container, job.id) in TERMINAL, 30, "the job to end")
    _check_dead(container, job.id, grant, user.user_id)
    # The step ran once per attempt and never again after the job died.
    assert [e.attempt for e in read_log(log)] == [1, 2, 3]


def test_non_retryable_error_fails_after_one_attempt(container: Any, user: Any, worker: Any,
                                                     tmp_path: Path) -> None:
    log = tmp_path / "effects.log"
    grant = balance(container, user.user_id)
    job, _ = container.jobs.submit(user, "test.invalid", {"log": str(log)})
    wait_until(lambda: job_status(container, job.id) in TERMINAL, 30, "the job to end")
    rec = job_record(container, job.id)
    j = rec.job
    assert j.status == "failed" and j.attempt == 1 and j.failures == 1
    assert j.error_code == errors.ValidationFailed.code
    assert rec.count("JobRetryScheduled") == 0 and rec.count("JobFailed") == 1
    assert [(e.kind, e.amount) for e in rec.ledger] == [("reserve", -FAIL_PRICE), ("refund", FAIL_PRICE)]
    assert balance(container, user.user_id) == grant
    assert [e.type for e in rec.outbox] == ["job.failed"]
    assert rec.outbox[0].payload["status"] == "failed"
    assert len(read_log(log)) == 1


@pytest.mark.reliability
def test_dead_letter_with_worker_processes(container: Any, user: Any, procs: WorkerProcs, tmp_path: Path) -> None:
    """The same through real worker processes, the job bouncing between them."""
    log = tmp_path / "effects.log"
    grant = balance(container, user.user_id)
    job, _ = container.jobs.submit(user, "test.always_fails", {"log": str(log)})
    procs.start(concurrency=1)
    procs.start(concurrency=1)
    wait_until(lambda: job_status(container, job.id) in TERMINAL, 60, "the job to end")
    _check_dead(container, job.id, grant, user.user_id)
    assert sorted(e.attempt for e in read_log(log)) == [1, 2, 3]
