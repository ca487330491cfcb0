"""Live event fan-out. Results go to bench/results/scale_out.json under the key `event_fanout` (bench/scale_out.py
writes the other keys of that file); a run merges its key into the file instead of overwriting the others.

Section `event_fanout`: how many concurrent live event streams one API process holds, and the delivery latency
from a committed change to a client receiving it, through PostgreSQL LISTEN/NOTIFY and through Redis pub/sub.

One `reelforge api` process (uvicorn, one event loop) on a fresh PostgreSQL database; N streams (WebSocket or
SSE), each following its own queued job. This process then plays the worker: it writes progress reports through
the platform's own store (`tx.jobs.update_job`, which marks the job changed; the store notifies in the transaction
on PostgreSQL, or publishes to Redis after the commit), stamping each report with the wall clock. A client's
latency is its receive time minus that stamp (one machine, one clock). The fallback poll is set to 60 s, so every
delivery counted here came from a notice. The clients run in this same process on the same 2 cores as the server,
so the figures are a floor on what one API process can do, not a ceiling.

    python -m bench.event_fanout             # 100 and 1000 streams, then the WebSocket ramp
    python -m bench.event_fanout --smoke     # seconds: proves it works, numbers mean nothing
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench.common import cpu_model, package_version, parse_args

RESULTS = Path(__file__).resolve().parent / "results" / "scale_out.json"
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"


def machine() -> dict[str, Any]:
    return {"cpu_count": os.cpu_count(), "cpu": cpu_model(), "python": platform.python_version(),
            "platform": platform.platform(), "uvicorn": package_version("uvicorn"),
            "websockets": package_version("websockets"), "psycopg": package_version("psycopg"),
            "redis": package_version("redis")}


def merge_results(path: Path, section: str, value: dict[str, Any]) -> dict[str, Any]:
    """Write `value` under `section` in the JSON file at `path`, keeping every other section there."""
    data: dict[str, Any] = {}
    if path.exists():
        with contextlib.suppress(ValueError):
            data = json.loads(path.read_text())
    data[section] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    return data


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return round(s[min(len(s) - 1, int(q * len(s)))] * 1000, 2)  # ms


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


# --- event fan-out ---------------------------------------------------------------------------------------------
@contextlib.contextmanager
def fresh_database(admin_url: str) -> Iterator[str]:
    import psycopg

    name = f"rf_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = admin_url.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Server:
    """One `reelforge api` process and a container of this process on the same database (the writer)."""

    def __init__(self, tmp: Path, db_url: str, notifier: str, redis_url: str) -> None:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from tests.fixtures.topology import cluster

        from reelforge.config import Settings
        from reelforge.container import Container

        extra = {"REELFORGE_LIVE__NOTIFIER": notifier, "REELFORGE_LIVE__FALLBACK_POLL_S": "60",
                 "REELFORGE_LIVE__PING_S": "600"}
        if notifier == "redis":
            extra["REELFORGE_LIVE__REDIS_URL"] = redis_url
            extra["REELFORGE_LIVE__REDIS_CHANNEL"] = f"reelforge:bench:{uuid.uuid4().hex[:8]}"
        live: dict[str, Any] = {"notifier": notifier, "fallback_poll_s": 60}
        jobs = {"free_jobs_per_window": 0}  # the benchmark queues thousands of free jobs for one account
        if notifier == "redis":
            live.update(redis_url=redis_url, redis_channel=extra["REELFORGE_LIVE__REDIS_CHANNEL"])
        self.container = Container(Settings(data_dir=tmp / "writer", database={"url": db_url},
                                            auth={"jwt_secret": "topology-" + "x" * 40}, live=live,
                                            jobs=jobs))
        self.container.migrate()
        self._cluster = cluster(tmp / "cluster", database_url=db_url, apis=1, workers=0, extra=extra)
        self.cluster = self._cluster.__enter__()
        self.url = self.cluster.apis[0]
        self.pid = self.cluster.procs[0][1].pid

    def close(self) -> None:
        self._cluster.__exit__(None, None, None)
        self.container.close()


def _queued_jobs(server: Server, n: int) -> tuple[str, list[str]]:
    from reelforge.domain.types import Principal, Role

    email = f"fan-{uuid.uuid4().hex[:8]}@example.com"
    r = httpx.post(f"{server.url}/v1/auth/register", json={"email": email, "password": "correct horse battery"},
                   timeout=60)
    assert r.status_code == 202, r.text
    token = httpx.post(f"{server.url}/v1/auth/token", json={"email": email, "password": "correct horse battery"},
                       timeout=60).json()["access_token"]
    me = httpx.get(f"{server.url}/v1/auth/me", headers={"Authorization": f"Bearer {token}"}, timeout=60).json()
    p = Principal(user_id=me["id"], email=email, role=Role.user)
    jobs = []
    for start in range(0, n, 100):
        jobs += server.container.jobs.submit_many(p, [{"kind": "system.noop", "input": {"echo": {"i": i}}, "callback_url": None,
                                                       "priority": 0} for i in range(start, min(n, start + 100))])
    return token, [j.id for j in jobs]


async def _ws_client(url: str, token: str, job_id: str, sink: dict[str, list[float]], ready: asyncio.Event,
                     errors: list[str], stop: asyncio.Event) -> None:
    from websockets.asyncio.client import connect

    try:
        async with connect(f"{url.replace('http://', 'ws://')}/v1/jobs/{job_id}/events/ws", open_timeout=60,
                           ping_interval=None, max_queue=None) as ws:
            await ws.send(json.dumps({"token": token}))
            seen_first = False
            while not stop.is_set():
                try:
                    raw = await asyncio.wait_for(ws.recv(), timeout=0.5)
                except TimeoutError:
                    continue
                now = time.time()
                msg = json.loads(raw)
                if msg["event"] == "progress":
                    if not seen_first:  # the state at connect (an earlier run's report): not a delivery
                        seen_first = True
                        ready.set()
                    else:
                        _record(msg["data"].get("message") or "", now, sink)
                elif msg["event"] in ("end", "timeout"):
                    return
    except Exception as exc:  # counted: a stream that could not be held
        errors.append(f"{type(exc).__name__}: {exc}"[:200])
        ready.set()


async def _sse_client(client: httpx.AsyncClient, url: str, token: str, job_id: str, sink: dict[str, list[float]],
                      ready: asyncio.Event, errors: list[str], stop: asyncio.Event) -> None:
    try:
        async with client.stream("GET", f"{url}/v1/jobs/{job_id}/events", params={"timeout": 3600},
                                 headers={"Authorization": f"Bearer {token}"}) as r:
            if r.status_code != 200:
                errors.append(f"HTTP {r.status_code}")
                ready.set()
                return
            name = None
            seen_first = False
            async for line in r.aiter_lines():
                if stop.is_set():
                    return
                if line.startswith("event:"):
                    name = line[6:].strip()
                elif line.startswith("data:") and name == "progress":
                    now = time.time()
                    if not seen_first:
                        seen_first = True
                        ready.set()
                    else:
                        _record(json.loads(line[5:]).get("message") or "", now, sink)
    except Exception as exc:
        if not stop.is_set():
            errors.append(f"{type(exc).__name__}: {exc}"[:200])
        ready.set()


def _record(message: str, now: float, sink: dict[str, list[float]]) -> None:
    if message.startswith("t="):
        sink.setdefault(message, []).append(now - float(message[2:].split(";", 1)[0]))


def _write_round(server: Server, job_ids: list[str], rnd: int, batch: int) -> None:
    """One progress report per job, `batch` jobs per transaction (as a worker's finisher batches), stamped."""
    store = server.container.store
    for start in range(0, len(job_ids), batch):
        stamp = f"t={time.time():.6f};r={rnd}"
        with store.tx() as tx:
            for job_id in job_ids[start:start + batch]:
                tx.jobs.update_job(job_id, progress=0.01 * (rnd + 1), progress_message=stamp)


async def _run_streams(server: Server, token: str, job_ids: list[str], kind: str, rounds: int, batch: int,
                       round_gap_s: float) -> dict[str, Any]:
    sink: dict[str, list[float]] = {}
    errors: list[str] = []
    stop = asyncio.Event()
    readies = [asyncio.Event() for _ in job_ids]
    t0 = time.monotonic()
    limits = httpx.Limits(max_connections=len(job_ids) + 10, max_keepalive_connections=len(job_ids) + 10)
    async with httpx.AsyncClient(timeout=httpx.Timeout(120.0), limits=limits) as client:
        tasks = []
        for job_id, ready in zip(job_ids, readies, strict=True):
            if kind == "websocket":
                coro = _ws_client(server.url, token, job_id, sink, ready, errors, stop)
            else:
                coro = _sse_client(client, server.url, token, job_id, sink, ready, errors, stop)
            tasks.append(asyncio.create_task(coro))
            if len(tasks) % 50 == 0:
                await asyncio.sleep(0.01)  # a steady ramp rather than one burst of handshakes
        await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), timeout=300)
        opened_s = time.monotonic() - t0
        held = len(job_ids) - len(errors)
        rss_held = rss_mb(server.pid)
        for rnd in range(rounds):
            await asyncio.to_thread(_write_round, server, job_ids, rnd, batch)
            await asyncio.sleep(round_gap_s)
        deadline = time.monotonic() + 30
        expected = held * rounds
        while sum(len(v) for v in sink.values()) < expected and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        stop.set()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    lat = [x for v in sink.values() for x in v]
    delivered = len(lat)
    return {"streams": len(job_ids), "kind": kind, "held": held, "errors": len(errors),
            "error_samples": sorted(set(errors))[:3], "open_s": round(opened_s, 2), "api_rss_mb": rss_held,
            "rounds": rounds, "expected": expected, "delivered": delivered,
            "delivered_ratio": round(delivered / expected, 4) if expected else None,
            "latency_ms": {"p50": pct(lat, 0.50), "p90": pct(lat, 0.90), "p99": pct(lat, 0.99),
                           "max": pct(lat, 1.0), "mean": round(statistics.fmean(lat) * 1000, 2) if lat else None}}


def event_fanout(args: argparse.Namespace) -> dict[str, Any]:
    started = datetime.now(UTC)
    notifiers = [n for n in args.notifiers.split(",") if n]
    runs: list[dict[str, Any]] = []
    ramp: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="rf-fanout-") as tmp:
        for notifier in notifiers:
            with fresh_database(args.pg_url) as db:
                server = Server(Path(tmp) / notifier, db, notifier, args.redis_url)
                try:
                    idle_rss = rss_mb(server.pid)
                    biggest = max([*args.streams, *args.ramp] or [0])
                    token, jobs = _queued_jobs(server, biggest)
                    for n in args.streams:
                        for kind in args.kinds.split(","):
                            r = asyncio.run(_run_streams(server, token, jobs[:n], kind, args.rounds, args.batch,
                                                         args.round_gap_s))
                            r.update(notifier=notifier, api_idle_rss_mb=idle_rss)
                            print(json.dumps(r), flush=True)
                            runs.append(r)
                    steps = []
                    for n in args.ramp:  # WebSocket streams until errors or p99 degrade
                        r = asyncio.run(_run_streams(server, token, jobs[:n], "websocket", args.rounds, args.batch,
                                                     args.round_gap_s))
                        r.update(notifier=notifier, api_idle_rss_mb=idle_rss)
                        print(json.dumps(r), flush=True)
                        steps.append(r)
                        p99 = r["latency_ms"]["p99"]
                        if r["errors"] > 0.01 * n or (r["delivered_ratio"] or 0) < 0.99 or \
                                (p99 is not None and p99 > args.p99_limit_ms):
                            break
                    ramp[notifier] = summarize([r for r in runs if r["notifier"] == notifier and
                                                r["kind"] == "websocket"] + steps, args.p99_limit_ms)
                finally:
                    server.close()
    return {"benchmark": "scale_out.event_fanout", "date": started.isoformat(timespec="seconds"),
            "machine": machine(),
            "params": {"notifiers": notifiers, "streams": args.streams, "kinds": args.kinds.split(","),
                       "rounds": args.rounds, "jobs_per_write_tx": args.batch, "round_gap_s": args.round_gap_s,
                       "ramp": args.ramp, "fallback_poll_s": 60, "api_processes": 1,
                       "clients": "asyncio in the benchmark process, on the same cores as the server"},
            "runs": runs, "ramp": ramp}


def _holds(run: dict[str, Any], p99_limit_ms: float) -> bool:
    p99 = run["latency_ms"]["p99"]
    return run["errors"] <= 0.01 * run["streams"] and (run["delivered_ratio"] or 0) >= 0.99 and \
        p99 is not None and p99 <= p99_limit_ms


def summarize(steps: list[dict[str, Any]], p99_limit_ms: float) -> dict[str, Any]:
    """The most WebSocket streams one API process held within the limits (no more than 1 % errors, 99 % of the
    reports delivered, p99 within `p99_limit_ms`), over the fixed runs and the ramp, and what stopped the ramp."""
    steps = sorted(steps, key=lambda s: s["streams"])
    good = [s for s in steps if _holds(s, p99_limit_ms)]
    bad = [s for s in steps if not _holds(s, p99_limit_ms)]
    best = max(good, key=lambda s: s["streams"], default=None)
    return {"p99_limit_ms": p99_limit_ms, "max_streams_within_limits": best["streams"] if best else 0,
            "rss_mb_at_max": best["api_rss_mb"] if best else None,
            "max_streams_held_without_errors": max((s["held"] for s in steps if s["errors"] == 0), default=0),
            "first_over_limits": {"streams": bad[0]["streams"], "errors": bad[0]["errors"],
                                  "p99_ms": bad[0]["latency_ms"]["p99"], "delivered_ratio": bad[0]["delivered_ratio"],
                                  "api_rss_mb": bad[0]["api_rss_mb"]} if bad else None,
            "steps": [{"streams": s["streams"], "held": s["held"], "errors": s["errors"], "p99_ms": s["latency_ms"]["p99"],
                       "delivered_ratio": s["delivered_ratio"], "api_rss_mb": s["api_rss_mb"]} for s in steps]}


SECTIONS = {"event_fanout": event_fanout}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--section", default="event_fanout", choices=sorted(SECTIONS))
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--pg-url", default=os.environ.get("REELFORGE_TEST_PG_URL", DEFAULT_PG))
    ap.add_argument("--redis-url", default=os.environ.get("REELFORGE_TEST_REDIS", DEFAULT_REDIS))
    ap.add_argument("--notifiers", default="postgres,redis")
    ap.add_argument("--streams", type=lambda s: [int(x) for x in s.split(",") if x], default=[100, 1000])
    ap.add_argument("--kinds", default="websocket,sse")
    ap.add_argument("--ramp", type=lambda s: [int(x) for x in s.split(",") if x], default=[1500, 2000, 3000, 4000])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batch", type=int, default=50, help="jobs whose progress one write transaction changes")
    ap.add_argument("--round-gap-s", type=float, default=1.0)
    ap.add_argument("--p99-limit-ms", type=float, default=1000.0)
    args = parse_args(ap, argv, {"streams": [5], "ramp": [], "rounds": 2, "round_gap_s": 0.3,
                                 "kinds": "websocket,sse"})
    report = SECTIONS[args.section](args)
    merge_results(Path(args.out), args.section, report)
    return report


if __name__ == "__main__":
    main()
