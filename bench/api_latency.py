"""API latency: `GET /v1/jobs/{id}` and a mixed read workload under concurrent load vs a bare FastAPI endpoint.

Servers, in the same run on the same machine, one after the other (never at once), each served by uvicorn in
a subprocess on 127.0.0.1 with the same worker count:

- bare: a FastAPI app with one `async def` route that returns a constant: no middleware, no auth, no
  database. What the same server stack answers when the application does nothing.
- reelforge: `create_app()` as `reelforge api` builds it (JSON access log, metrics, request ids, auth), on a
  fresh SQLite file (or --database-url). The client sends a JWT access token and reads one job it owns.
- reelforge-mixed: the same app under a mixed read workload: each client cycles through the job read, the job
  list, the asset read, the video feed and the similar-video search (40 validated videos with embeddings), so
  the figures cover the read routes clients use most, not one. Latency is also reported per route.
- reelforge-before: the FastAPI route with the code path it had before its first fast paths (sync
  dependencies, no principal cache, the sync ORM route), for a same-run comparison.
- reelforge-tuned: what-if (measured, not shipped): reelforge without the JSON access-log line.
- NAME-h11: NAME on uvicorn's pure-Python stack (h11 parser, asyncio loop) instead of httptools + uvloop.

The load comes from C concurrent clients (asyncio tasks with one keep-alive connection each, spread over
P client processes), each sending its next request as soon as the previous answer arrives, for S seconds
after a warm-up. Latency is measured in the client per request (so it includes client overhead); requests/s
is answers in the timed part / S. CPU seconds of the server and of the clients are read from /proc, so the
client's share of the machine is on record. With --rounds R the servers alternate R times and the median of
each metric is reported.

    python -m bench.api_latency --seconds 10 --concurrency 50 --workers 1 --client-procs 1 --rounds 3

Profiling: --profile DIR runs the reelforge server under cProfile (one worker) and writes DIR/server.prof.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing as mp
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import Request  # resolved at module level: the what-if dependencies below annotate with it

from bench.common import package_version

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "bench" / "results" / "api_latency.json"
SECRET = "bench-secret-" + "x" * 40


# --- the applications (uvicorn --factory imports these) -------------------------------------------------------
def reelforge_app() -> Any:
    """reelforge's API exactly as `reelforge api` serves it (settings from REELFORGE_* variables)."""
    from reelforge.api.app import create_app
    from reelforge.config import get_settings
    from reelforge.container import Container
    from reelforge.observability import configure_logging

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    profile_dir = os.environ.get("BENCH_API_PROFILE_DIR")
    app = create_app(container=Container(settings))
    if profile_dir:
        _profile_until_exit(Path(profile_dir) / "server.prof")
    return app


def _before_deps() -> None:
    """Put back the dependencies of api/deps.py as they were before the fast paths (sync `container` and
    `principal`, so two threadpool hops, and no principal cache: one database read per request), before the
    routes import them. A server process imports the app once, so this serves exactly what that code served;
    dependency_overrides would instead make FastAPI re-analyze the override on every request."""
    from typing import Annotated

    from fastapi import Depends

    from reelforge import errors
    from reelforge.api import deps
    from reelforge.domain.types import Principal

    if "reelforge.api.app" in sys.modules:
        raise RuntimeError("the before/what-if servers must patch reelforge.api before the app is imported")

    def container(request: Request) -> Any:
        return request.app.state.container

    # Plain defaults, not Annotated: under `from __future__ import annotations` FastAPI resolves annotation
    # strings in this module's globals, where these local names do not exist.
    def principal(request: Request, c: Any = Depends(container)) -> Any:
        p = c.auth.authenticate(deps._bearer(request))
        deps.account_id_var.set(p.user_id)
        request.state.principal = p
        if request.method in deps.WRITE_METHODS and c.settings.rate_limit.enabled:
            wait = c.account_limiter.hit(p.user_id)
            if wait is not None:
                raise errors.RateLimited(f"Write limit reached for this account; retry in {wait} s",
                                         retry_after=wait)
        return p

    deps.container = container  # type: ignore[assignment]
    deps.principal = principal  # type: ignore[assignment]
    deps.Container = Annotated[Any, Depends(container)]  # type: ignore[misc]
    deps.CurrentUser = Annotated[Principal, Depends(principal)]  # type: ignore[misc,assignment]


def _replace_get_job(endpoint: Any) -> None:
    """Swap the GET /v1/jobs/{job_id} operation on the jobs router (before the app includes it; FastAPI keeps
    included routers nested, so filtering app.router.routes afterwards would not find it)."""
    from fastapi.routing import APIRoute

    from reelforge.api.routes import jobs
    from reelforge.api.schemas.jobs import JobPublic

    before = len(jobs.router.routes)
    jobs.router.routes[:] = [r for r in jobs.router.routes
                             if not (isinstance(r, APIRoute) and r.path == "/jobs/{job_id}" and "GET" in (r.methods or ()))]
    if len(jobs.router.routes) != before - 1:
        raise RuntimeError("GET /jobs/{job_id} not found on the jobs router")
    jobs.router.add_api_route("/jobs/{job_id}", endpoint, methods=["GET"], response_model=JobPublic)


def reelforge_before_app() -> Any:
    """The code path before the fast paths, for a same-run comparison: the dependencies above and the sync
    route reading the job through the ORM (`JobsService.get` in its own Session: a third threadpool hop, and
    response validation in a fourth)."""
    from fastapi import Depends

    _before_deps()
    from reelforge.api import convert, deps

    def get_job(job_id: str, p: Any = Depends(deps.principal), c: Any = Depends(deps.container)) -> Any:
        return convert.job(c.jobs.get(p, job_id))

    _replace_get_job(get_job)
    return reelforge_app()


def reelforge_tuned_app() -> Any:
    """What-if (measured, not shipped): reelforge without the JSON access-log line (the access logger's level
    raised to WARNING), to show what that line costs per request."""
    import logging

    app = reelforge_app()
    logging.getLogger("reelforge.access").setLevel(logging.WARNING)
    return app


def bare_app() -> Any:
    """The ceiling: FastAPI answering a constant from an async route."""
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/v1/ping")
    async def ping() -> dict[str, str]:
        return {"status": "ok"}

    return app


def _profile_until_exit(path: Path) -> None:
    """cProfile every thread (the event loop and the threadpool running sync routes); dump at exit."""
    import cProfile
    import pstats
    import threading

    profiles: list[cProfile.Profile] = []

    def per_thread(*_a: Any) -> None:
        sys.setprofile(None)
        prof = cProfile.Profile(time.thread_time)  # CPU time of this thread, not time spent waiting
        profiles.append(prof)
        prof.enable()

    threading.setprofile(per_thread)
    main = cProfile.Profile(time.thread_time)
    profiles.append(main)
    main.enable()

    def dump(*_a: Any) -> None:
        for prof in profiles:
            prof.disable()
        stats = pstats.Stats(profiles[0])
        for prof in profiles[1:]:
            stats.add(prof)
        stats.dump_stats(str(path))

    # uvicorn re-raises SIGTERM after its shutdown (no atexit then): the bench asks with SIGUSR1 first.
    signal.signal(signal.SIGUSR1, dump)


# --- setup ----------------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


MIXED_VIDEOS = 40
VIDEO_DIM = 256  # the videos namespace's dimension


def prepare(data_dir: Path, database_url: str | None) -> tuple[dict[str, str], str, dict[str, str]]:
    """Migrate, create a user, one job, one asset and validated videos with embeddings; returns (server env,
    access token, {"job": id, "asset": id, "video": id})."""
    env = {**os.environ, "REELFORGE_DATA_DIR": str(data_dir), "REELFORGE_AUTH__JWT_SECRET": SECRET,
           "REELFORGE_LOG_LEVEL": "INFO", "REELFORGE_LOG_JSON": "true", "PYTHONPATH": str(ROOT)}
    if database_url:
        env["REELFORGE_DATABASE__URL"] = database_url
    # One load generator on one address is not what the read budgets are for: budgets no run reaches, so the
    # limiter stays on the request path (leased locally) without refusing.
    env["REELFORGE_RATE_LIMIT__READS_PER_WINDOW_IP"] = env["REELFORGE_RATE_LIMIT__READS_PER_WINDOW_ACCOUNT"] = str(10**9)
    from reelforge.config import Settings
    from reelforge.container import Container
    from reelforge.domain.types import Principal, Role

    settings = Settings(data_dir=data_dir, auth={"jwt_secret": SECRET}, jobs={"free_jobs_per_window": 0},
                        database={"url": database_url or ""})
    c = Container(settings)
    try:
        c.migrate()
        user = c.auth.register("bench@example.com", "bench password 123")
        token = c.auth.login("bench@example.com", "bench password 123").access_token
        principal = Principal(user_id=user.id, email=user.email, role=Role(user.role))
        job, _ = c.jobs.submit(principal, "system.noop", {"echo": "bench"})
        for i in range(20):  # a page of the job list
            c.jobs.submit(principal, "system.noop", {"echo": f"bench {i}"})
        asset = c.assets.store_output(owner_id=user.id, job_id=None, data=b"bench asset", content_type="text/plain")
        video = _seed_videos(c, principal)
    finally:
        c.close()
    return env, token, {"job": job.id, "asset": asset.id, "video": video}


def _seed_videos(c: Any, principal: Any) -> str:
    """Validated public videos in a few clusters, as the analysis pipeline leaves them (no models run)."""
    import numpy as np

    rng = np.random.default_rng(0)
    centers = [rng.normal(size=VIDEO_DIM) for _ in range(4)]
    first = ""
    for i in range(MIXED_VIDEOS):
        vec = centers[i % len(centers)] + 0.2 * rng.normal(size=VIDEO_DIM)
        vec = (vec / np.linalg.norm(vec)).astype(np.float32)
        tag = f"bench{i % len(centers)}"
        v, _ = c.app("mobs").uploads.submit(principal, filename=f"{tag}-{i}.mp4", content_type="video/mp4", size=1000,
                             caption=f"#{tag} clip {i}", visibility="public")
        analysis = {"ocr_text": [tag.upper()], "transcript": f"the {tag} challenge", "words": [],
                    "hashtags": [tag], "mentions": [], "terms": [tag, "challenge"],
                    "activity": {"coherence": 0.9, "contrast": 0.2, "black_fraction": 0.0}, "components": {},
                    "score": 0.7, "model": "bench", "notes": []}
        c.app("mobs").analysis.store_results(v.id, analysis=analysis, vector=vec, model_version="bench-space-1",
                             participation_model="local", embed_model="local", thumbnail_asset_id=None)
        c.app("mobs").analysis.apply_validation(v.id, {"status": "validated", "score": 0.9, "components": {"visual": 0.9},
                                       "reasons": ["visual 0.90"], "threshold": 0.5})
        c.app("mobs").grouping.assign(v.id)
        first = first or str(v.id)
    return first


def mixed_paths(ids: dict[str, str]) -> list[str]:
    """The mixed read workload, in the order each client cycles through it."""
    return [f"/v1/jobs/{ids['job']}", "/v1/jobs?limit=20", f"/v1/assets/{ids['asset']}", "/v1/videos/feed?limit=20",
            f"/v1/search/similar?videoId={ids['video']}&k=10"]


class Server:
    def __init__(self, factory: str, env: dict[str, str], workers: int, log: Path,
                 stack: tuple[str, ...] = (), root: Path = ROOT) -> None:
        self.port = free_port()
        self.log = log.open("ab")
        args = [sys.executable, "-m", "uvicorn", f"bench.api_latency:{factory}", "--factory", "--host", "127.0.0.1",
                "--port", str(self.port), "--log-level", "warning", "--no-access-log", *stack]
        if workers > 1:
            args += ["--workers", str(workers)]
        self.proc = subprocess.Popen(args, cwd=root, env=env, stdout=self.log, stderr=self.log)
        self.profiled = factory == "reelforge_app" and bool(env.get("BENCH_API_PROFILE_DIR"))

    def wait_ready(self, path: str, headers: dict[str, str], timeout: float = 60) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.log.flush()
                tail = Path(self.log.name).read_text(errors="replace").strip().splitlines()[-15:]
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n" + "\n".join(tail))
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}{path}", headers=headers, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("server did not start")

    def cpu_s(self) -> float:
        return sum(_proc_cpu(pid) for pid in _tree(self.proc.pid))

    def stop(self) -> None:
        if self.profiled:
            self.proc.send_signal(signal.SIGUSR1)
            time.sleep(3)
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def _tree(pid: int) -> list[int]:
    out = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return out
    for child in children:
        out.extend(_tree(int(child)))
    return out


def _proc_cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- load -----------------------------------------------------------------------------------------------------
class RawClient:
    """A minimal HTTP/1.1 keep-alive GET client on asyncio streams: one connection, one request at a time.

    Far cheaper per request than httpx, so that on a small machine the load generator is not what limits
    the bare endpoint. Answers must carry Content-Length (both servers' do).
    """

    def __init__(self, url: str, headers: dict[str, str], paths: list[str] | None = None, start: int = 0) -> None:
        from urllib.parse import urlsplit

        u = urlsplit(url)
        self.host, self.port = u.hostname or "127.0.0.1", u.port or 80
        self.requests = []
        for path in paths or [u.path + (f"?{u.query}" if u.query else "")]:
            lines = [f"GET {path} HTTP/1.1", f"Host: {self.host}:{self.port}",
                     *(f"{k}: {v}" for k, v in headers.items()), "", ""]
            self.requests.append("\r\n".join(lines).encode())
        self.next = start % len(self.requests)
        self.last = 0  # index of the path of the last request
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            sock = self.writer.get_extra_info("socket")
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        assert self.reader is not None
        self.last = self.next
        self.next = (self.next + 1) % len(self.requests)
        self.writer.write(self.requests[self.last])
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        if length:
            await self.reader.readexactly(length)
        return status

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _client_proc(url: str, headers: dict[str, str], concurrency: int, warmup_s: float, seconds: float,
                 start_at: float, out: Any, kind: str = "raw", paths: list[str] | None = None) -> None:
    if kind == "raw" or paths:
        asyncio.run(_raw_main(url, headers, concurrency, warmup_s, seconds, start_at, out, paths))
        return
    _httpx_main(url, headers, concurrency, warmup_s, seconds, start_at, out)


async def _raw_main(url: str, headers: dict[str, str], concurrency: int, warmup_s: float, seconds: float,
                    start_at: float, out: Any, paths: list[str] | None = None) -> None:
    cpu0 = os.times()
    latencies: list[float] = []
    by_path: dict[int, list[float]] = {}
    errors = 0
    clients = [RawClient(url, headers, paths, start=i) for i in range(concurrency)]
    for c in clients:  # connect before the clock starts, as httpx's pool would after warm-up
        await c.get()
    while time.time() < start_at:
        await asyncio.sleep(0.005)
    t_measure = time.perf_counter() + warmup_s
    t_end = t_measure + seconds

    async def one(c: RawClient) -> None:
        nonlocal errors
        while True:
            t0 = time.perf_counter()
            if t0 >= t_end:
                return
            status = await c.get()
            t1 = time.perf_counter()
            if status != 200:
                errors += 1
            elif t0 >= t_measure and t1 <= t_end:
                latencies.append(t1 - t0)
                by_path.setdefault(c.last, []).append(t1 - t0)

    await asyncio.gather(*(one(c) for c in clients))
    for c in clients:
        await c.close()
    cpu1 = os.times()
    out.put({"latencies": latencies, "errors": errors, "by_path": by_path,
             "cpu_s": (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)})


def _httpx_main(url: str, headers: dict[str, str], concurrency: int, warmup_s: float, seconds: float,
                start_at: float, out: Any) -> None:
    import httpx

    async def main() -> tuple[list[float], int, int]:
        latencies: list[float] = []
        errors = 0
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(headers=headers, limits=limits, timeout=30) as client:
            while time.time() < start_at:
                await asyncio.sleep(0.005)
            t_measure = time.perf_counter() + warmup_s
            t_end = t_measure + seconds

            async def one() -> None:
                nonlocal errors
                while True:
                    t0 = time.perf_counter()
                    if t0 >= t_end:
                        return
                    r = await client.get(url)
                    t1 = time.perf_counter()
                    if r.status_code != 200:
                        errors += 1
                    elif t0 >= t_measure and t1 <= t_end:
                        latencies.append(t1 - t0)

            await asyncio.gather(*(one() for _ in range(concurrency)))
        return latencies, errors, len(latencies)

    cpu0 = os.times()
    latencies, errors, _ = asyncio.run(main())
    cpu1 = os.times()
    out.put({"latencies": latencies, "errors": errors,
             "cpu_s": (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)})


def load(url: str, headers: dict[str, str], concurrency: int, procs: int, warmup_s: float,
         seconds: float, client: str = "raw", paths: list[str] | None = None) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    per = [concurrency // procs + (1 if i < concurrency % procs else 0) for i in range(procs)]
    start_at = time.time() + 2.0  # every client process is up before the first request
    ps = [ctx.Process(target=_client_proc, args=(url, headers, n, warmup_s, seconds, start_at, q, client, paths))
          for n in per]
    for p in ps:
        p.start()
    results = [q.get(timeout=warmup_s + seconds + 120) for _ in ps]
    for p in ps:
        p.join(10)
    lat = sorted(x for r in results for x in r["latencies"])
    by_path: dict[int, list[float]] = {}
    for r in results:
        for i, xs in r.get("by_path", {}).items():
            by_path.setdefault(int(i), []).extend(xs)
    return {"latencies": lat, "by_path": {i: sorted(xs) for i, xs in by_path.items()},
            "errors": sum(r["errors"] for r in results),
            "client_cpu_s": sum(r["cpu_s"] for r in results)}


def pct(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, math.ceil(q / 100 * len(sorted_values)) - 1))
    return sorted_values[k]


# uvicorn picks uvloop and httptools when they are installed (uvicorn[standard]); a "-h11" server name runs the
# same application on the pure-Python stack instead, as a default `pip install uvicorn` serves it.
PURE_PYTHON_STACK = ("--http", "h11", "--loop", "asyncio")


def run_one(name: str, factory: str, path: str | list[str], headers: dict[str, str], env: dict[str, str],
            args: argparse.Namespace, log: Path) -> dict[str, Any]:
    paths = path if isinstance(path, list) else None
    first = paths[0] if paths else str(path)
    root = ROOT
    if name == "reelforge-baseline":
        # An earlier checkout's code, on the same data: its bench module's factory, its `src` first on the path.
        root = args.baseline.resolve()
        env = {**env, "PYTHONPATH": f"{root / 'src'}{os.pathsep}{root}"}
    server = Server(factory, env, args.workers, log, PURE_PYTHON_STACK if name.endswith("-h11") else (), root)
    try:
        server.wait_ready(first, headers)
        cpu0 = server.cpu_s()
        got = load(f"http://127.0.0.1:{server.port}{first}", headers, args.concurrency, args.client_procs,
                   args.warmup, args.seconds, args.client, paths)
        # The server's CPU over warm-up + timed part + client start: per request over all answers sent.
        server_cpu = server.cpu_s() - cpu0
    finally:
        server.stop()
    lat = got["latencies"]
    n = len(lat)
    return {
        "server": name, "requests": n, "errors": got["errors"],
        "requests_per_s": round(n / args.seconds, 1),
        "latency_ms": {"p50": round(pct(lat, 50) * 1000, 2), "p90": round(pct(lat, 90) * 1000, 2),
                       "p99": round(pct(lat, 99) * 1000, 2), "max": round(lat[-1] * 1000, 2) if lat else None,
                       "mean": round(statistics.fmean(lat) * 1000, 2) if lat else None},
        "server_cpu_s": round(server_cpu, 2), "client_cpu_s": round(got["client_cpu_s"], 2),
        "client_cpu_ms_per_request": round(got["client_cpu_s"] / max(1, n) * 1000, 3),
        **({"per_route": {paths[i].split("?")[0]: {"requests": len(xs), "p50_ms": round(pct(xs, 50) * 1000, 2),
                                                   "p99_ms": round(pct(xs, 99) * 1000, 2)}
                          for i, xs in sorted(got["by_path"].items())}} if paths else {}),
    }


def median_of(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    out = dict(rounds[0])
    for key in ("requests", "requests_per_s", "server_cpu_s", "client_cpu_s", "client_cpu_ms_per_request", "errors"):
        out[key] = statistics.median(r[key] for r in rounds)
    out["latency_ms"] = {k: statistics.median(r["latency_ms"][k] for r in rounds) for k in rounds[0]["latency_ms"]}
    if "per_route" in rounds[0]:
        out["per_route"] = {route: {k: statistics.median(r["per_route"].get(route, {}).get(k, math.nan)
                                                         for r in rounds) for k in stats}
                            for route, stats in rounds[0]["per_route"].items()}
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--concurrency", type=int, default=50)
    ap.add_argument("--workers", type=int, default=1, help="uvicorn worker processes (both servers)")
    ap.add_argument("--client-procs", type=int, default=1)
    ap.add_argument("--client", choices=("raw", "httpx"), default="raw",
                    help="load generator: minimal asyncio HTTP/1.1 client, or httpx.AsyncClient")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    ap.add_argument("--servers", default="bare,reelforge,reelforge-mixed,reelforge-before,reelforge-tuned",
                    help="comma list of bare, reelforge, reelforge-mixed (the mixed read workload), "
                         "reelforge-before (the route before its first fast paths) and the what-if "
                         "reelforge-tuned (no access log); NAME-h11 serves NAME on uvicorn's pure-Python stack "
                         "(h11, asyncio loop)")
    ap.add_argument("--baseline", type=Path, default=None,
                    help="a checkout of an earlier commit (git worktree add DIR COMMIT): adds the server "
                         "reelforge-baseline, that code's job read on the same data, in the same run")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--profile", type=Path, default=None, help="cProfile the reelforge server into DIR")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="rf-bench-api-") as tmp:
        data_dir = Path(tmp) / "var"
        env, token, ids = prepare(data_dir, args.database_url)
        job_id = ids["job"]
        if args.profile:
            args.profile.mkdir(parents=True, exist_ok=True)
            env["BENCH_API_PROFILE_DIR"] = str(args.profile.resolve())
        log = Path(tmp) / "servers.log"
        auth = {"Authorization": f"Bearer {token}"}
        servers: dict[str, tuple[str, str | list[str], dict[str, str]]] = {
            "bare": ("bare_app", "/v1/ping", {}),
            "reelforge": ("reelforge_app", f"/v1/jobs/{job_id}", auth),
            "reelforge-mixed": ("reelforge_app", mixed_paths(ids), auth),
            "reelforge-before": ("reelforge_before_app", f"/v1/jobs/{job_id}", auth),
            "reelforge-tuned": ("reelforge_tuned_app", f"/v1/jobs/{job_id}", auth)}
        servers.update({f"{n}-h11": v for n, v in list(servers.items())})
        names = [n.strip() for n in args.servers.split(",") if n.strip()]
        if args.baseline is not None:
            servers["reelforge-baseline"] = ("reelforge_app", f"/v1/jobs/{job_id}", auth)
            names.append("reelforge-baseline")
        unknown = [n for n in names if n not in servers]
        if unknown or "bare" not in names or "reelforge" not in names:
            ap.error(f"--servers needs bare and reelforge, and knows {', '.join(servers)}; got {args.servers!r}")
        rounds: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
        for r in range(args.rounds):
            # Alternate the order so that drift on a shared machine hits every server alike.
            for name in (names if r % 2 == 0 else names[::-1]):
                factory, path, headers = servers[name]
                res = run_one(name, factory, path, headers, env, args, log)
                rounds[name].append(res)
                print(json.dumps({"round": r + 1, **{k: v for k, v in res.items()}}), flush=True)
        tail = log.read_text(errors="replace").strip().splitlines()[-5:] if log.exists() else []
    medians = {n: median_of(rs) for n, rs in rounds.items()}
    rf, bare = medians["reelforge"], medians["bare"]
    result: dict[str, Any] = {
        "benchmark": "api_latency",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "params": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "database": "postgresql" if args.database_url else "sqlite",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "loadavg_at_end": os.getloadavg()},
        "versions": {p: package_version(p) for p in ("fastapi", "starlette", "uvicorn", "httpx", "pydantic", "sqlalchemy")},
        **medians,
        "ratio": {n: {"throughput_vs_bare": round(m["requests_per_s"] / max(1e-9, bare["requests_per_s"]), 3),
                      "p99_vs_bare": round(m["latency_ms"]["p99"] / max(1e-9, bare["latency_ms"]["p99"]), 2)}
                  for n, m in medians.items() if n != "bare"},
        "goal": {"p99_ms_below": 100, "throughput_vs_bare_at_least": 0.5, "mixed_p99_ms_below": 50},
        "rounds": rounds,
        "server_log_tail": tail[-5:],
    }
    result["goal"]["met"] = (rf["latency_ms"]["p99"] < 100
                             and result["ratio"]["reelforge"]["throughput_vs_bare"] >= 0.5
                             and all(m["latency_ms"]["p99"] < 50 for n, m in medians.items()
                                     if n.startswith("reelforge-mixed")))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({**{n: {"rps": m["requests_per_s"], **m["latency_ms"]} for n, m in medians.items()},
                      "ratio": result["ratio"], "goal_met": result["goal"]["met"]}, indent=2))
    return result


if __name__ == "__main__":
    main()
