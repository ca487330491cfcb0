"""Interactive calls from the API to the workers (`AppManifest.calls`): the caller waits for the answer.

A call goes straight to one live worker's call server (runtime/calls.py) over HTTP, signed with a key derived
from the instance secret; no job row, no queue. The worker is chosen by rendezvous hashing of the caller's
`affinity` key over the live workers, so every call of one session reaches the same worker (and its caches)
while the set of live workers stays the same; when a worker leaves, only its own sessions move. A worker that
cannot be reached is skipped until it heartbeats again, and the call goes to the next one in that session's
order. See docs/architecture.md, "Interactive calls", and docs/decisions.md.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import threading
import time
from collections.abc import Mapping
from typing import Any

from anyio import to_thread

from reelforge import errors
from reelforge.config import Settings
from reelforge.domain.records import Worker
from reelforge.ports.calls import CallReply, CallTransport, WorkerTimedOut, WorkerUnreachable
from reelforge.ports.repositories import Store
from reelforge.services.stats import lost_after_s

log = logging.getLogger("reelforge.calls")


class UnknownCall(errors.NotFound):
    code, title = "unknown_call", "Unknown call"


class WorkersUnavailable(errors.ServiceUnavailable):
    code, title = "workers_unavailable", "No worker can take the call"


class CallTimeout(errors.ReelforgeError):
    status, code, title, retryable = 504, "call_timeout", "The call timed out", True


class CallSignatureRefused(errors.Unauthorized):
    code, title = "invalid_call_signature", "Call not signed by this installation"


class WorkerStopping(errors.ServiceUnavailable):
    code, title = "worker_stopping", "The worker is stopping"


class CallFailed(errors.ReelforgeError):
    """A worker's problem, raised again in the API process with its status, code, title, detail and details."""

    def __init__(self, status: int, code: str, title: str, detail: str, details: dict[str, Any]) -> None:
        super().__init__(detail or title, code=code, **details)
        self.status = status
        self.title = title or "Call failed"


def problem_error(status: int, body: Mapping[str, Any]) -> errors.ReelforgeError:
    """The error a worker's problem body stands for."""
    code = str(body.get("code") or "internal_error")
    title, detail = str(body.get("title") or ""), str(body.get("detail") or "")
    details = body.get("details") if isinstance(body.get("details"), dict) else {}
    if status == 429:
        retry_after = details.get("retry_after", 1) if isinstance(details, dict) else 1
        rest = {k: v for k, v in (details or {}).items() if k != "retry_after"}
        return errors.RateLimited(detail or None, code=code,
                                  retry_after=int(retry_after) if isinstance(retry_after, int | float) else 1, **rest)
    if not 400 <= status <= 599:
        status = 500
    return CallFailed(status, code, title, detail, dict(details or {}))


def rendezvous(key: str, workers: list[Worker]) -> list[Worker]:
    """`workers` in the order `key` prefers them (highest random weight first): the same order for the same key
    and set of workers, and removing one worker moves only the keys whose first choice it was."""

    def weight(w: Worker) -> int:
        return int.from_bytes(hashlib.blake2b(f"{key}\x00{w.id}".encode(), digest_size=8).digest(), "big")

    return sorted(workers, key=weight, reverse=True)


class CallService:
    """`call(name, payload, affinity=...)` on the event loop, `call_sync(...)` from plain threads."""

    def __init__(self, store: Store, settings: Settings, transport: CallTransport,
                 calls: Mapping[str, Any]) -> None:
        self.store = store
        self.settings = settings
        self.cfg = settings.calls
        self.transport = transport
        self.calls = dict(calls)  # name -> applications.Call
        self._lock = threading.Lock()
        self._live: list[Worker] = []
        self._live_until = 0.0
        self._unreachable: dict[str, float] = {}  # worker id -> its heartbeat when it could not be reached

    # --- the calls ---------------------------------------------------------------------------------
    async def call(self, name: str, payload: Mapping[str, Any], *, affinity: str | None = None,
                   timeout_s: float | None = None) -> dict[str, Any]:
        """Run the call `name` on a worker and return its result (a dict). Raises the worker's ReelforgeError
        as the same status, code and detail; 404 `unknown_call`, 503 `workers_unavailable`, 504 `call_timeout`."""
        body, timeout = self._prepare(name, payload, timeout_s)
        deadline = time.monotonic() + timeout
        workers = self._cached()
        if workers is None:
            workers = await to_thread.run_sync(self._load)
        for worker in self._order(workers, affinity):
            left = deadline - time.monotonic()
            if left <= 0:
                raise CallTimeout(f"No answer to {name} within {timeout:g} s", call=name)
            try:
                reply = await self.transport.post(str(worker.call_url), name, body, left)
            except WorkerUnreachable as exc:
                self._down(worker, exc)
                continue
            except WorkerTimedOut:
                raise CallTimeout(f"No answer to {name} within {timeout:g} s", call=name) from None
            result = self._answer(worker, name, reply)
            if result is not None:
                return result
        raise WorkersUnavailable("No live worker answers calls right now; retry shortly", call=name)

    def call_sync(self, name: str, payload: Mapping[str, Any], *, affinity: str | None = None,
                  timeout_s: float | None = None) -> dict[str, Any]:
        """`call` for plain threads (the CLI, scripts, tests): the same choice of worker and the same errors."""
        body, timeout = self._prepare(name, payload, timeout_s)
        deadline = time.monotonic() + timeout
        workers = self._cached()
        if workers is None:
            workers = self._load()
        for worker in self._order(workers, affinity):
            left = deadline - time.monotonic()
            if left <= 0:
                raise CallTimeout(f"No answer to {name} within {timeout:g} s", call=name)
            try:
                reply = self.transport.post_sync(str(worker.call_url), name, body, left)
            except WorkerUnreachable as exc:
                self._down(worker, exc)
                continue
            except WorkerTimedOut:
                raise CallTimeout(f"No answer to {name} within {timeout:g} s", call=name) from None
            result = self._answer(worker, name, reply)
            if result is not None:
                return result
        raise WorkersUnavailable("No live worker answers calls right now; retry shortly", call=name)

    def timeout_of(self, name: str, asked: float | None = None) -> float:
        """How long a call of `name` may take: what the caller asks, else the call's own, else the settings'
        default; never more than `calls.max_timeout_s`."""
        call = self.calls.get(name)
        own = getattr(call, "timeout_s", None)
        chosen = asked if asked is not None else own if own is not None else self.cfg.timeout_s
        return max(0.001, min(float(chosen), self.cfg.max_timeout_s))

    async def aclose(self) -> None:
        """Close this event loop's connections to the workers (the API's lifespan shutdown)."""
        await self.transport.aclose()

    def close(self) -> None:
        self.transport.close()

    # --- workers -----------------------------------------------------------------------------------
    def workers(self) -> list[Worker]:
        """The live workers with a call server (the cached list while it is fresh)."""
        cached = self._cached()
        return cached if cached is not None else self._load()

    def invalidate(self) -> None:
        """Read the registry again at the next call."""
        with self._lock:
            self._live_until = 0.0

    def _cached(self) -> list[Worker] | None:
        with self._lock:
            return self._live if time.monotonic() < self._live_until else None

    def _load(self) -> list[Worker]:
        with self.store.tx(write=False) as tx:
            live = tx.ops.call_workers(lost_after_s(self.settings))
        with self._lock:
            self._live = live
            self._live_until = time.monotonic() + self.cfg.workers_cache_s
        return live

    def _order(self, workers: list[Worker], affinity: str | None) -> list[Worker]:
        """Rendezvous order for `affinity` (a random one without); workers that could not be reached since their
        last heartbeat go last."""
        if affinity is None:
            ordered = random.sample(workers, len(workers))
        else:
            ordered = rendezvous(affinity, workers)
        with self._lock:
            if not self._unreachable:
                return ordered
            # A worker is skipped until it heartbeats again (a dead one never does, and leaves the list).
            self._unreachable = {w.id: self._unreachable[w.id] for w in workers
                                 if w.id in self._unreachable and w.heartbeat_at <= self._unreachable[w.id]}
            down = self._unreachable
        return [w for w in ordered if w.id not in down] + [w for w in ordered if w.id in down]

    def _down(self, worker: Worker, why: BaseException | str) -> None:
        log.warning("worker %s (%s) did not take a call: %s", worker.id, worker.call_url, why)
        with self._lock:
            self._unreachable[worker.id] = max(worker.heartbeat_at, self._unreachable.get(worker.id, 0.0))
            self._live_until = 0.0

    # --- bodies ------------------------------------------------------------------------------------
    def _prepare(self, name: str, payload: Mapping[str, Any], timeout_s: float | None) -> tuple[bytes, float]:
        if name not in self.calls:
            raise UnknownCall(f"No installed application offers the call {name!r}", call=name)
        if not isinstance(payload, Mapping):
            raise errors.ValidationFailed("A call's payload is a JSON object")
        try:
            body = json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()
        except (TypeError, ValueError) as exc:
            raise errors.ValidationFailed(f"The call's payload is not JSON: {exc}") from None
        limit = self.cfg.max_body_bytes
        if len(body) > limit:
            raise errors.PayloadTooLarge(f"A call's payload is limited to {limit} bytes", limit=limit)
        return body, self.timeout_of(name, timeout_s)

    def _answer(self, worker: Worker, name: str, reply: CallReply) -> dict[str, Any] | None:
        """The result of a worker's answer; None when that worker did not take the call (try the next); raises
        the problem it answered with."""
        try:
            data = json.loads(reply.body) if reply.body else None
        except ValueError:
            data = None
        if reply.status == 200 and isinstance(data, dict):
            return data
        if not isinstance(data, dict) or not isinstance(data.get("code"), str):
            log.error("worker %s answered call %s with status %d and no problem", worker.id, name, reply.status)
            raise errors.ReelforgeError("A worker gave an answer that cannot be read", call=name)
        if data["code"] == WorkerStopping.code:
            self._down(worker, "stopping")
            return None
        if data["code"] == CallTimeout.code:
            raise CallTimeout(f"No answer to {name} within the call's timeout", call=name)
        if reply.status == 401:
            # Never the caller's fault: this API and that worker do not share the instance secret (or a clock).
            log.error("worker %s refused the call's signature (%s): do the API and the workers share "
                      "auth.jwt_secret, and their clocks?", worker.id, data.get("detail"))
            raise errors.ReelforgeError("A worker refused the call", call=name)
        raise problem_error(reply.status, data)
