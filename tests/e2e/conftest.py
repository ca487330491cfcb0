"""Browser tests of the web console: a real uvicorn server and an in-process worker on a temp SQLite
database, driven by headless Debian Chromium through Playwright.

Without Playwright or Chromium (a laptop) the tests skip and say why; with CI=true they fail instead.
REELFORGE_SCREENSHOTS=<folder> makes them save a screenshot of each main page there (`make screenshots`).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import _sqlite_url, make_settings

# Headless Chromium that reaches nothing but 127.0.0.1 (see shared notes, Playwright + Debian Chromium).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-quic", "--no-first-run",
                 "--disable-default-apps", "--disable-extensions", "--metrics-recording-only", "--disable-breakpad"]
ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "admin password 1"
PASSWORD = "correct horse battery"
# Multipart from 6 MiB with S3's 5 MiB minimum part: a 7 MiB file goes up in two parts.
MULTIPART_THRESHOLD = 6 * 1024 * 1024
PART_SIZE = 5 * 1024 * 1024


def chromium_path() -> str | None:
    for candidate in (os.environ.get("REELFORGE_CHROMIUM"), shutil.which("chromium"), "/usr/bin/chromium",
                      shutil.which("chromium-browser")):
        if candidate and Path(candidate).exists():
            return candidate
    return None


def browser_unavailable() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright is not installed (pip install -e '.[dev]')"
    if chromium_path() is None:
        return "Debian chromium is not installed (`make test` installs it: apt-get install chromium)"
    return None


# Module scope: the server, its worker and the browser stop when the browser tests are done, instead of
# polling in the background while the rest of the suite runs.
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    reason = browser_unavailable()
    if reason:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason}; CI=true requires the browser tests to run")
        pytest.skip(reason)
    from playwright.sync_api import expect, sync_playwright

    # Timing-tolerant: a loaded 2-core CI machine may take a few seconds for what takes milliseconds here.
    expect.set_options(timeout=15_000)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@dataclass
class Live:
    """The running server: its URL, its container, and API helpers for setting up what a test needs."""

    url: str
    container: Any
    tokens: dict[str, dict[str, Any]] = field(default_factory=dict)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)

    def user(self, email: str, password: str = PASSWORD) -> dict[str, Any]:
        """Register (once) and sign in through the API; returns the token pair."""
        with self.client() as c:
            if email not in self.tokens:
                r = c.post("/v1/auth/register", json={"email": email, "password": password})
                assert r.status_code == 202, r.text
            t = c.post("/v1/auth/token", json={"email": email, "password": password})
            assert t.status_code == 200, t.text
        self.tokens[email] = t.json()
        return t.json()

    def admin(self) -> dict[str, Any]:
        with self.client() as c:
            t = c.post("/v1/auth/token", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
            assert t.status_code == 200, t.text
        return dict(t.json())

    def api(self, method: str, path: str, token: str, **kw: Any) -> httpx.Response:
        with self.client() as c:
            return c.request(method, path, headers={"Authorization": f"Bearer {token}"}, **kw)


def _bind() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@pytest.fixture(scope="module")
def live_settings() -> dict[str, Any]:
    """Settings sections a test module adds to its server's (a module overrides this fixture)."""
    return {}


@pytest.fixture(scope="module")
def live(browser: Any, tmp_path_factory: pytest.TempPathFactory, live_settings: dict[str, Any]) -> Iterator[Live]:
    """One server and one worker per test module (the browser fixture first: skip before starting anything)."""
    import uvicorn

    from reelforge.api.app import create_app
    from reelforge.container import Container
    from reelforge.domain.types import Role
    from reelforge.runtime.worker import Worker

    tmp = tmp_path_factory.mktemp("e2e")
    sock = _bind()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    settings = make_settings(
        tmp, _sqlite_url(tmp, tmp_path_factory.getbasetemp()), public_url=url,
        storage={"multipart_threshold": MULTIPART_THRESHOLD, "part_size": PART_SIZE},
        webhooks={"allow_private_targets": True, "retry_base_s": 0.1, "retry_max_s": 0.5, "timeout_s": 2},
        rate_limit={"writes_per_window_ip": 100_000, "writes_per_window_account": 100_000,
                    "reads_per_window_ip": 1_000_000, "reads_per_window_account": 1_000_000},
        **live_settings,
    )
    container = Container(settings)
    container.auth.register(ADMIN_EMAIL, ADMIN_PASSWORD, role=Role.admin)
    # Load the tiny test model while the first tests sign in: its first load takes most of a job's time.
    threading.Thread(target=container.models.ensure_ready, args=("image.generate", "tiny-sd"), daemon=True,
                     name="e2e-model-warmup").start()
    worker = Worker(container, concurrency=2)
    worker.start()
    server = uvicorn.Server(uvicorn.Config(create_app(container=container), log_level="warning", access_log=False,
                                           lifespan="off", timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="e2e-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield Live(url=url, container=container)
    finally:
        server.should_exit = True
        thread.join(10)
        worker.stop(grace_s=5)
        container.close()


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 860}, color_scheme="light", locale="en-GB")
    ctx.set_default_timeout(15_000)
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: Any) -> Iterator[Any]:
    """A page that fails the test on any uncaught JavaScript error."""
    p = context.new_page()
    errors: list[str] = []
    p.on("pageerror", lambda exc: errors.append(str(exc)))
    p.on("dialog", lambda d: d.accept())  # confirm() before destructive actions: the tests mean them
    yield p
    assert not errors, f"JavaScript errors on the page: {errors}"


SESSION_COOKIE = "reelforge_session"


def sign_in(page: Any, live: Live, tokens: dict[str, Any], path: str = "/") -> None:
    """Put an API token pair where the console keeps it, as the sign-in page does (the access token in
    localStorage, the refresh token in the session's HttpOnly cookie), then open `path`."""
    page.goto(live.url + "/signin")
    page.context.add_cookies([{"name": SESSION_COOKIE, "value": tokens["refresh_token"],
                               "domain": urlsplit(live.url).hostname, "path": "/v1/auth/session",
                               "httpOnly": True, "sameSite": "Strict"}])
    value = json.dumps({"access": tokens["access_token"], "exp": int(time.time() * 1000) + tokens["expires_in"] * 1000})
    page.evaluate("(v) => localStorage.setItem('reelforge.auth', v)", value)
    page.goto(live.url + path)


def shot(page: Any, name: str) -> None:
    """Save a screenshot of the page when REELFORGE_SCREENSHOTS names a folder."""
    folder = os.environ.get("REELFORGE_SCREENSHOTS")
    if not folder:
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    # Wait for images to decode and for "Loading…" placeholders to be filled.
    page.evaluate("document.querySelectorAll('img[loading=lazy]').forEach((i) => { i.loading = 'eager'; })")
    # Functions, not expressions: an expression would be eval()ed, which the console's CSP forbids.
    page.wait_for_function("() => Array.from(document.images).every((i) => i.complete)")
    page.wait_for_function("() => !document.body.innerText.includes('Loading…')")
    page.mouse.move(0, 0)  # no hover states or focus rings in the pictures
    page.evaluate("document.activeElement && document.activeElement.blur()")
    page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True, animations="disabled")
