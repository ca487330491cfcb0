"""Interactive calls: the round trip API → worker → API of a call that does nothing, and of a queued job.

One `reelforge worker` process (the bench's own application registers the calls, `Worker.run_forever` as
`reelforge worker` runs it) on a fresh SQLite file; this process plays the API: `container.calls` as a route
would use it. Measured, one after the other:

- noop-async: `await calls.call("bench.noop", {...}, affinity=...)` one at a time on one event loop (what a
  route awaits: the pooled httpx.AsyncClient, a signed keep-alive request, the worker's executor hop);
- noop-sync: `calls.call_sync(...)` one at a time (the pooled httpx.Client);
- echo-16k-async: the same as noop-async with a 16 KiB payload that comes back in the answer (about a mask's
  size as PNG in base64);
- noop-async-c8: 8 concurrent callers on one event loop (latency per call and calls per second);
- queued-job: for comparison, a `system.noop` job submitted through `JobService.submit` and run by the same
  worker (SQLite: it polls every `jobs.poll_interval_s`, 1 s by default), one at a time, waited for; latency is
  `finished_at - created_at` on the database clock.

Latency is measured in this process around each call (perf_counter), after a warm-up.

    python -m bench.calls --n 2000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import cpu_model, package_version, parse_args
from reelforge.applications import AppManifest, Call

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "bench" / "results" / "calls.json"
SECRET = "bench-secret-" + "x" * 40


def _noop(services: Any, payload: dict[str, Any]) -> dict[str, Any]:
    return {"ok": True}


def _echo(services: Any, payload: dict[str, Any]) -> dict[str, Any]:
    return payload


APP = AppManifest(name="bench", title="Bench", calls=lambda s: [Call("bench.noop", _noop), Call("bench.echo", _echo)])


def _settings(data_dir: Path) -> Any:
    from reelforge.config import Settings

    return Settings(data_dir=data_dir, log_level="WARNING", log_json=False, auth={"jwt_secret": SECRET},
                    jobs={"free_jobs_per_window": 0})


def _worker(data_dir: str) -> None:
    """`reelforge worker` with the bench's application (a subprocess of the bench)."""
    import logging

    from reelforge.container import Container
    from reelforge.runtime.worker import Worker

    logging.basicConfig(level=logging.WARNING)
    c = Container(_settings(Path(data_dir)), apps=(APP,))
    Worker(c, concurrency=1).run_forever()


def percentiles(values: list[float]) -> dict[str, float]:
    """p50, p90, p99, max and mean in milliseconds (nearest rank)."""
    s = sorted(values)

    def rank(q: float) -> float:
        return s[max(0, min(len(s) - 1, math.ceil(q / 100 * len(s)) - 1))] * 1000

    return {"n": len(s), "p50_ms": round(rank(50), 3), "p90_ms": round(rank(90), 3), "p99_ms": round(rank(99), 3),
            "max_ms": round(s[-1] * 1000, 3), "mean_ms": round(sum(s) / len(s) * 1000, 3)}


async def _sequential(calls: Any, name: str, payload: dict[str, Any], n: int, warmup: int) -> list[float]:
    out = []
    for i in range(warmup + n):
        t0 = time.perf_counter()
        await calls.call(name, payload, affinity="session-1")
        if i >= warmup:
            out.append(time.perf_counter() - t0)
    return out


async def _concurrent(calls: Any, n: int, concurrency: int) -> tuple[list[float], float]:
    latencies: list[float] = []
    per = max(1, n // concurrency)

    async def one(k: int) -> None:
        for _ in range(per):
            t0 = time.perf_counter()
            await calls.call("bench.noop", {}, affinity=f"session-{k}")
            latencies.append(time.perf_counter() - t0)

    await asyncio.gather(*(one(k) for k in range(concurrency)))  # warm: one connection per caller
    latencies.clear()
    t0 = time.perf_counter()
    await asyncio.gather(*(one(k) for k in range(concurrency)))
    return latencies, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000, help="timed calls per measurement")
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--jobs", type=int, default=20, help="queued jobs for the comparison")
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["_worker"]:
        _worker(argv[1])
        return {}
    args = parse_args(ap, argv, {"n": 40, "warmup": 5, "concurrency": 4, "jobs": 2})

    from reelforge.container import Container
    from reelforge.domain.types import Principal, Role

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="rf-bench-calls-") as tmp:
        data_dir = Path(tmp) / "var"
        c = Container(_settings(data_dir), apps=(APP,))
        c.migrate()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        log = open(Path(tmp) / "worker.log", "wb")  # noqa: SIM115 - closed in finally
        worker = subprocess.Popen([sys.executable, "-m", "bench.calls", "_worker", str(data_dir)], env=env,
                                  stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while not c.calls.workers():
                if worker.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the worker did not start: " + (Path(tmp) / "worker.log").read_text()[-2000:])
                time.sleep(0.05)
                c.calls.invalidate()

            async def run_async() -> None:
                try:
                    payload = {"x": 1, "y": 2, "object_id": 1}
                    results["noop-async"] = percentiles(
                        await _sequential(c.calls, "bench.noop", payload, args.n, args.warmup))
                    big = {"mask": "A" * 16 * 1024}
                    results["echo-16k-async"] = percentiles(
                        await _sequential(c.calls, "bench.echo", big, args.n, args.warmup))
                    lat, seconds = await _concurrent(c.calls, args.n, args.concurrency)
                    results[f"noop-async-c{args.concurrency}"] = {**percentiles(lat),
                                                                   "calls_per_s": round(len(lat) / seconds, 1)}
                finally:
                    await c.calls.aclose()

            asyncio.run(run_async())
            lat = []
            for i in range(args.warmup + args.n):
                t0 = time.perf_counter()
                c.calls.call_sync("bench.noop", {}, affinity="session-1")
                if i >= args.warmup:
                    lat.append(time.perf_counter() - t0)
            results["noop-sync"] = percentiles(lat)

            user = c.auth.register("bench@example.com", "bench password 1", grant=0)
            principal = Principal(user_id=user.id, email=user.email, role=Role.user)
            job_lat = []
            for i in range(args.jobs):
                job, _ = c.jobs.submit(principal, "system.noop", {"echo": i})
                done = c.jobs.wait(principal, job.id, 30, poll_s=0.02)
                if done.status != "succeeded" or done.finished_at is None:
                    raise RuntimeError(f"job {job.id} ended {done.status}")
                job_lat.append(float(done.finished_at) - float(done.created_at))
            results["queued-job"] = percentiles(job_lat)
        finally:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
            log.close()
            c.close()

    report = {
        "benchmark": "calls",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "params": {k: v for k, v in vars(args).items() if k != "out"},
        "machine": {"cpus": os.cpu_count(), "cpu_model": cpu_model(), "python": platform.python_version(),
                    "platform": platform.platform(), "loadavg_at_end": list(os.getloadavg())},
        "versions": {p: package_version(p) for p in ("httpx", "httpcore", "sqlalchemy")},
        "results": results,
        "ratios": {"queued_job_p50_over_call_p50": round(results["queued-job"]["p50_ms"]
                                                         / results["noop-async"]["p50_ms"], 1)},
        "goal": {"noop_p50_ms_below": 10.0, "met": results["noop-async"]["p50_ms"] < 10.0},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    for name, r in results.items():
        print(f"{name:18s} p50 {r['p50_ms']:8.3f} ms  p99 {r['p99_ms']:8.3f} ms" +
              (f"  {r['calls_per_s']} calls/s" if "calls_per_s" in r else ""))
    return report


if __name__ == "__main__":
    main()
