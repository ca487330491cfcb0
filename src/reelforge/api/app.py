"""create_app(): the HTTP API under /v1, the console at /, problem+json errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from reelforge import __version__
from reelforge.api import problems
from reelforge.api.middleware import GuardMiddleware, SegmentRouter
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
    # The API first, each resource router declining at once the paths it has no route for (SegmentRouter); the
    # probes, static files and the console's pages after it.
    for r in (auth.router, jobs.router, storage.router, misc.router, admin.router, mobs.router):
        app.include_router(SegmentRouter("/v1", r), prefix="/v1")
    app.include_router(system.router)
    static = CONSOLE / "static"
    if static.is_dir():
        app.mount("/static", StaticFiles(directory=str(static)), name="static")

    app.include_router(console.router)  # the web console's HTML pages (not in the OpenAPI document)
    app.include_router(console_mobs.router)
    app.include_router(console_upscale.router)

    if c.tracing.enabled:
        from reelforge.tracing import TracingMiddleware

        # Inside GuardMiddleware, so the span knows the request id (answers the guard gives itself are not traced).
        app.add_middleware(TracingMiddleware, tracing=c.tracing)
    app.add_middleware(GuardMiddleware, container=c)
    return app
