"""Video understanding ("mobs"): submit and upload videos, feed, mobs, similar search, validation, history,
admin. Paths follow the AWS design's API (camelCase query names kept: `userId`, `videoId`, `mobId`).

`/v1/admin/stats` is the platform's statistics with the videos' under `videos`; `/v1/admin/videos/stats` has
the videos' alone.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from reelforge.api import convert
from reelforge.api.deps import Admin, Container, CurrentUser, container_of
from reelforge.api.openapi import problems
from reelforge.api.schemas.common import Strict, iso

router = APIRouter(tags=["mobs"])

VideoId = Annotated[str, Query(alias="videoId", min_length=1, max_length=64)]
Cursor = Annotated[str | None, Query(max_length=200)]


# --- schemas ----------------------------------------------------------------------------------------
class VideoSubmit(Strict):
    content_type: str = Field(default="video/mp4", max_length=100)
    size: int = Field(gt=0, description="Exact size of the file in bytes")
    filename: str | None = Field(default=None, max_length=255)
    caption: str = Field(default="", max_length=2200)
    sha256: str | None = Field(default=None, min_length=64, max_length=64)
    visibility: Literal["public", "private"] = "public"


class VideoComplete(Strict):
    sha256: str | None = Field(default=None, min_length=64, max_length=64)


class ValidateRequest(Strict):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    video_id: str = Field(alias="videoId", min_length=1, max_length=64)


class UploadTarget(BaseModel):
    id: str
    url: str
    method: str
    headers: dict[str, str]
    expires_at: str | None
    complete_url: str


class VideoPublic(BaseModel):
    id: str
    owner_id: str
    status: str
    visibility: str
    caption: str
    filename: str | None
    score: float | None
    mob_id: str | None
    job_id: str | None
    video_url: str | None = Field(default=None, description="Signed URL of the video's bytes (owner's or a "
                                  "public validated video); lives `storage.result_url_ttl_s`")
    thumbnail_url: str | None = Field(default=None, description="Signed URL of the thumbnail (same rules)")
    urls_expire_at: str | None = Field(default=None, description="When `video_url` and `thumbnail_url` expire")
    embed_model_version: str | None
    error: dict[str, str | None] | None
    created_at: str | None
    validated_at: str | None


class VideoDetail(VideoPublic):
    analysis: dict[str, Any] | None
    scores: dict[str, Any] | None
    mob: dict[str, Any] | None
    playback_url: str | None = Field(description="Same as `video_url` (kept for older clients)")
    participation_model: str | None
    embed_model: str | None


class VideosPublic(BaseModel):
    data: list[VideoPublic]
    next_cursor: str | None


class SubmitPublic(BaseModel):
    video: VideoPublic
    upload: UploadTarget


class CompletePublic(BaseModel):
    video: VideoPublic
    job_id: str


class MobPublic(BaseModel):
    id: str
    name: str
    top_terms: list[str]
    count: int
    status: str
    merged_into: str | None
    model_version: str
    thumbnail_urls: list[str] = Field(default=[], description="Signed URLs of a few public members' thumbnails")
    urls_expire_at: str | None = Field(default=None, description="When `thumbnail_urls` expire")
    created_at: str | None
    updated_at: str | None


class MobDetail(MobPublic):
    videos: list[VideoPublic]
    events: list[dict[str, Any]]


class MobsPublic(BaseModel):
    data: list[MobPublic]


class SimilarHit(BaseModel):
    score: float
    video: VideoPublic


class SimilarPublic(BaseModel):
    video_id: str
    k: int
    min_similarity: float = Field(description="Hits less similar than this were left out")
    fewer_than_k: bool = Field(description="True when fewer than k videos passed min_similarity")
    data: list[SimilarHit]


class ValidationPublic(BaseModel):
    video_id: str
    status: str
    score: float | None
    threshold: float | None
    components: dict[str, float]
    reasons: list[str]
    mob_id: str | None


class HistoryPublic(BaseModel):
    video_id: str
    job_id: str | None
    status: str
    events: list[dict[str, Any]]


# --- conversion ---------------------------------------------------------------------------------------
NO_URLS: dict[str, Any] = {"video_url": None, "thumbnail_url": None, "urls_expire_at": None}


def _urls(found: dict[str, dict[str, Any]], video_id: str) -> dict[str, Any]:
    """A video's signed URLs (Reads.video_urls / card_urls) as VideoPublic's fields."""
    u = found.get(video_id) or NO_URLS
    return {"video_url": u["video_url"], "thumbnail_url": u["thumbnail_url"],
            "urls_expire_at": iso(u["urls_expire_at"])}


def _video(v: Any, urls: dict[str, Any] | None = None) -> VideoPublic:
    return VideoPublic(
        id=v.id, owner_id=v.owner_id, status=v.status, visibility=v.visibility, caption=v.caption or "",
        filename=v.filename, score=v.score, mob_id=v.mob_id, job_id=v.job_id, **_urls(urls or {}, v.id),
        embed_model_version=v.embed_model_version,
        error={"code": v.error_code, "message": v.error_message} if v.error_code else None,
        created_at=iso(v.created_at), validated_at=iso(v.validated_at))


def _videos(c: Any, p: Any, videos: list[Any]) -> list[VideoPublic]:
    """Videos with their signed URLs (one query for the whole list)."""
    urls = c.app("mobs").reads.video_urls(p, videos)
    return [_video(v, urls) for v in videos]


def _card(v: Any, urls: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A card row (repository.CARD_COLUMNS) as VideoPublic's fields, serialized once by `convert.respond`."""
    return {"id": v.id, "owner_id": v.owner_id, "status": v.status, "visibility": v.visibility,
            "caption": v.caption or "", "filename": v.filename, "score": v.score, "mob_id": v.mob_id,
            "job_id": v.job_id, **_urls(urls, v.id), "embed_model_version": v.embed_model_version,
            "error": {"code": v.error_code, "message": v.error_message} if v.error_code else None,
            "created_at": iso(v.created_at), "validated_at": iso(v.validated_at)}


def _mob(m: Any, count: int | None = None, thumbs: list[str] | None = None,
         expires: float | None = None) -> MobPublic:
    return MobPublic(id=m.id, name=m.name, top_terms=list(m.top_terms or []),
                     count=m.count if count is None else count, status=m.status, merged_into=m.merged_into,
                     model_version=m.model_version, thumbnail_urls=list(thumbs or []), urls_expire_at=iso(expires),
                     created_at=iso(m.created_at), updated_at=iso(m.updated_at))


def _validation(v: Any) -> ValidationPublic:
    s = v.scores or {}
    return ValidationPublic(video_id=v.id, status=v.status, score=v.score, threshold=s.get("threshold"),
                            components=dict(s.get("components") or {}), reasons=list(s.get("reasons") or []),
                            mob_id=v.mob_id)


# --- videos ---------------------------------------------------------------------------------------------
@router.post("/videos/submit", status_code=201, response_model=SubmitPublic)
def submit_video(body: VideoSubmit, p: CurrentUser, c: Container) -> SubmitPublic:
    """Create the video record and a signed upload URL (PUT the bytes with the given headers); then
    `POST /v1/videos/{videoId}/complete` starts the analysis."""
    v, ticket = c.app("mobs").uploads.submit(p, filename=body.filename, content_type=body.content_type, size=body.size,
                              caption=body.caption, sha256=body.sha256.lower() if body.sha256 else None,
                              visibility=body.visibility)
    put = ticket.put
    return SubmitPublic(video=_video(v), upload=UploadTarget(
        id=ticket.upload.id, url=put.url, method=put.method, headers=dict(put.headers or {}),
        expires_at=iso(ticket.upload.expires_at), complete_url=f"/v1/videos/{v.id}/complete"))


@router.post("/videos/{video_id}/complete", status_code=202, response_model=CompletePublic)
def complete_video(video_id: str, p: CurrentUser, c: Container, body: VideoComplete | None = None) -> CompletePublic:
    """Check the uploaded bytes (size, sha256) and queue `video.analyze` (exactly once per video)."""
    v, job = c.app("mobs").uploads.complete(p, video_id, sha256=body.sha256.lower() if body and body.sha256 else None)
    return CompletePublic(video=_video(v), job_id=job.id)


@router.get("/videos/user", response_model=VideosPublic)
def user_videos(p: CurrentUser, c: Container,
                user_id: Annotated[str | None, Query(alias="userId", max_length=64)] = None,
                limit: Annotated[int, Query(ge=1, le=200)] = 50, cursor: Cursor = None) -> VideosPublic:
    """The caller's videos in every state (admins: any user's); another user's public validated videos
    (private, rejected and unfinished ones are not listed)."""
    page = c.app("mobs").reads.list_user(p, user_id, limit=limit, cursor=cursor)
    return VideosPublic(data=_videos(c, p, page.items), next_cursor=page.next_cursor)


async def _feed(p: Any, request: Request, order: str, mob_id: str | None, limit: int | None,
                cursor: str | None) -> Response:
    reads = container_of(request).app("mobs").reads
    page = await reads.feed_cards(p, order=order, mob_id=mob_id, limit=limit, cursor=cursor)
    urls = reads.card_urls(p, page.items)
    return convert.respond({"data": [_card(v, urls) for v in page.items], "next_cursor": page.next_cursor})


@router.get("/videos/feed", response_model=VideosPublic)
async def videos_feed(p: CurrentUser, request: Request, order: Literal["new", "best"] = "new",
                      mob_id: Annotated[str | None, Query(alias="mobId", max_length=64)] = None,
                      limit: Annotated[int | None, Query(ge=1, le=200)] = None, cursor: Cursor = None) -> Response:
    """Validated public videos, newest or best first, optionally of one mob; pass `next_cursor` on."""
    return await _feed(p, request, order, mob_id, limit, cursor)


@router.get("/feed", response_model=VideosPublic)
async def feed(p: CurrentUser, request: Request, order: Literal["new", "best"] = "new",
               mob_id: Annotated[str | None, Query(alias="mobId", max_length=64)] = None,
               limit: Annotated[int | None, Query(ge=1, le=200)] = None, cursor: Cursor = None) -> Response:
    """Same as `/v1/videos/feed`."""
    return await _feed(p, request, order, mob_id, limit, cursor)


@router.get("/videos/{video_id}", response_model=VideoDetail)
def get_video(video_id: str, p: CurrentUser, c: Container) -> VideoDetail:
    """Details, analysis (OCR, transcript, hashtags, activity), scores with reasons, mob, thumbnail and
    playback URLs."""
    v = c.app("mobs").reads.get(p, video_id)
    urls = c.app("mobs").reads.video_urls(p, [v])
    mob = None
    if v.mob_id:
        m = c.app("mobs").reads.mob_of(v)
        if m is not None:
            mob = {"id": m.id, "name": m.name, "top_terms": list(m.top_terms or [])}
    base = _video(v, urls).model_dump()
    analysis = v.analysis if (v.owner_id == p.user_id or p.is_admin or v.status == "validated") else None
    if analysis is not None:
        # One score per video: `score` (validation). The analysis' own participation figure is named as such.
        analysis = {k: val for k, val in analysis.items() if k not in ("score", "components")}
        analysis["participation"] = {"score": (v.analysis or {}).get("score"),
                                     "components": (v.analysis or {}).get("components") or {}}
    return VideoDetail(**base, analysis=analysis, scores=v.scores, mob=mob, playback_url=base["video_url"],
                       participation_model=v.participation_model, embed_model=v.embed_model)


# --- mobs -----------------------------------------------------------------------------------------------
@router.get("/mobs", response_model=MobsPublic)
def list_mobs(p: CurrentUser, c: Container) -> MobsPublic:
    """Active mobs with the number of videos the caller may see, largest first."""
    return MobsPublic(data=[_mob(m, n, thumbs, expires) for m, n, thumbs, expires in c.app("mobs").reads.mobs(p)])


@router.get("/mobs/{mob_id}", response_model=MobDetail)
def get_mob(mob_id: str, p: CurrentUser, c: Container) -> MobDetail:
    """Summary, top terms, member videos (best first) and the mob's split/merge history."""
    m, members = c.app("mobs").reads.mob(p, mob_id)
    events = [{"kind": e.kind, "run_id": e.run_id, "details": e.details or {}, "ts": iso(e.ts)}
              for e in c.app("mobs").reads.mob_events(m.id)]
    base = _mob(m, len(members)).model_dump()
    return MobDetail(**base, videos=_videos(c, p, members), events=events)


# --- search and validation ------------------------------------------------------------------------------
@router.get("/search/similar", response_model=SimilarPublic, responses=problems(404, 409))
async def similar(p: CurrentUser, request: Request, video_id: VideoId,
                  k: Annotated[int, Query(ge=1, le=100)] = 10,
                  min_similarity: Annotated[float | None, Query(alias="minSimilarity", ge=-1.0, le=1.0)] = None
                  ) -> Response:
    """The k nearest validated videos the caller may see (k-NN on the video embeddings), at least
    `minSimilarity` similar (default: settings `mobs.similar_min_score`); `fewer_than_k` says when fewer pass."""
    reads = container_of(request).app("mobs").reads
    floor = float(reads.cfg.similar_min_score if min_similarity is None else min_similarity)
    hits = await reads.similar(p, video_id, k, min_score=floor)
    urls = reads.card_urls(p, [v for v, _ in hits])
    return convert.respond({"video_id": video_id, "k": k, "min_similarity": floor, "fewer_than_k": len(hits) < k,
                            "data": [{"score": round(s, 6), "video": _card(v, urls)} for v, s in hits]})


@router.post("/validate", response_model=ValidationPublic)
def revalidate(body: ValidateRequest, p: CurrentUser, c: Container) -> ValidationPublic:
    """Run validation again on the stored analysis with the current weights and threshold (owner or admin)."""
    return _validation(c.app("mobs").analysis.revalidate(p, body.video_id))


@router.get("/validate/{video_id}", response_model=ValidationPublic)
def get_validation(video_id: str, p: CurrentUser, c: Container) -> ValidationPublic:
    """Score, components, threshold and the reason for each component."""
    return _validation(c.app("mobs").analysis.validation(p, video_id))


@router.get("/execution-history", response_model=HistoryPublic, responses=problems(403, 404))
def execution_history(p: CurrentUser, c: Container, video_id: VideoId) -> HistoryPublic:
    """The analysis pipeline's execution history (steps started, retried, failed, succeeded)."""
    v, events = c.app("mobs").reads.history(p, video_id)
    return HistoryPublic(video_id=v.id, job_id=v.job_id, status=v.status, events=[
        {"id": e.id, "ts": iso(convert.event_time(e)), "recorded_at": iso(e.ts), "type": e.type, "path": e.path,
         "attempt": e.attempt, "details": convert.event_details(e)} for e in events])


# --- admin ------------------------------------------------------------------------------------------------
@router.get("/admin/videos", response_model=VideosPublic, tags=["admin"])
def admin_videos(p: Admin, c: Container,
                 status: Annotated[str | None, Query(max_length=16)] = None,
                 user_id: Annotated[str | None, Query(alias="userId", max_length=64)] = None,
                 limit: Annotated[int, Query(ge=1, le=200)] = 50, cursor: Cursor = None) -> VideosPublic:
    """Every video (deleted ones only with status=deleted), newest first."""
    page = c.app("mobs").admin.list_videos(status=status, owner_id=user_id, limit=limit, cursor=cursor)
    return VideosPublic(data=_videos(c, p, page.items), next_cursor=page.next_cursor)


@router.delete("/admin/videos/{video_id}", status_code=204, tags=["admin"])
def admin_delete_video(video_id: str, _: Admin, c: Container) -> Response:
    """Remove the video's objects, vector and mob membership (mob count and centroid corrected)."""
    c.app("mobs").admin.delete_video(video_id)
    return Response(status_code=204)


@router.get("/admin/videos/stats", tags=["admin"])
def admin_video_stats(_: Admin, c: Container) -> dict[str, Any]:
    """Videos by status, validation rate, mean scores, mobs, analysis times and the last re-cluster runs
    (also under `videos` in `GET /v1/admin/stats`)."""
    return video_stats(c)


def video_stats(c: Any) -> dict[str, Any]:
    """The videos' statistics document, shared by /v1/admin/videos/stats and /v1/admin/stats."""
    s = c.app("mobs").admin.stats()
    s["recluster_runs"] = [{"id": r.id, "status": r.status, "started_at": iso(r.started_at),
                            "finished_at": iso(r.finished_at), "videos": r.videos, "k": r.k,
                            "criterion": r.criterion, "score": r.score, "details": r.details or {},
                            "error": r.error} for r in s["recluster_runs"]]
    return s


@router.get("/admin/usage-stats", tags=["admin"])
def admin_usage(_: Admin, c: Container, days: Annotated[int, Query(ge=1, le=366)] = 14) -> dict[str, Any]:
    """Model invocations, errors, units processed and run seconds per model per day."""
    rows = c.app("mobs").admin.usage(days=days)
    for r in rows:
        r["date"] = (iso(r.pop("day") * 86400.0) or "")[:10]
    return {"days": days, "data": rows}


@router.post("/admin/mobs/recluster", tags=["admin"])
def admin_recluster(p: Admin, c: Container) -> dict[str, Any]:
    """Run the re-clustering now (it also runs on its schedule, hourly by default)."""
    return dict(c.app("mobs").grouping.recluster(runner=f"admin:{p.user_id}"))
