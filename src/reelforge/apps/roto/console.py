"""The console's rotoscoping editor: pick or upload a video, click on frames to make object masks, propagate them
through the clip, play the result with its overlay and download the exports.

A page shell like the others (see routes/console.py): the browser holds the tokens and fills the page from
`/v1/roto/...`, `/v1/uploads`, `/v1/assets`, `/v1/jobs` and the job's server-sent events (static/roto.js).
`/roto?session=<id>` reopens a session; `/roto?reuse=<job id>` opens the session a `video.rotoscope` job ran on.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from reelforge.api.routes.console import _page

router = APIRouter(include_in_schema=False)


def _palette() -> list[str]:
    """The objects' colours, as the worker's overlays draw them (by object id, wrapping round the list)."""
    from reelforge.apps.roto.masks import PALETTE

    return [f"#{r:02x}{g:02x}{b:02x}" for r, g, b in PALETTE]


@router.get("/roto", response_class=HTMLResponse)
def roto(request: Request) -> Response:
    return _page(request, "roto.html", "roto", "Rotoscope", palette=_palette())
