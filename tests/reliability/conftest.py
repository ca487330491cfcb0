"""Fixtures for the reliability suite: real `reelforge worker` subprocesses on the test's database.

Every worker's stdout/stderr goes to ``<tmp_path>/worker-<n>.log``; when a test fails, the tail of each
log is printed in the teardown section of the report. Every subprocess is killed and waited for in
teardown (a killed child stays a zombie until waited, and nothing else here would reap it).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_settings
from tests.fixtures.env import child_env

REPO_ROOT = Path(__file__).resolve().parents[2]
PIPELINES_MODULE = "tests.reliability.pipelines"

# Short enough that a killed worker's job comes back within a few seconds; the heartbeat renews the
# lease several times per lease period so a live worker never loses it under load.
LEASE_S = 2.0
HEARTBEAT_S = 0.3
POLL_S = 0.05


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Generator[None, Any, None]:
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Any:
    """The test process's settings; worker subprocesses get the same ones through the environment."""
    return make_settings(
        tmp_path, db_url,
        extra_pipelines=[PIPELINES_MODULE],
        jobs={"lease_s": LEASE_S, "heartbeat_s": HEARTBEAT_S, "poll_interval_s": POLL_S,
              "retry_base_s": 0.05, "retry_max_s": 0.2, "shutdown_grace_s": 5},
        rate_limit={"writes_per_window_ip": 100_000, "writes_per_window_account": 100_000,
                    "reads_per_window_ip": 1_000_000, "reads_per_window_account": 1_000_000},
    )


@pytest.fixture
def user(container: Any) -> Any:
    """A user with the starting grant, as the services see a caller."""
    from reelforge.domain.types import Principal, Role

    u = container.auth.register("reliable@example.com", "correct horse battery")
    return Principal(user_id=u.id, email=u.email, role=Role.user)


@dataclass
class WorkerProc:
    n: int
    proc: subprocess.Popen[bytes]
    log: Path
    started: float = field(default_factory=time.monotonic)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, lines: int = 40) -> str:
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


class WorkerProcs:
    """Starts `python -m reelforge worker` subprocesses configured like the test's settings."""

    def __init__(self, settings: Any, tmp_path: Path) -> None:
        self.settings = settings
        self.dir = tmp_path
        self.procs: list[WorkerProc] = []

    def env(self, n: int, **overrides: Any) -> dict[str, str]:
        s = self.settings
        env = child_env()
        env.update({
            "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
            "PYTHONUNBUFFERED": "1",
            "REELFORGE_DATA_DIR": str(s.data_dir),
            "REELFORGE_DATABASE__URL": self._db_url(n),
            "REELFORGE_MODELS__DIR": str(s.models_dir),
            "REELFORGE_AUTH__JWT_SECRET": s.auth.jwt_secret,
            "REELFORGE_EXTRA_PIPELINES": json.dumps(list(s.extra_pipelines)),
            "REELFORGE_LOG_JSON": "false",
            "REELFORGE_LOG_LEVEL": "INFO",
            "REELFORGE_OUTBOX_INTERVAL_S": str(s.outbox_interval_s),
        })
        for name in ("lease_s", "heartbeat_s", "poll_interval_s", "retry_base_s", "retry_max_s",
                     "shutdown_grace_s"):
            env[f"REELFORGE_JOBS__{name.upper()}"] = str(getattr(s.jobs, name))
        for k, v in overrides.items():
            env[f"REELFORGE_JOBS__{k.upper()}"] = str(v)
        return env

    def _db_url(self, n: int) -> str:
        url = str(self.settings.database_url)
        if url.startswith("sqlite"):
            return url
        # Names the worker's PostgreSQL sessions, so that pause() can see whether it is inside a transaction.
        return f"{url}{'&' if '?' in url else '?'}application_name={_app_name(n)}"

    def start(self, concurrency: int = 2, **job_settings: Any) -> WorkerProc:
        """Start one worker; ``job_settings`` override JobSettings fields (e.g. shutdown_grace_s=1)."""
        n = len(self.procs)
        log = self.dir / f"worker-{n}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "reelforge", "worker", "--concurrency", str(concurrency)],
                cwd=REPO_ROOT, env=self.env(n, **job_settings), stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        w = WorkerProc(n, proc, log)
        self.procs.append(w)
        return w

    @staticmethod
    def kill(w: WorkerProc) -> None:
        if w.alive():
            w.proc.send_signal(signal.SIGKILL)
        w.proc.wait(10)

    def pause(self, w: WorkerProc, tries: int = 100) -> None:
        """SIGSTOP ``w`` at a moment when it holds no database lock.

        A process stopped inside a transaction keeps its locks: on SQLite every other writer waits, on
        PostgreSQL whoever needs its rows does (the maintenance loop's schedule row, the job row). That is
        what a real freeze can do too, but it is not what these tests are about, so retry until the stop
        lands outside a transaction. Stopped, the process cannot start a new one.
        """
        for _ in range(tries):
            w.proc.send_signal(signal.SIGSTOP)
            wait_until(lambda: _proc_state(w.pid) in ("T", "t"), 5, f"worker {w.n} to stop")
            if not self._in_transaction(w):
                return
            w.proc.send_signal(signal.SIGCONT)
            time.sleep(0.02)
        raise AssertionError(f"worker {w.n} was inside a transaction at every one of {tries} stops")

    def _in_transaction(self, w: WorkerProc) -> bool:
        url = str(self.settings.database_url)
        if url.startswith("sqlite"):
            import sqlite3

            conn = sqlite3.connect(url.split("///", 1)[1], timeout=1.0, isolation_level=None)
            try:
                conn.execute("BEGIN IMMEDIATE")  # waits out other live writers; fails on a frozen one
                conn.execute("ROLLBACK")
                return False
            except sqlite3.OperationalError:
                return True
            finally:
                conn.close()
        import psycopg

        with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as pg:
            row = pg.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND state <> 'idle'",
                (_app_name(w.n),),
            ).fetchone()
            return bool(row and row[0])

    def alive(self) -> list[WorkerProc]:
        return [w for w in self.procs if w.alive()]

    def by_pid(self, pid: int) -> WorkerProc | None:
        return next((w for w in self.procs if w.pid == pid), None)

    def shutdown(self) -> None:
        for w in self.procs:
            if w.proc.poll() is None:
                try:
                    w.proc.send_signal(signal.SIGCONT)  # a stopped process cannot die until continued
                    w.proc.send_signal(signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for w in self.procs:
            try:
                w.proc.wait(10)
            except subprocess.TimeoutExpired:  # pragma: no cover - should never happen after SIGKILL
                pass

    def report(self) -> str:
        parts = []
        for w in self.procs:
            parts.append(f"----- worker {w.n} pid {w.pid} rc {w.proc.returncode} ({w.log}) -----\n{w.tail()}")
        return "\n".join(parts)


def _app_name(n: int) -> str:
    return f"rf-worker-{n}"


def _proc_state(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "?"
    return stat.rsplit(")", 1)[1].split()[0]


@pytest.fixture
def procs(settings: Any, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[WorkerProcs]:
    wp = WorkerProcs(settings, tmp_path)
    try:
        yield wp
    finally:
        wp.shutdown()
        rep = getattr(request.node, "rep_call", None)
        if rep is None or rep.failed:
            print(wp.report())


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


@dataclass
class JobRecord:
    """Everything the database holds about one job, read in one transaction."""

    job: Any
    events: list[Any]
    ledger: list[Any]
    checkpoints: dict[str, Any]
    outbox: list[Any]

    def types(self, attempt: int | None = None) -> list[str]:
        return [e.type for e in self.events if attempt is None or e.attempt == attempt]

    def count(self, type_: str) -> int:
        return sum(1 for e in self.events if e.type == type_)


def job_record(container: Any, job_id: str) -> JobRecord:
    with container.store.tx(write=False) as tx:
        job = tx.jobs.job(job_id)
        assert job is not None, f"job {job_id} is gone"
        return JobRecord(
            job=job,
            events=list(tx.jobs.events(job_id, limit=100_000)),
            ledger=list(tx.credits.job_ledger(job_id)),
            checkpoints={cp.path: cp for cp in tx.jobs.checkpoints(job_id)},
            outbox=[e for e in tx.events.events_after(0, limit=100_000) if e.subject_id == job_id],
        )


def job_status(container: Any, job_id: str) -> str:
    with container.store.tx(write=False) as tx:
        job = tx.jobs.job(job_id)
        assert job is not None
        return str(job.status)


def balance(container: Any, user_id: str) -> int:
    with container.store.tx(write=False) as tx:
        return tx.credits.balance(user_id)
