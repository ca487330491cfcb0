"""Dependencies: the container, the calling principal, admin checks and per-account write limits."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from reelforge import errors
from reelforge.domain.types import Principal
from reelforge.observability import account_id_var

WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


def container(request: Request) -> Any:
    return request.app.state.container


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise errors.Unauthorized("Send `Authorization: Bearer <token or API key>`", code="missing_credentials")
    return token.strip()


def principal(request: Request, c: Annotated[Any, Depends(container)]) -> Principal:
    p: Principal = c.auth.authenticate(_bearer(request))
    account_id_var.set(p.user_id)
    request.state.principal = p
    if request.method in WRITE_METHODS and c.settings.rate_limit.enabled:
        wait = c.account_limiter.hit(p.user_id)
        if wait is not None:
            raise errors.RateLimited(f"Write limit reached for this account; retry in {wait} s", retry_after=wait)
    return p


def admin(p: Annotated[Principal, Depends(principal)]) -> Principal:
    if not p.is_admin:
        # Admin routes are not secret; saying 403 here leaks nothing about other users' objects.
        raise errors.Forbidden("This needs the admin role", code="admin_only")
    return p


Container = Annotated[Any, Depends(container)]
CurrentUser = Annotated[Principal, Depends(principal)]
Admin = Annotated[Principal, Depends(admin)]
