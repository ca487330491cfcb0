"""What the parts of the video-understanding service share: the platform's adapters and settings (one
`MobsContext`), the application's constants, and the visibility rules.

Visibility, in one place (`visible`): a video is visible to its owner (and admins); once validated and
public it is visible to every signed-in user. The feed, mob member lists and similar search only ever show
validated videos, and another user's only when public. Another user's invisible video answers 404.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from reelforge import errors
from reelforge.applications import app_settings
from reelforge.apps.mobs.repository import MobsRepo, Video
from reelforge.config import Settings
from reelforge.domain.types import Principal
from reelforge.ports.repositories import Store

log = logging.getLogger("reelforge.mobs")

TASK = "video.analyze"
NAMESPACE = "videos"
SCHEDULE = "mobs.recluster"
RESUME_SCHEDULE = "mobs.resume"
VIDEO_STATUSES = ("uploading", "processing", "validated", "rejected", "failed", "deleted")
VIDEO_CONTENT_TYPES = ("video/mp4", "video/quicktime", "video/webm", "video/x-matroska", "video/mpeg")
EVENT_ANALYZED = "video.analyzed"
LOCAL_EMBED = "local"  # the embed adapter whose raw features are stored and whose projection is refitted
_ID = re.compile(r"^[0-9a-f]{32}$")


def check_id(value: str, what: str) -> str:
    """`value` when it is a well-formed id; otherwise the `<what>_not_found` error a missing one gets."""
    if not isinstance(value, str) or not _ID.match(value):
        raise errors.NotFound(f"{what.capitalize()} not found", code=f"{what}_not_found")
    return value


def visible(v: Video | None, p: Principal) -> bool:
    """Whether `p` may see `v` at all (see the module's docstring)."""
    if v is None or v.status == "deleted":
        return False
    if v.owner_id == p.user_id or p.is_admin:
        return True
    return v.status == "validated" and v.visibility == "public"


def get_visible(repo: MobsRepo, p: Principal, video_id: str) -> Video:
    """The video when `p` may see it; 404 otherwise."""
    check_id(video_id, "video")
    v = repo.video(video_id)
    if v is None or not visible(v, p):
        raise errors.NotFound("Video not found", code="video_not_found")
    return v


def get_own(repo: MobsRepo, p: Principal, video_id: str) -> Video:
    """Owner (or admin) only; others get 404 even for a public video."""
    check_id(video_id, "video")
    v = repo.video(video_id)
    if v is None or v.status == "deleted" or (v.owner_id != p.user_id and not p.is_admin):
        raise errors.NotFound("Video not found", code="video_not_found")
    return v


def media_limits(settings: Settings) -> Any:
    """The platform's media policy (settings `media`) tightened by the application's section: what an uploaded
    video may be, checked at upload completion and again on the worker before decoding."""
    cfg = app_settings(settings, "mobs")
    return settings.media.limits().tightened(max_width=cfg.max_side, max_height=cfg.max_side,
                                             max_pixels=cfg.max_pixels, max_duration_s=cfg.max_duration_s)


class MobsContext:
    """The platform's adapters and settings, shared by every part of the service (never copied)."""

    def __init__(self, store: Store, settings: Settings, *, assets: Any, objects: Any, jobs: Any,
                 vectors: Callable[[], Any], media: Any = None, links: Any = None) -> None:
        self.store = store
        self.settings = settings
        self.assets = assets
        self.objects = objects
        self.jobs = jobs
        # The platform's media policy (services/media.py): uploads are checked with it before a job is queued.
        self.media = media
        # Read on every use: the container builds its vector index lazily.
        self._vectors = vectors
        self._projections: Any = None
        # The platform's signer of short-lived download URLs (services/results.py, `storage.result_url_ttl_s`).
        self._links = links

    @property
    def links(self) -> Any:
        """Signs the URLs lists and details carry (the platform's `ResultLinks`)."""
        if self._links is None:
            from reelforge.services.results import ResultLinks

            st = self.settings.storage
            self._links = ResultLinks(self.store, self.objects, ttl_s=st.result_url_ttl_s,
                                      max_urls=st.result_urls_max)
        return self._links

    @property
    def vectors(self) -> Any:
        """The vector index."""
        return self._vectors()

    @property
    def cfg(self) -> Any:
        """The application's settings section (`settings.mobs`)."""
        return app_settings(self.settings, "mobs")

    def media_limits(self) -> Any:
        """The platform's media policy with this application's own caps (`mobs.max_pixels`, ...)."""
        return media_limits(self.settings)

    @property
    def projections(self) -> Any:
        """The local embedding's current projection file (`ProjectionFile`, one stat() per look)."""
        if self._projections is None:
            from reelforge.apps.mobs.models import projection_file

            self._projections = projection_file(self.settings)
        return self._projections


class Part:
    """One concern of the service, reading the shared context through short names."""

    def __init__(self, ctx: MobsContext) -> None:
        self.ctx = ctx

    @property
    def store(self) -> Store:
        """The database."""
        return self.ctx.store

    @property
    def cfg(self) -> Any:
        """The application's settings section."""
        return self.ctx.cfg

    @property
    def vectors(self) -> Any:
        """The vector index."""
        return self.ctx.vectors
