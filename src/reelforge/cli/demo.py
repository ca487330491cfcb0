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

from reelforge.applications import discover


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
            rc = 0
            for application in discover():
                if application.demo is not None:
                    rc = max(rc, application.demo(http, out_dir))
            return rc
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()


def finish_job(http: httpx.Client, job: dict[str, Any]) -> dict[str, Any]:
    """Poll a job until it ends."""
    while job["status"] in ("queued", "running"):
        time.sleep(0.5)
        job = http.get(f"/v1/jobs/{job['id']}").json()
    return job


def put_signed(target: dict[str, Any], data: bytes) -> None:
    """Send bytes to a signed upload URL (method, url and the headers it is bound to)."""
    httpx.request(target["method"], target["url"], content=data, headers=target.get("headers") or {},
                  timeout=60).raise_for_status()


def download_asset(http: httpx.Client, asset_id: str, path: Path) -> Path:
    """Save an asset through its signed download URL."""
    asset = http.get(f"/v1/assets/{asset_id}").json()
    path.write_bytes(httpx.get(asset["download"]["url"], timeout=60).content)
    return path
