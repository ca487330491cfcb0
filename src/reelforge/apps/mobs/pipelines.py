"""`video.analyze`: mark processing -> parallel(thumbnail + participation, embedding) -> write results and
index the vector -> validate -> assign a mob -> emit `video.analyzed`.

Every score stored is computed: a model error fails its step (retried per the step's Retry), and when the
retries are spent the `failed` step marks the video failed with the error and fails the job with it. No
step ever falls back to made-up results.
"""

from __future__ import annotations

import base64
import dataclasses
import os
import threading
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from reelforge import errors
from reelforge.domain.pipeline import ALL, Catch, Graph, Parallel, Pipeline, Resources, Retry, Task
from reelforge.runtime.context import StepContext

TASK = "video.analyze"
TASK_PARTICIPATION = "video.participation"
TASK_EMBED = "video.embed"

_download_lock = threading.Lock()

# Refusals of the file itself: the same bytes fail the same way, so they go straight to `failed`.
MEDIA_REFUSALS = ("not_a_video", "invalid_media", "unsupported_format", "unsupported_codec", "video_too_large",
                  "video_too_long", "frame_rate_too_high", "media_truncated", "corrupt_video", "active_content",
                  "polyglot_file", "memory_limit_exceeded")
MODEL_RETRY = (
    Retry(errors=MEDIA_REFUSALS, max_attempts=0),
    Retry(errors=("transient_error", "States.Timeout"), interval_s=1.0, max_attempts=2),
    Retry(errors=(ALL,), interval_s=0.5, max_attempts=1),
)
DB_RETRY = (Retry(errors=("transient_error", "storage_error", "unavailable"), interval_s=0.5, max_attempts=3),)
TO_FAILED = (Catch(errors=(ALL,), next="failed", result_path="$"),)


class VideoAnalyzeInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    video_id: str = Field(pattern=r"^[0-9a-f]{32}$")


def _mobs(ctx: StepContext) -> Any:
    return ctx.services.app("mobs")


def _jsonable(value: Any) -> Any:
    """Dataclass results as plain JSON values (NumPy scalars and arrays included)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value


def _cache_dir(ctx: StepContext) -> Path:
    return Path(ctx.services.settings.data_dir) / "cache" / "mobs"


def local_video(ctx: StepContext, video_id: str) -> Path:
    """The video's bytes on this worker's disk (downloaded once per job and worker, renamed into place)."""
    with ctx.services.store.tx(write=False) as tx:
        from reelforge.apps.mobs.repository import MobsRepo

        v = MobsRepo(tx).video(video_id)
        asset = tx.assets.asset(v.asset_id) if v is not None and v.asset_id else None
    if v is None or asset is None or v.status == "deleted":
        raise errors.ReelforgeError("The video or its upload no longer exists", code="video_deleted")
    folder = _cache_dir(ctx)
    folder.mkdir(parents=True, exist_ok=True)
    ext = Path(asset.key).suffix if Path(asset.key).suffix else ".mp4"
    path = folder / f"{asset.id}{ext}"
    with _download_lock:
        if path.is_file() and path.stat().st_size == asset.size:
            return path
        tmp = folder / f".{asset.id}.{uuid.uuid4().hex}.part"
        try:
            ctx.services.objects.download_to(asset.key, tmp)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    return path


def drop_local_video(ctx: StepContext) -> None:
    """Both analysis branches are done with the local copy (a retried branch downloads it again)."""
    for f in _cache_dir(ctx).glob("*"):
        if f.is_file() and f.stem == _asset_of(ctx):
            f.unlink(missing_ok=True)


def _asset_of(ctx: StepContext) -> str | None:
    from reelforge.apps.mobs.repository import MobsRepo

    with ctx.services.store.tx(write=False) as tx:
        v = MobsRepo(tx).video(str(ctx.job_input.get("video_id", "")))
    return v.asset_id if v is not None else None


def checked_video(ctx: StepContext, video_id: str) -> tuple[Path, Any]:
    """The video's local copy, checked again before anything decodes it: first that decoding it fits in the
    step's declared memory (from the header alone), then the platform's media policy with this application's
    caps (size, duration, frame rate, codec, container, and the packets against what the container claims).
    Returns (path, the probe's VideoInfo)."""
    from reelforge.adapters.media.probe import decode_budget, probe
    from reelforge.apps.mobs.services.base import media_limits

    path = local_video(ctx, video_id)
    # Sampled frames are converted to RGB one at a time (and resized): two RGB pictures beside the decoder's.
    decode_budget(path, ctx.memory_mb, held_rgb=2, what="analysing this video")
    return path, probe(path, limits=media_limits(ctx.services.settings))


def _raw_to_text(raw: Any) -> str | None:
    if raw is None:
        return None
    return base64.b64encode(np.ascontiguousarray(raw, dtype=np.float32).tobytes()).decode("ascii")


def _raw_from_text(text: str | None) -> np.ndarray | None:
    if not text:
        return None
    return np.frombuffer(base64.b64decode(text), dtype=np.float32).copy()


def _model_name(ctx: StepContext, task: str) -> str:
    mobs = ctx.services.settings.mobs
    return str(mobs.participation_adapter if task == TASK_PARTICIPATION else mobs.embed_adapter)


# --- steps -------------------------------------------------------------------------------------------
def mark_processing(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    """The video is `processing` under this job."""
    v = _mobs(ctx).analysis.start_processing(data["video_id"], ctx.job_id, ctx.owner_id)
    return {"video_id": v.id, "caption": v.caption or ""}


def thumbnail(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    """A PNG frame (FFmpeg/PyAV decode), stored as an asset whose id derives from the job (retries reuse it)."""
    from reelforge.apps.mobs.models import thumbnail as make_thumbnail

    path, _ = checked_video(ctx, data["video_id"])
    png, at = make_thumbnail(path, width=320)
    asset_id = uuid.uuid5(uuid.NAMESPACE_URL, f"reelforge:{ctx.job_id}:thumbnail").hex
    asset = ctx.services.assets.store_output(
        owner_id=ctx.owner_id, job_id=ctx.job_id, data=png, content_type="image/png", filename="thumbnail.png",
        metadata={"video_id": data["video_id"], "time_s": at}, category="thumbnails", asset_id=asset_id)
    return {**data, "thumbnail_asset_id": asset.id, "thumbnail_time_s": round(float(at), 3)}


def _run_video_model(ctx: StepContext, data: dict[str, Any], task: str) -> tuple[str, Any]:
    """Run the configured model of `task` on the job's video (cached locally); (model name, result)."""
    from reelforge.apps.mobs.ports import VideoAnalysisRequest

    path, info = checked_video(ctx, data["video_id"])
    name = _model_name(ctx, task)
    duration_s = float(info.duration_s) if info.duration_s > 0 else None  # the units video tasks are metered in
    result = ctx.services.models.run(
        task, name, VideoAnalysisRequest(path=path, caption=data.get("caption", ""), duration_s=duration_s),
        progress=lambda f, m: ctx.progress(0.1 + 0.6 * f, m), cancelled=ctx.stopping)
    return name, result


def participation(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    """OCR, transcript, hashtags and mentions, visual activity and the participation score."""
    name, result = _run_video_model(ctx, data, TASK_PARTICIPATION)
    return {**data, "participation": _jsonable(result), "participation_model": name}


def embed(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    """The 256-d video embedding and the version of the space it lives in; with the local model also the raw
    features it was projected from (float32, base64), which are stored so that a refitted projection can
    re-project the video."""
    name, result = _run_video_model(ctx, data, TASK_EMBED)
    vec = np.asarray(result.vector, dtype=np.float32)
    if vec.ndim != 1 or not np.all(np.isfinite(vec)) or float(np.linalg.norm(vec)) == 0.0:
        raise errors.ReelforgeError("the embedding model returned an unusable vector", code="invalid_embedding")
    raw = getattr(result, "raw", None)
    if raw is not None:
        raw = np.asarray(raw, dtype=np.float32).ravel()
        if raw.size == 0 or not np.all(np.isfinite(raw)):
            raise errors.ReelforgeError("the embedding model returned unusable raw features",
                                        code="invalid_embedding")
    return {"video_id": data["video_id"], "vector": [float(x) for x in vec], "model_version": result.model_version,
            "embed_model": name, "raw_features": _raw_to_text(raw)}


def store_results(ctx: StepContext, data: list[dict[str, Any]]) -> dict[str, Any]:
    """Analysis, vector and raw features on the video row; the vector into the index, private until validated."""
    left, right = data
    _mobs(ctx).analysis.store_results(
        left["video_id"], analysis=left["participation"], vector=np.asarray(right["vector"], dtype=np.float32),
        model_version=right["model_version"], participation_model=left["participation_model"],
        embed_model=right["embed_model"], thumbnail_asset_id=left.get("thumbnail_asset_id"),
        raw_features=_raw_from_text(right.get("raw_features")))
    drop_local_video(ctx)
    ctx.progress(0.8, "results stored")
    return {"video_id": left["video_id"], "model_version": right["model_version"]}


def validate(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    """The weighted multimodal score with per-component reasons against the configured threshold."""
    svc = _mobs(ctx).analysis
    with ctx.services.store.tx(write=False) as tx:
        from reelforge.apps.mobs.repository import MobsRepo

        v = MobsRepo(tx).video(data["video_id"])
    if v is None or v.analysis is None:
        raise errors.ReelforgeError("The video's analysis is missing", code="video_not_analyzed")
    result = svc.compute_validation(v.analysis, video_id=v.id)
    status = svc.apply_validation(v.id, result)
    ctx.progress(0.9, status)
    return {**data, "status": status, "score": result["score"]}


def assign_mob(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    """Validated videos join the nearest mob (or start one); their vector becomes searchable."""
    mob_id = _mobs(ctx).grouping.assign(data["video_id"]) if data["status"] == "validated" else None
    return {**data, "mob_id": mob_id}


def emit(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    """`video.analyzed` with id, status, scores and mob, through the outbox (once per job)."""
    return _mobs(ctx).analysis.emit_analyzed(data["video_id"], ctx.job_id)


def failed(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    """Retries are spent: the video is marked failed with the error, and the job fails with it.

    The caught error is shown as clients may see it: a documented code (a library's exception class name becomes
    the generic one) and a message without paths."""
    from reelforge.apps.mobs import ERROR_CODES

    error, cause = errors.public_error(str((data or {}).get("error") or "analysis_failed"),
                                       str((data or {}).get("cause") or "analysis failed"),
                                       set(errors.CODES) | set(ERROR_CODES))
    video_id = str(ctx.job_input.get("video_id", ""))
    _mobs(ctx).analysis.mark_failed(video_id, error, cause)
    drop_local_video(ctx)
    raise errors.ReelforgeError(f"video analysis failed: {cause}", code=error)


PIPELINE = Pipeline(
    kind=TASK,
    version=1,
    description="Video understanding: thumbnail, participation (OCR, speech, activity), embedding, validation, "
                "mob assignment, `video.analyzed` event.",
    graph=Graph(start_at="mark_processing", states=(
        Task("mark_processing", mark_processing, resources=Resources(cpu=0.1, memory_mb=64), timeout_s=60,
             retry=DB_RETRY, catch=TO_FAILED, next="analyze"),
        Parallel("analyze", branches=(
            Graph(start_at="thumbnail", states=(
                Task("thumbnail", thumbnail, resources=Resources(cpu=1, memory_mb=512), timeout_s=300,
                     retry=MODEL_RETRY, next="participation"),
                Task("participation", participation, resources=Resources(cpu=2, memory_mb=2048), timeout_s=1800,
                     retry=MODEL_RETRY, end=True, comment="OCR + speech + activity"),
            )),
            Graph(start_at="embed", states=(
                Task("embed", embed, resources=Resources(cpu=2, memory_mb=2048), timeout_s=1800,
                     retry=MODEL_RETRY, end=True, comment="frame + text embedding, projected"),
            )),
        ), catch=TO_FAILED, next="store_results"),
        Task("store_results", store_results, resources=Resources(cpu=0.2, memory_mb=128), timeout_s=120,
             retry=DB_RETRY, catch=TO_FAILED, next="validate"),
        Task("validate", validate, resources=Resources(cpu=0.1, memory_mb=64), timeout_s=60,
             retry=DB_RETRY, catch=TO_FAILED, next="assign_mob"),
        Task("assign_mob", assign_mob, resources=Resources(cpu=0.2, memory_mb=128), timeout_s=120,
             retry=DB_RETRY, catch=TO_FAILED, next="emit"),
        Task("emit", emit, resources=Resources(cpu=0.1, memory_mb=64), timeout_s=60, retry=DB_RETRY,
             catch=TO_FAILED, end=True),
        Task("failed", failed, resources=Resources(cpu=0.1, memory_mb=64), timeout_s=60, end=True,
             comment="mark the video failed and fail the job with the error"),
    )),
    input_model=VideoAnalyzeInput,
    price=lambda _: 1,
)

PIPELINES = [PIPELINE]
