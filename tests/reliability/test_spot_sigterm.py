"""On Spot (`spot.enabled`), SIGTERM is the interruption: the worker hands its job back at once, whatever its grace
period, with the step it was in stopped as `preempted`; another worker resumes from the checkpoints."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.conftest import REPO_ROOT, WorkerProc, WorkerProcs, job_record, job_status, wait_until
from tests.reliability.pipelines import SLOW_STEPS, read_log

TERMINAL = ("succeeded", "failed", "dead", "cancelled")


def _start_spot(procs: WorkerProcs) -> WorkerProc:
    n = len(procs.procs)
    env = procs.env(n, shutdown_grace_s=60)
    # nothing answers there: no notice from the metadata service, only the signal
    env.update({"REELFORGE_SPOT__ENABLED": "true", "REELFORGE_SPOT__METADATA_URL": "http://127.0.0.1:9",
                "REELFORGE_SPOT__POLL_S": "0.2", "REELFORGE_SPOT__TIMEOUT_S": "0.2"})
    log = procs.dir / f"worker-{n}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "reelforge", "worker", "--concurrency", "1"], cwd=REPO_ROOT,
                                env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    w = WorkerProc(n, proc, log)
    procs.procs.append(w)
    return w


@pytest.mark.reliability
def test_sigterm_on_spot_hands_back_at_once(container: Any, user: Any, procs: WorkerProcs, tmp_path: Path) -> None:
    log = tmp_path / "effects.log"
    a = _start_spot(procs)
    wait_until(lambda: "started with" in a.log.read_text(), 30, "the spot worker to start")
    job, _ = container.jobs.submit(user, "test.slow", {"log": str(log), "step_s": 1.5})
    wait_until(lambda: any(e.what == "start" and e.path == "s2" and e.pid == a.pid for e in read_log(log)), 30,
               "worker A to start step s2")
    t0 = time.monotonic()
    a.proc.send_signal(signal.SIGTERM)
    assert a.proc.wait(30) == 0, a.tail()
    # the worker does not use its 60 s grace to finish the job (it would: s2's rest, s3 and s4 fit in it): the
    # step stops at its next check and the job goes back, as the checks below show (slack for a loaded machine)
    assert time.monotonic() - t0 < 15.0, a.tail()
    rec = job_record(container, job.id)
    assert rec.job.status == "queued" and rec.job.failures == 0 and rec.job.worker_id is None
    released = [e for e in rec.events if e.type == "JobReleased"]
    assert [e.details for e in released] == [{"reason": "preempted"}]
    aborted = [e for e in rec.events if e.type == "TaskAborted"]
    assert [e.path for e in aborted] == ["s2"] and aborted[0].details.get("error") == "preempted"
    assert "s1" in rec.checkpoints

    b = procs.start(concurrency=1)
    wait_until(lambda: job_status(container, job.id) in TERMINAL, 60, "worker B to finish the job")
    rec = job_record(container, job.id)
    assert rec.job.status == "succeeded" and rec.job.attempt == 2 and rec.job.failures == 0
    assert rec.job.outputs["done"] == list(SLOW_STEPS) and rec.job.outputs["pid"] == b.pid
    assert next(e.path for e in rec.events if e.type == "TaskSkipped") == "s1"
