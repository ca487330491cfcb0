"""create_app(): the HTTP API under /v1, the console at /, problem+json errors."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from reelforge import __version__
from reelforge.api import problems
from reelforge.api.middleware import GuardMiddleware, SegmentRouter
from reelforge.api.routes import admin, auth, console, docs, jobs, misc, storage, system
from reelforge.config import Settings


def create_app(settings: Settings | None = None, *, container: Any | None = None) -> FastAPI:
    from reelforge.container import Container

    c = container or Container(settings)
    app = FastAPI(
        title="reelforge", version=__version__,
        description="Generative-AI media platform: jobs and pipelines, storage, credits, events.",
        # /docs is ours (routes/docs.py): Swagger UI from this server, not FastAPI's page that loads it from a CDN.
        openapi_url="/openapi.json", docs_url=None, redoc_url=None,
    )
    app.state.container = c
    problems.install(app)
    # The API first, each resource router declining at once the paths it has no route for (SegmentRouter); the
    # probes, static files and the console's pages after it.
    routers = [auth.router, jobs.router, storage.router, misc.router, admin.router]
    routers += [r for application in c.apps for r in application.routers()]
    for r in routers:
        app.include_router(SegmentRouter("/v1", r), prefix="/v1")
    app.include_router(system.router)
    app.include_router(docs.router)
    app.mount(docs.STATIC_URL, docs.static_app(), name="docs-static")
    app.mount("/static", console.static_app(c.apps), name="static")

    app.include_router(console.router)  # the web console's HTML pages (not in the OpenAPI document)
    for application in c.apps:
        for r in application.console():
            app.include_router(r)

    if c.tracing.enabled:
        from reelforge.tracing import TracingMiddleware

        # Inside GuardMiddleware, so the span knows the request id (answers the guard gives itself are not traced).
        app.add_middleware(TracingMiddleware, tracing=c.tracing)
    app.add_middleware(GuardMiddleware, container=c)
    return app
