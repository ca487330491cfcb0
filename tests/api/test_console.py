"""The console's HTML routes (no browser): every page renders, is kept out of the OpenAPI document, carries
its security headers, and links versioned static files. tests/e2e drives the pages in Chromium."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_settings

PAGES = ["/", "/signin", "/register", "/generate", "/jobs", "/jobs/0123abcd", "/uploads", "/credits", "/api-keys",
         "/webhooks", "/admin", "/admin/users", "/admin/queue", "/admin/system", "/film", "/account/data",
         "/admin/audit"]


@pytest.fixture
def web(tmp_path: Path, sqlite_url: str) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from reelforge.api.app import create_app
    from reelforge.container import Container

    c = Container(make_settings(tmp_path, sqlite_url))
    with TestClient(create_app(container=c)) as client:
        yield client
    c.close()


@pytest.mark.parametrize("path", PAGES)
def test_every_page_renders_a_shell(web: Any, path: str) -> None:
    r = web.get(path)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["x-content-type-options"] == "nosniff"
    body = r.text
    # Shells carry no data and no inline script: everything comes from the API and from /static.
    assert not re.search(r"<script(?![^>]*\bsrc=)", body)
    assert "hx-ext=\"rf\"" in body


def test_navigation_reaches_every_page(web: Any) -> None:
    body = web.get("/").text
    links = set(re.findall(r'class="nav-link[^"]*"[^>]*href="([^"]+)"|href="([^"]+)" class="nav-link', body))
    hrefs = {a or b for a, b in links}
    for path in PAGES:
        if path in ("/signin", "/register") or path.startswith("/jobs/"):
            continue
        assert path in hrefs, f"{path} is not in the navigation"
    # Admin entries are hidden until /v1/auth/me says admin (the API refuses non-admins either way).
    assert re.search(r'<p class="nav-section" data-admin-only hidden>Admin</p>', body)


def test_console_routes_are_not_in_the_api_schema(web: Any) -> None:
    paths = web.get("/openapi.json").json()["paths"]
    assert not any(p in paths for p in PAGES)


def test_static_files_are_versioned_and_served(web: Any) -> None:
    body = web.get("/generate").text
    urls = re.findall(r'(?:src|href)="(/static/[^"]+)"', body)
    names = {u.split("?")[0].rsplit("/", 1)[1] for u in urls}
    assert {"htmx.min.js", "console.js", "pages.js", "charts.js", "console.css", "favicon.svg"} <= names
    assert all(re.search(r"\?v=[0-9a-f]{12}$", u) for u in urls)
    for u in urls:
        assert web.get(u).status_code == 200, u
    htmx = web.get("/static/htmx.min.js").text
    assert htmx.startswith("/*! htmx.org 2.") and "Zero-Clause BSD" in htmx[:400]


def test_job_page_checks_the_id(web: Any) -> None:
    assert web.get("/jobs/abc%22%3E%3Cscript%3E").status_code == 422
    body = web.get("/jobs/abc_DEF-123").text
    assert 'data-job-id="abc_DEF-123"' in body


def test_favicon(web: Any) -> None:
    r = web.get("/favicon.ico")
    assert r.status_code == 200 and r.headers["content-type"].startswith("image/svg+xml")


def test_applications_fill_the_dashboard_and_the_reuse_links(web: Any) -> None:
    """The dashboard's quick actions, cards and card scripts, and the job page's reuse targets, come from the
    installed applications' manifests: the core's templates name none of them."""
    body = web.get("/").text
    hero = body.split('id="quick-actions"', 1)[1].split("</div>", 1)[0]
    assert re.search(r'class="btn btn-primary" href="/generate">.*Generate an image</a>', hero)
    assert 'href="/upscale"' in hero and 'href="/uploads"' in hero and 'href="/roto"' in hero
    cards = body.split('id="dashboard-cards"', 1)[1]
    assert 'id="latest-images"' in cards and 'id="tpl-image-card"' in cards
    scripts = re.findall(r'<script src="/static/([^"?]+)\?v=', body)
    assert scripts.count("imagegen.js") == 1 and scripts.index("imagegen.js") > scripts.index("pages.js")
    # The empty job lists point to the first quick action.
    assert '<a href="/generate">Generate an image</a> to start one.' in body
    job = web.get("/jobs/abc").text
    assert """data-reuse-pages='{"image.generate": "/generate", "video.rotoscope": "/roto"}'""" in job


def test_core_templates_and_scripts_name_no_application() -> None:
    from reelforge.api.routes.console import STATIC, TEMPLATES

    pattern = re.compile(r"mobs|upscale|image_generate|image\.generate|imagegen|/generate|latest-images", re.I)
    for f in [*TEMPLATES.iterdir(), *STATIC.iterdir()]:
        if f.suffix in (".html", ".js", ".css") and f.name != "htmx.min.js":
            assert not pattern.search(f.read_text()), f.name


def test_without_applications_the_dashboard_has_no_cards(tmp_path: Path) -> None:
    from reelforge.api.routes.console import dashboard_parts
    from reelforge.applications import Action, AppManifest

    assert dashboard_parts([]) == {"quick_actions": [], "dashboard_cards": [], "dashboard_scripts": [],
                                   "reuse_pages": {}}
    a = AppManifest(name="a", title="A", actions=(Action("/a", "Do a"),), dashboard=("a1.html", "a2.html"),
                    dashboard_scripts=("shared.js",), reuse={"a.run": "/a"})
    b = AppManifest(name="b", title="B", dashboard=("b.html",), dashboard_scripts=("shared.js", "b.js"))
    parts = dashboard_parts([a, b])
    assert parts["dashboard_cards"] == ["a1.html", "a2.html", "b.html"]
    assert parts["dashboard_scripts"] == ["shared.js", "b.js"]  # each script once
    assert [x.href for x in parts["quick_actions"]] == ["/a"] and parts["reuse_pages"] == {"a.run": "/a"}
