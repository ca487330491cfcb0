"""`film.publish`: upload a project's video to the owner's YouTube channel, then set its thumbnail and captions.

upload -> thumbnail -> captions.

`upload` keeps its state in `film_youtube_uploads` under the job's id: the session URI (sealed) as soon as the
session exists, then every offset the server confirms. A later try of the step, or a later attempt of the job
(another worker, after a crash), finds it, asks the server what it holds and goes on in the same session; only a
session the server no longer knows is started again. Once the video exists its id is kept there too, so that a
retry never uploads it twice. `thumbnail` and `captions` run after it; a definite refusal of either (an account
that may not set custom thumbnails, say) is noted in the output without failing a published video.

Checked at submit (`YoutubeService.check_publish`): publishing configured, the project the caller's own, the
assets the caller's and of their kinds, a working connection. Priced one credit.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from reelforge import errors
from reelforge.apps.film.youtube import (
    SessionExpired,
    UploadResult,
    YoutubeApi,
    YoutubeAuthFailed,
    YoutubeUnavailable,
    http_client,
)
from reelforge.apps.film.youtube_service import CAPTION_TYPES, THUMBNAIL_TYPES, YoutubeService
from reelforge.domain.pipeline import Graph, Pipeline, Resources, Retry, Task
from reelforge.runtime.context import StepContext

KIND = "film.publish"
MAX_SESSIONS = 3  # upload sessions one step may start (each one the server dropped)

Tag = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


def _no_angle_brackets(value: str | None) -> str | None:
    if value is not None and ("<" in value or ">" in value):
        raise ValueError("YouTube does not accept < or > here")
    return value


class PublishFields(BaseModel):
    """What to publish and how (the body of `POST /v1/projects/{id}/publish`)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    video_asset_id: str = Field(min_length=1, max_length=64, description="A video asset of yours (a render's)")
    thumbnail_asset_id: str | None = Field(default=None, min_length=1, max_length=64,
                                           description="A JPEG or PNG of yours, 2 MB at most")
    captions_asset_id: str | None = Field(default=None, min_length=1, max_length=64,
                                          description="Subtitles of yours (SRT or WebVTT)")
    captions_language: str = Field(default="en", pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$")
    title: str = Field(min_length=1, max_length=100)
    description: str = Field(default="", max_length=5000)
    tags: list[Tag] = Field(default_factory=list, max_length=50)
    privacy: Literal["private", "unlisted", "public"] = "private"
    category_id: str = Field(default="1", pattern=r"^[0-9]{1,3}$",
                             description="YouTube's category (1: Film & Animation)")
    made_for_kids: bool = False

    _title = field_validator("title")(_no_angle_brackets)
    _description = field_validator("description")(_no_angle_brackets)

    @field_validator("description")
    @classmethod
    def _description_bytes(cls, value: str) -> str:
        if len(value.encode("utf-8")) > 5000:
            raise ValueError("YouTube takes at most 5000 bytes of description")
        return value

    @field_validator("tags")
    @classmethod
    def _tags_length(cls, value: list[str]) -> list[str]:
        # YouTube counts a tag with a space as quoted, and a comma between tags
        total = sum(len(t) + (2 if " " in t else 0) for t in value) + max(0, len(value) - 1)
        if total > 500:
            raise ValueError("YouTube takes at most 500 characters of tags")
        if any("<" in t or ">" in t or "," in t for t in value):
            raise ValueError("a tag may not contain <, > or a comma")
        return value


class PublishInput(PublishFields):
    project_id: str = Field(min_length=1, max_length=64, description="A project of yours")


def metadata(data: dict[str, Any]) -> dict[str, Any]:
    """The video resource's snippet and status, as the upload's first request sends them."""
    snippet: dict[str, Any] = {"title": data["title"], "description": data.get("description") or "",
                               "categoryId": data.get("category_id") or "1"}
    if data.get("tags"):
        snippet["tags"] = list(data["tags"])
    return {"snippet": snippet, "status": {"privacyStatus": data.get("privacy") or "private",
                                           "selfDeclaredMadeForKids": bool(data.get("made_for_kids"))}}


def _yt(ctx: StepContext) -> YoutubeService:
    yt: YoutubeService = ctx.services.app("film").youtube
    return yt


def _mb(n: int) -> str:
    return f"{n / 1_000_000:.1f}"


def upload(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    """Upload the video through the resumable protocol, going on in the job's stored session when there is one."""
    yt = _yt(ctx)
    cfg = yt.require_configured()
    owner = ctx.owner_id
    asset = yt.asset(owner, data["video_asset_id"], "video_asset_id", ("video/",))
    state = yt.begin_upload(ctx.job_id, user_id=owner, project_id=data["project_id"], asset=asset)
    total = int(asset.size)
    base = {**data, "bytes": total}
    if state.video_id:  # a retry after the upload finished
        ctx.progress(0.9, "the video was uploaded already")
        return {**base, "video_id": state.video_id, "url": cfg.watch_url.format(video_id=state.video_id),
                "interruptions": state.resumes, "sessions": state.sessions}

    def on_offset(n: int) -> None:
        yt.save_offset(ctx.job_id, n)
        ctx.progress(0.03 + 0.87 * n / total, f"uploading: {_mb(n)} of {_mb(total)} MB")

    result: UploadResult | None = None
    try:
        with ctx.scratch("publish") as tmp:
            path = tmp / "video"
            ctx.services.objects.download_to(asset.key, path)
            ctx.progress(0.02, f"uploading: 0.0 of {_mb(total)} MB")
            with http_client(cfg) as http, open(path, "rb") as source:
                api = YoutubeApi(cfg, http, yt.token_source(owner), sleep=ctx.sleep, check=ctx.check_cancelled)
                for _ in range(MAX_SESSIONS):
                    uri = yt.session_uri(state)
                    offset = 0
                    try:
                        if uri is None:
                            uri = api.start_upload(metadata(data), total=total, content_type=asset.content_type)
                            state = yt.save_session(state, uri)
                            ctx.log.info("upload session started for %d bytes", total)
                        else:  # a session of an earlier try: what does the server hold?
                            offset, video = api.upload_status(uri, total)
                            yt.save_offset(ctx.job_id, offset, resumed=True)
                            ctx.log.info("resuming the upload session at byte %d of %d", offset, total)
                            if video is not None:
                                result = UploadResult(video, 0)
                                break
                            ctx.progress(0.03 + 0.87 * offset / total,
                                         f"uploading: resumed at {_mb(offset)} of {_mb(total)} MB")
                        result = api.upload(uri, source, total=total, offset=offset, on_offset=on_offset)
                        break
                    except SessionExpired:
                        ctx.log.info("the upload session is gone; starting a new one")
                        state = yt.save_session(state, None)
    except YoutubeAuthFailed as exc:
        yt.mark_invalid(owner, exc.message)
        raise
    if result is None:
        raise YoutubeUnavailable(f"YouTube dropped {MAX_SESSIONS} upload sessions in a row")
    video_id = str(result.video.get("id") or "")
    if not video_id:
        raise YoutubeUnavailable("YouTube finished the upload without a video id")
    state = yt.finish_upload(ctx.job_id, video_id, result.interruptions)
    ctx.progress(0.9, f"uploaded {_mb(total)} MB as video {video_id}")
    return {**base, "video_id": video_id, "url": cfg.watch_url.format(video_id=video_id),
            "interruptions": state.resumes, "sessions": state.sessions,
            "upload_status": (result.video.get("status") or {}).get("uploadStatus")}


def _after_upload(ctx: StepContext, what: str, data: dict[str, Any], asset_field: str, kinds: tuple[str, ...],
                  send: Any) -> dict[str, Any]:
    """Run `send(api, asset, data_bytes)`; a definite refusal is noted (the video is published already), an
    outage raises (the step's retry, then the job's)."""
    yt = _yt(ctx)
    cfg = yt.require_configured()
    asset = yt.asset(ctx.owner_id, data[asset_field], asset_field, kinds)
    body = ctx.services.objects.get_bytes(asset.key)
    try:
        with http_client(cfg) as http:
            api = YoutubeApi(cfg, http, yt.token_source(ctx.owner_id), sleep=ctx.sleep, check=ctx.check_cancelled)
            send(api, asset, body)
    except YoutubeAuthFailed as exc:
        yt.mark_invalid(ctx.owner_id, exc.message)
        return {"set": False, "error": {"code": exc.code, "message": errors.scrub(exc.message)}}
    except (YoutubeUnavailable, errors.JobCancelled):
        raise
    except errors.ReelforgeError as exc:
        ctx.log.info("%s refused: %s", what, exc.code)
        return {"set": False, "error": {"code": exc.code, "message": errors.scrub(exc.message)}}
    return {"set": True}


def thumbnail(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    """Set the custom thumbnail when one was given."""
    if not data.get("thumbnail_asset_id"):
        return {**data, "thumbnail_set": False}
    ctx.progress(0.92, "setting the thumbnail")
    done = _after_upload(ctx, "the thumbnail", data, "thumbnail_asset_id", THUMBNAIL_TYPES,
                         lambda api, asset, body: api.set_thumbnail(data["video_id"], body, asset.content_type))
    out = {**data, "thumbnail_set": done["set"]}
    if "error" in done:
        out["thumbnail_error"] = done["error"]
    return out


def captions(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    """Add the caption track when one was given; the job's output."""
    out = dict(data)
    out["captions_set"] = False
    if data.get("captions_asset_id"):
        ctx.progress(0.96, "adding the captions")
        lang = data.get("captions_language") or "en"
        done = _after_upload(ctx, "the captions", data, "captions_asset_id", CAPTION_TYPES,
                             lambda api, asset, body: api.insert_caption(data["video_id"], body, language=lang,
                                                                         name=lang))
        out["captions_set"] = done["set"]
        if "error" in done:
            out["captions_error"] = done["error"]
    ctx.progress(1.0, f"published: {out['url']}")
    keep = ("project_id", "video_id", "url", "title", "privacy", "video_asset_id", "thumbnail_asset_id",
            "captions_asset_id", "bytes", "interruptions", "sessions", "upload_status", "thumbnail_set",
            "thumbnail_error", "captions_set", "captions_error")
    return {k: out[k] for k in keep if k in out}


_RETRY = (Retry(errors=("youtube_unavailable", "transient_error", "storage_error"), interval_s=1, max_attempts=2,
                backoff_rate=2.0),)


def build_pipeline(settings: Any = None) -> Pipeline:
    """`film.publish`."""
    light = Resources(cpu=0.25, memory_mb=256)
    return Pipeline(
        kind=KIND,
        version=1,
        description="Publish a project's video to the owner's YouTube channel: resumable upload, thumbnail, "
                    "captions.",
        graph=Graph(start_at="upload", states=(
            Task("upload", upload, resources=Resources(cpu=0.5, memory_mb=512), timeout_s=12 * 3600,
                 next="thumbnail", retry=_RETRY,
                 comment="resumable upload; the session and confirmed offset kept for a later try"),
            Task("thumbnail", thumbnail, resources=light, timeout_s=600, next="captions", retry=_RETRY,
                 comment="thumbnails.set when a thumbnail was given"),
            Task("captions", captions, resources=light, timeout_s=600, end=True, retry=_RETRY,
                 comment="captions.insert when captions were given"),
        )),
        input_model=PublishInput,
    )
