"""The web console: server-rendered page shells (Jinja2) that fill themselves from the public API.

The pages carry no data and need no session on the server: the browser holds the API tokens and every
figure on a page comes from `/v1/...` (see docs/decisions.md, "The console is a client of the public API").
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, Response
from fastapi.templating import Jinja2Templates

from reelforge import __version__

CONSOLE = Path(__file__).resolve().parent.parent.parent / "console"
TEMPLATES = CONSOLE / "templates"
STATIC = CONSOLE / "static"

# Scripts only from this origin (the tokens live in the browser, so injected script is the threat to close);
# images and XHR may go to the object store's signed URLs, which can be another origin (S3).
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data: blob: http: https:; connect-src 'self' http: https:; font-src 'self'; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-cache",
}


@dataclass(frozen=True)
class NavItem:
    page: str
    href: str
    label: str
    icon: str
    section: str
    admin: bool = False


NAV: tuple[NavItem, ...] = (
    NavItem("dashboard", "/", "Dashboard", "home", "Workspace"),
    NavItem("generate", "/generate", "Generate image", "sparkles", "Workspace"),
    NavItem("upscale", "/upscale", "Upscale video", "sparkles", "Workspace"),
    NavItem("jobs", "/jobs", "Jobs", "list", "Workspace"),
    NavItem("uploads", "/uploads", "Uploads", "upload", "Workspace"),
    NavItem("mobs-feed", "/mobs/feed", "Video feed", "list", "Videos"),
    NavItem("mobs-list", "/mobs", "Mobs", "users", "Videos"),
    NavItem("mobs-upload", "/mobs/upload", "Upload video", "upload", "Videos"),
    NavItem("credits", "/credits", "Credits", "coins", "Account"),
    NavItem("api-keys", "/api-keys", "API keys", "key", "Account"),
    NavItem("webhooks", "/webhooks", "Webhooks", "webhook", "Account"),
    NavItem("admin", "/admin", "Overview", "chart", "Admin", admin=True),
    NavItem("admin-users", "/admin/users", "Users", "users", "Admin", admin=True),
    NavItem("admin-queue", "/admin/queue", "Queue", "queue", "Admin", admin=True),
    NavItem("admin-system", "/admin/system", "System", "server", "Admin", admin=True),
    NavItem("mobs-admin-videos", "/admin/videos", "Videos", "list", "Admin", admin=True),
    NavItem("mobs-admin-stats", "/admin/video-stats", "Video statistics", "chart", "Admin", admin=True),
)

router = APIRouter(include_in_schema=False)


def _static_version() -> str:
    """One hash over the static files: changes whenever any of them does, so browsers never mix versions."""
    h = hashlib.sha256(__version__.encode())
    if STATIC.is_dir():
        for f in sorted(STATIC.iterdir()):
            if f.is_file():
                h.update(f.name.encode())
                h.update(f.read_bytes())
    return h.hexdigest()[:12]


def _templates(request: Request) -> Jinja2Templates:
    # Built once per app and kept on its state: no module globals (DESIGN.md, section 4).
    state = request.app.state
    templates: Jinja2Templates | None = getattr(state, "console_templates", None)
    if templates is None:
        templates = Jinja2Templates(directory=str(TEMPLATES))
        version = _static_version()
        templates.env.globals.update(
            nav=NAV, version=__version__,
            static=lambda name: f"/static/{name}?v={version}",
        )
        state.console_templates = templates
    return templates


def _page(request: Request, template: str, page: str, title: str, *, public: bool = False,
          admin: bool = False, section: str | None = None, **context: Any) -> Response:
    """`page` picks the page's script (body[data-page]); `section` the highlighted navigation entry."""
    response = _templates(request).TemplateResponse(
        request, template, {"page": page, "section": section or page, "title": title, "public": public,
                            "admin_page": admin, **context},
    )
    response.headers.update(HEADERS)
    return response


@router.get("/", response_class=HTMLResponse)
def dashboard(request: Request) -> Response:
    return _page(request, "dashboard.html", "dashboard", "Dashboard")


@router.get("/signin", response_class=HTMLResponse)
def signin(request: Request) -> Response:
    return _page(request, "signin.html", "signin", "Sign in", public=True)


@router.get("/register", response_class=HTMLResponse)
def register(request: Request) -> Response:
    return _page(request, "register.html", "register", "Create account", public=True)


@router.get("/generate", response_class=HTMLResponse)
def generate(request: Request) -> Response:
    return _page(request, "generate.html", "generate", "Generate image")


@router.get("/jobs", response_class=HTMLResponse)
def jobs(request: Request) -> Response:
    return _page(request, "jobs.html", "jobs", "Jobs")


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job(request: Request, job_id: Annotated[str, PathParam(max_length=64, pattern="^[A-Za-z0-9_-]+$")]) -> Response:
    return _page(request, "job.html", "job", "Job", section="jobs", job_id=job_id)


@router.get("/uploads", response_class=HTMLResponse)
def uploads(request: Request) -> Response:
    return _page(request, "uploads.html", "uploads", "Uploads")


@router.get("/credits", response_class=HTMLResponse)
def credits(request: Request) -> Response:
    return _page(request, "credits.html", "credits", "Credits")


@router.get("/api-keys", response_class=HTMLResponse)
def api_keys(request: Request) -> Response:
    return _page(request, "api_keys.html", "api-keys", "API keys")


@router.get("/webhooks", response_class=HTMLResponse)
def webhooks(request: Request) -> Response:
    return _page(request, "webhooks.html", "webhooks", "Webhooks")


@router.get("/admin", response_class=HTMLResponse)
def admin_overview(request: Request) -> Response:
    return _page(request, "admin_overview.html", "admin", "Admin overview", admin=True)


@router.get("/admin/users", response_class=HTMLResponse)
def admin_users(request: Request) -> Response:
    return _page(request, "admin_users.html", "admin-users", "Users", admin=True)


@router.get("/admin/queue", response_class=HTMLResponse)
def admin_queue(request: Request) -> Response:
    return _page(request, "admin_queue.html", "admin-queue", "Queue", admin=True)


@router.get("/admin/system", response_class=HTMLResponse)
def admin_system(request: Request) -> Response:
    return _page(request, "admin_system.html", "admin-system", "System", admin=True)


@router.get("/favicon.ico")
def favicon() -> Response:
    return Response((STATIC / "favicon.svg").read_bytes(), media_type="image/svg+xml",
                    headers={"Cache-Control": "public, max-age=86400"})
