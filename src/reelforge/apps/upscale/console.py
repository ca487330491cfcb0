"""The console's upscale page: upload a video or image, pick model and scale, follow it, compare the result.

A page shell like the others (see routes/console.py): the browser holds the tokens and fills the page from
`/v1/models?task=image.upscale`, `/v1/uploads`, `/v1/jobs` and the job's server-sent events.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from reelforge.api.routes.console import CSP, _page

router = APIRouter(include_in_schema=False)

# The compare players show the local file (a blob: URL) and the result, which may live on another origin (S3's
# signed URLs) or be fetched into a blob so that it can seek on a store without range requests.
UPSCALE_CSP = CSP + "; media-src 'self' blob: http: https:"


@router.get("/upscale", response_class=HTMLResponse)
def upscale(request: Request) -> Response:
    response = _page(request, "upscale.html", "upscale", "Upscale")
    response.headers["Content-Security-Policy"] = UPSCALE_CSP
    return response
