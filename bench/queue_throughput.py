"""Queue throughput: no-op jobs through reelforge's queue and worker (SQLite, PostgreSQL) vs Celery + Redis.

Every system gets the same N no-op jobs, submitted as fast as one client can, run by real worker processes
with the same process/thread budget, in the same run on the same machine:

- reelforge-sqlite / reelforge-postgres: `JobService.submit()` in this process (a registered user, kind
  `system.noop`, price 0) into a fresh SQLite file / a fresh PostgreSQL database `rf_bench_<rand>` (created and
  dropped here); W subprocesses `python -m reelforge worker --concurrency C`. Latency is `finished_at -
  created_at` of each job (both on the database clock).
- celery-redis: `bench.celery_app.noop.delay()` on a dedicated Redis db (flushed first); W subprocesses
  `celery worker -P threads -c C` (or prefork). The task writes time.time() into a Redis hash when it ends;
  latency is that minus the client's time.time() taken just before `.delay()`.

Throughput is N / (last job done - first job submitted). Workers are warmed up (each one has run jobs) before
the timed part. With --rounds R the systems run R times, interleaved, and the median of each metric is reported.
CPU seconds per job of each part (client, workers, database/broker server) are measured from /proc.

    python -m bench.queue_throughput --jobs 2000 --concurrency 4 --workers 2 [--only sqlite,postgres,celery]
    python -m bench.queue_throughput --smoke     # 6 jobs, one worker of one slot: does it still run?

Profiling (reelforge workers only): --profile DIR runs each worker under cProfile (every thread) and times each
database transaction by the function that opened it; a summary is printed and written to DIR.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import cpu_model, package_version, parse_args

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "bench" / "results" / "queue_throughput.json"
DEFAULT_PG = os.environ.get("REELFORGE_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
DEFAULT_REDIS = os.environ.get("BENCH_CELERY_REDIS_URL", "redis://127.0.0.1:6379/9")
SYSTEMS = ("sqlite", "postgres", "celery")
LABELS = {"sqlite": "reelforge-sqlite", "postgres": "reelforge-postgres", "celery": "celery-redis"}
PROFILE_ENV = "BENCH_RF_PROFILE_DIR"


# --- small helpers ------------------------------------------------------------------------------------------
def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(0, min(len(s) - 1, math.ceil(q / 100.0 * len(s)) - 1))
    return s[k]


def summarize(n: int, latencies: list[float], first_submit: float, last_submit: float, last_done: float,
              cpu: dict[str, float]) -> dict[str, Any]:
    span = max(1e-9, last_done - first_submit)
    return {
        "jobs": n,
        "completed": len(latencies),
        "jobs_per_s": round(n / span, 1),
        "submit_per_s": round(n / max(1e-9, last_submit - first_submit), 1),
        "wall_s": round(span, 3),
        "latency_ms": {
            "p50": round(percentile(latencies, 50) * 1000, 2),
            "p90": round(percentile(latencies, 90) * 1000, 2),
            "p99": round(percentile(latencies, 99) * 1000, 2),
            "max": round(max(latencies) * 1000, 2) if latencies else None,
            "mean": round(statistics.fmean(latencies) * 1000, 2) if latencies else None,
        },
        "cpu_ms_per_job": {k: round(v * 1000 / max(1, n), 3) for k, v in cpu.items()},
    }


def _ticks_per_s() -> int:
    return os.sysconf("SC_CLK_TCK")


def _proc_cpu(pid: int) -> float:
    """utime + stime of one process, seconds (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _ticks_per_s()
    except (OSError, IndexError, ValueError):
        return 0.0


def _all_procs() -> Iterator[tuple[int, int, str, str]]:
    """(pid, ppid, comm, cmdline) of every process."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                raw = fh.read()
            comm = raw[raw.index("(") + 1:raw.rindex(")")]
            ppid = int(raw.rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmd = fh.read().replace(b"\0", b" ").decode(errors="replace")
            yield int(entry), ppid, comm, cmd
        except (OSError, ValueError):
            continue


class CpuMeter:
    """CPU seconds used by groups of processes between start() and stop()."""

    def __init__(self, groups: dict[str, Any]) -> None:
        self.groups = groups  # name -> callable returning the pids to count now
        self.before: dict[str, dict[int, float]] = {}
        self.self_before = 0.0

    def _snap(self) -> dict[str, dict[int, float]]:
        return {name: {pid: _proc_cpu(pid) for pid in pick()} for name, pick in self.groups.items()}

    def start(self) -> None:
        self.before = self._snap()
        t = os.times()
        self.self_before = t.user + t.system

    def stop(self) -> dict[str, float]:
        after = self._snap()
        out = {}
        for name, pids in after.items():
            out[name] = sum(max(0.0, v - self.before.get(name, {}).get(pid, 0.0)) for pid, v in pids.items())
        t = os.times()
        out["client"] = t.user + t.system - self.self_before
        return out


def _tree(pids: list[int]) -> list[int]:
    """The given pids and all their descendants."""
    procs = list(_all_procs())
    found = set(pids)
    changed = True
    while changed:
        changed = False
        for pid, ppid, _c, _m in procs:
            if ppid in found and pid not in found:
                found.add(pid)
                changed = True
    return sorted(found)


def _postgres_pids(dbname: str) -> list[int]:
    # Backends of our database plus the server-wide writers (WAL writer, checkpointer, background writer).
    shared = ("walwriter", "checkpointer", "background writer", "wal writer")
    return [pid for pid, _pp, comm, cmd in _all_procs()
            if comm == "postgres" and (f" {dbname} " in cmd or any(s in cmd for s in shared))]


def _redis_pids() -> list[int]:
    return [pid for pid, _pp, comm, _cmd in _all_procs() if comm == "redis-server"]


class Workers:
    """Worker subprocesses: started together, stopped with SIGTERM (then SIGKILL), logs kept in files."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []

    def start(self, argv: list[str], env: dict[str, str], count: int, name: str) -> None:
        for i in range(count):
            log = self.logdir / f"{name}-{i}.log"
            self.logs.append(log)
            with open(log, "wb") as fh:
                args = [a.replace("{i}", str(i)) for a in argv]
                self.procs.append(subprocess.Popen(args, env=env, cwd=str(ROOT), stdout=fh, stderr=subprocess.STDOUT,
                                                   start_new_session=True))

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def check_alive(self) -> None:
        for p, log in zip(self.procs, self.logs, strict=True):
            if p.poll() is not None:
                raise RuntimeError(f"worker exited with {p.returncode}; log {log}:\n{log.read_text()[-3000:]}")

    def stop(self, timeout: float = 20.0) -> None:
        for p in self.procs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for p in self.procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait(5)


def _wait(pred: Any, timeout: float, workers: Workers, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        workers.check_alive()
        time.sleep(interval)
    return bool(pred())


# --- reelforge ------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _pg_database(admin_url: str) -> Iterator[tuple[str, str]]:
    import psycopg

    name = f"rf_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base, _, tail = admin_url.rpartition("/")
    query = "?" + tail.split("?", 1)[1] if "?" in tail else ""
    try:
        yield f"{base}/{name}{query}", name
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run_reelforge(engine: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    with contextlib.ExitStack() as stack:
        if engine == "postgres":
            url, dbname = stack.enter_context(_pg_database(args.pg_url))
        else:
            url, dbname = f"sqlite:///{workdir / 'reelforge.db'}", ""
        return _run_reelforge(engine, url, dbname, args, workdir)


def _run_reelforge(engine: str, url: str, dbname: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    from sqlalchemy import func, select

    from reelforge.adapters.db.models import Job
    from reelforge.adapters.db.repositories.jobs import TERMINAL
    from reelforge.config import Settings
    from reelforge.container import Container
    from reelforge.domain.types import Principal, Role

    data_dir = workdir / "var"
    env_values = {
        "REELFORGE_DATA_DIR": str(data_dir),
        "REELFORGE_DATABASE__URL": url,
        "REELFORGE_LOG_LEVEL": "WARNING",
        "REELFORGE_LOG_JSON": "false",
        "REELFORGE_AUTH__JWT_SECRET": "bench-secret-" + "x" * 40,
        "REELFORGE_MODELS__DEVICE": "cpu",
    }
    if engine == "sqlite":
        env_values["REELFORGE_JOBS__POLL_INTERVAL_S"] = str(args.sqlite_poll)
    settings = Settings(data_dir=data_dir, database={"url": url}, log_level="WARNING", log_json=False,
                        auth={"jwt_secret": env_values["REELFORGE_AUTH__JWT_SECRET"]},
                        # The benchmark measures the queue, not the per-account quota of free (system.noop) jobs.
                        jobs={"free_jobs_per_window": 0,
                              **({"poll_interval_s": args.sqlite_poll} if engine == "sqlite" else {})})
    c = Container(settings)
    c.migrate()
    bench_user = c.auth.register("bench@example.com", "bench password 1", grant=0)
    warm_user = c.auth.register("warmup@example.com", "bench password 1", grant=0)
    principal = Principal(user_id=bench_user.id, email=bench_user.email, role=Role.user)
    warm_principal = Principal(user_id=warm_user.id, email=warm_user.email, role=Role.user)

    env = {**os.environ, **env_values, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    if args.profile:
        pdir = Path(args.profile) / engine
        pdir.mkdir(parents=True, exist_ok=True)
        env[PROFILE_ENV] = str(pdir)
        argv = [sys.executable, "-m", "bench.queue_throughput", "_worker", "--concurrency", str(args.concurrency)]
    else:
        argv = [sys.executable, "-m", "reelforge", "worker", "--concurrency", str(args.concurrency)]
    workers = Workers(workdir)

    def finished(owner: str) -> int:
        with c.store.tx(write=False) as tx:
            return int(tx.s.execute(select(func.count()).select_from(Job).where(
                Job.owner_id == owner, Job.status.in_(TERMINAL))).scalar_one())

    try:
        workers.start(argv, env, args.workers, f"rf-{engine}")
        # Warm-up: every worker process has run jobs (imports, pools, LISTEN connections are all up).
        warm_ids: list[str] = []
        per_batch = max(4, 2 * args.workers * args.concurrency)
        distinct = 0
        for _ in range(20):
            for i in range(per_batch):
                warm_ids.append(c.jobs.submit(warm_principal, "system.noop", {"echo": f"warm{i}"})[0].id)
            if not _wait(lambda: finished(warm_user.id) >= len(warm_ids), 120, workers):
                raise RuntimeError(f"{engine}: warm-up jobs did not finish")
            with c.store.tx(write=False) as tx:
                distinct = len(set(tx.s.execute(select(Job.worker_id).where(Job.owner_id == warm_user.id)).scalars()))
            if distinct >= args.workers:
                break
            time.sleep(0.2)
        time.sleep(0.3)

        groups: dict[str, Any] = {"workers": lambda: _tree(workers.pids)}
        groups["server"] = (lambda: _postgres_pids(dbname)) if engine == "postgres" else (lambda: [])
        meter = CpuMeter(groups)
        meter.start()
        first = time.time()
        if args.batch > 1:
            # JobService.submit_many: one transaction (validation, credits, JobQueued history, one NOTIFY) per
            # batch, what POST /v1/jobs/batch runs.
            for start in range(0, args.jobs, args.batch):
                c.jobs.submit_many(principal, [{"kind": "system.noop", "input": {"echo": i}}
                                               for i in range(start, min(args.jobs, start + args.batch))])
        else:
            for i in range(args.jobs):
                c.jobs.submit(principal, "system.noop", {"echo": i})
        last_submit = time.time()
        ok = _wait(lambda: finished(bench_user.id) >= args.jobs, args.timeout, workers, interval=0.05)
        cpu = meter.stop()
        with c.store.tx(write=False) as tx:
            rows = tx.s.execute(select(Job.status, Job.created_at, Job.finished_at, Job.worker_id).where(
                Job.owner_id == bench_user.id)).all()
    finally:
        workers.stop()
        c.close()
    statuses: dict[str, int] = {}
    for r in rows:
        statuses[r.status] = statuses.get(r.status, 0) + 1
    done = [r for r in rows if r.status == "succeeded" and r.finished_at is not None]
    lat = [float(r.finished_at) - float(r.created_at) for r in done]
    first_created = min(float(r.created_at) for r in rows)
    last_done = max((float(r.finished_at) for r in done), default=time.time())
    out = summarize(args.jobs, lat, first_created, first_created + (last_submit - first), last_done, cpu)
    out.update(complete=ok and len(done) == args.jobs, statuses=statuses, warmup_jobs=len(warm_ids),
               warm_workers=distinct, jobs_per_worker=_per_worker(r.worker_id for r in done))
    if dbname:
        out["database"] = dbname  # dropped when the run ends
    if args.profile:
        out["profile_dir"] = str(Path(args.profile) / engine)
    return out


def _per_worker(ids: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for w in ids:
        key = ":".join(str(w).split(":")[:2])  # host:pid
        counts[key] = counts.get(key, 0) + 1
    return counts


# --- celery -------------------------------------------------------------------------------------------------
def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def run_celery(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    import redis

    os.environ["BENCH_CELERY_REDIS_URL"] = args.redis_url
    from bench import celery_app

    r = redis.Redis.from_url(args.redis_url)
    r.flushdb()
    env = {**os.environ, "BENCH_CELERY_REDIS_URL": args.redis_url,
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    argv = [sys.executable, "-m", "celery", "-A", "bench.celery_app", "worker", "-P", args.celery_pool,
            "-c", str(args.concurrency), "--without-gossip", "--without-mingle", "--without-heartbeat",
            "-l", "WARNING", "-n", f"bench{{i}}-{uuid.uuid4().hex[:6]}@%h"]
    workers = Workers(workdir)
    try:
        workers.start(argv, env, args.workers, "celery")
        warm = 0
        per_batch = max(4, 2 * args.workers * args.concurrency)
        distinct = 0
        for _ in range(20):
            for _i in range(per_batch):
                celery_app.noop.delay(f"warm{warm}", True)
                warm += 1
            if not _wait(lambda n=warm: r.hlen(celery_app.DONE_KEY) >= n, 120, workers):
                raise RuntimeError("celery: warm-up tasks did not finish")
            ran_on = [_text(v) for v in r.hvals(celery_app.WARM_KEY)]
            distinct = len({v.rsplit(":", 1)[0] if args.celery_pool == "threads" else v for v in ran_on})
            if distinct >= args.workers:
                break
            time.sleep(0.2)
        time.sleep(0.3)
        r.delete(celery_app.DONE_KEY, celery_app.WARM_KEY)

        meter = CpuMeter({"workers": lambda: _tree(workers.pids), "server": _redis_pids})
        meter.start()
        submitted: dict[str, float] = {}
        delay = celery_app.noop.delay
        first = time.time()
        if args.batch > 1:
            # Celery's own batch submission: group(...).apply_async() publishes the batch's messages with one
            # producer (one broker connection) instead of one .delay() each.
            from celery import group

            for start in range(0, args.jobs, args.batch):
                ids = [f"j{i}" for i in range(start, min(args.jobs, start + args.batch))]
                stamp = time.time()
                for jid in ids:
                    submitted[jid] = stamp
                group(celery_app.noop.s(jid) for jid in ids).apply_async()
        else:
            for i in range(args.jobs):
                jid = f"j{i}"
                submitted[jid] = time.time()
                delay(jid)
        last_submit = time.time()
        ok = _wait(lambda: r.hlen(celery_app.DONE_KEY) >= args.jobs, args.timeout, workers, interval=0.05)
        cpu = meter.stop()
        done = {_text(k): float(v) for k, v in r.hgetall(celery_app.DONE_KEY).items()}
    finally:
        workers.stop()
        with contextlib.suppress(Exception):
            r.flushdb()
    lat = [done[j] - t for j, t in submitted.items() if j in done]
    last_done = max(done.values(), default=time.time())
    out = summarize(args.jobs, lat, first, last_submit, last_done, cpu)
    out.update(complete=ok and len(lat) == args.jobs, pool=args.celery_pool, warmup_jobs=warm, warm_workers=distinct)
    return out


# --- machine info -------------------------------------------------------------------------------------------
def _git_state() -> dict[str, Any] | None:
    """The commit measured, and whether the queue's code differed from it (others may edit the tree)."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src", "bench"], cwd=ROOT, capture_output=True,
                               text=True, timeout=10, check=True).stdout.split("\n")
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": head, "modified": [line[3:] for line in dirty if line.strip()]}


def machine_info(args: argparse.Namespace, systems: list[str]) -> dict[str, Any]:
    info: dict[str, Any] = {
        "hostname": socket.gethostname(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_model": cpu_model(),
        "loadavg_at_start": list(os.getloadavg()),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "packages": {p: package_version(p) for p in ("reelforge", "celery", "kombu", "redis", "sqlalchemy", "psycopg")},
        "reelforge_source": str(Path(str(__import__("reelforge").__file__)).parent),
        "git": _git_state(),
    }
    if "postgres" in systems:
        with contextlib.suppress(Exception):
            import psycopg

            with psycopg.connect(args.pg_url) as conn:
                info["postgres"] = {k: conn.execute(f"SHOW {k}").fetchone()[0]  # type: ignore[index]
                                    for k in ("server_version", "synchronous_commit", "fsync", "wal_sync_method")}
    if "celery" in systems:
        with contextlib.suppress(Exception):
            import redis

            r = redis.Redis.from_url(args.redis_url)
            info["redis"] = {"server_version": r.info("server")["redis_version"],
                             "appendonly": r.config_get("appendonly").get("appendonly"),
                             "appendfsync": r.config_get("appendfsync").get("appendfsync")}
    return info


# --- profiling hook (bench-only; the worker code is untouched) ----------------------------------------------
def profiled_worker(concurrency: int) -> None:
    """`python -m bench.queue_throughput _worker`: the real worker, with cProfile on every thread and each
    database transaction timed by the function that opened it. Writes <dir>/<pid>.prof and <pid>.json."""
    import atexit
    import cProfile
    import threading

    from sqlalchemy import event

    from reelforge.adapters.db import store as store_mod
    from reelforge.adapters.db.engine import Database

    outdir = Path(os.environ[PROFILE_ENV])
    profilers: list[cProfile.Profile] = []
    lock = threading.Lock()
    tx_stats: dict[str, list[float]] = {}
    stmt_stats: dict[str, int] = {}
    local = threading.local()

    def start_profiler(*_a: Any) -> None:
        sys.setprofile(None)  # this thread only; threads started later still get start_profiler
        p = cProfile.Profile(time.thread_time)  # CPU time of this thread: waiting on the database is not counted
        with lock:
            profilers.append(p)
        p.enable()

    threading.setprofile(start_profiler)  # each new thread starts its own profiler on its first event

    original_tx = store_mod.Store.tx

    @contextlib.contextmanager
    def timed_tx(self: Any, *, write: bool = True) -> Iterator[Any]:
        caller = sys._getframe(2)
        label = f"{caller.f_code.co_name}({'w' if write else 'r'})"
        prev = getattr(local, "label", None)
        local.label = label
        t0 = time.perf_counter()
        try:
            with original_tx(self, write=write) as tx:
                yield tx
        finally:
            dt = time.perf_counter() - t0
            local.label = prev
            with lock:
                tx_stats.setdefault(label, []).append(dt)

    store_mod.Store.tx = timed_tx  # type: ignore[method-assign]

    original_init = Database.__init__

    def init(self: Any, *a: Any, **kw: Any) -> None:
        original_init(self, *a, **kw)

        @event.listens_for(self.engine, "before_cursor_execute")
        def count(_conn: Any, _cur: Any, statement: str, *_rest: Any) -> None:
            words = statement.split()
            kind = words[0].upper() if words else "?"
            if kind in ("UPDATE", "INSERT", "DELETE") or kind == "SELECT":
                table = ""
                for key in ("FROM", "INTO", "UPDATE"):
                    if key in words:
                        idx = words.index(key) + 1
                        if idx < len(words):
                            table = words[idx]
                            break
                kind = f"{kind} {table}"
            key = f"{getattr(local, 'label', None)}: {kind}"
            with lock:
                stmt_stats[key] = stmt_stats.get(key, 0) + 1

    Database.__init__ = init  # type: ignore[method-assign]

    def dump() -> None:
        import pstats

        pid = os.getpid()
        stats: pstats.Stats | None = None
        for p in profilers:
            with contextlib.suppress(Exception):
                p.disable()
                p.create_stats()
                if not p.stats:  # type: ignore[attr-defined]
                    continue
                stats = pstats.Stats(p) if stats is None else stats.add(p)
        if stats is not None:
            stats.dump_stats(str(outdir / f"{pid}.prof"))
        summary = {label: {"count": len(v), "total_s": sum(v), "mean_ms": 1000 * statistics.fmean(v),
                           "p50_ms": 1000 * percentile(v, 50), "p99_ms": 1000 * percentile(v, 99)}
                   for label, v in tx_stats.items()}
        (outdir / f"{pid}.json").write_text(json.dumps({"transactions": summary, "statements": stmt_stats}, indent=1))

    atexit.register(dump)
    from reelforge.cli.main import app

    app(["worker", "--concurrency", str(concurrency)], standalone_mode=False)


def profile_report(pdir: Path, jobs: int) -> str:
    """Merge the workers' profiles: cumulative time by function, transactions and statements per job."""
    import io
    import pstats

    lines: list[str] = [f"profile of reelforge workers in {pdir} ({jobs} timed jobs + warm-up)"]
    tx: dict[str, dict[str, float]] = {}
    stmts: dict[str, int] = {}
    for f in sorted(pdir.glob("*.json")):
        data = json.loads(f.read_text())
        for label, s in data["transactions"].items():
            t = tx.setdefault(label, {"count": 0, "total_s": 0.0})
            t["count"] += s["count"]
            t["total_s"] += s["total_s"]
        for k, v in data["statements"].items():
            stmts[k] = stmts.get(k, 0) + v
    lines.append("transactions (label: count, mean ms):")
    for label, t in sorted(tx.items(), key=lambda kv: -kv[1]["total_s"]):
        lines.append(f"  {label:<32} {int(t['count']):>7} {1000 * t['total_s'] / max(1, t['count']):8.2f}")
    lines.append("statements (transaction: kind, count):")
    for k, v in sorted(stmts.items(), key=lambda kv: -kv[1])[:40]:
        lines.append(f"  {k:<70} {v:>7}")
    profs = sorted(pdir.glob("*.prof"))
    if profs:
        buf = io.StringIO()
        st = pstats.Stats(str(profs[0]), stream=buf)
        for p in profs[1:]:
            st.add(str(p))
        st.sort_stats("tottime").print_stats(30)
        st.sort_stats("cumulative").print_stats(45)
        lines.append(buf.getvalue())
    return "\n".join(lines)


# --- main ---------------------------------------------------------------------------------------------------
def table(results: dict[str, dict[str, Any]]) -> str:
    head = (f"{'system':<20} {'jobs':>6} {'submit/s':>9} {'jobs/s':>8} {'p50 ms':>9} {'p99 ms':>9} "
            f"{'cpu ms/job (client+workers+server)':>36}")
    lines = [head, "-" * len(head)]
    for name, r in results.items():
        cpu = r["cpu_ms_per_job"]
        cpu_s = f"{cpu.get('client', 0):.2f}+{cpu.get('workers', 0):.2f}+{cpu.get('server', 0):.2f}"
        flag = "" if r.get("complete", True) else "  (INCOMPLETE)"
        lines.append(f"{name:<20} {r['jobs']:>6} {r['submit_per_s']:>9.0f} {r['jobs_per_s']:>8.1f} "
                     f"{r['latency_ms']['p50']:>9.1f} {r['latency_ms']['p99']:>9.1f} {cpu_s:>36}{flag}")
    return "\n".join(lines)


def _median_result(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median of each metric over rounds (rounds kept alongside)."""
    if len(runs) == 1:
        return runs[0]
    med = dict(runs[0])
    for key in ("jobs_per_s", "submit_per_s", "wall_s"):
        med[key] = round(statistics.median(r[key] for r in runs), 1 if key != "wall_s" else 3)
    med["latency_ms"] = {k: round(statistics.median(r["latency_ms"][k] for r in runs), 2)
                         for k in runs[0]["latency_ms"]}
    med["cpu_ms_per_job"] = {k: round(statistics.median(r["cpu_ms_per_job"].get(k, 0) for r in runs), 3)
                             for k in runs[0]["cpu_ms_per_job"]}
    med["complete"] = all(r.get("complete", True) for r in runs)
    med["rounds"] = [{"jobs_per_s": r["jobs_per_s"], "p50_ms": r["latency_ms"]["p50"],
                      "p99_ms": r["latency_ms"]["p99"], "submit_per_s": r["submit_per_s"]} for r in runs]
    return med


def _jobs_settings() -> dict[str, Any]:
    """The worker's batching settings (defaults unless REELFORGE_JOBS__* says otherwise)."""
    from reelforge.config import JobSettings

    js = JobSettings()
    return {"prefetch": os.environ.get("REELFORGE_JOBS__PREFETCH", js.prefetch),
            "finish_window_s": os.environ.get("REELFORGE_JOBS__FINISH_WINDOW_S", js.finish_window_s),
            "finish_batch_max": os.environ.get("REELFORGE_JOBS__FINISH_BATCH_MAX", js.finish_batch_max)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["_worker"]:
        p = argparse.ArgumentParser()
        p.add_argument("--concurrency", type=int, default=1)
        profiled_worker(p.parse_args(argv[1:]).concurrency)
        return {}
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=2000, help="timed no-op jobs per system")
    ap.add_argument("--concurrency", type=int, default=4, help="slots (threads) per worker process")
    ap.add_argument("--workers", type=int, default=2, help="worker processes per system")
    ap.add_argument("--only", default=",".join(SYSTEMS), help="comma list of sqlite,postgres,celery")
    ap.add_argument("--rounds", type=int, default=1, help="run every system this many times, interleaved")
    ap.add_argument("--celery-pool", default="threads", choices=["threads", "prefork", "solo"])
    ap.add_argument("--batch", type=int, default=100,
                    help="submit in batches of this size (reelforge: JobService.submit_many, the body of POST "
                         "/v1/jobs/batch; celery: group(...).apply_async()); 1 = one submit per job")
    ap.add_argument("--sqlite-poll", type=float, default=0.05, help="REELFORGE_JOBS__POLL_INTERVAL_S on SQLite")
    ap.add_argument("--pg-url", default=DEFAULT_PG, help="maintenance URL; a fresh database is made per run")
    ap.add_argument("--redis-url", default=DEFAULT_REDIS, help="Celery broker (flushed before the run)")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the jobs to finish")
    ap.add_argument("--out", default=str(DEFAULT_OUT), help="JSON results file ('-' to skip)")
    ap.add_argument("--profile", default="", help="directory: profile the reelforge workers (cProfile, tx timing)")
    args = parse_args(ap, argv, {"jobs": 6, "workers": 1, "concurrency": 1, "timeout": 120.0})
    systems = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(systems) - set(SYSTEMS)
    if unknown:
        ap.error(f"unknown systems: {', '.join(sorted(unknown))}")
    started = datetime.now(UTC)
    info = machine_info(args, systems)
    runs: dict[str, list[dict[str, Any]]] = {LABELS[s]: [] for s in systems}
    for rnd in range(args.rounds):
        for s in systems:
            with tempfile.TemporaryDirectory(prefix=f"rf-bench-{s}-") as tmp:
                t0 = time.monotonic()
                res = run_celery(args, Path(tmp)) if s == "celery" else run_reelforge(s, args, Path(tmp))
                print(f"[round {rnd + 1}/{args.rounds}] {LABELS[s]}: {res['jobs_per_s']} jobs/s, "
                      f"p50 {res['latency_ms']['p50']} ms, p99 {res['latency_ms']['p99']} ms "
                      f"({time.monotonic() - t0:.1f} s with setup)", flush=True)
                runs[LABELS[s]].append(res)
    info["loadavg_at_end"] = list(os.getloadavg())
    results = {name: _median_result(rs) for name, rs in runs.items()}
    ratios: dict[str, float] = {}
    celery = results.get(LABELS["celery"])
    if celery:
        for s in ("sqlite", "postgres"):
            r = results.get(LABELS[s])
            if r:
                ratios[f"{s}_over_celery_jobs_per_s"] = round(r["jobs_per_s"] / celery["jobs_per_s"], 3)
                ratios[f"{s}_over_celery_p50"] = round(r["latency_ms"]["p50"] / celery["latency_ms"]["p50"], 3)
                ratios[f"{s}_over_celery_p99"] = round(r["latency_ms"]["p99"] / celery["latency_ms"]["p99"], 3)
    goal: dict[str, Any] = {"statement": "reelforge on PostgreSQL jobs/s >= Celery + Redis jobs/s"}
    if "postgres_over_celery_jobs_per_s" in ratios:
        goal["met"] = ratios["postgres_over_celery_jobs_per_s"] >= 1.0
    report = {
        "benchmark": "queue_throughput",
        "date": started.isoformat(timespec="seconds"),
        "machine": info,
        "params": {"jobs": args.jobs, "workers": args.workers, "concurrency": args.concurrency,
                   "rounds": args.rounds, "celery_pool": args.celery_pool, "sqlite_poll_interval_s": args.sqlite_poll,
                   "postgres_poll_interval_s": "default (LISTEN/NOTIFY wake-ups)", "systems": systems,
                   "profiled": bool(args.profile), "submit_batch": args.batch,
                   "reelforge_jobs_settings": _jobs_settings()},
        "results": results,
        "ratios": ratios,
        "goal": goal,
    }
    print()
    print(table(results))
    for k, v in ratios.items():
        print(f"{k}: {v}")
    if "met" in goal:
        print(f"goal ({goal['statement']}): {'met' if goal['met'] else 'NOT met'}")
    if args.profile:
        for s in ("sqlite", "postgres"):
            pdir = Path(args.profile) / s
            if pdir.is_dir():
                text = profile_report(pdir, args.jobs * args.rounds)
                (Path(args.profile) / f"{s}-report.txt").write_text(text)
                print(text)
    if args.out != "-":
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {out}")
    return report


if __name__ == "__main__":
    main()
