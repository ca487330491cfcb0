"""Live job events: SSE and WebSocket streams woken by the change feed (in-process on SQLite, LISTEN/NOTIFY on
PostgreSQL), resume from a cursor, keepalive, authentication and ownership of the WebSocket."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from starlette.websockets import WebSocketDisconnect

from tests.api.test_jobs import read_sse
from tests.conftest import UserHandle, make_settings

LIVE = {"kind": "test.live", "input": {"reports": 2, "sleep_s": 0.3}}
QUEUED = {"kind": "system.noop", "input": {"echo": {"x": 1}}}


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Any:
    # A fallback poll far longer than any test waits: a stream that sees a change in time was woken by a notice.
    return make_settings(tmp_path, db_url, extra_pipelines=["tests.fixtures.live_pipelines"],
                         live={"fallback_poll_s": 30.0, "ping_s": 0.3, "ws_auth_timeout_s": 1.0})


def ws_url(job_id: str, **query: Any) -> str:
    q = "&".join(f"{k}={v}" for k, v in query.items())
    return f"/v1/jobs/{job_id}/events/ws" + (f"?{q}" if q else "")


def ws_messages(ws: Any, until: str = "end", limit: int = 500) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for _ in range(limit):
        msg = ws.receive_json()
        out.append(msg)
        if msg["event"] == until:
            break
    return out


def closed_with(ws: Any) -> tuple[int, str]:
    with pytest.raises(WebSocketDisconnect) as info:
        for _ in range(50):
            ws.receive_json()
    return info.value.code, info.value.reason


def test_websocket_streams_progress_history_and_end(client: Any, alice: UserHandle, worker: Any) -> None:
    job_id = alice.post("/v1/jobs", json=LIVE).json()["id"]
    started = time.monotonic()
    with client.websocket_connect(ws_url(job_id)) as ws:
        ws.send_json({"token": alice.token})
        msgs = ws_messages(ws)
        assert closed_with(ws)[0] == 1000
    assert time.monotonic() - started < 15, "woken by notices, not by the 30 s fallback poll"
    events = [m["event"] for m in msgs]
    assert events[-1] == "end" and msgs[-1]["data"]["status"] == "succeeded"
    history = [m["data"]["type"] for m in msgs if m["event"] == "history"]
    assert history[0] == "JobQueued" and history[-1] == "JobSucceeded"
    assert all(m["id"].isdigit() for m in msgs if m["event"] == "history")
    messages = [m["data"]["message"] for m in msgs if m["event"] == "progress"]
    assert "report 1 of 2" in messages or "report 2 of 2" in messages, messages
    assert [m["data"]["status"] for m in msgs if m["event"] == "status"][-1] == "succeeded"


def test_a_change_wakes_a_waiting_stream_at_once(client: Any, alice: UserHandle) -> None:
    """No worker: the job waits queued; a cancel (a write in this process) must reach both kinds of stream long
    before the 30 s fallback poll."""
    job_id = alice.post("/v1/jobs", json=QUEUED).json()["id"]
    with client.websocket_connect(ws_url(job_id), headers={"Authorization": f"Bearer {alice.token}"}) as ws:
        first = ws.receive_json()
        assert first["event"] == "history" and first["data"]["type"] == "JobQueued"
        while ws.receive_json()["event"] != "progress":
            pass
        t0 = time.monotonic()
        assert alice.post(f"/v1/jobs/{job_id}/cancel").status_code == 200
        rest = ws_messages(ws)
        assert time.monotonic() - t0 < 5
    assert rest[-1]["event"] == "end" and rest[-1]["data"]["status"] == "cancelled"


def test_sse_wakes_on_a_notice(client: Any, alice: UserHandle, worker: Any) -> None:
    job_id = alice.post("/v1/jobs", json=LIVE).json()["id"]
    t0 = time.monotonic()
    with client.stream("GET", f"/v1/jobs/{job_id}/events", headers=alice.headers, params={"timeout": 60}) as r:
        events = read_sse(r)
    assert time.monotonic() - t0 < 15
    assert events[-1][0] == "end" and events[-1][1]["status"] == "succeeded"


def test_resume_from_a_cursor(client: Any, alice: UserHandle, worker: Any) -> None:
    job_id = alice.post("/v1/jobs", json=LIVE, params={"wait": 30}).json()["id"]
    history = alice.get(f"/v1/jobs/{job_id}/history").json()["events"]
    assert len(history) >= 3
    cut = history[1]["id"]
    later = [e["type"] for e in history[2:]]
    # WebSocket: `after` in the first message.
    with client.websocket_connect(ws_url(job_id)) as ws:
        ws.send_json({"token": alice.token, "after": cut})
        msgs = ws_messages(ws)
    assert [m["data"]["type"] for m in msgs if m["event"] == "history"] == later
    # WebSocket: `?after=` with the header.
    with client.websocket_connect(ws_url(job_id, after=cut), headers={"Authorization": f"Bearer {alice.token}"}) as ws:
        msgs = ws_messages(ws)
    assert [m["data"]["type"] for m in msgs if m["event"] == "history"] == later
    # SSE: Last-Event-ID, as a reconnecting EventSource sends it.
    with client.stream("GET", f"/v1/jobs/{job_id}/events", headers={**alice.headers, "Last-Event-ID": str(cut)}) as r:
        events = read_sse(r)
    assert [d["type"] for n, d in events if n == "history"] == later
    r = alice.get(f"/v1/jobs/{job_id}/events", headers={"Last-Event-ID": "nope"})
    assert r.status_code == 422 and r.json()["code"] == "validation_error"


def test_idle_streams_are_kept_alive(client: Any, alice: UserHandle) -> None:
    job_id = alice.post("/v1/jobs", json=QUEUED).json()["id"]
    with client.websocket_connect(ws_url(job_id)) as ws:
        ws.send_json({"token": alice.token})
        assert "ping" in [m["event"] for m in ws_messages(ws, until="ping", limit=20)]
        ws.send_json({"type": "ping"})
        assert "pong" in [m["event"] for m in ws_messages(ws, until="pong", limit=20)]
    with client.stream("GET", f"/v1/jobs/{job_id}/events", headers=alice.headers, params={"timeout": 1}) as r:
        body = r.read().decode()
    assert ": ping" in body and body.rstrip().endswith(": timeout")


def test_websocket_refuses_missing_and_bad_credentials(client: Any, alice: UserHandle) -> None:
    job_id = alice.post("/v1/jobs", json=QUEUED).json()["id"]
    with client.websocket_connect(ws_url(job_id)) as ws:  # says nothing within ws_auth_timeout_s
        assert closed_with(ws) == (4401, "missing_credentials")
    with client.websocket_connect(ws_url(job_id)) as ws:
        ws.send_text("not json")
        assert closed_with(ws) == (4401, "missing_credentials")
    with client.websocket_connect(ws_url(job_id)) as ws:
        ws.send_json({"token": "forged.jwt.token"})
        code, reason = closed_with(ws)
        assert code == 4401 and reason in ("invalid_token", "token_invalid", "unauthorized"), reason
    with client.websocket_connect(ws_url(job_id)) as ws:
        ws.send_json({"token": alice.token, "after": -3})
        assert closed_with(ws) == (4422, "validation_error")


def test_nobody_streams_another_users_job(client: Any, alice: UserHandle, bob: UserHandle, worker: Any) -> None:
    job_id = alice.post("/v1/jobs", json=LIVE).json()["id"]
    with client.websocket_connect(ws_url(job_id)) as ws:
        ws.send_json({"token": bob.token})
        assert closed_with(ws) == (4404, "job_not_found")
    with client.websocket_connect(ws_url(job_id), headers={"Authorization": f"Bearer {bob.token}"}) as ws:
        assert closed_with(ws) == (4404, "job_not_found")
    r = bob.get(f"/v1/jobs/{job_id}/events")
    assert r.status_code == 404 and r.json()["code"] == "job_not_found"
    # Bob's own stream never carries Alice's events, even while both jobs change.
    own = bob.post("/v1/jobs", json=LIVE).json()["id"]
    with client.websocket_connect(ws_url(own)) as ws:
        ws.send_json({"token": bob.token})
        msgs = ws_messages(ws)
    assert {m["data"]["id"] for m in msgs if m["event"] in ("status", "progress", "end")} == {own}
    assert json.dumps(msgs).count(job_id) == 0


def test_streams_share_one_subscription_registry(client: Any, alice: UserHandle, container: Any) -> None:
    """Streams register on the process's dispatcher and leave it when they close."""
    job_id = alice.post("/v1/jobs", json=QUEUED).json()["id"]
    with client.websocket_connect(ws_url(job_id)) as a, client.websocket_connect(ws_url(job_id)) as b:
        a.send_json({"token": alice.token})
        b.send_json({"token": alice.token})
        a.receive_json()
        b.receive_json()
        assert container.live.streams >= 2
    deadline = time.monotonic() + 5
    while container.live.streams and time.monotonic() < deadline:
        time.sleep(0.05)
    assert container.live.streams == 0
