"""create_app(): the HTTP API under /v1, the console at /, problem+json errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from reelforge import __version__
from reelforge.api import problems
from reelforge.api.middleware import GuardMiddleware
from reelforge.api.routes import admin, auth, console, console_mobs, console_upscale, jobs, misc, mobs, storage, system
from reelforge.config import Settings

CONSOLE = Path(__file__).resolve().parent.parent / "console"


def create_app(settings: Settings | None = None, *, container: Any | None = None) -> FastAPI:
    from reelforge.container import Container

    c = container or Container(settings)
    app = FastAPI(
        title="reelforge", version=__version__,
        description="Generative-AI media platform: jobs and pipelines, storage, credits, events.",
        openapi_url="/openapi.json", docs_url="/docs", redoc_url=None,
    )
    app.state.container = c
    problems.install(app)
    app.include_router(system.router)
    for r in (auth.router, jobs.router, storage.router, misc.router, admin.router):
        app.include_router(r, prefix="/v1")
    app.include_router(mobs.router, prefix="/v1")
    static = CONSOLE / "static"
    if static.is_dir():
        app.mount("/static", StaticFiles(directory=str(static)), name="static")

    app.include_router(console.router)  # the web console's HTML pages (not in the OpenAPI document)
    app.include_router(console_mobs.router)
    app.include_router(console_upscale.router)

    # Innermost of our layers: the hot job read answers inside the tracing and guard layers, so it has a request
    # id, a span, metrics and its access-log line like every other request.
    from reelforge.api.hot import HotReads

    app.add_middleware(HotReads, container=c)
    if c.tracing.enabled:
        from reelforge.tracing import TracingMiddleware

        # Inside GuardMiddleware, so the span knows the request id (answers the guard gives itself are not traced).
        app.add_middleware(TracingMiddleware, tracing=c.tracing)
    app.add_middleware(GuardMiddleware, container=c)
    return app
