"""Console pages of the video-understanding application: feed, video, mobs, upload, admin videos and stats.

Like every console page they are shells that fill themselves from the public API (static/mobs.js).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, Response

from reelforge.api.routes.console import _page

router = APIRouter(include_in_schema=False)

Id = Annotated[str, PathParam(max_length=64, pattern="^[A-Za-z0-9_-]+$")]


@router.get("/mobs/feed", response_class=HTMLResponse)
def feed(request: Request) -> Response:
    return _page(request, "mobs_feed.html", "mobs-feed", "Video feed")


@router.get("/mobs/videos/{video_id}", response_class=HTMLResponse)
def video(request: Request, video_id: Id) -> Response:
    return _page(request, "mobs_video.html", "mobs-video", "Video", section="mobs-feed", video_id=video_id)


@router.get("/mobs", response_class=HTMLResponse)
def mobs(request: Request) -> Response:
    return _page(request, "mobs_list.html", "mobs-list", "Mobs")


@router.get("/mobs/upload", response_class=HTMLResponse)
def upload(request: Request) -> Response:
    return _page(request, "mobs_upload.html", "mobs-upload", "Upload a video")


@router.get("/admin/videos", response_class=HTMLResponse)
def admin_videos(request: Request) -> Response:
    return _page(request, "mobs_admin_videos.html", "mobs-admin-videos", "Videos", admin=True)


@router.get("/admin/video-stats", response_class=HTMLResponse)
def admin_stats(request: Request) -> Response:
    return _page(request, "mobs_admin_stats.html", "mobs-admin-stats", "Video statistics", admin=True)
