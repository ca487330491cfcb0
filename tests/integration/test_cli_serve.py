"""`reelforge run` and `reelforge api` as started by a user, on a port other than the default and with no
public URL configured: the signed upload URLs the server hands out must reach that same server."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from reelforge.client import Client
from tests.fixtures.env import child_env
from tests.integration.live_server import closed_port_url

PW = "correct horse battery"
REPO_ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(120)


@contextmanager
def server(tmp_path: Path, *args: str) -> Iterator[subprocess.Popen[str]]:
    env = child_env()
    env.update({"REELFORGE_DATA_DIR": str(tmp_path / "var"), "REELFORGE_LOG_JSON": "false",
                "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1", "NO_COLOR": "1", "HOME": str(tmp_path)})
    proc = subprocess.Popen([sys.executable, "-m", "reelforge", *args], cwd=tmp_path, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def wait_healthy(url: str, proc: subprocess.Popen[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the server exited with {proc.returncode}"
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"no server at {url}")


def announced_url(proc: subprocess.Popen[str], timeout: float = 60) -> str:
    """The URL that `reelforge run` prints once it listens."""
    found: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            m = re.match(r"reelforge on (\S+) ", line)
            if m:
                found.append(m.group(1))
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    assert found, "`reelforge run` did not say where it listens"
    return found[0]


def upload_through(url: str, tmp_path: Path) -> str:
    """Sign up, upload a file through the signed URL the server offers, and return that URL."""
    c = Client(url, api_key="")
    c.auth.register("ada@example.com", PW)
    c.auth.login("ada@example.com", PW)
    src = tmp_path / "clip.bin"
    src.write_bytes(os.urandom(4096))
    upload = c.uploads.create("application/octet-stream", 4096, filename="clip.bin")
    assert upload.put is not None
    signed = upload.put.url
    asset = c.assets.upload(src, "application/octet-stream")
    assert asset.size == 4096
    return signed


def test_api_on_another_port_signs_urls_for_that_port(tmp_path: Path) -> None:
    url = closed_port_url()
    port = url.rsplit(":", 1)[1]
    with server(tmp_path, "api", "--port", port) as proc:
        wait_healthy(url, proc)
        signed = upload_through(url, tmp_path)
    assert signed.startswith(f"{url}/v1/storage/objects/"), signed


def test_run_on_port_zero_signs_urls_for_the_port_it_got(tmp_path: Path) -> None:
    with server(tmp_path, "run", "--host", "0.0.0.0", "--port", "0", "--workers", "0") as proc:
        url = announced_url(proc)
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url) and not url.endswith(":0"), url
        wait_healthy(url, proc)
        signed = upload_through(url, tmp_path)
    assert signed.startswith(f"{url}/v1/storage/objects/"), signed


def test_a_server_without_a_terminal_logs_where_the_admin_password_is(tmp_path: Path) -> None:
    """Its output goes to a pipe (a log collector): the generated password is only in the owner-only file."""
    url = closed_port_url()
    with server(tmp_path, "api", "--port", url.rsplit(":", 1)[1]) as proc:
        wait_healthy(url, proc)
        proc.terminate()
        output, _ = proc.communicate(timeout=15)
    path = tmp_path / "var" / "admin-password"
    password = path.read_text().strip()
    assert path.stat().st_mode & 0o777 == 0o600 and len(password) >= 20
    assert password not in output
    assert str(path) in output, output
