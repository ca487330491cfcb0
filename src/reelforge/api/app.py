"""create_app(): the HTTP API under /v1, the console at /, problem+json errors."""

from __future__ import annotations

import inspect
from typing import Any

from fastapi import FastAPI
from starlette.routing import WebSocketRoute

from reelforge import __version__
from reelforge.api import deps, live, problems
from reelforge.api.middleware import GuardMiddleware
from reelforge.api.openapi import document
from reelforge.api.routes import (
    accounts,
    admin,
    auth,
    billing,
    console,
    docs,
    jobs,
    mail,
    misc,
    storage,
    system,
    webhook_secrets,
)
from reelforge.api.routing import ApiIndex, PrefixMount, openapi_routes
from reelforge.config import Settings

# reelforge traces requests itself (reelforge.tracing, when enabled) and counts them in its own metrics; FastAPI
# versions with built-in telemetry would add a second span and histogram per request, and check on every
# request whether a provider was configured. Off where the keyword exists.
_NO_NATIVE_TELEMETRY: dict[str, Any] = (
    {"telemetry": {"tracing": False, "metrics": False, "logs": False}}
    if "telemetry" in inspect.signature(FastAPI.__init__).parameters else {})


def create_app(settings: Settings | None = None, *, container: Any | None = None) -> FastAPI:
    from reelforge.container import Container

    c = container or Container(settings)
    app = FastAPI(
        title="reelforge", version=__version__,
        description="Generative-AI media platform: jobs and pipelines, storage, credits, events.",
        # /docs is ours (routes/docs.py): Swagger UI from this server, not FastAPI's page that loads it from a CDN.
        openapi_url="/openapi.json", docs_url=None, redoc_url=None, **_NO_NATIVE_TELEMETRY,
    )
    app.state.container = c
    c.app_calls()  # the applications' interactive calls: a malformed one fails here, not at its first request
    problems.install(app)
    # The API first, dispatched by its first path segment (api/routing.py); the probes, static files and the
    # console's pages after it. The OpenAPI document describes the same routers under /v1.
    routers = [auth.router, jobs.router, storage.router, misc.router, admin.router, mail.router, accounts.router,
               webhook_secrets.router]
    routers.append(billing.router)
    routers += [r for application in c.apps for r in application.routers()]
    # Which application each route belongs to, by endpoint: what API key scopes `app:<name>` check (deps.py).
    app.state.route_apps = {route.endpoint: application.name for application in c.apps
                            for r in application.routers() for route in r.routes if hasattr(route, "endpoint")}
    # First in the list: the most frequent requests match the first route tried.
    app.router.routes.insert(0, PrefixMount("/v1", ApiIndex("/v1", routers, deps.principal), name="v1"))
    # Live job events over a WebSocket (api/live.py), before the /v1 index, which serves HTTP routes only.
    app.router.routes.insert(0, WebSocketRoute(live.WS_PATH, live.job_events_ws, name="job_events_ws"))
    documented = openapi_routes("/v1", routers, system.router)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document(
                title=app.title, version=app.version, description=app.description, routes=documented,
                mounted=[*(("/v1", r) for r in routers), ("", system.router)], authenticate=deps.principal)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
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
    if c.settings.cors.allow_origins:
        from reelforge.api.cors import CorsMiddleware

        # Outermost: the guard's own answers (429, 413) reach a page on an allowed origin readable too.
        app.add_middleware(CorsMiddleware, settings=c.settings.cors)
    return app
