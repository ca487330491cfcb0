"""Video upscaling: pipeline overhead against bare FFmpeg, model speed at 480p, and flat memory over length.

Three parts, side by side in one run (a script; the test suite runs only its --smoke mode):

(a) overhead. The same generated clip (testsrc2 + a sine tone, H.264 + AAC) is upscaled x2 with Lanczos
    two ways, alternately, ``--rounds`` times: bare ``ffmpeg -vf scale=iw*2:ih*2:flags=lanczos`` (libx264, the
    same CRF and preset, audio copied), and a full ``video.upscale`` job with the ``lanczos`` model through the
    worker's runner (probe, chunks at keyframes through the source cache, frames through Pillow, each chunk
    encoded and stored as an asset, concat, remux of every stream, multipart-capable store, cleanup), from
    submit to succeeded. Goal: the job reaches at least 80 % of bare FFmpeg's frames per second.
(b) models. Frames per second of each Real-ESRGAN model on one 854x480 frame (a photo from scikit-image),
    through the model registry as the pipeline calls it, on the CPU, and on a GPU when torch sees one. The
    x4plus network is too slow on a busy CPU for a whole 480p frame within minutes; it runs on a crop of 1/16
    of the area and its 480p figure is extrapolated by pixel count (marked so in the results).
(c) memory. The RSS high-water mark (VmHWM, reset before the job) of a fresh process that runs the worker on
    a 10 s and on a 60 s clip (same size and settings): chunking should keep it flat. Goal: within 10 % of
    each other.

    python -m bench.upscale --seconds 10 --size 320x180 --rounds 2 --memory 10,60
    python -m bench.upscale --smoke     # tiny clips and frames, one round: does it still run?

Writes bench/results/upscale.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import parse_args

RESULTS = Path(__file__).resolve().parent / "results" / "upscale.json"
CRF = 18
PRESET = "veryfast"


def make_clip(path: Path, seconds: float, size: tuple[int, int], fps: int = 24, gop: int = 48) -> Path:
    from reelforge.adapters.media.ffmpeg import run_ffmpeg

    w, h = size
    run_ffmpeg(["-f", "lavfi", "-i", f"testsrc2=size={w}x{h}:rate={fps}:duration={seconds}",
                "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=44100:duration={seconds}",
                "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-g", str(gop),
                "-keyint_min", str(gop), "-c:a", "aac", "-b:a", "64k", "-t", str(seconds), str(path)])
    return path


def frame_count(path: Path) -> int:
    from reelforge.adapters.media.probe import probe

    return int(probe(path).frames)


class JobRunner:
    """A container on a fresh SQLite file and local store, with an in-process worker, for timed jobs."""

    def __init__(self, root: Path, *, chunk_seconds: float, concurrency: int) -> None:
        from reelforge.adapters.db.migrate import upgrade
        from reelforge.config import Settings
        from reelforge.container import Container
        from reelforge.domain.types import Principal, Role
        from reelforge.runtime.worker import Worker

        db = f"sqlite:///{root / 'bench.db'}"
        upgrade(db)
        settings = Settings(data_dir=root / "var", database={"url": db}, log_json=False, log_level="WARNING",
                            jobs={"poll_interval_s": 0.05, "heartbeat_s": 1.0},
                            credits={"enabled": False},
                            upscale={"chunk_seconds": chunk_seconds, "max_chunk_concurrency": concurrency,
                                   "batch_size": 4, "max_duration_s": 3600})
        self.c = Container(settings)
        u = self.c.auth.register("bench@example.com", "correct horse battery")
        self.principal = Principal(user_id=u.id, email=u.email, role=Role.user)
        self.worker = Worker(self.c, concurrency=1, maintenance=False)
        self.worker.start()

    def add_source(self, path: Path) -> str:
        from reelforge.domain.keys import new_key

        key = new_key(f"{self.principal.user_id}/uploads", ".mp4")
        info = self.c.objects.put_file(key, path, "video/mp4")
        with self.c.store.tx() as tx:
            a = tx.assets.add_asset(owner_id=self.principal.user_id, key=key, content_type="video/mp4", size=info.size,
                                    sha256=info.sha256, lifecycle="hot", filename=path.name, meta={})
        return str(a.id)

    def run(self, asset_id: str, model: str = "lanczos", scale: int = 2) -> tuple[float, dict[str, Any]]:
        t0 = time.perf_counter()
        job, _ = self.c.jobs.submit(self.principal, "video.upscale", {
            "asset_id": asset_id, "model": model, "scale": scale,
            "output": {"container": "mp4", "video_codec": "h264", "crf": CRF, "preset": PRESET}})
        while True:
            j = self.c.jobs.get(self.principal, job.id)
            if j.status in ("succeeded", "failed", "dead", "cancelled"):
                break
            time.sleep(0.02)
        wall = time.perf_counter() - t0
        if j.status != "succeeded":
            raise RuntimeError(f"job {j.id} {j.status}: {j.error_code} {j.error_message}")
        return wall, dict(j.outputs or {})

    def close(self) -> None:
        self.worker.stop(grace_s=2)
        self.c.close()


def bare_ffmpeg(src: Path, out: Path) -> float:
    from reelforge.adapters.media.ffmpeg import run_ffmpeg

    t0 = time.perf_counter()
    run_ffmpeg(["-i", str(src), "-vf", "scale=iw*2:ih*2:flags=lanczos", "-c:v", "libx264", "-crf", str(CRF),
                "-preset", PRESET, "-pix_fmt", "yuv420p", "-c:a", "copy", str(out)])
    return time.perf_counter() - t0


def part_overhead(root: Path, seconds: float, size: tuple[int, int], rounds: int) -> dict[str, Any]:
    src = make_clip(root / "clip.mp4", seconds, size)
    frames = frame_count(src)
    runner = JobRunner(root / "job", chunk_seconds=max(1.0, seconds / 4), concurrency=2)
    try:
        asset = runner.add_source(src)
        warm = runner.add_source(make_clip(root / "warm.mp4", 1.0, size))
        runner.run(warm)  # imports, first chunk code paths
        bare_ffmpeg(src, root / "warm-bare.mp4")
        job_fps, bare_fps, details = [], [], []
        for r in range(rounds):
            t_bare = bare_ffmpeg(src, root / f"bare-{r}.mp4")
            bare_fps.append(frames / t_bare)
            t_job, out = runner.run(asset)
            job_fps.append(frames / t_job)
            details.append({"job_wall_s": round(t_job, 3), "bare_wall_s": round(t_bare, 3),
                            "chunk_upscale_s": out.get("upscale_s"), "chunks": out.get("chunk_count"),
                            "frames_out": out.get("frames")})
    finally:
        runner.close()
    jm, bm = statistics.median(job_fps), statistics.median(bare_fps)
    # Rounds alternate job and bare run, so each round's pair saw about the same machine load.
    paired = [j / b for j, b in zip(job_fps, bare_fps, strict=True)]
    return {"clip": {"seconds": seconds, "size": f"{size[0]}x{size[1]}", "fps": 24, "frames": frames,
                     "output": f"{size[0] * 2}x{size[1] * 2}", "crf": CRF, "preset": PRESET},
            "rounds": details, "job_fps": round(jm, 2), "bare_ffmpeg_fps": round(bm, 2),
            "ratio": round(jm / bm, 3), "paired_ratios": [round(x, 3) for x in paired],
            "paired_ratio_median": round(statistics.median(paired), 3), "goal": 0.8, "goal_met": jm / bm >= 0.8}


def _photo(w: int, h: int) -> Any:
    import numpy as np
    from PIL import Image
    from skimage import data

    return np.asarray(Image.fromarray(data.astronaut()).resize((w, h), Image.Resampling.BICUBIC))


def part_models(root: Path, device: str, size: tuple[int, int] = (854, 480)) -> list[dict[str, Any]]:
    from reelforge.adapters.models.registry import build_default_registry
    from reelforge.apps.upscale.ports import UpscaleRequest
    from reelforge.config import Settings

    settings = Settings(data_dir=root / "models-var", models={"device": device})
    reg = build_default_registry(settings)
    frame = _photo(*size)
    out: list[dict[str, Any]] = []
    plan = [("realesr-animevideov3", 2, 1.0), ("realesr-animevideov3", 4, 1.0), ("realesrgan-x4plus", 4, 1 / 16),
            ("lanczos", 2, 1.0), ("bicubic", 2, 1.0)]
    for name, scale, area in plan:
        if not reg.has("image.upscale", name):
            out.append({"model": name, "scale": scale, "device": device, "skipped": "not registered"})
            continue
        info = reg.info("image.upscale", name)
        if not info.available:
            out.append({"model": name, "scale": scale, "device": device, "skipped": info.reason})
            continue
        img = frame if area == 1.0 else frame[:size[1] // 4, :size[0] // 4].copy()
        t0 = time.perf_counter()
        reg.ensure_ready("image.upscale", name)
        load_s = time.perf_counter() - t0
        reg.run("image.upscale", name, UpscaleRequest(images=[img[:64, :64].copy()], scale=scale))  # warm-up
        t0 = time.perf_counter()
        res = reg.run("image.upscale", name, UpscaleRequest(images=[img], scale=scale))
        secs = time.perf_counter() - t0
        per_480p = secs / (img.shape[0] * img.shape[1]) * (854 * 480)
        out.append({"model": name, "scale": scale, "device": device, "backend": getattr(res, "backend", None),
                    "measured_on": f"{img.shape[1]}x{img.shape[0]}", "seconds": round(secs, 3),
                    "fps_480p": round(1 / per_480p, 4), "extrapolated": img.shape[:2] != (480, 854), "load_s": round(load_s, 2)})
        print(f"  {name} x{scale} ({device}): {out[-1]['fps_480p']} fps at 480p"
              f"{' (extrapolated)' if out[-1]['extrapolated'] else ''}", flush=True)
    return out


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def memory_child(seconds: float, size: tuple[int, int]) -> None:
    """Runs in a fresh process: one job on a clip of `seconds`, then prints this process's RSS high-water.

    The high-water mark is VmHWM, reset just before the job (``/proc/self/clear_refs``), so it is the job's
    peak and not that of setup (the password hash at sign-up, migrations) or of the parent process:
    ``ru_maxrss`` would not do, Linux keeps it across fork and exec.
    """
    with tempfile.TemporaryDirectory(prefix="rf-bench-mem-") as tmp:
        root = Path(tmp)
        src = make_clip(root / "clip.mp4", seconds, size)
        runner = JobRunner(root, chunk_seconds=5.0, concurrency=2)
        try:
            asset = runner.add_source(src)
            warm = runner.add_source(make_clip(root / "warm.mp4", 1.0, size))
            runner.run(warm)  # imports and first-use allocations happen before the measured job
            Path("/proc/self/clear_refs").write_text("5")
            before = _status_kb("VmRSS")
            wall, out = runner.run(asset)
            peak = _status_kb("VmHWM")
        finally:
            runner.close()
        print(json.dumps({"seconds": seconds, "frames": out.get("frames"), "chunks": out.get("chunk_count"),
                          "wall_s": round(wall, 2), "peak_rss_mb": round(peak / 1024, 1),
                          "rss_before_job_mb": round(before / 1024, 1),
                          "job_growth_mb": round((peak - before) / 1024, 1),
                          "ru_maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}))


def part_memory(lengths: list[float], size: tuple[int, int]) -> dict[str, Any]:
    runs = []
    for s in lengths:
        cmd = [sys.executable, "-m", "bench.upscale", "--memory-child", str(s), "--size", f"{size[0]}x{size[1]}"]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, check=False,
                              cwd=Path(__file__).resolve().parents[1])
        if proc.returncode != 0:
            raise RuntimeError(f"memory child failed: {proc.stderr[-2000:]}")
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(f"  {s:g} s clip: peak RSS {runs[-1]['peak_rss_mb']} MB ({runs[-1]['rss_before_job_mb']} MB before "
              "the job)", flush=True)
    peaks = [r["peak_rss_mb"] for r in runs]
    spread = (max(peaks) - min(peaks)) / min(peaks)
    return {"size": f"{size[0]}x{size[1]}", "model": "lanczos", "scale": 2, "chunk_seconds": 5.0, "runs": runs,
            "spread": round(spread, 4), "goal": 0.10, "goal_met": spread <= 0.10}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=40.0, help="overhead clip length")
    ap.add_argument("--size", default="640x360", help="source size for (a) and (c)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--memory", default="10,60", help="clip lengths for (c), seconds")
    ap.add_argument("--frame", default="854x480", help="frame size for (b); its speed is scaled to 480p")
    ap.add_argument("--skip", default="", help="comma list of parts to skip: overhead,models,memory")
    ap.add_argument("--memory-child", type=float, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--output", type=Path, default=RESULTS)
    args = parse_args(ap, argv, {"seconds": 2.0, "size": "96x64", "rounds": 1, "memory": "1", "frame": "96x64"},
                      out="output")
    w, h = (int(x) for x in args.size.lower().split("x"))
    if args.memory_child is not None:
        memory_child(args.memory_child, (w, h))
        return {}
    fw, fh = (int(x) for x in args.frame.lower().split("x"))
    skip = set(filter(None, args.skip.split(",")))
    result: dict[str, Any] = {
        "benchmark": "upscale", "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_avg_start": [round(x, 2) for x in os.getloadavg()]},
    }
    with tempfile.TemporaryDirectory(prefix="rf-bench-upscale-") as tmp:
        root = Path(tmp)
        if "overhead" not in skip:
            print("(a) pipeline overhead: lanczos job vs bare ffmpeg", flush=True)
            result["overhead"] = part_overhead(root, args.seconds, (w, h), args.rounds)
            o = result["overhead"]
            print(f"  job {o['job_fps']} fps, bare ffmpeg {o['bare_ffmpeg_fps']} fps: ratio {o['ratio']} (paired rounds: {o['paired_ratios']})", flush=True)
        if "models" not in skip:
            print("(b) model speed at 480p", flush=True)
            import torch

            gpu = bool(torch.cuda.is_available())
            result["models"] = {"gpu_present": gpu, "frame": f"{fw}x{fh}", "runs": part_models(root, "cpu", (fw, fh))}
            if gpu:
                result["models"]["runs"] += part_models(root, "cuda", (fw, fh))
        if "memory" not in skip:
            print("(c) peak memory over clip length", flush=True)
            result["memory"] = part_memory([float(x) for x in args.memory.split(",")], (w, h))
    result["machine"]["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.output}")
    return result


if __name__ == "__main__":
    main()
