"""Scale-out figures: worker processes on PostgreSQL against Celery, scale from zero, and the Ray fan-out.

Sections (``--only``, comma-separated; each writes its own key of bench/results/scale_out.json and keeps every other
key, so the event fan-out figures written by another script stay):

- ``throughput``: N jobs through W = 1..4 `reelforge worker --concurrency 1` processes on a fresh PostgreSQL
  database, against W `celery worker -P solo` processes on Redis (one slot per process on both sides), for no-op
  jobs (`system.noop` / `scale.noop`) and for a CPU-bound step (the same pure-Python loop, bench/scale_work.py).
  Workers are warm (each has run a job) before the timed part; jobs are submitted in batches of 100 (one
  transaction / one publish each). Throughput is N / (last job done - first job submitted); scaling efficiency is
  throughput(W) / (W x throughput(1)).
- ``scale_from_zero``: `reelforge autoscale`'s policy and local scaler on PostgreSQL with no worker running; a job is
  submitted; the autoscaler (a pass every 0.25 s) starts a worker process; the figure is the time from the submit to
  the job's first step running (its ``TaskStateEntered`` event, both on the database clock), split into the
  autoscaler's reaction, the process start up to its claim, and claim to step. Repeated ``--repeats`` times, back
  to zero workers in between.
- ``ray_fanout``: the same `video.upscale` job (Real-ESRGAN animevideov3 x2 on a generated clip, chunks at every
  keyframe) in an in-process worker, once with the thread executor and once with the Ray executor on a local Ray
  cluster; the figure is the job's wall time and the speedup of Ray over threads.

    python -m bench.scale_out [--only throughput,scale_from_zero,ray_fanout] [--workers 1,2,3,4]
    python -m bench.scale_out --smoke     # tiny sizes: does it still run?
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import cpu_model, package_version, parse_args
from bench.queue_throughput import DEFAULT_PG, ROOT, Workers, _pg_database, _wait

DEFAULT_OUT = ROOT / "bench" / "results" / "scale_out.json"
# A Redis database of its own (flushed by each run): bench/queue_throughput.py uses db 9 of the same server.
DEFAULT_REDIS = os.environ.get("BENCH_SCALE_REDIS_URL", "redis://127.0.0.1:6379/11")
SECTIONS = ("throughput", "scale_from_zero", "ray_fanout")
BATCH = 100


def _rf_env(url: str, data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REELFORGE_")}
    env.update({
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        "REELFORGE_DATA_DIR": str(data_dir), "REELFORGE_DATABASE__URL": url, "REELFORGE_LOG_LEVEL": "WARNING",
        "REELFORGE_LOG_JSON": "false", "REELFORGE_AUTH__JWT_SECRET": "bench-secret-" + "x" * 40,
        "REELFORGE_EXTRA_PIPELINES": json.dumps(["bench.scale_work"]), "REELFORGE_MODELS__DEVICE": "cpu",
        **extra,
    })
    return env


def _rf_container(url: str, data_dir: Path, **over: Any) -> Any:
    from reelforge.config import Settings
    from reelforge.container import Container

    s = Settings(data_dir=data_dir, database={"url": url}, log_level="WARNING", log_json=False,
                 auth={"jwt_secret": "bench-secret-" + "x" * 40}, extra_pipelines=["bench.scale_work"],
                 jobs={"free_jobs_per_window": 0}, **over)
    c = Container(s)
    c.migrate()
    return c


def _principal(c: Any, email: str) -> Any:
    from reelforge.domain.types import Principal, Role

    u = c.auth.register(email, "bench password 1", grant=0)
    return Principal(user_id=u.id, email=u.email, role=Role.user)


# --- throughput: reelforge on PostgreSQL ----------------------------------------------------------------------
def rf_throughput(kind: str, n: int, workers: int, spin_n: int, pg_url: str, workdir: Path) -> dict[str, Any]:
    from sqlalchemy import func, select

    from reelforge.adapters.db.models import Job
    from reelforge.adapters.db.repositories.jobs import TERMINAL

    with _pg_database(pg_url) as (url, _dbname):
        data_dir = workdir / f"var-{uuid.uuid4().hex[:6]}"
        c = _rf_container(url, data_dir)
        bench, warm = _principal(c, "bench@example.com"), _principal(c, "warm@example.com")
        procs = Workers(workdir)

        def finished(owner: str) -> int:
            with c.store.tx(write=False) as tx:
                return int(tx.s.execute(select(func.count()).select_from(Job).where(
                    Job.owner_id == owner, Job.status.in_(TERMINAL))).scalar_one())

        try:
            procs.start([sys.executable, "-m", "reelforge", "worker", "--concurrency", "1"], _rf_env(url, data_dir),
                        workers, f"rf-{kind}")
            sent = 0
            for _ in range(40):  # warm-up: every worker process has run a job
                c.jobs.submit_many(warm, [{"kind": "system.noop", "input": {"echo": i}} for i in range(4 * workers)])
                sent += 4 * workers
                if not _wait(lambda s=sent: finished(warm.user_id) >= s, 120, procs):
                    raise RuntimeError("warm-up jobs did not finish")
                with c.store.tx(write=False) as tx:
                    ran = set(tx.s.execute(select(Job.worker_id).where(Job.owner_id == warm.user_id)).scalars())
                if len(ran) >= workers:
                    break
            inputs = [{"echo": i} if kind == "system.noop" else {"i": i, "n": spin_n} for i in range(n)]
            t0 = time.time()
            for start in range(0, n, BATCH):
                c.jobs.submit_many(bench, [{"kind": kind, "input": x} for x in inputs[start:start + BATCH]])
            ok = _wait(lambda: finished(bench.user_id) >= n, 600, procs, interval=0.05)
            with c.store.tx(write=False) as tx:
                rows = tx.s.execute(select(Job.status, Job.created_at, Job.finished_at, Job.worker_id).where(
                    Job.owner_id == bench.user_id)).all()
        finally:
            procs.stop()
            c.close()
    done = [r for r in rows if r.status == "succeeded" and r.finished_at is not None]
    span = max(float(r.finished_at) for r in done) - min(float(r.created_at) for r in rows)
    per_worker: dict[str, int] = {}
    for r in done:
        per_worker[str(r.worker_id)] = per_worker.get(str(r.worker_id), 0) + 1
    return {"jobs": n, "completed": len(done), "complete": ok and len(done) == n, "wall_s": round(span, 3),
            "jobs_per_s": round(n / span, 1), "workers_used": len(per_worker), "submit_s": round(time.time() - t0, 3)}


# --- throughput: Celery on Redis --------------------------------------------------------------------------------
def celery_throughput(task: str, n: int, workers: int, spin_n: int, redis_url: str, workdir: Path) -> dict[str, Any]:
    import redis
    from celery import group

    os.environ["BENCH_CELERY_REDIS_URL"] = redis_url
    from bench import celery_scale

    r = redis.Redis.from_url(redis_url)
    r.flushdb()
    env = {**os.environ, "BENCH_CELERY_REDIS_URL": redis_url,
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    argv = [sys.executable, "-m", "celery", "-A", "bench.celery_scale", "worker", "-P", "solo", "-Q", "reelforge-scale",
            "--without-gossip",
            "--without-mingle", "--without-heartbeat", "-l", "WARNING", "-n", f"scale{{i}}-{uuid.uuid4().hex[:6]}@%h"]
    procs = Workers(workdir)
    try:
        procs.start(argv, env, workers, f"celery-{task}")
        warm = 0
        for _ in range(40):
            for _i in range(4 * workers):
                celery_scale.noop.delay(f"warm{warm}", True)
                warm += 1
            if not _wait(lambda w=warm: r.hlen(celery_scale.DONE_KEY) >= w, 120, procs):
                raise RuntimeError("celery warm-up did not finish")
            if len(set(r.hvals(celery_scale.WARM_KEY))) >= workers:
                break
        r.delete(celery_scale.DONE_KEY, celery_scale.WARM_KEY)
        first = time.time()
        for start in range(0, n, BATCH):
            ids = [f"j{i}" for i in range(start, min(n, start + BATCH))]
            sigs = [celery_scale.noop.s(j) if task == "noop" else celery_scale.spin.s(j, spin_n) for j in ids]
            group(sigs).apply_async()
        ok = _wait(lambda: r.hlen(celery_scale.DONE_KEY) >= n, 600, procs, interval=0.05)
        done = [float(v) for v in r.hvals(celery_scale.DONE_KEY)]
    finally:
        procs.stop()
        with contextlib.suppress(Exception):
            r.flushdb()
    span = max(done) - first
    return {"jobs": n, "completed": len(done), "complete": ok and len(done) == n, "wall_s": round(span, 3),
            "jobs_per_s": round(n / span, 1)}


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    ordered = sorted(runs, key=lambda r: r["jobs_per_s"])
    out = dict(ordered[len(ordered) // 2])
    out["rounds_jobs_per_s"] = [r["jobs_per_s"] for r in runs]
    return out


def section_throughput(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    counts = [int(x) for x in args.workers.split(",")]
    out: dict[str, Any] = {"params": {"workers": counts, "noop_jobs": args.noop_jobs, "cpu_jobs": args.cpu_jobs,
                                      "spin_n": args.spin_n, "slots_per_process": 1, "submit_batch": BATCH,
                                      "celery_pool": "solo", "rounds": args.rounds}}
    for work, n in (("noop", args.noop_jobs), ("cpu", args.cpu_jobs)):
        rows: dict[str, dict[str, Any]] = {"reelforge-postgres": {}, "celery-redis": {}}
        for w in counts:
            kind = "system.noop" if work == "noop" else "bench.cpu"
            rfs, cels = [], []
            for _ in range(args.rounds):  # interleaved, the median run of each is kept
                rfs.append(rf_throughput(kind, n, w, args.spin_n, args.pg_url, workdir))
                cels.append(celery_throughput(work, n, w, args.spin_n, args.redis_url, workdir))
            rf, cel = _median_run(rfs), _median_run(cels)
            rows["reelforge-postgres"][str(w)] = rf
            rows["celery-redis"][str(w)] = cel
            print(f"[throughput {work}] {w} worker(s): reelforge {rf['jobs_per_s']} jobs/s, "
                  f"celery {cel['jobs_per_s']} jobs/s", flush=True)
        for system in rows.values():
            base = system[str(counts[0])]["jobs_per_s"] / counts[0]
            for w in counts:
                system[str(w)]["efficiency"] = round(system[str(w)]["jobs_per_s"] / (w * base), 3)
        out[work] = rows
    return out


# --- scale from zero --------------------------------------------------------------------------------------------
def section_scale_from_zero(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    from sqlalchemy import select

    from reelforge.adapters.db.models import JobEvent
    from reelforge.adapters.scaling.local import LocalProcessScaler

    runs = []
    with _pg_database(args.pg_url) as (url, _dbname):
        data_dir = workdir / "var-zero"
        c = _rf_container(url, data_dir, autoscale={"cpu": {"idle_s": 0.5, "max_workers": 1}})
        user = _principal(c, "zero@example.com")
        started: list[float] = []
        scaler = LocalProcessScaler(c.kinds_of_class, env=_rf_env(url, data_dir), grace_s=15,
                                    on_start=lambda _cls, _pid: started.append(time.time()))
        scaling = c.autoscaler(scaler)
        loop = threading.Thread(target=scaling.run, args=(0.25,), daemon=True)
        loop.start()
        try:
            for _ in range(args.repeats):
                deadline = time.monotonic() + 60
                while (scaler.current("cpu") or scaler.stopping) and time.monotonic() < deadline:
                    time.sleep(0.1)
                time.sleep(0.5)
                t_submit = time.time()
                job, _ = c.jobs.submit(user, "bench.cpu", {"i": 0, "n": 1000})
                while True:
                    with c.store.tx(write=False) as tx:
                        events = list(tx.s.execute(select(JobEvent).where(JobEvent.job_id == job.id)).scalars())
                    step = [e for e in events if e.type == "TaskStateEntered"]
                    claimed = [e for e in events if e.type == "JobStarted"]
                    if step:
                        break
                    if time.time() - t_submit > 120:
                        raise RuntimeError("no worker started within 120 s")
                    time.sleep(0.05)
                created = float(job.created_at)
                step_at = float((step[0].details or {}).get("at") or step[0].ts)
                spawn = started[-1] - t_submit if started else float("nan")
                runs.append({"submit_to_first_step_s": round(step_at - created, 3),
                             "autoscaler_reaction_s": round(spawn, 3),
                             "process_start_to_claim_s": round(float(claimed[0].ts) - created - spawn, 3),
                             "claim_to_step_s": round(step_at - float(claimed[0].ts), 3)})
                print(f"[scale_from_zero] {runs[-1]}", flush=True)
        finally:
            scaling.stop()
            loop.join(5)
            scaler.close(wait_s=15)
            c.close()
    first = [r["submit_to_first_step_s"] for r in runs]
    return {"params": {"repeats": args.repeats, "autoscale_interval_s": 0.25, "idle_s": 0.5,
                       "database": "postgresql", "scaler": "local processes"},
            "runs": runs, "median_s": round(statistics.median(first), 3), "max_s": round(max(first), 3)}


# --- Ray fan-out ----------------------------------------------------------------------------------------------
def _upscale_once(executor: str, clip: Path, workdir: Path, concurrency: int) -> dict[str, Any]:
    from reelforge.adapters.db.migrate import upgrade
    from reelforge.config import Settings
    from reelforge.container import Container
    from reelforge.domain.keys import new_key
    from reelforge.runtime.worker import Worker

    root = workdir / f"ray-{executor}-{uuid.uuid4().hex[:6]}"
    root.mkdir()
    db = f"sqlite:///{root / 'bench.db'}"
    upgrade(db)
    s = Settings(data_dir=root / "var", database={"url": db}, log_json=False, log_level="WARNING",
                 jobs={"poll_interval_s": 0.05, "heartbeat_s": 1.0}, credits={"enabled": False},
                 worker={"executor": executor, "ray": {"num_cpus": 2, "num_gpus": 1}},
                 upscale={"chunk_seconds": 0.5, "max_chunk_concurrency": concurrency, "batch_size": 4})
    c = Container(s)
    user = _principal(c, "ray@example.com")
    key = new_key(f"{user.user_id}/uploads", ".mp4")
    info = c.objects.put_file(key, clip, "video/mp4")
    with c.store.tx() as tx:
        a = tx.assets.add_asset(owner_id=user.user_id, key=key, content_type="video/mp4", size=info.size,
                                sha256=info.sha256, lifecycle="hot", filename=clip.name, meta={})
    w = Worker(c, concurrency=1, maintenance=False)
    w.start()
    walls = []
    try:
        for _ in range(2):  # the first run loads the model (in the worker, or in its Ray actor); the second is timed
            t0 = time.perf_counter()
            job, _ = c.jobs.submit(user, "video.upscale", {"asset_id": a.id, "model": "realesr-animevideov3",
                                                           "scale": 2, "output": {"preset": "ultrafast"}})
            while (j := c.jobs.get(user, job.id)).status not in ("succeeded", "failed", "dead", "cancelled"):
                time.sleep(0.02)
            if j.status != "succeeded":
                raise RuntimeError(f"{executor}: {j.status} {j.error_code} {j.error_message}")
            walls.append(time.perf_counter() - t0)
        out = dict(j.outputs or {})
    finally:
        w.stop(grace_s=2)
        w.executor.shutdown()
        c.close()
    return {"wall_s_first": round(walls[0], 3), "wall_s": round(walls[1], 3), "chunks": out.get("chunk_count"),
            "frames": out.get("frames"), "fps": round(float(out.get("frames") or 0) / walls[1], 2)}


def section_ray_fanout(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    from bench.upscale import make_clip

    w, h = (int(x) for x in args.ray_size.split("x"))
    clip = make_clip(workdir / "ray-clip.mp4", args.ray_seconds, (w, h), fps=24, gop=12)
    threads = _upscale_once("threads", clip, workdir, concurrency=2)
    print(f"[ray_fanout] threads: {threads}", flush=True)
    t0 = time.perf_counter()
    from reelforge.config import Settings
    from reelforge.runtime.ray_executor import ray_init

    ray_init(Settings(worker={"executor": "ray", "ray": {"num_cpus": 2, "num_gpus": 1}}))
    init_s = time.perf_counter() - t0
    try:
        ray = _upscale_once("ray", clip, workdir, concurrency=2)
    finally:
        import ray as ray_mod

        ray_mod.shutdown()
    print(f"[ray_fanout] ray: {ray} (init {init_s:.1f}s)", flush=True)
    return {"params": {"clip": f"{w}x{h}", "seconds": args.ray_seconds, "gop_frames": 12, "chunk_seconds": 0.5,
                       "model": "realesr-animevideov3", "scale": 2, "ray_cluster": "local, num_cpus=2, num_gpus=1 "
                       "(logical: the chunk step asks cpu=2, gpu=1, so one chunk runs at a time)",
                       "thread_executor_chunk_concurrency": 2},
            "threads": threads, "ray": ray, "ray_init_s": round(init_s, 2),
            "speedup_ray_over_threads": round(threads["wall_s"] / ray["wall_s"], 3)}


# --- main -------------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", default=",".join(SECTIONS))
    ap.add_argument("--workers", default="1,2,3,4")
    ap.add_argument("--noop-jobs", type=int, default=600)
    ap.add_argument("--cpu-jobs", type=int, default=80)
    ap.add_argument("--spin-n", type=int, default=300_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=1, help="throughput runs per point (the median is kept)")
    ap.add_argument("--ray-seconds", type=float, default=4.0)
    ap.add_argument("--ray-size", default="160x120")
    ap.add_argument("--pg-url", default=DEFAULT_PG)
    ap.add_argument("--redis-url", default=DEFAULT_REDIS)
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    args = parse_args(ap, argv, {"workers": "1", "noop_jobs": 20, "cpu_jobs": 6, "spin_n": 10_000, "repeats": 1,
                                 "ray_seconds": 1.0, "ray_size": "64x48"})
    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="rf-scale-") as tmp:
        for s in sections:
            results[s] = globals()[f"section_{s}"](args, Path(tmp))
    load = os.getloadavg()
    machine = {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
               "ray": package_version("ray"), "celery": package_version("celery"),
               "loadavg_at_end": [round(x, 2) for x in load],
               "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
    if args.out != "-":
        out = Path(args.out)
        doc = json.loads(out.read_text()) if out.exists() else {}
        for s in sections:  # read-modify-write: only our own keys
            doc[s] = {**results[s], "machine": machine}
        out.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"wrote {out}")
    return results


if __name__ == "__main__":
    main()
