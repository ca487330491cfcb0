"""A real uvicorn server in a background thread, for tests that speak HTTP over a socket (client, CLI).

The socket is bound before the settings are built, so that ``public_url`` (the base of the local store's
signed URLs) names the port the server really listens on.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.conftest import make_settings

# Multipart from 6 MiB with S3's 5 MiB minimum part: an 11 MiB file makes three parts (5 + 5 + 1).
MULTIPART_THRESHOLD = 6 * 1024 * 1024
PART_SIZE = 5 * 1024 * 1024


def bind_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def url_of(sock: socket.socket) -> str:
    return f"http://127.0.0.1:{sock.getsockname()[1]}"


def closed_port_url() -> str:
    """A URL on which nothing listens (the port was free a moment ago)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def live_settings(tmp_path: Path, db_url: str, sock: socket.socket, **overrides: Any) -> Any:
    values: dict[str, Any] = {
        "public_url": url_of(sock),
        "storage": {"multipart_threshold": MULTIPART_THRESHOLD, "part_size": PART_SIZE},
        "rate_limit": {"writes_per_window_ip": 100_000, "writes_per_window_account": 100_000,
                       "reads_per_window_ip": 1_000_000, "reads_per_window_account": 1_000_000},
        "webhooks": {"allow_private_targets": True, "retry_base_s": 0.1, "retry_max_s": 0.5, "timeout_s": 2},
        "extra_pipelines": ["tests.reliability.pipelines"],
    }
    for k, v in overrides.items():
        values[k] = {**values[k], **v} if isinstance(v, dict) and isinstance(values.get(k), dict) else v
    return make_settings(tmp_path, db_url, **values)


@contextmanager
def serve(container: Any, sock: socket.socket) -> Iterator[str]:
    import uvicorn

    from reelforge.api.app import create_app

    config = uvicorn.Config(create_app(container=container), log_level="warning", access_log=False,
                            lifespan="off", timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield url_of(sock)
    finally:
        server.should_exit = True
        thread.join(10)


@contextmanager
def serve_with_worker(tmp_path: Path, db_url: str, *, ready: Any = None, **overrides: Any) -> Iterator[str]:
    """A real API on a socket and an in-process worker on the same settings (``live_settings`` with
    ``overrides``); ``ready(container)`` is waited for before the URL is handed out."""
    from reelforge.container import Container
    from reelforge.runtime.worker import Worker
    from tests.conftest import wait_for

    sock = bind_socket()
    c = Container(live_settings(tmp_path, db_url, sock, **overrides))
    w = Worker(c, concurrency=2)
    w.start()
    try:
        if ready is not None:
            wait_for(lambda: ready(c), timeout=15)
        with serve(c, sock) as url:
            yield url
    finally:
        w.stop(grace_s=5)
        c.close()
        sock.close()


def api_key(url: str, email: str, name: str = "tests") -> str:
    """A new account on the server at ``url``, signed in, and an API key of it."""
    from reelforge.client import Client

    c = Client(url, api_key="")
    c.auth.register(email, "correct horse battery")
    c.auth.login(email, "correct horse battery")
    return c.api_keys.create(name).key or ""


def run_cli(url: str, key: str, *args: str, cwd: Path, timeout: float = 300) -> Any:
    """`python -m reelforge ARGS --url URL` in a clean environment (only the API key from it), from ``cwd``."""
    import os
    import subprocess
    import sys

    repo_root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REELFORGE_", "XDG_"))}
    env.update({"HOME": str(cwd), "XDG_CONFIG_HOME": str(cwd / "config"), "XDG_STATE_HOME": str(cwd / "state"),
                "REELFORGE_API_KEY": key, "NO_COLOR": "1", "COLUMNS": "200", "PYTHONPATH": str(repo_root)})
    return subprocess.run([sys.executable, "-m", "reelforge", *args, "--url", url], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)
