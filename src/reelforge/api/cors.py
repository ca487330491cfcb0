"""CORS for the origins named in `cors.allow_origins` (pure ASGI, outermost, installed only when some are).

A request whose Origin is not allowed passes through untouched: no `Access-Control-*` header, so the browser
keeps the answer from the page. A preflight from an allowed origin is answered here (204) and never reaches
the routes, the rate limits or the access log. Every answer to an allowed origin, errors included (a 429 or a
413 of the guard), carries the CORS headers, so the page can read the problem document and `Retry-After`.
"""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

ALLOW_METHODS = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
# The request headers the API reads: auth, JSON bodies, idempotency, conditional reads, request ids, SSE resume.
ALLOW_HEADERS = ("Authorization, Content-Type, Idempotency-Key, If-None-Match, If-Match, X-Request-Id, "
                 "Last-Event-ID, Accept, Accept-Language, Content-Language")
# The answer headers a client needs besides the CORS-safelisted ones.
EXPOSE_HEADERS = ("Location, ETag, Retry-After, RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset, "
                  "RateLimit-Policy, X-Request-Id, Idempotent-Replayed, Content-Disposition, Content-Length")


class CorsMiddleware:
    def __init__(self, app: ASGIApp, *, settings: Any) -> None:
        self.app = app
        self.origins = frozenset(settings.allow_origins)
        self.any_origin = "*" in self.origins
        self.credentials = bool(settings.allow_credentials)
        self.max_age = str(int(settings.max_age_s))

    def allowed(self, origin: str) -> bool:
        return self.any_origin or origin in self.origins

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        origin = ""
        preflight = False
        for k, v in scope.get("headers", ()):
            if len(k) == 6 and k.lower() == b"origin":
                origin = v.decode("latin-1")
            elif len(k) == 29 and k.lower() == b"access-control-request-method":
                preflight = True
        if not origin:
            await self.app(scope, receive, send)
            return
        if not self.allowed(origin):
            await self.app(scope, receive, send)
            return
        # "*" only where no credentials are involved; otherwise the origin itself, with Vary for caches.
        allow_origin = b"*" if self.any_origin and not self.credentials else origin.encode("latin-1")
        common: list[tuple[bytes, bytes]] = [(b"access-control-allow-origin", allow_origin), (b"vary", b"Origin")]
        if self.credentials:
            common.append((b"access-control-allow-credentials", b"true"))
        if preflight and scope["method"] == "OPTIONS":
            headers = [*common,
                       (b"access-control-allow-methods", ALLOW_METHODS.encode()),
                       (b"access-control-allow-headers", ALLOW_HEADERS.encode()),
                       (b"access-control-max-age", self.max_age.encode()),
                       (b"content-length", b"0")]
            await send({"type": "http.response.start", "status": 204, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                raw = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"vary"]
                vary = [v for k, v in message.get("headers", []) if k.lower() == b"vary"]
                merged = b", ".join([*vary, b"Origin"]) if vary else b"Origin"
                message["headers"] = [*raw, (b"access-control-allow-origin", allow_origin), (b"vary", merged),
                                      *common[2:], (b"access-control-expose-headers", EXPOSE_HEADERS.encode())]
            await send(message)

        await self.app(scope, receive, send_with_cors)
