"""Rotoscoping engines (`video.segment`): accuracy, interactive latency, propagation speed, memory over length.

On the synthetic set of tests/apps/roto/synthetic.py (textured sprites over panning photographs: one object
moving and growing, a star scaling and turning, two objects crossing, one leaving and coming back, one passing
behind a static bar), whose ground truth is exact, for every engine that can run here (the offline engine; the
SAM 2.1 models where their checkpoints are):

(a) accuracy, DAVIS measures: J (region IoU) and F (boundary F-measure within 0.8 % of the diagonal), mean
    over the frames after the first and over objects:
    - "propagation": the tracker anchored on the first frame's exact masks (DAVIS semi-supervised protocol);
    - "interactive": each object's mask on the first frame from a click at its deepest point, and from that
      click plus its bounding box;
    - "end to end": the tracker anchored on the box + click masks instead of the exact ones.
    Goal for the offline engine: mean J >= 0.85 (propagation).
(b) latency of one prompt -> mask at 854x480 with the frame's features cached (prepare() done before), over
    several frames, objects and prompt kinds (click, box, click + negative click, click on a prior mask).
    Goal: p50 < 250 ms, p95 < 500 ms.
(c) propagation speed: frames per second of tracker.step at 854x480 over the set (frames generated before the
    clock starts). Goal: >= 15 frames/s.
(d) memory: the RSS high-water mark (VmHWM, reset after a warm-up) of a fresh process propagating a 10 s and a
    120 s clip (25 frames/s, 854x480, frames generated on the fly, nothing kept). Goal: within 10 %.

    python -m bench.roto                  # full run, writes bench/results/roto.json
    python -m bench.roto --smoke          # tiny inputs: does it still run?
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import cpu_model, package_version, parse_args

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "roto.json"
GOALS = {"offline_mean_j": 0.85, "latency_p50_ms": 250.0, "latency_p95_ms": 500.0, "fps": 15.0,
         "memory_spread": 0.10}


def _engines(names: list[str] | None, sam2_dir: str) -> tuple[list[Any], dict[str, str]]:
    from reelforge.apps.roto.engines import EngineConfig, OfflineSegmenter, RotoEngineSettings, Sam2Segmenter
    from reelforge.apps.roto.engines.sam2 import SAM2_MODELS

    config = EngineConfig(models_dir=ROOT / "var" / "models", engines=RotoEngineSettings(sam2_dir=sam2_dir))
    candidates = [OfflineSegmenter(config)] + [Sam2Segmenter(m, config) for m in SAM2_MODELS.values()]
    engines, skipped = [], {}
    for engine in candidates:
        if names and engine.name not in names:
            continue
        availability = engine.availability()
        if availability.available:
            engines.append(engine)
        else:
            skipped[engine.name] = availability.reason or "unavailable"
    return engines, skipped


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, int(np.ceil(q / 100 * len(ordered))) - 1))
    return ordered[k]


def _box(mask: np.ndarray) -> tuple[float, float, float, float]:
    ys, xs = np.nonzero(mask)
    return float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)


def part_accuracy(engine: Any, clips: list[Any]) -> dict[str, Any]:
    from tests.apps.roto.synthetic import boundary_f, click_inside, iou

    from reelforge.apps.roto.ports import ObjectPrompt, Point

    per_clip: dict[str, Any] = {}
    steps = 0
    step_s = 0.0
    for clip in clips:
        frames = [clip.frame(i) for i in range(clip.frames)]
        first, truth0 = frames[0]
        features = engine.prepare(first)
        prompted: dict[int, np.ndarray] = {}
        inter: dict[str, list[float]] = {"click_j": [], "click_f": [], "box_click_j": [], "box_click_f": []}
        for oid, gt in truth0.items():
            x, y = click_inside(gt)  # type: ignore[misc]
            click = engine.segment(first, features, ObjectPrompt(oid, points=(Point(x, y, 1),)))
            both = engine.segment(first, features, ObjectPrompt(oid, points=(Point(x, y, 1),), box=_box(gt)))
            inter["click_j"].append(iou(click, gt))
            inter["click_f"].append(boundary_f(click, gt))
            inter["box_click_j"].append(iou(both, gt))
            inter["box_click_f"].append(boundary_f(both, gt))
            prompted[oid] = both
        result: dict[str, Any] = {k: round(float(np.mean(v)), 4) for k, v in inter.items()}
        for protocol, anchor in (("propagation", truth0), ("end_to_end", prompted)):
            tracker = engine.tracker(window=4)
            tracker.anchor(0, first, anchor)
            js, fs = [], []
            for i in range(1, clip.frames):
                frame, truth = frames[i]
                started = time.perf_counter()
                out = tracker.step(i, frame)
                if protocol == "propagation":
                    step_s += time.perf_counter() - started
                    steps += 1
                for oid, gt in truth.items():
                    js.append(iou(out[oid], gt))
                    fs.append(boundary_f(out[oid], gt))
            j, f = float(np.mean(js)), float(np.mean(fs))
            result[protocol] = {"j": round(j, 4), "f": round(f, 4), "jf": round((j + f) / 2, 4),
                                "j_min": round(float(np.min(js)), 4)}
        per_clip[clip.name] = result
        print(f"  {engine.name} {clip.name}: propagation J {result['propagation']['j']:.3f} "
              f"F {result['propagation']['f']:.3f}; box+click J {result['box_click_j']:.3f}; end to end J "
              f"{result['end_to_end']['j']:.3f}", flush=True)

    def mean(protocol: str, key: str) -> float:
        return round(float(np.mean([c[protocol][key] for c in per_clip.values()])), 4)

    summary = {
        "propagation": {"j": mean("propagation", "j"), "f": mean("propagation", "f"),
                        "jf": mean("propagation", "jf")},
        "end_to_end": {"j": mean("end_to_end", "j"), "f": mean("end_to_end", "f"), "jf": mean("end_to_end", "jf")},
        "interactive": {k: round(float(np.mean([c[k] for c in per_clip.values()])), 4)
                        for k in ("click_j", "click_f", "box_click_j", "box_click_f")},
        "propagation_fps": round(steps / step_s, 2) if step_s else None,
    }
    return {"clips": per_clip, "mean": summary}


def part_latency(engine: Any, clips: list[Any], frames_per_clip: int) -> dict[str, Any]:
    from tests.apps.roto.synthetic import click_inside

    from reelforge.apps.roto.ports import ObjectPrompt, Point

    times: dict[str, list[float]] = {"click": [], "box": [], "click_negative": [], "prior_click": []}
    prepare: list[float] = []
    for clip in clips:
        for i in np.linspace(0, clip.frames - 1, frames_per_clip).astype(int):
            frame, truth = clip.frame(int(i))
            started = time.perf_counter()
            features = engine.prepare(frame)
            prepare.append(time.perf_counter() - started)
            for oid, gt in truth.items():
                if not gt.any():
                    continue
                x, y = click_inside(gt)  # type: ignore[misc]
                _ys, xs = np.nonzero(gt)
                prior = gt.copy()
                prior[:, int(np.percentile(xs, 75)):] = False
                outside = (float(min(frame.shape[1] - 1, xs.max() + 10)), float(y))
                prompts = {
                    "click": (ObjectPrompt(oid, points=(Point(x, y, 1),)), None),
                    "box": (ObjectPrompt(oid, box=_box(gt)), None),
                    "click_negative": (ObjectPrompt(oid, points=(Point(x, y, 1), Point(*outside, 0))), None),
                    "prior_click": (ObjectPrompt(oid, points=(Point(float(np.percentile(xs, 85)), y, 1),)), prior),
                }
                for kind, (prompt, prior_mask) in prompts.items():
                    started = time.perf_counter()
                    engine.segment(frame, features, prompt, prior_mask)
                    times[kind].append(time.perf_counter() - started)
    every = [t for v in times.values() for t in v]
    ms = lambda v: round(v * 1000, 1)  # noqa: E731
    return {
        "prompts": len(every),
        "p50_ms": ms(percentile(every, 50)), "p95_ms": ms(percentile(every, 95)), "max_ms": ms(max(every)),
        "by_kind": {k: {"p50_ms": ms(percentile(v, 50)), "p95_ms": ms(percentile(v, 95))} for k, v in times.items()},
        "prepare_ms": {"p50": ms(percentile(prepare, 50)), "p95": ms(percentile(prepare, 95))},
    }


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def memory_child(engine_name: str, seconds: float, size: tuple[int, int], fps: int, sam2_dir: str) -> None:
    """In a fresh process: propagate a generated clip of `seconds` through one tracker, frames made on the fly;
    print the RSS high-water mark from after a warm-up (VmHWM reset through /proc/self/clear_refs)."""
    from tests.apps.roto.synthetic import long_clip

    engines, _ = _engines([engine_name], sam2_dir)
    engine = engines[0]
    frames = max(2, round(seconds * fps))
    clip = long_clip(size, frames, seed=0)
    warm = long_clip(size, 10, seed=1)
    tracker = engine.tracker(window=8)
    frame, masks = warm.frame(0)
    tracker.anchor(0, frame, masks)
    for i in range(1, 10):
        tracker.step(i, warm.frame(i)[0])
    del tracker
    Path("/proc/self/clear_refs").write_text("5")
    before = _status_kb("VmRSS")
    started = time.perf_counter()
    tracker = engine.tracker(window=8)
    frame, masks = clip.frame(0)
    tracker.anchor(0, frame, masks)
    for i in range(1, frames):
        tracker.step(i, clip.frame(i)[0])
    wall = time.perf_counter() - started
    peak = _status_kb("VmHWM")
    print(json.dumps({"engine": engine_name, "seconds": seconds, "frames": frames, "wall_s": round(wall, 2),
                      "peak_rss_mb": round(peak / 1024, 1), "rss_before_mb": round(before / 1024, 1),
                      "held_frames": getattr(tracker, "held_frames", None)}))


def part_memory(engine_name: str, lengths: list[float], size: tuple[int, int], fps: int,
                sam2_dir: str) -> dict[str, Any]:
    runs = []
    for seconds in lengths:
        cmd = [sys.executable, "-m", "bench.roto", "--memory-child", engine_name, "--child-seconds", str(seconds),
               "--size", f"{size[0]}x{size[1]}", "--fps", str(fps), "--sam2-dir", sam2_dir]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, check=False, cwd=ROOT)
        if proc.returncode != 0:
            raise RuntimeError(f"memory child failed: {proc.stderr[-2000:]}")
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(f"  {engine_name} {seconds:g} s ({runs[-1]['frames']} frames): peak RSS {runs[-1]['peak_rss_mb']} MB "
              f"in {runs[-1]['wall_s']} s", flush=True)
    peaks = [r["peak_rss_mb"] for r in runs]
    spread = (max(peaks) - min(peaks)) / min(peaks)
    return {"engine": engine_name, "size": f"{size[0]}x{size[1]}", "fps": fps, "runs": runs,
            "spread": round(spread, 4), "goal": GOALS["memory_spread"], "goal_met": spread <= GOALS["memory_spread"]}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="854x480", help="frame size (w x h)")
    ap.add_argument("--frames", type=int, default=48, help="frames per clip of the synthetic set")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--latency-frames", type=int, default=4, help="frames per clip timed for (b)")
    ap.add_argument("--memory", default="10,120", help="clip lengths for (d), seconds")
    ap.add_argument("--fps", type=int, default=25, help="frame rate of the memory clips")
    ap.add_argument("--engines", default="", help="comma list of engine names (default: every available one)")
    ap.add_argument("--sam2-dir", default=os.environ.get("REELFORGE_ROTO__ENGINES__SAM2_DIR", ""),
                    help="folder of SAM 2.1 checkpoints")
    ap.add_argument("--skip", default="", help="comma list of parts to skip: accuracy,latency,memory")
    ap.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--child-seconds", type=float, default=0.0, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = parse_args(ap, argv, {"size": "160x96", "frames": 6, "latency_frames": 1, "memory": "0.4,0.8",
                                 "fps": 10})
    w, h = (int(v) for v in args.size.lower().split("x"))
    if args.memory_child:
        memory_child(args.memory_child, args.child_seconds, (w, h), args.fps, args.sam2_dir)
        return {}
    from tests.apps.roto.synthetic import standard_set

    skip = set(filter(None, args.skip.split(",")))
    engines, skipped = _engines([n for n in args.engines.split(",") if n] or None, args.sam2_dir)
    result: dict[str, Any] = {
        "benchmark": "roto", "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "cpu": cpu_model(), "python": platform.python_version(),
                    "opencv": package_version("opencv-python-headless"),
                    "onnxruntime": package_version("onnxruntime"), "torch": package_version("torch"),
                    "sam2": package_version("sam2"), "load_avg_start": [round(x, 2) for x in os.getloadavg()]},
        "params": {"size": f"{w}x{h}", "frames": args.frames, "seed": args.seed, "smoke": bool(args.smoke)},
        "goals": GOALS, "engines": {}, "skipped": skipped,
    }
    clips = standard_set((w, h), args.frames, seed=args.seed)
    for engine in engines:
        engine.setup()
        entry: dict[str, Any] = {"details": engine.details()}
        if "accuracy" not in skip:
            print(f"(a) accuracy and (c) propagation speed: {engine.name}", flush=True)
            entry["accuracy"] = part_accuracy(engine, clips)
        if "latency" not in skip:
            print(f"(b) prompt latency: {engine.name}", flush=True)
            entry["latency"] = part_latency(engine, clips, args.latency_frames)
            lat = entry["latency"]
            print(f"  p50 {lat['p50_ms']} ms, p95 {lat['p95_ms']} ms over {lat['prompts']} prompts; prepare p50 "
                  f"{lat['prepare_ms']['p50']} ms", flush=True)
        if "memory" not in skip and Path("/proc/self/clear_refs").exists():
            print(f"(d) memory over clip length: {engine.name}", flush=True)
            entry["memory"] = part_memory(engine.name, [float(x) for x in args.memory.split(",")], (w, h), args.fps,
                                          args.sam2_dir)
        goals: dict[str, Any] = {}
        if "accuracy" in entry:
            mean = entry["accuracy"]["mean"]
            goals["fps"] = {"measured": mean["propagation_fps"], "met": (mean["propagation_fps"] or 0) >= GOALS["fps"]}
            if engine.name == "roto-offline":
                goals["mean_j"] = {"measured": mean["propagation"]["j"],
                                   "met": mean["propagation"]["j"] >= GOALS["offline_mean_j"]}
        if "latency" in entry:
            lat = entry["latency"]
            goals["latency"] = {"p50_ms": lat["p50_ms"], "p95_ms": lat["p95_ms"],
                                "met": lat["p50_ms"] < GOALS["latency_p50_ms"] and lat["p95_ms"] < GOALS["latency_p95_ms"]}
        if "memory" in entry:
            goals["memory"] = {"spread": entry["memory"]["spread"], "met": entry["memory"]["goal_met"]}
        entry["goals"] = goals
        result["engines"][engine.name] = entry
    result["machine"]["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    for name, reason in skipped.items():
        print(f"not run: {name}: {reason}")
    return result


if __name__ == "__main__":
    main()
