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
            return _image_generation(http, out_dir)
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
