from __future__ import annotations

from fastapi import APIRouter, Response

from reelforge import __version__, errors
from reelforge.api.deps import Container

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


@router.get("/metrics", response_class=Response)
def metrics(c: Container) -> Response:
    """Prometheus text format."""
    return Response(c.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
