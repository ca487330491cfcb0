"""create_app(): the HTTP API under /v1, the console at /, problem+json errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from reelforge import __version__
from reelforge.api import problems
from reelforge.api.middleware import GuardMiddleware
from reelforge.api.routes import auth, jobs, misc, storage, system
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
    for r in (auth.router, jobs.router, storage.router, misc.router):
        app.include_router(r, prefix="/v1")
    static = CONSOLE / "static"
    if static.is_dir():
        app.mount("/static", StaticFiles(directory=str(static)), name="static")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def console_index() -> HTMLResponse:
        page = CONSOLE / "templates" / "index.html"
        return HTMLResponse(page.read_text() if page.exists() else "<h1>reelforge</h1>")

    app.add_middleware(GuardMiddleware, container=c)
    return app
