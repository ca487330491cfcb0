"""`make demo`: every available application once, through the real HTTP API and a real worker."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"server at {url} did not become ready")


def run_demo(url: str | None = None) -> int:
    procs: list[subprocess.Popen[bytes]] = []
    out_dir = Path("var/demo").resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        if url is None:
            port = _free_port()
            url = f"http://127.0.0.1:{port}"
            env = {**os.environ, "REELFORGE_PORT": str(port), "REELFORGE_PUBLIC_URL": url,
                   "REELFORGE_LOG_LEVEL": "WARNING"}
            procs.append(subprocess.Popen([sys.executable, "-m", "reelforge", "api"], env=env))
            procs.append(subprocess.Popen([sys.executable, "-m", "reelforge", "worker"], env=env))
        _wait_ready(url)
        print(f"reelforge at {url}")
        with httpx.Client(base_url=url, timeout=120) as http:
            email = f"demo-{secrets.token_hex(4)}@example.com"
            password = secrets.token_urlsafe(12)
            http.post("/v1/auth/register", json={"email": email, "password": password}).raise_for_status()
            token = http.post("/v1/auth/token", json={"email": email, "password": password}).json()["access_token"]
            http.headers["Authorization"] = f"Bearer {token}"
            rc = _image_generation(http, out_dir)
            rc = max(rc, _video_upscale(http, out_dir))
            return max(rc, _video_analyze(http, out_dir))
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()


def _finish(http: httpx.Client, job: dict[str, Any]) -> dict[str, Any]:
    """Poll a job until it ends."""
    while job["status"] in ("queued", "running"):
        time.sleep(0.5)
        job = http.get(f"/v1/jobs/{job['id']}").json()
    return job


def _put(target: dict[str, Any], data: bytes) -> None:
    """Send bytes to a signed upload URL (method, url and the headers it is bound to)."""
    httpx.request(target["method"], target["url"], content=data, headers=target.get("headers") or {},
                  timeout=60).raise_for_status()


def _download(http: httpx.Client, asset_id: str, path: Path) -> Path:
    """Save an asset through its signed download URL."""
    asset = http.get(f"/v1/assets/{asset_id}").json()
    path.write_bytes(httpx.get(asset["download"]["url"], timeout=60).content)
    return path


def _image_generation(http: httpx.Client, out_dir: Path) -> int:
    models = http.get("/v1/models", params={"task": "image.generate"}).json()["data"]
    usable = [m for m in models if m["available"]]
    print("image.generate models:")
    for m in models:
        print(f"  {'ok' if m['available'] else '--'} {m['name']}{' (test model)' if m['test_model'] else ''}"
              f"{'' if m['available'] else ': ' + str(m['reason'])}")
    if not usable:
        print("no image model can run here; skipped")
        return 1
    model = next((m["name"] for m in usable if not m["test_model"]), usable[0]["name"])
    body: dict[str, Any] = {"kind": "image.generate", "input": {
        "prompt": "a lighthouse at dusk, film still", "width": 64 if model == "tiny-sd" else 512,
        "height": 64 if model == "tiny-sd" else 512, "steps": 4 if model == "tiny-sd" else 25,
        "guidance_scale": 7.0, "seed": 42, "num_images": 2, "model": model}}
    t0 = time.monotonic()
    r = http.post("/v1/jobs", json=body, params={"wait": 60})
    r.raise_for_status()
    job = r.json()
    job = _finish(http, job)
    print(f"image.generate job {job['id']}: {job['status']} in {time.monotonic() - t0:.1f}s "
          f"({job['credits']} credits)")
    if job["status"] != "succeeded":
        print(f"  error: {job['error']}")
        return 1
    for img in job["outputs"]["images"]:
        path = _download(http, img["asset_id"], out_dir / f"{job['id']}-{img['asset_id'][:8]}.png")
        print(f"  image {img['width']}x{img['height']} seed {img['seed']}: {path}")
    if job["outputs"].get("test_model"):
        print("  note: tiny-sd has random weights (a test model): the images are noise, by design.")
    return 0


def _video_upscale(http: httpx.Client, out_dir: Path) -> int:
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
    _put(put, data)
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
    job = _finish(http, job)
    print(f"video.upscale job {job['id']} ({model} x2): {job['status']} in {time.monotonic() - t0:.1f}s "
          f"({job['credits']} credits)")
    if job["status"] != "succeeded":
        print(f"  error: {job['error']}")
        return 1
    out = job["outputs"]
    path = _download(http, out["asset_id"], out_dir / f"{job['id']}-upscaled.mp4")
    print(f"  {out['source']['width']}x{out['source']['height']} -> {out['width']}x{out['height']}, "
          f"{out['frames']} frames in {out['chunk_count']} chunks: {path}")
    return 0


def _demo_clip(path: Path, seconds: float = 3.0, size: tuple[int, int] = (320, 240), fps: int = 12) -> Path:
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


def _video_analyze(http: httpx.Client, out_dir: Path) -> int:
    """Video understanding: upload a generated clip, let `video.analyze` run, print scores and the mob."""
    models = http.get("/v1/models").json()["data"]
    needed = [m for m in models if m["task"] in ("video.participation", "video.embed")]
    print("video understanding models:", ", ".join(
        f"{m['task']}/{m['name']}{'' if m['available'] else ' (unavailable: ' + str(m.get('reason')) + ')'}"
        for m in needed) or "none")
    try:
        src = _demo_clip(out_dir / "mobs-source.mp4")
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
    _put(up, payload)
    t0 = time.monotonic()
    done = http.post(up["complete_url"], json={})
    if done.status_code >= 400:
        print(f"video complete refused: {done.status_code} {done.text}")
        return 1
    video_id = ticket["video"]["id"]
    job = http.get(f"/v1/jobs/{done.json()['job_id']}").json()
    job = _finish(http, job)
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
