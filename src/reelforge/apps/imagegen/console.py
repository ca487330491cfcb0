"""Console page of image generation: the prompt form, live progress and the gallery (static/imagegen.js)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from reelforge.api.routes.console import _page

router = APIRouter(include_in_schema=False)


@router.get("/generate", response_class=HTMLResponse)
def generate(request: Request) -> Response:
    return _page(request, "generate.html", "generate", "Generate image")
