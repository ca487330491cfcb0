"""The console's film studio: `/film` lists the projects (and starts one), `/film?project=<id>` edits one: the script
with its live breakdown, the characters (portrait, voice and its preview), the scenes with their pictures, the render
followed per scene, the film with its subtitles and downloads, and the publish dialog.

A page shell like the others (see api/routes/console.py): the browser holds the tokens and fills the page from
`/v1/projects/...`, `/v1/film/...`, `/v1/uploads`, `/v1/assets`, `/v1/jobs` and the job's server-sent events
(static/film.js).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from reelforge.api.routes.console import CSP, _page
from reelforge.apps.film.calls import MAX_TEXT_CHARS

router = APIRouter(include_in_schema=False)

# The voice previews play from blob: URLs (the WAV a POST answered); the film, its subtitles track and the posters
# come from signed URLs, which may be another origin (S3).
FILM_CSP = CSP + "; media-src 'self' blob: http: https:"


@router.get("/film", response_class=HTMLResponse)
def film(request: Request) -> Response:
    response = _page(request, "film.html", "film", "Film studio", preview_chars=MAX_TEXT_CHARS)
    response.headers["Content-Security-Policy"] = FILM_CSP
    return response
