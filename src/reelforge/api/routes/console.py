"""The web console: server-rendered page shells (Jinja2) that fill themselves from the public API.

The pages carry no data and need no session on the server: the browser holds the API tokens and every
figure on a page comes from `/v1/...` (see docs/decisions.md, "The console is a client of the public API").
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from reelforge import __version__
from reelforge.applications import Action, AppManifest, NavItem

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


CORE_NAV: tuple[NavItem, ...] = (
    NavItem("dashboard", "/", "Dashboard", "home", "Workspace"),
    NavItem("jobs", "/jobs", "Jobs", "list", "Workspace"),
    NavItem("uploads", "/uploads", "Uploads", "upload", "Workspace"),
    NavItem("credits", "/credits", "Credits", "coins", "Account"),
    NavItem("api-keys", "/api-keys", "API keys", "key", "Account"),
    NavItem("webhooks", "/webhooks", "Webhooks", "webhook", "Account"),
    NavItem("account", "/account", "Settings", "lock", "Account"),
    NavItem("account-data", "/account/data", "Your data", "download", "Account"),
    NavItem("admin", "/admin", "Overview", "chart", "Admin", admin=True),
    NavItem("admin-users", "/admin/users", "Users", "users", "Admin", admin=True),
    NavItem("admin-queue", "/admin/queue", "Queue", "queue", "Admin", admin=True),
    NavItem("admin-system", "/admin/system", "System", "server", "Admin", admin=True),
    NavItem("admin-audit", "/admin/audit", "Audit log", "lock", "Admin", admin=True),
)


def navigation(apps: Sequence[AppManifest]) -> tuple[NavItem, ...]:
    """The core's entries and each application's. An application's entries in a core section follow the
    section's first entry (the workspace's dashboard) or end it (admin); its own sections sit between the
    workspace and the account sections, in application order."""
    sections: dict[str, list[NavItem]] = {}
    for item in CORE_NAV:
        sections.setdefault(item.section, []).append(item)
    own: dict[str, list[NavItem]] = {}
    for app in apps:
        for item in app.nav:
            if item.section in sections:
                items = sections[item.section]
                at = 1 if item.section == "Workspace" else len(items)
                while at < len(items) and items[at] not in CORE_NAV:
                    at += 1
                items.insert(at, item)
            else:
                own.setdefault(item.section, []).append(item)
    order = ["Workspace", *own, *[name for name in sections if name != "Workspace"]]
    merged = {**sections, **own}
    return tuple(item for name in order for item in merged[name])


def dashboard_parts(apps: Sequence[AppManifest]) -> dict[str, Any]:
    """What the applications add to the dashboard and the job page, in application order: quick actions,
    cards (template names), the cards' scripts (each once) and, per job kind, the page that reuses a job."""
    actions: list[Action] = [a for app in apps for a in app.actions]
    cards = [t for app in apps for t in app.dashboard]
    scripts = list(dict.fromkeys(s for app in apps for s in app.dashboard_scripts))
    reuse = {kind: href for app in apps for kind, href in app.reuse.items()}
    return {"quick_actions": actions, "dashboard_cards": cards, "dashboard_scripts": scripts, "reuse_pages": reuse}


class _Static(StaticFiles):
    """Static files looked up in the core's folder first, then in each application's."""

    def __init__(self, directories: Sequence[Path]) -> None:
        super().__init__(directory=str(directories[0]))
        self.all_directories = [str(d) for d in directories]


def static_app(apps: Sequence[AppManifest]) -> StaticFiles:
    """The `/static` mount: the console's shared files and every application's."""
    return _Static(_static_dirs(apps))


def _static_dirs(apps: Sequence[AppManifest]) -> list[Path]:
    return [STATIC, *[a.static for a in apps if a.static is not None and a.static.is_dir()]]


router = APIRouter(include_in_schema=False)


def _static_version(directories: Sequence[Path]) -> str:
    """One hash over the static files: changes whenever any of them does, so browsers never mix versions."""
    h = hashlib.sha256(__version__.encode())
    for directory in directories:
        if directory.is_dir():
            for f in sorted(directory.iterdir()):
                if f.is_file():
                    h.update(f.name.encode())
                    h.update(f.read_bytes())
    return h.hexdigest()[:12]


def _templates(request: Request) -> Jinja2Templates:
    # Built once per app and kept on its state: no module globals (DESIGN.md, section 4).
    state = request.app.state
    templates: Jinja2Templates | None = getattr(state, "console_templates", None)
    if templates is None:
        apps = request.app.state.container.apps
        folders = [TEMPLATES, *[a.templates for a in apps if a.templates is not None]]
        templates = Jinja2Templates(directory=[str(f) for f in folders])
        version = _static_version(_static_dirs(apps))
        templates.env.globals.update(
            nav=navigation(apps), version=__version__,
            static=lambda name: f"/static/{name}?v={version}",
            **dashboard_parts(apps),
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
    apps = [(a.name, a.title) for a in request.app.state.container.apps if a.routers is not None]
    return _page(request, "api_keys.html", "api-keys", "API keys", applications=apps)


@router.get("/webhooks", response_class=HTMLResponse)
def webhooks(request: Request) -> Response:
    return _page(request, "webhooks.html", "webhooks", "Webhooks")


@router.get("/account", response_class=HTMLResponse)
def account(request: Request) -> Response:
    return _page(request, "account.html", "account", "Account settings")


# The pages the links in mails open (their token is in the URL's fragment) and the forgot-password form.
@router.get("/account/verify", response_class=HTMLResponse)
def account_verify(request: Request) -> Response:
    return _page(request, "account_link.html", "account-verify", "Confirm your address", public=True)


@router.get("/account/reset", response_class=HTMLResponse)
def account_reset(request: Request) -> Response:
    return _page(request, "account_link.html", "account-reset", "Choose a new password", public=True)


@router.get("/account/forgot", response_class=HTMLResponse)
def account_forgot(request: Request) -> Response:
    return _page(request, "account_link.html", "account-forgot", "Forgot your password", public=True)


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


@router.get("/account/data", response_class=HTMLResponse)
def account_data(request: Request) -> Response:
    return _page(request, "account_data.html", "account-data", "Your data")


@router.get("/admin/audit", response_class=HTMLResponse)
def admin_audit(request: Request) -> Response:
    return _page(request, "admin_audit.html", "admin-audit", "Audit log", admin=True)


@router.get("/favicon.ico")
def favicon() -> Response:
    return Response((STATIC / "favicon.svg").read_bytes(), media_type="image/svg+xml",
                    headers={"Cache-Control": "public, max-age=86400"})
