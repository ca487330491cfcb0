"""`reelforge run` as systemd or Docker drive it: a real subprocess on a free port with one worker child.

- SIGTERM: the server stops, the worker child gets SIGTERM and hands its running job back; `run` exits 0 only
  after its child has exited, and no process of the tree is left (none re-parented to PID 1).
- `kill -9` of the worker child: `run` starts another one (logged), the dead one is reported lost and its job
  goes back to the queue at once and then succeeds on the new worker.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.reliability.conftest import REPO_ROOT, WorkerProcs, job_record, wait_until

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(180)]


def _children(pid: int) -> set[int]:
    out: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out.update(int(p) for p in (task / "children").read_text().split())
        except OSError:
            continue
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


SEEN: set[int] = set()  # every worker child a test saw: killed in teardown if it outlived `run`


@contextmanager
def run_command(settings: Any, tmp_path: Path, **job_settings: Any) -> Iterator[tuple[subprocess.Popen[bytes], str,
                                                                                        Path]]:
    env = WorkerProcs(settings, tmp_path).env(0, **job_settings)
    SEEN.clear()
    log = tmp_path / "run.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "reelforge", "run", "--port", "0", "--workers", "1"],
                                cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    tree: set[int] = set()
    try:
        def announced() -> str | None:
            assert proc.poll() is None, log.read_text()
            m = re.search(r"reelforge on (\S+) ", log.read_text())
            return m.group(1) if m else None

        url = wait_until(announced, 60, "`reelforge run` to listen")
        yield proc, url, log
    finally:
        tree = _children(proc.pid) | SEEN
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        for pid in tree:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def _worker_pid(container: Any, run_pid: int, other_than: int = 0) -> int | None:
    """The pid of a live registered worker that is a child of `run`."""
    kids = _children(run_pid)
    SEEN.update(kids)
    for w in container.stats.workers():
        if w["status"] == "running" and w["pid"] in kids and w["pid"] != other_than and w["heartbeat_age_s"] < 5:
            return int(w["pid"])
    return None


def test_sigterm_stops_the_workers_before_run_exits(settings: Any, container: Any, user: Any,
                                                    tmp_path: Path) -> None:
    with run_command(settings, tmp_path, shutdown_grace_s=1) as (proc, url, log):
        child = wait_until(lambda: _worker_pid(container, proc.pid), 60, "the worker child to register")
        assert httpx.get(f"{url}/readyz", timeout=5).status_code == 200
        job, _ = container.jobs.submit(user, "test.slow", {"step_s": 3.0})
        wait_until(lambda: job_record(container, job.id).job.status == "running", 30, "the job to start")
        tree = _children(proc.pid)
        assert child in tree

        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(60)
        assert rc == 0, log.read_text()[-3000:]
        survivors = [pid for pid in tree | {child} if _alive(pid)]
        assert survivors == [], f"left running after `run` exited: {survivors}\n{log.read_text()[-3000:]}"
        # The worker handed its job back (its grace is shorter than the step): queued, no failure counted.
        rec = job_record(container, job.id)
        assert rec.job.status == "queued" and rec.job.failures == 0, (rec.job.status, rec.types())
        assert "JobReleased" in rec.types()
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{url}/healthz", timeout=2)
        assert "stopped" in log.read_text()


def test_a_killed_worker_is_replaced_and_its_job_resumes(settings: Any, container: Any, user: Any,
                                                         tmp_path: Path) -> None:
    with run_command(settings, tmp_path) as (proc, url, log):
        first = wait_until(lambda: _worker_pid(container, proc.pid), 60, "the worker child to register")
        job, _ = container.jobs.submit(user, "test.slow", {"step_s": 0.5})
        wait_until(lambda: job_record(container, job.id).job.status == "running", 30, "the job to start")

        os.kill(first, signal.SIGKILL)
        t0 = time.monotonic()
        second = wait_until(lambda: _worker_pid(container, proc.pid, other_than=first), 60,
                            "a new worker child to register")
        assert second != first and time.monotonic() - t0 < 45
        text = log.read_text()
        assert f"pid {first}) exited with signal SIGKILL" in text and "restarted" in text, text[-3000:]
        by_pid = {w["pid"]: w for w in container.stats.workers()}
        assert by_pid[first]["status"] == "lost"
        assert httpx.get(f"{url}/readyz", timeout=5).status_code == 200

        # The job went back to the queue when its worker died (not a lease later) and finishes on the new one.
        wait_until(lambda: job_record(container, job.id).job.status == "succeeded", 60, "the job to succeed")
        rec = job_record(container, job.id)
        assert rec.job.attempt == 2 and "LeaseExpired" in rec.types()

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, log.read_text()[-3000:]
        assert not _alive(second)
