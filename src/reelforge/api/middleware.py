"""Request ids, access logs, metrics, body-size limits and per-IP write limits (pure ASGI, streaming-safe)."""

from __future__ import annotations

import gc
import logging
import os
import time
from typing import Any

from anyio import to_thread
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from reelforge import errors
from reelforge.api.problems import problem
from reelforge.observability import AccessLog, client_ip_var, request_id_var
from reelforge.services.limits import RateLimiter, Verdict
from reelforge.tracing import route_template

# Not counted against the per-address limits: signed object transfers (the signature is the limit) and the payment
# provider's webhook (few addresses, many deliveries; each one is signed and de-duplicated).
UNLIMITED_PATHS = ("/v1/storage/", "/v1/billing/stripe/webhook")

__all__ = ["UNLIMITED_PATHS", "GuardMiddleware", "RateLimiter", "rate_limit_headers", "take"]

log = logging.getLogger("reelforge.access")
access = AccessLog(log)

WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
READ_METHODS = {"GET", "HEAD"}


async def take(limiter: Any, key: str) -> Verdict:
    """A limiter's verdict: from this process's share when it can (no I/O), else from the shared counter on a
    thread, so the event loop never waits on the database or Redis."""
    verdict: Verdict | None = limiter.try_local(key)
    if verdict is not None:
        return verdict
    taken: Verdict = await to_thread.run_sync(limiter.take, key)
    return taken


def rate_limit_headers(scope: Scope, verdict: Verdict) -> None:
    """Keep the tightest verdict of this request for its answer's RateLimit-* headers."""
    state = scope.setdefault("state", {})
    current: Verdict | None = state.get("ratelimit")
    if current is None or not verdict.allowed or (current.allowed and verdict.remaining < current.remaining):
        state["ratelimit"] = verdict


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
                extra = [(b"x-request-id", rid.encode())]
                verdict = scope["state"].get("ratelimit")
                if verdict is not None:
                    extra += [(k.lower().encode(), v.encode()) for k, v in verdict.headers().items()
                              if k != "Retry-After"]  # the problem answer sets its own
                message["headers"] = [*list(message["headers"]), *extra]
            await send(message)

        try:
            if "\x00" in path or b"%00" in scope.get("query_string", b""):
                # No id, key or filter contains NUL, and PostgreSQL cannot even compare text with one.
                resp = problem(400, "invalid_url", "Bad request", "URLs must not contain NUL characters")
                await resp(scope, receive, send_wrapped)
                return
            client_ip = (scope.get("client") or ("unknown", 0))[0]
            client_ip_var.set(client_ip)  # for the audit trail
            if settings.rate_limit.enabled and not path.startswith(UNLIMITED_PATHS):
                # Writes anywhere; reads of the API (not the console's pages, probes or static files).
                limiter = (self.c.ip_limiter if method in WRITE_METHODS else
                           self.c.ip_read_limiter if method in READ_METHODS and path.startswith("/v1/") else None)
                if limiter is not None:
                    verdict = await take(limiter, client_ip)
                    rate_limit_headers(scope, verdict)
                    if not verdict.allowed:
                        kind = "Write" if method in WRITE_METHODS else "Read"
                        resp = problem(429, "rate_limited", "Too many requests",
                                       f"{kind} limit reached for this address; retry in {verdict.retry_after} s",
                                       instance=path, headers={"Retry-After": str(verdict.retry_after)})
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

