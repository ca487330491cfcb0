"""Video analysis throughput: `video.analyze` on 10 s 480p clips through the real worker and the local models.

Clips come from the test corpus generator (trend videos: a panned photo, on-screen text, a spoken phrase;
854x480, 25 fps, H.264 + AAC). Each clip is uploaded the way a client does it (an upload record, the bytes
at its key, then completion, which queues the job), and an in-process worker with the local models runs the
pipeline on a fresh SQLite database. One warm-up clip loads the models first and is not counted (with
--no-warmup, as in --smoke, the first counted clip pays for loading them).

Reported: videos per minute (clips / wall time from the first completion to the last video done), mean and
p50 seconds of one pipeline execution (ExecutionStarted to ExecutionSucceeded, without queueing), and the mean
time of every pipeline step (from the execution history's TaskSucceeded durations). Written to
bench/results/analyze.json. With --preload the worker loads the models when it starts (its start hook is
waited for and timed as preload_s), so the warm-up clip shows what a first video costs after that.

    python -m bench.analyze --clips 4 [--concurrency 1] [--seconds 10]
    python -m bench.analyze --smoke     # one short small clip: does it still run?
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import parse_args

RESULTS = Path(__file__).resolve().parent / "results" / "analyze.json"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=4)
    ap.add_argument("--concurrency", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--width", type=int, default=854)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--preload", action=argparse.BooleanOptionalAction, default=False,
                    help="load the models when the worker starts (settings mobs.preload_models); the time the "
                         "worker's start hook took is reported as preload_s, before any clip is submitted")
    ap.add_argument("--warmup", action=argparse.BooleanOptionalAction, default=True,
                    help="analyse one uncounted clip first, so that loading the models is not timed")
    args = parse_args(ap, argv, {"clips": 1, "seconds": 2.0, "width": 320, "height": 180, "warmup": False})

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from tests.fixtures.mob_corpus import make_corpus

    from reelforge.config import Settings
    from reelforge.container import Container
    from reelforge.domain.types import Principal, Role
    from reelforge.runtime.worker import Worker

    tmp = Path(tempfile.mkdtemp(prefix="rf-bench-analyze-"))
    t0 = time.perf_counter()
    extra = 1 if args.warmup else 0
    corpus = make_corpus(tmp / "clips", trends=max(1, min(5, args.clips + extra)), per_trend=1, noise=0,
                         seconds=args.seconds, size=(args.width, args.height))
    clips = corpus[: args.clips + extra]
    gen_s = time.perf_counter() - t0
    settings = Settings(data_dir=tmp / "var", log_json=False, credits={"enabled": False},
                        mobs={"preload_models": bool(args.preload)},
                        jobs={"poll_interval_s": 0.1, "heartbeat_s": 1.0, "lease_s": 120})
    c = Container(settings)
    c.migrate()
    user = c.auth.register("bench@example.com", "bench password 1", role=Role.user)
    p = Principal(user.id, user.email, Role.user)

    def submit(path: Path, caption: str) -> str:
        data = path.read_bytes()
        v, ticket = c.app("mobs").uploads.submit(p, filename=path.name, content_type="video/mp4", size=len(data), caption=caption)
        c.objects.put_bytes(ticket.upload.key, data, "video/mp4")  # what the client's signed PUT does
        c.app("mobs").uploads.complete(p, v.id)
        return str(v.id)

    def wait(ids: list[str], timeout: float = 3600) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = [c.app("mobs").reads.get(p, i).status for i in ids]
            if all(s in ("validated", "rejected", "failed") for s in states):
                return
            time.sleep(0.25)
        raise TimeoutError("videos not analysed in time")

    w = Worker(c, concurrency=args.concurrency)
    t_pre = time.perf_counter()
    w.start()
    for hook in w.start_hooks:
        hook.join()
    preload_s = round(time.perf_counter() - t_pre, 3) if args.preload else None
    try:
        warm_s = None
        if args.warmup:
            t_warm = time.perf_counter()
            warm = submit(clips[0].path, clips[0].caption)
            wait([warm])
            warm_s = round(time.perf_counter() - t_warm, 3)
        t_start = time.perf_counter()
        ids = [submit(v.path, v.caption) for v in clips[extra:]]
        wait(ids)
        wall = time.perf_counter() - t_start
    finally:
        w.stop(grace_s=10)

    steps: dict[str, list[float]] = {}
    per_clip: list[float] = []
    statuses: dict[str, int] = {}
    for vid in ids:
        v = c.app("mobs").reads.get(p, vid)
        statuses[v.status] = statuses.get(v.status, 0) + 1
        _, events = c.app("mobs").reads.history(p, vid)
        for e in events:
            if e.type == "TaskSucceeded" and e.path and "duration_s" in (e.details or {}):
                steps.setdefault(e.path, []).append(float(e.details["duration_s"]))
            if e.type == "ExecutionSucceeded" and "duration_s" in (e.details or {}):
                per_clip.append(float(e.details["duration_s"]))  # the pipeline's own run, no queueing
    c.close()
    result = {
        "benchmark": "video.analyze",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "clips": len(ids), "clip_seconds": args.seconds, "size": [args.width, args.height],
        "concurrency": args.concurrency, "warmup": args.warmup, "preload": args.preload, "preload_s": preload_s,
        "statuses": statuses,
        "videos_per_minute": round(60.0 * len(ids) / wall, 3) if wall > 0 else None,
        "wall_s": round(wall, 3), "warmup_clip_s": warm_s, "generate_clips_s": round(gen_s, 3),
        "execution_seconds": {"mean": round(statistics.mean(per_clip), 3) if per_clip else None,
                        "p50": round(statistics.median(per_clip), 3) if per_clip else None},
        "steps_mean_s": {k: round(statistics.mean(v), 3) for k, v in sorted(steps.items())},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
