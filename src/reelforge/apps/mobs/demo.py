"""`reelforge demo` for video understanding: a generated clip uploaded and analysed."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx

from reelforge.cli.demo import finish_job, put_signed


def demo_clip(path: Path, seconds: float = 3.0, size: tuple[int, int] = (320, 240), fps: int = 12) -> Path:
    """A short clip the analysis can read: a slow pan over a sample photo with large on-screen text and a tone."""
    import av
    import numpy as np
    from PIL import Image, ImageDraw, ImageFont
    from skimage import data as samples

    w, h = size
    photo = Image.fromarray(samples.coffee()).resize((w * 2, h * 2))
    try:
        font: Any = ImageFont.truetype("DejaVuSans-Bold.ttf", 30)
    except OSError:
        font = ImageFont.load_default()
    frames = int(seconds * fps)
    rate = 22050
    with av.open(str(path), "w") as out:
        vs: Any = out.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        aus: Any = out.add_stream("aac", rate=rate)
        aus.layout = "mono"
        for i in range(frames):
            x = int((w - 1) * i / max(1, frames - 1))
            img = photo.crop((x, h // 2, x + w, h // 2 + h))
            d = ImageDraw.Draw(img)
            d.rectangle((10, h - 70, w - 10, h - 20), fill=(255, 255, 255))
            d.text((20, h - 65), "MORNING COFFEE", fill=(0, 0, 0), font=font)
            for p in vs.encode(av.VideoFrame.from_ndarray(np.asarray(img), format="rgb24")):
                out.mux(p)
        t = np.arange(int(seconds * rate)) / rate
        wave = (0.2 * np.sin(2 * np.pi * 330 * t)).astype(np.float32)
        for k in range(0, len(wave), 1024):
            fr = av.AudioFrame.from_ndarray(wave[None, k:k + 1024], format="flt", layout="mono")
            fr.sample_rate = rate
            for p in aus.encode(fr):
                out.mux(p)
        for stream in (vs, aus):
            for p in stream.encode(None):
                out.mux(p)
    return path


def run_demo(http: httpx.Client, out_dir: Path) -> int:
    """Video understanding: upload a generated clip, let `video.analyze` run, print scores and the mob."""
    models = http.get("/v1/models").json()["data"]
    needed = [m for m in models if m["task"] in ("video.participation", "video.embed")]
    print("video understanding models:", ", ".join(
        f"{m['task']}/{m['name']}{'' if m['available'] else ' (unavailable: ' + str(m.get('reason')) + ')'}"
        for m in needed) or "none")
    try:
        src = demo_clip(out_dir / "mobs-source.mp4")
    except ImportError as exc:
        print(f"video.analyze skipped: {exc}")
        return 1
    payload = src.read_bytes()
    r = http.post("/v1/videos/submit", json={"size": len(payload), "filename": src.name,
                                             "caption": "Slow morning pour #coffee @demo"})
    if r.status_code >= 400:
        print(f"video submit refused: {r.status_code} {r.text}")
        return 1
    ticket = r.json()
    up = ticket["upload"]
    put_signed(up, payload)
    t0 = time.monotonic()
    done = http.post(up["complete_url"], json={})
    if done.status_code >= 400:
        print(f"video complete refused: {done.status_code} {done.text}")
        return 1
    video_id = ticket["video"]["id"]
    job = http.get(f"/v1/jobs/{done.json()['job_id']}").json()
    job = finish_job(http, job)
    video = http.get(f"/v1/videos/{video_id}").json()
    print(f"video.analyze job {job['id']}: {job['status']} in {time.monotonic() - t0:.1f}s; video {video_id} "
          f"is {video['status']} (score {video['score']}), mob {video['mob_id']}")
    if job["status"] != "succeeded":
        print(f"  error: {job['error']}")
        return 1
    scores = video.get("scores") or {}
    for reason in scores.get("reasons", [])[:6]:
        print(f"  - {reason}")
    (out_dir / f"{video_id}-analysis.json").write_text(json.dumps(video, indent=2))
    print(f"  analysis: {out_dir / f'{video_id}-analysis.json'}")
    return 0
