from __future__ import annotations

import hmac

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from reelforge import __version__, errors
from reelforge.api.deps import Container, bearer_token, principal

router = APIRouter(tags=["system"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process answers."""
    return {"status": "ok", "version": __version__}


@router.get("/readyz")
def readyz(c: Container) -> dict[str, object]:
    """Database and object store reachable."""
    checks: dict[str, str] = {}
    for name, probe in (("database", c.db.ping), ("storage", c.objects.ping)):
        try:
            probe()
            checks[name] = "ok"
        except Exception as exc:
            checks[name] = f"error: {type(exc).__name__}"
    if any(v != "ok" for v in checks.values()):
        raise errors.ServiceUnavailable("Not ready", code="not_ready", checks=checks)
    return {"status": "ready", "checks": checks}


@router.get("/metrics", response_class=Response, responses={
    200: {"content": {"text/plain": {}}, "description": "Prometheus text format"},
    401: {"description": "No credentials, or neither an account's token nor the scrape token (problem+json)"},
    403: {"description": "An account that is not an admin (`admin_only`, problem+json)"}})
async def metrics(request: Request, c: Container) -> Response:
    """Prometheus text format, for an admin's token or the configured scrape token (`metrics.scrape_token`):
    the figures describe every account's traffic and the server's internals."""
    expected = c.settings.metrics.scrape_token
    sent = bearer_token(request.headers.get("authorization", ""))
    if not (expected and sent and hmac.compare_digest(sent.encode(), expected.encode())):
        p = await principal(request)
        if not p.is_admin:
            raise errors.Forbidden("Metrics are for admins and the configured scraper", code="admin_only")
    body = await run_in_threadpool(c.metrics.render)
    return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")
