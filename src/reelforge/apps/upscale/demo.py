"""`reelforge demo` for upscaling: a generated test video upscaled x2, every stream kept."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from reelforge.cli.demo import download_asset, finish_job, put_signed


def run_demo(http: httpx.Client, out_dir: Path) -> int:
    """A 2 s generated test video (colour bars, a tone) upscaled x2, every stream kept."""
    from reelforge.adapters.media.ffmpeg import run_ffmpeg

    models = http.get("/v1/models", params={"task": "image.upscale"}).json()["data"]
    usable = [m["name"] for m in models if m["available"]]
    print("image.upscale models:", ", ".join(f"{m['name']}{'' if m['available'] else ' (unavailable)'}"
                                             for m in models) or "none")
    model = next((n for n in ("realesr-animevideov3", "lanczos") if n in usable), None)
    if model is None:
        print("no upscaling model can run here; skipped")
        return 1
    src = out_dir / "upscale-source.mp4"
    run_ffmpeg(["-f", "lavfi", "-i", "testsrc=size=160x120:rate=24:duration=2", "-f", "lavfi",
                "-i", "sine=frequency=440:duration=2", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", "12",
                "-c:a", "aac", "-shortest", str(src)], timeout=60)
    data = src.read_bytes()
    up = http.post("/v1/uploads", json={"filename": src.name, "content_type": "video/mp4", "size": len(data)})
    up.raise_for_status()
    ticket = up.json()
    put = ticket["put"]
    put_signed(put, data)
    done = http.post(f"/v1/uploads/{ticket['id']}/complete", json={})
    done.raise_for_status()
    asset_id = done.json()["id"]
    t0 = time.monotonic()
    r = http.post("/v1/jobs", json={"kind": "video.upscale", "input": {
        "asset_id": asset_id, "model": model, "scale": 2, "chunk_seconds": 1,
        "output": {"container": "mp4", "video_codec": "h264", "crf": 20, "preset": "veryfast"}}})
    if r.status_code >= 400:
        print(f"video.upscale refused: {r.status_code} {r.text}")
        return 1
    job = r.json()
    job = finish_job(http, job)
    print(f"video.upscale job {job['id']} ({model} x2): {job['status']} in {time.monotonic() - t0:.1f}s "
          f"({job['credits']} credits)")
    if job["status"] != "succeeded":
        print(f"  error: {job['error']}")
        return 1
    out = job["outputs"]
    path = download_asset(http, out["asset_id"], out_dir / f"{job['id']}-upscaled.mp4")
    print(f"  {out['source']['width']}x{out['source']['height']} -> {out['width']}x{out['height']}, "
          f"{out['frames']} frames in {out['chunk_count']} chunks: {path}")
    return 0
