"""Interactive calls: the API process calls a function on a live worker and waits for its answer.

Real parts throughout: in-process workers (threads) with their own containers and call servers on loopback
ports, the workers registry on SQLite and PostgreSQL, the API's CallService over httpx, and the FastAPI app
for the route of a test application (tests/fixtures/calls_app.py).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from reelforge import errors
from reelforge.adapters.calls import signing
from reelforge.services.calls import CallFailed, CallTimeout, UnknownCall, WorkersUnavailable, rendezvous
from tests.conftest import make_settings, register, wait_for
from tests.fixtures.calls_app import ECHO


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Any:
    return make_settings(tmp_path, db_url)


@pytest.fixture
def api(settings: Any) -> Iterator[Any]:
    """The API process's container (the test application installed)."""
    from reelforge.container import Container

    c = Container(settings, apps=(ECHO,))
    yield c
    c.close()


class Workers:
    """Starts in-process workers, each with a container of its own (as separate processes would have)."""

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self.started: list[Any] = []

    def start(self, n: int = 1) -> list[Any]:
        from reelforge.container import Container
        from reelforge.runtime.worker import Worker

        out = []
        for _ in range(n):
            w = Worker(Container(self.settings, apps=(ECHO,)), concurrency=1, maintenance=False)
            w.start()
            self.started.append(w)
            out.append(w)
        return out

    def stop(self) -> None:
        for w in self.started:
            if not w.stopping.is_set():
                w.stop(grace_s=2)
            w.executor.shutdown(wait=False)
            w.c.close()


@pytest.fixture
def workers(settings: Any) -> Iterator[Workers]:
    ws = Workers(settings)
    yield ws
    ws.stop()


def tag(w: Any) -> str:
    return str(w.c.app("echo").tag)


def crash_server(w: Any) -> None:
    """The worker's call server goes away while its registration stays (a crashed or hung process)."""
    server = w.call_server
    server._server.shutdown()
    server._server.server_close()
    for conn in list(server._connections):
        try:
            conn.shutdown(2)
        except OSError:
            pass


# --- round trips ----------------------------------------------------------------------------------------------
def test_round_trip_sync_and_async(api: Any, workers: Workers) -> None:
    (w,) = workers.start(1)
    assert w.call_server.url.startswith("http://127.0.0.1:")
    registered = api.calls.workers()
    assert [x.id for x in registered] == [w.worker_id] and registered[0].call_url == w.call_server.url

    out = api.calls.call_sync("echo.ping", {"x": [1, 2, {"y": "é"}]})
    assert out == {"payload": {"x": [1, 2, {"y": "é"}]}, "tag": tag(w)}

    async def many() -> list[dict[str, Any]]:
        try:
            return list(await asyncio.gather(*(api.calls.call("echo.ping", {"i": i}) for i in range(20))))
        finally:
            await api.calls.aclose()

    results = asyncio.run(many())
    assert [r["payload"]["i"] for r in results] == list(range(20))
    assert w.c.app("echo").calls == 21


def test_round_trip_through_an_api_route(api: Any, workers: Workers) -> None:
    from fastapi.testclient import TestClient

    from reelforge.api.app import create_app

    (w,) = workers.start(1)
    with TestClient(create_app(container=api)) as http:
        user = register(http, "caller@example.com")
        r = user.post("/v1/echo/ping", json={"session": "s-1", "hello": "world"})
        assert r.status_code == 200, r.text
        assert r.json() == {"payload": {"session": "s-1", "hello": "world"}, "tag": tag(w)}

        gone = user.post("/v1/echo/fail", json={"kind": "gone"})
        assert gone.status_code == 410 and gone.headers["content-type"].startswith("application/problem+json")
        body = gone.json()
        assert body["code"] == "expired" and body["title"] == "Session expired"
        assert body["detail"] == "Session s-1 has expired; open the video again" and body["session"] == "s-1"

        crash = user.post("/v1/echo/fail", json={"kind": "crash"})
        assert crash.status_code == 500 and crash.json()["code"] == "internal_error"
        assert "secret-weights" not in crash.text and "/srv" not in crash.text and "Traceback" not in crash.text
        assert "RuntimeError" not in crash.text

        assert user.post("/v1/echo/nothing", json={}).json()["code"] == "unknown_call"


# --- choosing a worker ----------------------------------------------------------------------------------------
def test_affinity_sticks_to_one_worker_and_spreads_sessions(api: Any, workers: Workers) -> None:
    ws = workers.start(3)
    wait_for(lambda: len(api.calls.workers()) == 3 or api.calls.invalidate())
    seen: dict[str, set[str]] = {}
    for round_ in range(3):
        for s in range(24):
            out = api.calls.call_sync("echo.ping", {"r": round_}, affinity=f"session-{s}")
            seen.setdefault(f"session-{s}", set()).add(out["tag"])
    assert all(len(tags) == 1 for tags in seen.values()), seen
    used = {t for tags in seen.values() for t in tags}
    assert used == {tag(w) for w in ws}  # 24 sessions over 3 workers: each gets some
    # The same choice the rendezvous order predicts from the registry.
    by_id = {w.worker_id: tag(w) for w in ws}
    live = api.calls.workers()
    for s, tags in seen.items():
        assert tags == {by_id[rendezvous(s, live)[0].id]}


def test_rendezvous_moves_only_the_sessions_of_a_worker_that_leaves() -> None:
    from reelforge.domain.records import Worker

    ws = [Worker(f"w{i}", "h", i, 1, "running", 0.0, 0.0, f"http://h:{i}") for i in range(5)]
    keys = [f"k{i}" for i in range(500)]
    before = {k: rendezvous(k, ws)[0].id for k in keys}
    after = {k: rendezvous(k, ws[:2] + ws[3:])[0].id for k in keys}
    moved = [k for k in keys if before[k] != after[k]]
    assert moved and all(before[k] == "w2" for k in moved)
    counts = {w.id: sum(1 for k in keys if before[k] == w.id) for w in ws}
    assert min(counts.values()) > 60, counts  # about 100 each


def test_a_dead_worker_is_skipped_for_the_next_one(api: Any, workers: Workers) -> None:
    a, b = workers.start(2)
    wait_for(lambda: len(api.calls.workers()) == 2 or api.calls.invalidate())
    live = api.calls.workers()
    # A session whose first choice is `a`.
    session = next(f"s{i}" for i in range(1000) if rendezvous(f"s{i}", live)[0].id == a.worker_id)
    assert api.calls.call_sync("echo.ping", {}, affinity=session)["tag"] == tag(a)
    crash_server(a)  # its registration still says running, with a fresh heartbeat
    out = api.calls.call_sync("echo.ping", {}, affinity=session)
    assert out["tag"] == tag(b)
    # Marked down until it heartbeats again: the next calls go straight to b.
    assert [w.id for w in api.calls._order(api.calls.workers(), session)][-1] == a.worker_id

    async def again() -> str:
        try:
            return str((await api.calls.call("echo.ping", {}, affinity=session))["tag"])
        finally:
            await api.calls.aclose()

    assert asyncio.run(again()) == tag(b)


def test_no_live_worker_is_503(api: Any, workers: Workers) -> None:
    with pytest.raises(WorkersUnavailable) as info:
        api.calls.call_sync("echo.ping", {})
    assert info.value.status == 503 and info.value.code == "workers_unavailable"
    (w,) = workers.start(1)
    api.calls.invalidate()
    assert api.calls.call_sync("echo.ping", {})["tag"] == tag(w)
    w.stop(grace_s=1)  # the SIGTERM path: unregistered, server closed
    with api.store.tx(write=False) as tx:
        row = next(x for x in tx.ops.workers() if x.id == w.worker_id)
    assert row.status == "stopped" and row.call_url is None
    api.calls.invalidate()
    with pytest.raises(WorkersUnavailable):
        api.calls.call_sync("echo.ping", {})
    with pytest.raises(httpx.ConnectError):
        httpx.post(w.call_server.url + "/calls/echo.ping", content=b"{}", timeout=2)


def test_a_stale_registration_is_not_live(api: Any, workers: Workers) -> None:
    (w,) = workers.start(1)
    w.stopping.set()  # its heartbeats stop (as if frozen), the registration ages
    time.sleep(0.2)
    with api.store.tx() as tx:
        tx.s.execute(__import__("sqlalchemy").text("UPDATE workers SET heartbeat_at = heartbeat_at - 1000"))
    api.calls.invalidate()
    with pytest.raises(WorkersUnavailable):
        api.calls.call_sync("echo.ping", {})
    w.stopping.clear()


# --- errors ---------------------------------------------------------------------------------------------------
def test_errors_keep_their_status_code_and_detail(api: Any, workers: Workers) -> None:
    workers.start(1)
    with pytest.raises(errors.ReelforgeError) as gone:
        api.calls.call_sync("echo.fail", {"kind": "gone"})
    e = gone.value
    assert (e.status, e.code, e.title, e.message) == (410, "expired", "Session expired",
                                                      "Session s-1 has expired; open the video again")
    assert e.details == {"session": "s-1"}

    with pytest.raises(CallFailed) as refused:
        api.calls.call_sync("echo.fail", {"kind": "refused"})
    assert (refused.value.status, refused.value.code) == (422, "echo_refused")
    assert refused.value.code in api.error_codes  # the application documents it

    for kind in ("crash", "bad-result"):
        with pytest.raises(errors.ReelforgeError) as crash:
            api.calls.call_sync("echo.fail", {"kind": kind})
        assert (crash.value.status, crash.value.code) == (500, "internal_error")
        text = json.dumps([crash.value.message, crash.value.details])
        assert "secret-weights" not in text and "/srv" not in text and "RuntimeError" not in text

    with pytest.raises(UnknownCall) as unknown:
        api.calls.call_sync("echo.nothing", {})
    assert (unknown.value.status, unknown.value.code) == (404, "unknown_call")

    with pytest.raises(errors.ValidationFailed):
        api.calls.call_sync("echo.ping", {"x": float("nan")})
    with pytest.raises(errors.PayloadTooLarge):
        api.calls.call_sync("echo.ping", {"x": "a" * (api.settings.calls.max_body_bytes + 1)})


def test_a_call_past_its_timeout_is_504(api: Any, workers: Workers) -> None:
    workers.start(1)
    started = time.monotonic()
    with pytest.raises(CallTimeout) as info:
        api.calls.call_sync("echo.sleep", {"s": 2.0})  # its own timeout: 0.3 s
    assert (info.value.status, info.value.code) == (504, "call_timeout")
    assert time.monotonic() - started < 1.5
    with pytest.raises(CallTimeout):
        api.calls.call_sync("echo.sleep", {"s": 2.0}, timeout_s=0.1)  # the caller asks for less
    assert api.calls.call_sync("echo.sleep", {"s": 0.01})["slept"] == 0.01
    assert api.calls.timeout_of("echo.ping") == api.settings.calls.timeout_s
    assert api.calls.timeout_of("echo.ping", 10_000) == api.settings.calls.max_timeout_s


# --- the worker's server --------------------------------------------------------------------------------------
def _post(url: str, name: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(f"{url}/calls/{name}", content=body, headers={"Content-Type": "application/json", **headers},
                      timeout=5)


def test_the_worker_refuses_unsigned_forged_and_stale_requests(settings: Any, workers: Workers) -> None:
    (w,) = workers.start(1)
    url = w.call_server.url
    key = signing.call_key(settings.signing_secret)
    body = b'{"x":1}'
    good = signing.sign(key, "echo.ping", body, 5.0)
    assert _post(url, "echo.ping", body, good).status_code == 200

    cases = {
        "unsigned": {},
        "other secret": signing.sign(signing.call_key("another-secret-" + "y" * 40), "echo.ping", body, 5.0),
        "stale": signing.sign(key, "echo.ping", body, 5.0, now=time.time() - 120),
        "future": signing.sign(key, "echo.ping", body, 5.0, now=time.time() + 120),
        "other call": signing.sign(key, "echo.fail", body, 5.0),
        "longer timeout": {**good, signing.TIMEOUT: "300.000"},
        "garbage": {signing.TIMESTAMP: "x", signing.TIMEOUT: "1", signing.SIGNATURE: "v1=00"},
    }
    for why, headers in cases.items():
        r = _post(url, "echo.ping", body, headers)
        assert r.status_code == 401, (why, r.text)
        assert r.json()["code"] == "invalid_call_signature" and r.headers["content-type"] == "application/problem+json"
    tampered = _post(url, "echo.ping", b'{"x":2}', good)
    assert tampered.status_code == 401
    assert w.c.app("echo").calls == 1  # nothing but the good request ran

    # Other methods and paths, oversized and malformed bodies: refused before anything runs.
    assert httpx.get(f"{url}/calls/echo.ping", timeout=5).status_code == 405
    assert _post(url, "../etc", body, signing.sign(key, "../etc", body, 5.0)).status_code in (401, 404)
    big = b'{"x":"' + b"a" * settings.calls.max_body_bytes + b'"}'
    r = _post(url, "echo.ping", big, signing.sign(key, "echo.ping", big, 5.0))
    assert r.status_code == 413 and r.json()["code"] == "payload_too_large"
    for bad in (b"[1]", b"not json"):
        r = _post(url, "echo.ping", bad, signing.sign(key, "echo.ping", bad, 5.0))
        assert r.status_code == 400 and r.json()["code"] == "bad_request"
    r = _post(url, "echo.nothing", body, signing.sign(key, "echo.nothing", body, 5.0))
    assert r.status_code == 404 and r.json()["code"] == "unknown_call"
    assert w.c.app("echo").calls == 1


def test_a_worker_without_calls_runs_no_server(settings: Any) -> None:
    from reelforge.container import Container
    from reelforge.runtime.worker import Worker

    c = Container(settings, apps=())
    w = Worker(c, concurrency=1, maintenance=False)
    w.start()
    try:
        assert w.call_server is None
        with c.store.tx(write=False) as tx:
            assert [x.call_url for x in tx.ops.workers()] == [None]
    finally:
        w.stop(grace_s=1)
        c.close()


def test_call_names_are_checked(settings: Any) -> None:
    from reelforge.applications import AppError, AppManifest, Call
    from reelforge.container import Container

    def ping(services: Any, payload: dict[str, Any]) -> dict[str, Any]:
        return {}

    for calls in ([Call("other.ping", ping)], [Call("x.ping", ping), Call("x.ping", ping)], ["x.ping"]):
        app = AppManifest(name="x", title="X", calls=lambda s, calls=calls: calls)
        with pytest.raises(AppError):
            Container(settings, apps=(app,)).app_calls()
