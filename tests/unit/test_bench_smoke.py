"""The queue benchmark runs end to end with a handful of jobs (real workers, real queues); numbers not checked."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.bench

CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _pg_url() -> str | None:
    import psycopg

    url = os.environ.get("REELFORGE_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    try:
        with psycopg.connect(url, connect_timeout=3):
            return url
    except Exception:
        return None


def _redis_url() -> str | None:
    url = os.environ.get("BENCH_CELERY_REDIS_URL", "redis://127.0.0.1:6379/9")
    try:
        import celery  # noqa: F401
        import redis

        redis.Redis.from_url(url, socket_connect_timeout=3).ping()
        return url
    except Exception:
        return None


def test_queue_throughput_smoke(tmp_path: Path) -> None:
    from bench import queue_throughput

    pg, rd = _pg_url(), _redis_url()
    if CI and (pg is None or rd is None):
        pytest.fail(f"the bench needs PostgreSQL and Redis under CI (postgres={pg}, redis={rd})")
    systems = ["sqlite"] + (["postgres"] if pg else []) + (["celery"] if rd else [])
    out = tmp_path / "queue_throughput.json"
    args = ["--jobs", "6", "--concurrency", "1", "--workers", "1", "--only", ",".join(systems),
            "--timeout", "120", "--out", str(out)]
    if pg:
        args += ["--pg-url", pg]
    if rd:
        args += ["--redis-url", rd]
    report = queue_throughput.main(args)

    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    assert report["params"]["jobs"] == 6 and report["params"]["systems"] == systems
    assert report["machine"]["cpu_count"] >= 1 and report["machine"]["python"]
    for name in (queue_throughput.LABELS[s] for s in systems):
        r = report["results"][name]
        assert r["complete"], (name, r)
        assert r["completed"] == 6 and r["jobs_per_s"] > 0 and r["submit_per_s"] > 0
        lat = r["latency_ms"]
        assert 0 < lat["p50"] <= lat["p99"] <= lat["max"]
    if "postgres" in systems:
        r = report["results"]["reelforge-postgres"]
        assert r["statuses"] == {"succeeded": 6}
    if "postgres" in systems and "celery" in systems:
        assert report["ratios"]["postgres_over_celery_jobs_per_s"] > 0
        assert isinstance(report["goal"]["met"], bool)
        assert report["machine"]["postgres"]["server_version"] and report["machine"]["redis"]["server_version"]
    if pg:
        # The bench drops the database it made.
        import psycopg

        name = report["results"]["reelforge-postgres"]["database"]
        assert name.startswith("rf_bench_")
        with psycopg.connect(pg) as conn:
            assert conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None


def test_percentile_nearest_rank() -> None:
    from bench.queue_throughput import percentile

    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([3.0], 99) == 3.0
