"""Dependencies: the container, the calling principal, admin checks and per-account write limits.

`container` and `principal` are `async def`: FastAPI runs a sync dependency in the threadpool, which costs a
thread hop (and GIL contention under load) per dependency per request. A resolved principal is kept for a few
seconds per bearer token (:class:`PrincipalCache`), so a hot client costs no database read to authenticate;
the cache is emptied for an account in this process whenever its keys, role or disabled flag change.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import threading
import time
from typing import Annotated, Any

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from reelforge import errors
from reelforge.api.middleware import rate_limit_headers, take
from reelforge.domain import scopes as scope_rules
from reelforge.domain.types import Principal
from reelforge.observability import account_id_var

WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
READ_METHODS = {"GET", "HEAD"}
PRINCIPAL_CACHE_TTL_S = 5.0
API_KEY_PREFIX = "rf_"


async def container(request: Request) -> Any:
    return request.app.state.container


def container_of(request: Request) -> Any:
    """The container, for routes that take the Request anyway: a dependency costs FastAPI a solve per request
    (about a quarter of a cached job read's CPU time), reading the app state costs nothing."""
    return request.app.state.container


def _bearer(request: Request) -> str:
    header = ""
    for k, v in request.scope["headers"]:  # the raw list: building the request's Headers is not needed here
        if len(k) == 13 and k.lower() == b"authorization":
            header = v.decode("latin-1")
            break
    token = bearer_token(header)
    if token is None:
        raise errors.Unauthorized("Send `Authorization: Bearer <token or API key>`", code="missing_credentials")
    return token


def bearer_token(header: str) -> str | None:
    """The token of an `Authorization: Bearer <token>` header value, or None."""
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def _jwt_exp(token: str) -> float | None:
    """The `exp` claim of a JWT whose signature was already verified (None when absent or unreadable)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        exp = claims.get("exp")
        return float(exp) if isinstance(exp, int | float) else None
    except (IndexError, ValueError, binascii.Error, AttributeError):
        return None


class PrincipalCache:
    """Resolved principals per bearer token (keyed by its sha256, never the token) for `ttl_s` seconds.

    Only successful authentications are kept. An entry never outlives the JWT's own `exp`. `invalidate_user`
    drops every entry of an account; a lookup that started before an invalidation is not stored (generation
    check), so a read racing with a revoke cannot put the stale principal back. Other processes are not told:
    there a change takes effect within `ttl_s` (docs/decisions.md).
    """

    def __init__(self, ttl_s: float = PRINCIPAL_CACHE_TTL_S, max_entries: int = 10_000) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.generation = 0
        # key -> (monotonic deadline, wall-clock JWT expiry or None, principal)
        self._entries: dict[str, tuple[float, float | None, Principal]] = {}
        self._lock = threading.Lock()
        self.inflight: dict[str, asyncio.Future[Principal]] = {}  # event-loop side only

    @staticmethod
    def key(bearer: str) -> str:
        return hashlib.sha256(bearer.encode()).hexdigest()

    def get(self, key: str) -> Principal | None:
        hit = self._entries.get(key)
        if hit is None:
            return None
        deadline, exp, p = hit
        if deadline <= time.monotonic() or (exp is not None and exp <= time.time()):
            with self._lock:
                self._entries.pop(key, None)
            return None
        return p

    def put(self, key: str, p: Principal, *, generation: int, exp: float | None = None) -> None:
        if self.ttl_s <= 0:
            return
        with self._lock:
            if generation != self.generation:
                return  # an invalidation happened while this principal was being read
            if len(self._entries) >= self.max_entries:
                self._entries.clear()  # bounded memory; a flood of distinct tokens only costs re-reads
            self._entries[key] = (time.monotonic() + self.ttl_s, exp, p)

    def invalidate_user(self, user_id: str) -> None:
        with self._lock:
            self.generation += 1
            for k in [k for k, v in self._entries.items() if v[2].user_id == user_id]:
                del self._entries[k]

    def clear(self) -> None:
        with self._lock:
            self.generation += 1
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


def principal_cache(request: Request, c: Any) -> PrincipalCache:
    """The app's one cache, created on first use and subscribed to the auth service's change notices."""
    state = request.app.state
    cache: PrincipalCache | None = getattr(state, "principal_cache", None)
    if cache is None:
        ttl = getattr(getattr(c.settings, "auth", None), "principal_cache_ttl_s", PRINCIPAL_CACHE_TTL_S)
        cache = PrincipalCache(ttl_s=float(ttl))
        subscribe = getattr(c.auth, "on_principal_change", None)
        if subscribe is not None:
            subscribe(cache.invalidate_user)
        else:  # an auth service that cannot say when an account changes: never serve from memory
            cache.ttl_s = 0.0
        state.principal_cache = cache
    return cache


async def _resolve(cache: PrincipalCache, key: str, bearer: str, c: Any) -> Principal:
    """Authenticate on a cache miss. Concurrent misses for one token share one lookup: when an entry expires
    under load, every in-flight request of that client would otherwise read the database at the same moment."""
    loop = asyncio.get_running_loop()
    pending = cache.inflight.get(key)
    if pending is not None and pending.get_loop() is loop:
        try:
            return await asyncio.shield(pending)
        except asyncio.CancelledError:
            if not pending.cancelled():
                raise  # this request itself was cancelled
            # the request doing the lookup went away: do it here
    fut: asyncio.Future[Principal] = loop.create_future()
    fut.add_done_callback(_consume)
    cache.inflight[key] = fut
    try:
        generation = cache.generation
        p: Principal = await run_in_threadpool(c.auth.authenticate, bearer)
        cache.put(key, p, generation=generation,
                  exp=None if bearer.startswith(API_KEY_PREFIX) else _jwt_exp(bearer))
        fut.set_result(p)
        return p
    except BaseException as exc:
        if isinstance(exc, Exception):
            fut.set_exception(exc)
        else:
            fut.cancel()
        raise
    finally:
        if cache.inflight.get(key) is fut:
            del cache.inflight[key]


def _consume(fut: asyncio.Future[Principal]) -> None:
    if not fut.cancelled():
        fut.exception()  # retrieved: a failed lookup nobody else waited on is not "never retrieved"


async def principal(request: Request) -> Principal:
    """The one authentication of every route: a rule about who may call the API belongs here (or in
    `AuthService.authenticate`, whose answers this caches), so no route can skip it."""
    c = request.app.state.container  # not a sub-dependency: one less for FastAPI to solve per request
    bearer = _bearer(request)
    cache = principal_cache(request, c)
    key = cache.key(bearer)
    cached = cache.get(key)
    p = cached if cached is not None else await _resolve(cache, key, bearer, c)
    account_id_var.set(p.user_id)
    request.state.principal = p
    if p.scopes is not None:
        check_scopes(request, p)
    if c.settings.rate_limit.enabled:
        write = request.method in WRITE_METHODS
        limiter = c.account_limiter if write else c.account_read_limiter if request.method in READ_METHODS else None
        if limiter is not None and not request.scope["path"].startswith("/v1/storage/"):
            verdict = await take(limiter, p.user_id)
            rate_limit_headers(request.scope, verdict)
            if not verdict.allowed:
                wait = verdict.retry_after or 1
                raise errors.RateLimited(f"{'Write' if write else 'Read'} limit reached for this account; "
                                         f"retry in {wait} s", retry_after=wait)
    return p


def check_scopes(request: Request, p: Principal) -> None:
    """Refuse a call the caller's API key has no scope for (403 `insufficient_scope`). The route's application
    comes from the app's registration (`app.state.route_apps`, by endpoint), never from its path."""
    route_apps: dict[Any, str] = getattr(request.app.state, "route_apps", {})
    lacking = scope_rules.missing(p.scopes, request.method, route_apps.get(request.scope.get("endpoint")))
    if lacking is not None:
        raise errors.Forbidden(f"This API key's scopes do not include `{lacking}`", code="insufficient_scope",
                               scope=lacking)


async def admin(p: Annotated[Principal, Depends(principal)]) -> Principal:
    if not p.is_admin:
        # Admin routes are not secret; saying 403 here leaks nothing about other users' objects.
        raise errors.Forbidden("This needs the admin role", code="admin_only")
    return p


Container = Annotated[Any, Depends(container)]
CurrentUser = Annotated[Principal, Depends(principal)]
Admin = Annotated[Principal, Depends(admin)]
