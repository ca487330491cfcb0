"""Request ids, access logs, metrics, body-size limits and per-IP write limits (pure ASGI, streaming-safe)."""

from __future__ import annotations

import collections
import gc
import logging
import os
import threading
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from reelforge import errors
from reelforge.api.problems import problem
from reelforge.observability import AccessLog, client_ip_var, request_id_var
from reelforge.tracing import route_template

log = logging.getLogger("reelforge.access")
access = AccessLog(log)

WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


class RateLimiter:
    """Sliding-window counter per key, in process memory (one API process per limiter)."""

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit = limit
        self.window_s = window_s
        self._hits: dict[str, collections.deque[float]] = {}
        self._lock = threading.Lock()

    def reset(self) -> None:
        """Forget every hit (a new window for every key)."""
        with self._lock:
            self._hits.clear()

    def hit(self, key: str, now: float | None = None) -> int | None:
        """Record a hit; returns None when allowed, else seconds to wait."""
        now = time.monotonic() if now is None else now
        with self._lock:
            q = self._hits.setdefault(key, collections.deque())
            while q and q[0] <= now - self.window_s:
                q.popleft()
            if len(q) >= self.limit:
                return max(1, int(q[0] + self.window_s - now + 0.999))
            q.append(now)
            if len(self._hits) > 100_000:  # keep memory bounded under a flood of distinct keys
                for k in [k for k, v in self._hits.items() if not v][:50_000]:
                    del self._hits[k]
            return None


class _TooLarge(errors.PayloadTooLarge):
    """Raised while the app reads the body; the problem handler renders it as 413."""


class GuardMiddleware:
    """Outermost layer: request id, body limit, per-IP write rate limit, metrics and one access-log line."""

    def __init__(self, app: ASGIApp, *, container: Any) -> None:
        self.app = app
        self.c = container

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                receive = self._closing_reads(receive)
            await self.app(scope, receive, send)
            return
        settings = self.c.settings
        # Only two headers matter here: pick them out of the raw list instead of decoding every header.
        rid = ""
        declared: str | None = None
        for k, v in scope.get("headers", ()):
            if len(k) == 12 and k.lower() == b"x-request-id":
                rid = v.decode("latin-1")
            elif len(k) == 14 and k.lower() == b"content-length":
                declared = v.decode("latin-1")
        if not rid or len(rid) > 128 or not rid.replace("-", "").replace("_", "").isalnum():
            rid = os.urandom(16).hex()  # as random as uuid4().hex, without building a UUID
        token = request_id_var.set(rid)
        scope.setdefault("state", {})["request_id"] = rid
        method = scope["method"]
        path: str = scope["path"]
        started = time.perf_counter()
        status_holder = {"status": 500}

        async def send_wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                status_holder["started"] = 1
                message.setdefault("headers", [])
                message["headers"] = [*list(message["headers"]), (b"x-request-id", rid.encode())]
            await send(message)

        try:
            if "\x00" in path or b"%00" in scope.get("query_string", b""):
                # No id, key or filter contains NUL, and PostgreSQL cannot even compare text with one.
                resp = problem(400, "invalid_url", "Bad request", "URLs must not contain NUL characters")
                await resp(scope, receive, send_wrapped)
                return
            client_ip = (scope.get("client") or ("unknown", 0))[0]
            client_ip_var.set(client_ip)  # for the audit trail
            if method in WRITE_METHODS and settings.rate_limit.enabled and not path.startswith("/v1/storage/"):
                wait = self.c.ip_limiter.hit(client_ip)
                if wait is not None:
                    resp = problem(429, "rate_limited", "Too many requests",
                                   f"Write limit reached for this address; retry in {wait} s", instance=path,
                                   headers={"Retry-After": str(wait)})
                    await resp(scope, receive, send_wrapped)
                    return
            limit = None if path.startswith("/v1/storage/") else settings.max_body_bytes
            if limit is not None:
                if declared is not None and declared.isdigit() and int(declared) > limit:
                    resp = problem(413, "payload_too_large", "Payload too large",
                                   f"Request bodies are limited to {limit} bytes", instance=path)
                    await resp(scope, receive, send_wrapped)
                    return
                receive = _limited(receive, limit)
            await self.app(scope, receive, send_wrapped)
        except _TooLarge:
            if not status_holder.get("started"):
                resp = problem(413, "payload_too_large", "Payload too large",
                               f"Request bodies are limited to {settings.max_body_bytes} bytes", instance=path)
                await resp(scope, receive, send_wrapped)
        except Exception:
            # Starlette's outermost layer would answer an unhandled error itself, without our X-Request-Id
            # (the one answer where a client most needs it). Answer here; it still logs the error and sends nothing.
            if not status_holder.get("started"):
                resp = problem(500, "internal_error", "Internal error",
                               "Something went wrong on our side; it was logged.", instance=path)
                await resp(scope, receive, send_wrapped)
            raise
        finally:
            elapsed = time.perf_counter() - started
            # Never the raw path: requests answered before routing (413, 429, ...) would make a series per URL.
            route_path = route_template(scope) or "unmatched"
            self.c.metrics.observe_request(method, route_path, status_holder["status"], elapsed)
            if not path.startswith(("/metrics", "/healthz", "/static")):
                # The account is resolved in the route's thread (a copied context), so its contextvar never
                # reaches this line; the principal left on the request state does.
                principal = (scope.get("state") or {}).get("principal")
                access.write(method, path, status_holder["status"], elapsed,
                             principal.user_id if principal is not None else None)
            request_id_var.reset(token)


    def _closing_reads(self, receive: Receive) -> Receive:
        """At lifespan startup, freeze the objects built so far out of the garbage collector's passes; at shutdown,
        flush the access log and close the event-loop read connections (adapters/db/reads.py) of this loop."""

        async def wrapped() -> Message:
            message = await receive()
            if message["type"] == "lifespan.startup":
                # Everything built so far (the app, its routes, the container, imported modules: most of the
                # process's objects) lives as long as the process: keep it out of the cyclic collector's full
                # passes, which otherwise walk all of them now and then while every request waits.
                gc.collect()
                gc.freeze()
            elif message["type"] == "lifespan.shutdown":
                access.flush()
                db = getattr(self.c, "__dict__", {}).get("db")  # never opened: nothing to close
                if db is not None:
                    await db.close_reads()
                calls = getattr(self.c, "__dict__", {}).get("calls")  # this loop's pooled client to the workers
                if calls is not None:
                    await calls.aclose()
            return message

        return wrapped


def _limited(receive: Receive, limit: int) -> Receive:
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise _TooLarge(f"Request bodies are limited to {limit} bytes", limit=limit)
        return message

    return wrapped

