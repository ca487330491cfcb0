"""Rate limits shared across API processes: two real `reelforge api` servers on one database (SQLite and
PostgreSQL), and on Redis, count one budget between them."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest

from tests.fixtures.env import child_env
from tests.integration.live_server import closed_port_url
from tests.integration.test_cli_serve import REPO_ROOT, wait_healthy

pytestmark = pytest.mark.timeout(180)

WINDOW_S = 86400


def redis_url() -> str:
    url = os.environ.get("REELFORGE_TEST_REDIS", "redis://127.0.0.1:6379/0")
    try:
        import redis

        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except Exception as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"Redis unavailable at {url} ({exc}); CI=true requires it")
        pytest.skip(f"Redis unavailable at {url}: {exc}")
    return url


@contextmanager
def api_process(tmp_path: Path, env_extra: dict[str, str]) -> Iterator[str]:
    url = closed_port_url()
    tmp_path.mkdir(parents=True, exist_ok=True)
    env = child_env()
    env.update({"REELFORGE_DATA_DIR": str(tmp_path / "var"), "REELFORGE_LOG_JSON": "false",
                "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1", "NO_COLOR": "1", "HOME": str(tmp_path),
                "REELFORGE_AUTH__JWT_SECRET": "shared-limits-" + "x" * 40, **env_extra})
    proc = subprocess.Popen([sys.executable, "-m", "reelforge", "api", "--port", url.rsplit(":", 1)[1]],
                            cwd=tmp_path, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_healthy(url, proc, timeout=90)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def not_near_a_window_end() -> None:
    """The windows are fixed (aligned to the epoch): keep the test inside one."""
    left = WINDOW_S - time.time() % WINDOW_S
    if left < 120:
        time.sleep(left + 1)


def check_shared(tmp_path: Path, env: dict[str, str]) -> None:
    env = {"REELFORGE_RATE_LIMIT__WRITES_PER_WINDOW_IP": "6", "REELFORGE_RATE_LIMIT__READS_PER_WINDOW_IP": "8",
           "REELFORGE_RATE_LIMIT__WINDOW_S": str(WINDOW_S), **env}
    not_near_a_window_end()
    with ExitStack() as stack:
        # One after the other: the first one migrates the database the second one then finds ready.
        a = stack.enter_context(api_process(tmp_path / "a", env))
        b = stack.enter_context(api_process(tmp_path / "b", env))
        with httpx.Client(timeout=10) as http:
            # Writes: unauthenticated ones count too (the guard counts before anything else happens).
            codes = [http.post(f"{(a, b)[i % 2]}/v1/jobs", json={}).status_code for i in range(6)]
            assert codes == [401] * 6
            for server in (a, b):
                r = http.post(f"{server}/v1/jobs", json={})
                assert r.status_code == 429 and r.json()["code"] == "rate_limited", r.text
                assert 1 <= int(r.headers["retry-after"]) <= WINDOW_S
                assert r.headers["ratelimit-limit"] == "6" and r.headers["ratelimit-remaining"] == "0"
                assert r.headers["ratelimit-policy"] == f"6;w={WINDOW_S}"
            # Reads have their own budget, shared the same way.
            codes = [http.get(f"{(b, a)[i % 2]}/v1/jobs").status_code for i in range(8)]
            assert codes == [401] * 8
            r = http.get(f"{a}/v1/jobs")
            assert r.status_code == 429 and "Read limit" in r.json()["detail"]
            assert http.get(f"{b}/v1/jobs").status_code == 429
            # Probes are not API reads.
            assert http.get(f"{b}/healthz").status_code == 200


def test_two_api_processes_share_the_database_counters(tmp_path: Path, db_url: str) -> None:
    env = {"REELFORGE_RATE_LIMIT__BACKEND": "database"}
    if not db_url.startswith("sqlite"):
        env["REELFORGE_DATABASE__URL"] = db_url
    else:
        # Both processes on one SQLite file.
        env["REELFORGE_DATABASE__URL"] = f"sqlite:///{tmp_path / 'shared.db'}"
    check_shared(tmp_path, env)


def test_two_api_processes_share_the_redis_counters(tmp_path: Path) -> None:
    url = redis_url()
    prefix = f"reelforge-test:{uuid.uuid4().hex}:"
    try:
        check_shared(tmp_path, {"REELFORGE_RATE_LIMIT__BACKEND": "redis", "REELFORGE_RATE_LIMIT__REDIS_URL": url,
                                "REELFORGE_RATE_LIMIT__REDIS_PREFIX": prefix,
                                "REELFORGE_DATABASE__URL": f"sqlite:///{tmp_path / 'shared.db'}"})
    finally:
        import redis

        client = redis.Redis.from_url(url)
        keys = list(client.scan_iter(match=prefix + "*"))
        assert keys, "the counters were kept in Redis"
        client.delete(*keys)
