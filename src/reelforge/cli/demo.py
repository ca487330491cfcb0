"""`make demo`: every available application once, through the real HTTP API and a real worker."""

from __future__ import annotations

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
            return max(rc, _video_upscale(http, out_dir))
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()


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
    while job["status"] in ("queued", "running"):
        time.sleep(0.5)
        job = http.get(f"/v1/jobs/{job['id']}").json()
    print(f"image.generate job {job['id']}: {job['status']} in {time.monotonic() - t0:.1f}s "
          f"({job['credits']} credits)")
    if job["status"] != "succeeded":
        print(f"  error: {job['error']}")
        return 1
    for img in job["outputs"]["images"]:
        asset = http.get(f"/v1/assets/{img['asset_id']}").json()
        data = httpx.get(asset["download"]["url"], timeout=60).content
        path = out_dir / f"{job['id']}-{img['asset_id'][:8]}.png"
        path.write_bytes(data)
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
    httpx.request(put["method"], put["url"], content=data, headers=put.get("headers") or {},
                  timeout=60).raise_for_status()
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
    while job["status"] in ("queued", "running"):
        time.sleep(0.5)
        job = http.get(f"/v1/jobs/{job['id']}").json()
    print(f"video.upscale job {job['id']} ({model} x2): {job['status']} in {time.monotonic() - t0:.1f}s "
          f"({job['credits']} credits)")
    if job["status"] != "succeeded":
        print(f"  error: {job['error']}")
        return 1
    out = job["outputs"]
    asset = http.get(f"/v1/assets/{out['asset_id']}").json()
    path = out_dir / f"{job['id']}-upscaled.mp4"
    path.write_bytes(httpx.get(asset["download"]["url"], timeout=60).content)
    print(f"  {out['source']['width']}x{out['source']['height']} -> {out['width']}x{out['height']}, "
          f"{out['frames']} frames in {out['chunk_count']} chunks: {path}")
    return 0
