"""Live job events: one stream of `history`, `status`, `progress` and `end` messages, sent as server-sent events
(`GET /v1/jobs/{id}/events`) or over a WebSocket (`/v1/jobs/{id}/events/ws`).

A stream subscribes to its job on the process's dispatcher (`services/live.py`) before its first read, then reads
the job and its history after its cursor whenever a change notice comes (or after the fallback poll interval),
so every stream of a process shares one listening connection and the database stays the one truth. The cursor
is the last history event's id: SSE sends it as `id:` (a reconnecting EventSource sends it back as
`Last-Event-ID`), the WebSocket as `"id"`; either resumes with `after`.

WebSocket protocol (browsers cannot set headers on a WebSocket, and a token in the URL ends up in access logs):
the server accepts, then reads the credentials from the `Authorization: Bearer` header when the client could
send one, else from the first message, `{"token": "<JWT or API key>", "after": <cursor>}`, within
`live.ws_auth_timeout_s`. Authentication is the API's one path (`deps.principal`, with scopes and rate limits);
a failure closes with 4000 + the HTTP status and the error code as reason (4401 `invalid_token`,
4401 `missing_credentials`, 4403 `insufficient_scope`, 4404 `job_not_found` also for another user's job,
4422 `validation_error` for a malformed first message, 4429 `rate_limited`). Then every message is JSON:
`{"event": "history" | "status" | "progress" | "end" | "ping" | "timeout", "data": {...}, "id": "<cursor>"}`;
after `end` or `timeout` the server closes with 1000. A client may send `{"type": "ping"}` at any time and gets
`{"event": "pong"}`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.websockets import WebSocket, WebSocketDisconnect

from reelforge import errors
from reelforge.api import convert, deps
from reelforge.api.schemas.common import MAX_ID, iso
from reelforge.domain.types import TERMINAL_STATUSES, Principal

HISTORY_PAGE = 500
WS_PATH = "/v1/jobs/{job_id}/events/ws"

Message = tuple[str, dict[str, Any], str | None]  # (event, data, cursor id)


async def follow(c: Any, p: Principal, job_id: str, *, after: int = 0, timeout_s: float = 600.0,
                 ping_s: float | None = None) -> AsyncGenerator[Message, None]:
    """The messages of one job's stream for the caller (who must own it), until the job ends or `timeout_s`."""
    live = c.live
    deadline = time.monotonic() + timeout_s
    last: tuple[Any, ...] | None = None
    quiet_since = time.monotonic()
    with live.subscribe(job_id) as sub:
        while True:
            try:
                job = await c.jobs.read(p, job_id)
            except errors.NotFound:
                yield "end", {"reason": "deleted"}, None
                return
            sent = False
            while True:  # history written up to now (read after the job: a terminal job's last events are in)
                events = await c.jobs.read_history(job, after=after, limit=HISTORY_PAGE)
                for e in events:
                    after = int(e.id)
                    sent = True
                    yield "history", {"type": e.type, "path": e.path, "ts": iso(convert.event_time(e)),
                                      "recorded_at": iso(e.ts), "details": convert.event_details(e)}, str(e.id)
                if len(events) < HISTORY_PAGE:
                    break
            state = (job.status, round(job.progress or 0, 4), job.progress_message)
            if state != last:
                if last is None or state[0] != last[0]:
                    yield "status", {"id": job.id, "status": job.status}, None
                yield "progress", {"id": job.id, "status": job.status, "fraction": state[1],
                                   "message": state[2]}, None
                last = state
                sent = True
            if job.status in TERMINAL_STATUSES:
                yield "end", convert.job(job).model_dump(mode="json"), None
                return
            now = time.monotonic()
            if sent:
                quiet_since = now
            poll_at = now + live.fallback_poll_s
            while True:  # until a notice, the fallback poll or the deadline; pings in between read nothing
                now = time.monotonic()
                if now >= deadline:
                    yield "timeout", {}, None
                    return
                wait = min(deadline, poll_at) - now
                if ping_s:
                    wait = min(wait, max(0.0, quiet_since + ping_s - now))
                if await sub.wait(wait):
                    break
                now = time.monotonic()
                if ping_s and now - quiet_since >= ping_s:
                    quiet_since = now
                    yield "ping", {}, None
                elif now >= poll_at:
                    break


def sse(message: Message) -> str:
    event, data, event_id = message
    if event == "ping":
        return ": ping\n\n"  # a comment: keeps proxies from closing an idle stream, invisible to EventSource
    if event == "timeout":
        return ": timeout\n\n"
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, default=str)}\n\n"


def cursor(raw: Any, name: str) -> int:
    """A stream cursor (a history event id) from a query parameter, header or message field."""
    if raw is None or raw == "":
        return 0
    try:
        value = int(raw)
    except (TypeError, ValueError):
        value = -1
    if isinstance(raw, bool) or not 0 <= value <= MAX_ID:
        raise errors.ValidationFailed(f"{name}: must be a history event id from 0 to {MAX_ID}",
                                      errors=[{"field": name, "message": "not a cursor", "type": "value_error"}])
    return value


def _auth_request(ws: WebSocket, token: str) -> Request:
    """An HTTP-shaped request for `deps.principal`: the WebSocket's app, client and path, a GET, the token."""
    scope = {
        "type": "http", "method": "GET", "path": ws.scope.get("path", ""), "raw_path": ws.scope.get("raw_path"),
        "root_path": ws.scope.get("root_path", ""), "query_string": b"", "app": ws.scope.get("app"),
        "client": ws.scope.get("client"), "server": ws.scope.get("server"), "state": {},
        "endpoint": job_events_ws, "headers": [(b"authorization", f"Bearer {token}".encode("latin-1"))],
    }
    return Request(scope)


async def _credentials(ws: WebSocket, c: Any) -> tuple[str, int]:
    header = ws.headers.get("authorization", "")
    after = cursor(ws.query_params.get("after"), "after")
    token = deps.bearer_token(header) if header else None
    if token is not None:
        return token, after
    try:
        raw = await asyncio.wait_for(ws.receive_text(), timeout=c.settings.live.ws_auth_timeout_s)
    except TimeoutError:
        raise errors.Unauthorized("Send {\"token\": ...} as the first message", code="missing_credentials") from None
    try:
        msg = json.loads(raw)
    except ValueError:
        msg = None
    if not isinstance(msg, dict) or not isinstance(msg.get("token"), str) or not msg["token"].strip():
        raise errors.Unauthorized("The first message must be {\"token\": \"<JWT or API key>\", \"after\": <id>}",
                                  code="missing_credentials")
    if "after" in msg:
        after = cursor(msg["after"], "after")
    return msg["token"].strip(), after


async def job_events_ws(ws: WebSocket) -> None:
    """`/v1/jobs/{job_id}/events/ws`: the job's live events over a WebSocket (protocol: see the module)."""
    c = ws.app.state.container
    job_id = str(ws.path_params.get("job_id", ""))
    await ws.accept()
    try:
        token, after = await _credentials(ws, c)
        p = await deps.principal(_auth_request(ws, token))
        await c.jobs.read(p, job_id)  # another user's job is missing: 4404 before anything is sent
    except errors.ReelforgeError as exc:
        with contextlib.suppress(Exception):
            await ws.close(code=4000 + exc.status, reason=exc.code[:120])
        return
    except WebSocketDisconnect:
        return
    send_lock = asyncio.Lock()
    gone = asyncio.Event()

    async def send(message: dict[str, Any]) -> None:
        async with send_lock:
            await ws.send_text(json.dumps(message, default=str))

    async def receive() -> None:
        try:
            while True:
                raw = await ws.receive_text()
                with contextlib.suppress(ValueError):
                    msg = json.loads(raw)
                    if isinstance(msg, dict) and msg.get("type") == "ping":
                        await send({"event": "pong"})
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            gone.set()

    receiver = asyncio.create_task(receive())
    stream = follow(c, p, job_id, after=after, timeout_s=3600.0, ping_s=c.settings.live.ping_s)
    try:
        async for event, data, event_id in _until(stream, gone):
            msg: dict[str, Any] = {"event": event, "data": data}
            if event_id is not None:
                msg["id"] = event_id
            await send(msg)
            if event in ("end", "timeout"):
                with contextlib.suppress(Exception):
                    await ws.close(code=1000)
                return
    except (WebSocketDisconnect, RuntimeError):
        return
    finally:
        receiver.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await receiver
        with contextlib.suppress(RuntimeError):  # still running in a task being cancelled: it closes itself
            await stream.aclose()


async def _until(stream: AsyncIterator[Message], gone: asyncio.Event) -> AsyncIterator[Message]:
    """The stream's messages until the client goes away (a disconnect is noticed while the stream waits)."""
    it = stream.__aiter__()
    gone_wait = asyncio.ensure_future(gone.wait())
    nxt: asyncio.Future[Message] | None = None
    try:
        while True:
            nxt = asyncio.ensure_future(it.__anext__())
            done, _ = await asyncio.wait({nxt, gone_wait}, return_when=asyncio.FIRST_COMPLETED)
            if nxt not in done:
                return
            try:
                message = nxt.result()
            except StopAsyncIteration:
                return
            nxt = None
            yield message
    finally:
        gone_wait.cancel()
        if nxt is not None and not nxt.done():
            nxt.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration, Exception):
                await nxt


__all__ = ["WS_PATH", "cursor", "follow", "job_events_ws", "sse"]
