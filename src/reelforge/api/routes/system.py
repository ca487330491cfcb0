from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from starlette.concurrency import run_in_threadpool

from reelforge import __version__, errors
from reelforge.api.deps import Container, bearer_token, principal


@asynccontextmanager
async def _alarm_evaluator(app: FastAPI) -> AsyncIterator[None]:
    """Every API process also evaluates the alarm rules on a tick, so they fire while no worker is alive (the
    queue-age and heartbeat alarms are about exactly that); the database schedule lets one evaluator run per
    interval across every API and worker process."""
    from reelforge.runtime.maintenance import AlarmTicker, CloudMetricsTicker

    c = getattr(app.state, "container", None)
    a = c.settings.alarms if c is not None else None
    ticker = AlarmTicker(c) if a is not None and a.enabled and a.evaluate_in_api else None
    if ticker is not None:
        ticker.start()
    # Likewise the cloud metrics (the scaling policies' queue depth), which must go on while no worker runs.
    cloud = CloudMetricsTicker(c) if c is not None and c.settings.metrics.cloudwatch.enabled else None
    if cloud is not None:
        cloud.start()
    try:
        yield
    finally:
        if ticker is not None:
            ticker.stop()
        if cloud is not None:
            cloud.stop()


router = APIRouter(tags=["system"], lifespan=_alarm_evaluator)


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process answers."""
    return {"status": "ok", "version": __version__}


@router.get("/readyz")
def readyz(c: Container) -> dict[str, object]:
    """Database and object store reachable; registered workers counted (live, lost).

    A process that supervises workers (`reelforge run --workers N`, N >= 1) is ready only while at least one
    live worker is registered (check `workers`); an API on its own does not depend on workers, which may run
    anywhere (scaled to zero, say), so for it the counts are information only.
    """
    checks: dict[str, str] = {}
    for name, probe in (("database", c.db.ping), ("storage", c.objects.ping)):
        try:
            probe()
            checks[name] = "ok"
        except Exception as exc:
            checks[name] = f"error: {type(exc).__name__}"
    workers: dict[str, Any] = {}
    if checks["database"] == "ok":
        try:
            health = c.stats.worker_health()
            workers = {"live": health["live"], "lost": health["lost"]}
        except Exception as exc:
            checks["database"] = f"error: {type(exc).__name__}"
    supervisor = getattr(c, "supervisor", None)
    expected = int(getattr(supervisor, "expected", 0) or 0)
    if expected:
        workers["expected"] = expected
        checks["workers"] = "ok" if workers.get("live") else "error: no live worker"
    if any(v != "ok" for v in checks.values()):
        raise errors.ServiceUnavailable("Not ready", code="not_ready", checks=checks, workers=workers)
    return {"status": "ready", "checks": checks, "workers": workers}


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
