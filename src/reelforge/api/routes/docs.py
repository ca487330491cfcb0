"""`/docs`: Swagger UI served from this server, never from a CDN.

The page shares the console's origin, where the browser keeps the access token, so it loads script only from
here: Swagger UI's files come from the `fastapi-offline` package (its `static` folder, mounted at
`/docs/static`), and a Content-Security-Policy admits the page's one inline script by its hash.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.resources
import re
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC_URL = "/docs/static"
# Swagger UI's own files (swagger-ui-bundle.js, swagger-ui.css), shipped inside a wheel.
SWAGGER_DIR = Path(str(importlib.resources.files("fastapi_offline") / "static"))

router = APIRouter(include_in_schema=False)


def static_app() -> StaticFiles:
    return StaticFiles(directory=SWAGGER_DIR)


def _csp(html: str) -> str:
    hashes = " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'"
                      for s in re.findall(r"<script>(.*?)</script>", html, re.S))
    # Swagger UI styles elements inline and draws its icons as data: images; it fetches only this server.
    return (f"default-src 'self'; script-src 'self' {hashes}; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
            "form-action 'self'; frame-ancestors 'none'")


@router.get("/docs", response_class=HTMLResponse)
def docs(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "")
    page = get_swagger_ui_html(
        openapi_url=f"{root}{request.app.openapi_url}", title=f"{request.app.title} API",
        swagger_js_url=f"{root}{STATIC_URL}/swagger-ui-bundle.js", swagger_css_url=f"{root}{STATIC_URL}/swagger-ui.css",
        swagger_favicon_url=f"{root}/favicon.ico",
    )
    html = bytes(page.body).decode()
    page.headers.update({"Content-Security-Policy": _csp(html), "X-Content-Type-Options": "nosniff",
                         "X-Frame-Options": "DENY", "Referrer-Policy": "same-origin"})
    return page
