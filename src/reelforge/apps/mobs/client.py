"""The video-understanding application's client namespaces: ``rf.videos`` and ``rf.mobs``.

Found by `reelforge.client` through the ``reelforge.client`` entry-point group; built on the client's core
only (standard library, httpx, `reelforge.client`), so both faces run every method.
"""

from __future__ import annotations

import builtins
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from reelforge.client.core import Blocking, Call, Flow, Namespace, R, call, clean, data, document, nothing, one, seg
from reelforge.client.records import Record, list_of
from reelforge.client.uploads import ByteCounter, put_file, sha256_file

BytesCallback = Callable[[int, int], None]


@dataclass
class Video(Record):
    """A video. ``video_url`` and ``thumbnail_url`` are short-lived signed URLs (fetch them as they are, no
    token), valid until ``urls_expire_at``; None where the video has no such object."""

    id: str
    owner_id: str
    status: str
    visibility: str
    caption: str
    filename: str | None
    score: float | None
    mob_id: str | None
    job_id: str | None
    embed_model_version: str | None
    error: dict[str, str | None] | None
    created_at: str | None
    validated_at: str | None
    thumbnail_url: str | None = None
    video_url: str | None = None
    urls_expire_at: str | None = None


@dataclass
class VideoDetail(Video):
    """A video with its analysis, scores and mob (``playback_url`` is ``video_url``)."""

    analysis: dict[str, Any] | None = None
    scores: dict[str, Any] | None = None
    mob: dict[str, Any] | None = None
    playback_url: str | None = None
    participation_model: str | None = None
    embed_model: str | None = None


@dataclass
class VideoPage(Record):
    data: list[Video]
    next_cursor: str | None
    _nested: ClassVar[dict[str, Callable[[Any], Any]]] = {"data": list_of(Video)}


@dataclass
class UploadTarget(Record):
    """Where the video's bytes go: a signed URL, then ``complete_url``."""

    id: str
    url: str
    method: str
    headers: dict[str, str]
    expires_at: str | None
    complete_url: str


@dataclass
class VideoTicket(Record):
    video: Video
    upload: UploadTarget
    _nested: ClassVar[dict[str, Callable[[Any], Any]]] = {
        "video": Video.from_dict, "upload": UploadTarget.from_dict}


@dataclass
class VideoCompleted(Record):
    """The upload is in; ``job_id`` is the analysis job."""

    video: Video
    job_id: str
    _nested: ClassVar[dict[str, Callable[[Any], Any]]] = {"video": Video.from_dict}


@dataclass
class Mob(Record):
    id: str
    name: str
    top_terms: list[str]
    count: int
    status: str
    merged_into: str | None
    model_version: str
    created_at: str | None
    updated_at: str | None
    thumbnail_urls: list[str] | None = None
    urls_expire_at: str | None = None


@dataclass
class MobDetail(Mob):
    videos: list[Video] | None = None
    events: list[dict[str, Any]] | None = None
    _nested: ClassVar[dict[str, Callable[[Any], Any]]] = {"videos": list_of(Video)}


@dataclass
class SimilarHit(Record):
    score: float
    video: Video
    _nested: ClassVar[dict[str, Callable[[Any], Any]]] = {"video": Video.from_dict}


@dataclass
class Similar(Record):
    """``fewer_than_k``: fewer than k videos were at least ``min_similarity`` similar."""

    video_id: str
    k: int
    data: list[SimilarHit]
    min_similarity: float | None = None
    fewer_than_k: bool | None = None
    _nested: ClassVar[dict[str, Callable[[Any], Any]]] = {"data": list_of(SimilarHit)}


@dataclass
class Validation(Record):
    video_id: str
    status: str
    score: float | None
    threshold: float | None
    components: dict[str, float]
    reasons: list[str]
    mob_id: str | None


@dataclass
class VideoHistory(Record):
    video_id: str
    job_id: str | None
    status: str
    events: list[dict[str, Any]]


class Videos(Namespace[R]):
    """Videos: submit and upload, read, feed, similar search, validation, history; admin listing."""

    @call
    def submit(self, size: int, *, filename: str | None = None, caption: str = "",
               content_type: str = "video/mp4", sha256: str | None = None,
               visibility: str = "public") -> Call[VideoTicket]:
        """A video record and a signed URL for its bytes (then `complete`); `upload` does all three."""
        body = clean({"size": size, "filename": filename, "caption": caption, "content_type": content_type,
                      "sha256": sha256, "visibility": visibility})
        return Call("POST", "/v1/videos/submit", one(VideoTicket), json=body)

    @call
    def complete(self, video_id: str, *, sha256: str | None = None) -> Call[VideoCompleted]:
        """The bytes are in: start the analysis."""
        return Call("POST", f"/v1/videos/{seg(video_id)}/complete", one(VideoCompleted),
                    json=clean({"sha256": sha256}))

    @call
    def upload(self, path: str | os.PathLike[str], *, caption: str = "", content_type: str = "video/mp4",
               visibility: str = "public", on_progress: BytesCallback | None = None) -> Flow[VideoCompleted]:
        """Submit a video file, send its bytes (sha256 checked by the server) and start its analysis."""
        src = Path(path)
        size = src.stat().st_size
        sha256: str = yield Blocking(sha256_file, (src,))
        ticket = yield from Videos.submit.flow(self, size, filename=src.name, caption=caption,
                                              content_type=content_type, sha256=sha256, visibility=visibility)
        up = ticket.upload
        yield from put_file(self.client, up.url, up.method, up.headers, src, 0, size,
                            ByteCounter(size, on_progress))
        return (yield from Videos.complete.flow(self, ticket.video.id, sha256=sha256))

    @call
    def get(self, video_id: str) -> Call[VideoDetail]:
        return Call("GET", f"/v1/videos/{seg(video_id)}", one(VideoDetail))

    @call
    def of_user(self, user_id: str | None = None, *, limit: int = 50, cursor: str | None = None) -> Call[VideoPage]:
        """A user's videos (default: yours), newest first."""
        return Call("GET", "/v1/videos/user", one(VideoPage),
                    params=clean({"userId": user_id, "limit": limit, "cursor": cursor}))

    @call
    def feed(self, *, order: str = "new", mob_id: str | None = None, limit: int | None = None,
             cursor: str | None = None) -> Call[VideoPage]:
        """Validated videos, newest (``order="new"``) or best scored first; ``mob_id`` keeps one mob's."""
        return Call("GET", "/v1/videos/feed", one(VideoPage),
                    params=clean({"order": order, "mobId": mob_id, "limit": limit, "cursor": cursor}))

    @call
    def similar(self, video_id: str, *, k: int = 10, min_similarity: float | None = None) -> Call[Similar]:
        """The ``k`` nearest videos by embedding, at least ``min_similarity`` similar (default: the server's)."""
        return Call("GET", "/v1/search/similar", one(Similar),
                    params=clean({"videoId": video_id, "k": k, "minSimilarity": min_similarity}))

    @call
    def validation(self, video_id: str) -> Call[Validation]:
        """Score, components, threshold and the reason for each component."""
        return Call("GET", f"/v1/validate/{seg(video_id)}", one(Validation))

    @call
    def revalidate(self, video_id: str) -> Call[Validation]:
        """Validate again on the stored analysis with the current weights and threshold."""
        return Call("POST", "/v1/validate", one(Validation), json={"videoId": video_id})

    @call
    def history(self, video_id: str) -> Call[VideoHistory]:
        """The analysis pipeline's execution history."""
        return Call("GET", "/v1/execution-history", one(VideoHistory), params={"videoId": video_id})

    @call
    def admin_list(self, *, status: str | None = None, user_id: str | None = None, limit: int = 50,
                   cursor: str | None = None) -> Call[VideoPage]:
        """Admin: every video (deleted ones only with ``status="deleted"``), newest first."""
        return Call("GET", "/v1/admin/videos", one(VideoPage),
                    params=clean({"status": status, "userId": user_id, "limit": limit, "cursor": cursor}))

    @call
    def admin_delete(self, video_id: str) -> Call[None]:
        """Admin: remove a video's objects, vector and mob membership."""
        return Call("DELETE", f"/v1/admin/videos/{seg(video_id)}", nothing)

    @call
    def admin_stats(self) -> Call[dict[str, Any]]:
        """Admin: videos by status, validation rate, mean scores, mobs, analysis times, re-cluster runs."""
        return Call("GET", "/v1/admin/videos/stats", document)

    @call
    def usage_stats(self, *, days: int = 14) -> Call[dict[str, Any]]:
        """Admin: model invocations, errors, units and run seconds per model per day."""
        return Call("GET", "/v1/admin/usage-stats", document, params={"days": days})


class Mobs(Namespace[R]):
    """Mobs, the clusters of similar videos."""

    @call
    def list(self) -> Call[builtins.list[Mob]]:
        return Call("GET", "/v1/mobs", data(Mob))

    @call
    def get(self, mob_id: str) -> Call[MobDetail]:
        """A mob with its videos and its history (created, merged, ...)."""
        return Call("GET", f"/v1/mobs/{seg(mob_id)}", one(MobDetail))

    @call
    def recluster(self) -> Call[dict[str, Any]]:
        """Admin: run the re-clustering now (it also runs on its schedule)."""
        return Call("POST", "/v1/admin/mobs/recluster", document)
