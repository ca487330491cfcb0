"""The API's side of interactive calls on httpx: pooled keep-alive clients, signed requests, bounded answers.

One `httpx.AsyncClient` per event loop (a client's connections belong to the loop that opened them) and one
`httpx.Client` for plain threads (the CLI, tests, benchmarks). Environment proxies are ignored: calls go
straight to the workers' own addresses.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from typing import Any

import httpx

from reelforge.adapters.calls.signing import PATH, REQUEST_ID, call_key, sign
from reelforge.observability import request_id_var
from reelforge.ports.calls import CallReply, WorkerTimedOut, WorkerUnreachable

# How much longer than the worker's own wait the API waits for an answer: the worker's 504 comes first.
ANSWER_MARGIN_S = 0.25

_UNREACHABLE = (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError, httpx.ReadError,
                httpx.WriteError, httpx.WriteTimeout)
_TIMED_OUT = (httpx.ReadTimeout, httpx.PoolTimeout)


class AnswerTooLarge(WorkerUnreachable):
    """The worker's answer is larger than `calls.max_result_bytes` (or of no stated size)."""


class HttpCallTransport:
    def __init__(self, instance_secret: str, *, connect_timeout_s: float = 1.0,
                 max_result_bytes: int = 16 * 1024**2, max_connections: int = 100) -> None:
        self._key = call_key(instance_secret)
        self.connect_timeout_s = connect_timeout_s
        self.max_result_bytes = max_result_bytes
        self._limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections,
                                    keepalive_expiry=5.0)
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = \
            weakref.WeakKeyDictionary()
        self._sync: httpx.Client | None = None
        self._lock = threading.Lock()

    # --- requests ----------------------------------------------------------------------------------
    def _request(self, client: httpx.Client | httpx.AsyncClient, base_url: str, name: str, body: bytes,
                 timeout_s: float) -> httpx.Request:
        headers = sign(self._key, name, body, timeout_s)
        headers["Content-Type"] = "application/json"
        request_id = request_id_var.get()
        if request_id:
            headers[REQUEST_ID] = request_id
        timeout = httpx.Timeout(timeout_s + ANSWER_MARGIN_S, connect=min(self.connect_timeout_s, timeout_s))
        return client.build_request("POST", base_url.rstrip("/") + PATH + name, content=body, headers=headers,
                                    timeout=timeout)

    def _check_size(self, response: httpx.Response) -> None:
        length = response.headers.get("content-length", "")
        if not length.isdigit() or int(length) > self.max_result_bytes:
            raise AnswerTooLarge(f"answer of {length or 'unstated'} bytes (limit {self.max_result_bytes})")

    async def post(self, base_url: str, name: str, body: bytes, timeout_s: float) -> CallReply:
        client = self._client()
        try:
            response = await client.send(self._request(client, base_url, name, body, timeout_s), stream=True)
            try:
                self._check_size(response)
                data = await response.aread()
            finally:
                await response.aclose()
        except _TIMED_OUT as exc:
            raise WorkerTimedOut(str(exc) or type(exc).__name__) from exc
        except _UNREACHABLE as exc:
            raise WorkerUnreachable(str(exc) or type(exc).__name__) from exc
        return CallReply(response.status_code, data)

    def post_sync(self, base_url: str, name: str, body: bytes, timeout_s: float) -> CallReply:
        client = self._thread_client()
        try:
            response = client.send(self._request(client, base_url, name, body, timeout_s), stream=True)
            try:
                self._check_size(response)
                data = response.read()
            finally:
                response.close()
        except _TIMED_OUT as exc:
            raise WorkerTimedOut(str(exc) or type(exc).__name__) from exc
        except _UNREACHABLE as exc:
            raise WorkerUnreachable(str(exc) or type(exc).__name__) from exc
        return CallReply(response.status_code, data)

    # --- clients -----------------------------------------------------------------------------------
    def _options(self) -> dict[str, Any]:
        return {"limits": self._limits, "trust_env": False, "follow_redirects": False}

    def _client(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        client = self._loops.get(loop)
        if client is None:
            client = self._loops[loop] = httpx.AsyncClient(**self._options())
        return client

    def _thread_client(self) -> httpx.Client:
        if self._sync is None:
            with self._lock:
                if self._sync is None:
                    self._sync = httpx.Client(**self._options())
        return self._sync

    async def aclose(self) -> None:
        client = self._loops.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()

    def close(self) -> None:
        with self._lock:
            client, self._sync = self._sync, None
        if client is not None:
            client.close()
        self._loops.clear()  # their loops are gone or closing; the sockets go with the clients
