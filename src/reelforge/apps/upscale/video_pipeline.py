"""`video.upscale`: probe -> plan chunks at keyframes -> map(chunk: decode -> upscale in batches -> encode ->
store as a temporary asset) -> join without re-encoding + remux every original stream -> store (hot) ->
delete the temporary chunks.

Sources, chunks and outputs live only in object storage. Each chunk step reads the source through the
worker's disk cache (:mod:`reelforge.runtime.cache`), so a worker downloads a video once however many of
its chunks it processes. Chunk asset ids are derived from the job id and the chunk index: a chunk whose
asset exists is never computed again, whether the runner's checkpoint for it was written or the worker
died between storing the chunk and checkpointing it.

Progress is per frame over the whole job: the chunk steps of one job in one worker share a counter, so
the fraction rises smoothly while several chunks run at once, and the message carries frames per second.
Pricing: see :mod:`reelforge.apps.upscale.image_pipeline` (output megapixels x frames).
"""

from __future__ import annotations

import ctypes
import gc
import os
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from reelforge import errors
from reelforge.apps.upscale.image_pipeline import TASK, check_model, credits_for, owned_source, upscale_frames
from reelforge.apps.upscale.settings import upscale_cache_dir
from reelforge.domain.pipeline import Graph, Map, Pipeline, Resources, Retry, Task
from reelforge.runtime.cache import SourceCache, cache_for
from reelforge.runtime.context import StepContext

KIND = "video.upscale"
# The chunk Map's MaxConcurrency when no settings are given (the setting's default).
DEFAULT_CHUNK_CONCURRENCY = 2
CHUNK_CATEGORY = "chunks"
CONTAINER_TYPES = {"mp4": "video/mp4", "mkv": "video/x-matroska"}

Preset = Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow"]


class OutputOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    container: Literal["mp4", "mkv"] | None = Field(
        default=None, description="Default: the source's own kind (a Matroska source stays mkv, an MP4 one mp4), "
                                  "so every stream, title and attachment is kept")
    video_codec: Literal["h264", "h265"] = "h264"
    crf: int = Field(default=18, ge=0, le=51)
    preset: Preset = "medium"


class VideoUpscaleInput(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    asset_id: str = Field(min_length=1, max_length=64, description="A video you uploaded")
    model: str = Field(min_length=1, max_length=100, examples=["realesr-animevideov3", "lanczos"])
    scale: int = Field(ge=2, le=4)
    output: OutputOptions = Field(default_factory=OutputOptions)
    chunk_seconds: float | None = Field(default=None, ge=0.5, le=600, description="Default: the server's setting")
    denoise: float | None = Field(default=None, ge=0.0, le=1.0, description="Where the model supports it")
    source: dict[str, Any] | None = Field(default=None, description="Set at submit time from the probe (size, "
                                                                       "frames); a value sent by a client is replaced")


# --- helpers ----------------------------------------------------------------------------------------------------

def source_cache(services: Any) -> SourceCache:
    """The worker's (or API process's) cache of sources, built lazily from the video settings."""
    s = services.settings
    return cache_for(services, upscale_cache_dir(s), s.upscale.cache_max_bytes)


@contextmanager
def local_source(services: Any, asset: Any) -> Iterator[tuple[Path, bool]]:
    """A verified local copy of a source asset (cache hit or download), held while the block runs."""
    cache = source_cache(services)
    with cache.use(asset.sha256, asset.size, lambda p: services.assets.fetch_to(asset, p)) as use:
        yield use.path, use.hit


def _limits_check(info: Any, scale: int, settings: Any) -> None:
    out_px = info.width * scale * info.height * scale
    if out_px > settings.upscale.max_output_pixels:
        raise errors.ValidationFailed(
            f"{info.width}x{info.height} x{scale} would be {info.width * scale}x{info.height * scale}, over "
            f"{settings.upscale.max_output_pixels} output pixels", code="output_too_large", field="scale",
            limit=settings.upscale.max_output_pixels)


def _probe(path: Path, settings: Any) -> Any:
    """The platform's media policy (settings `media`) with this application's own caps on top."""
    from reelforge.adapters.media.probe import probe

    return probe(path, max_duration_s=settings.upscale.max_duration_s, max_pixels=settings.upscale.max_pixels,
                 limits=settings.media.limits())


def chunk_memory(info: Any, scale: int, batch_size: int, native: bool) -> int:
    """Bytes one chunk step holds at its peak: the source's decoder, a batch of RGB frames in and upscaled out
    (not with native scaling, where frames stay YUV), and the encoder's look-ahead of output frames."""
    from reelforge.adapters.media.inputs import decoder_threads
    from reelforge.domain.media import decode_memory, frame_bytes

    w, h = int(info.width), int(info.height)
    need = decode_memory(w, h, info.pix_fmt, threads=decoder_threads())
    if not native:
        need += batch_size * w * h * 3 * (1 + 2 * scale * scale)
    return need + frame_bytes(w * scale, h * scale) * 48


def _source_facts(info: Any) -> dict[str, Any]:
    return {"width": info.width, "height": info.height, "frames": info.frames, "fps": info.fps,
            "duration_s": info.duration_s, "codec": info.codec}


def submit_check(container: Any, principal: Any, data: dict[str, Any]) -> None:
    """At submit time: the source is the caller's (404 otherwise), is a video within the limits (422 with the
    probe's code) and the output fits; its size and frame count are noted for price()."""
    from reelforge.adapters.media.probe import VideoInfo

    settings = container.settings
    asset = owned_source(container.assets, principal.user_id, data["asset_id"])
    if asset.content_type.startswith(("image/", "audio/", "text/")):
        raise errors.ValidationFailed(f"The asset is {asset.content_type}, not a video", code="not_a_video",
                                      field="asset_id")
    # The platform's media policy (headers, truncation, containers, active content) with this application's
    # own caps, on the stored file.
    limits = container.media.limits(max_pixels=settings.upscale.max_pixels,
                                    max_duration_s=settings.upscale.max_duration_s)
    info = VideoInfo.from_dict(container.media.check_video(asset, limits))
    _limits_check(info, int(data["scale"]), settings)
    data["source"] = _source_facts(info)


def price(data: dict[str, Any]) -> int:
    """Output megapixels x frames: one credit per started 1000 megapixel-frames, at least one."""
    src = data.get("source") or {}
    scale = int(data["scale"])
    return credits_for(int(src.get("width", 0)) * scale, int(src.get("height", 0)) * scale,
                       int(src.get("frames", 0) or 0))


def chunk_asset_id(job_id: str, index: int) -> str:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"reelforge:{job_id}:chunk:{index}").hex


def output_asset_id(job_id: str) -> str:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"reelforge:{job_id}:video").hex


class _JobState:
    """What the chunk steps of one job share inside one worker: the concurrency limit and the frame counter."""

    def __init__(self, total_frames: int, done_before: int, chunks: int, limit: int) -> None:
        self.lock = threading.Lock()
        self.slots = threading.BoundedSemaphore(max(1, limit))
        self.total = max(1, total_frames)
        self.before = done_before  # frames of chunks stored before this worker started on the job
        self.live: dict[int, int] = {}
        self.chunks = chunks
        self.started = time.monotonic()

    def update(self, index: int, frames: int) -> tuple[float, str]:
        with self.lock:
            self.live[index] = frames
            run = sum(self.live.values())
            done = min(self.total, self.before + run)
            fps = run / max(1e-6, time.monotonic() - self.started)
        fraction = 0.03 + 0.87 * done / self.total
        return fraction, f"chunk {index + 1}/{self.chunks}: {done}/{self.total} frames, {fps:.1f} fps"


_STATE_LOCK = threading.Lock()


def _job_state(ctx: StepContext, total_frames: int, chunks: int) -> _JobState:
    holder = ctx.services
    key = f"{ctx.job_id}:{ctx.attempt}"
    with _STATE_LOCK:
        states: dict[str, _JobState] | None = getattr(holder, "_upscale_jobs", None)
        if states is None:
            states = {}
            holder._upscale_jobs = states
        state = states.get(key)
        if state is None:
            before = 0
            with ctx.services.store.tx(write=False) as tx:
                for a in tx.assets.assets(owner_id=ctx.owner_id, job_id=ctx.job_id, limit=100_000):
                    if (a.meta or {}).get("kind") == f"{KIND}.chunk":
                        before += int((a.meta or {}).get("frames", 0))
            state = states[key] = _JobState(total_frames, before, chunks,
                                            ctx.services.settings.upscale.max_chunk_concurrency)
        return state


def _drop_job_state(ctx: StepContext) -> None:
    states = getattr(ctx.services, "_upscale_jobs", None)
    if states is not None:
        with _STATE_LOCK:
            for key in [k for k in states if k.startswith(f"{ctx.job_id}:")]:
                states.pop(key, None)


@contextmanager
def _slot(ctx: StepContext, state: _JobState) -> Iterator[None]:
    while not state.slots.acquire(timeout=0.2):
        ctx.check_cancelled()
    try:
        yield
    finally:
        state.slots.release()


def release_memory() -> None:
    """Give back what one chunk used before the next starts, so the worker's memory stays flat however long the
    video: decoder and encoder objects can sit in reference cycles until a collection, and glibc keeps freed
    pages in its per-thread arenas (chunks run on whichever executor thread is free) unless asked to trim."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass


def _existing(assets: Any, owner_id: str, asset_id: str) -> Any | None:
    try:
        return assets.owned_asset(owner_id, asset_id)
    except errors.NotFound:
        return None


# --- steps ------------------------------------------------------------------------------------------------------

def probe_source(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    """Check model and source again on the worker, probe within the limits and plan chunks at keyframes."""
    from reelforge.adapters.media.video import default_container, plan_chunks

    svc = ctx.services
    settings = svc.settings
    check_model(svc.models, data)
    asset = owned_source(svc.assets, ctx.owner_id, data["asset_id"])
    ctx.progress(0.005, "fetching source")
    with local_source(svc, asset) as (path, hit):
        ctx.progress(0.01, "probing")
        info = _probe(path, settings)
        _limits_check(info, int(data["scale"]), settings)
        chunk_s = float(data.get("chunk_seconds") or settings.upscale.chunk_seconds)
        chunks = plan_chunks(path, info, chunk_s)
    if not chunks or sum(c.frames for c in chunks) <= 0:
        raise errors.ValidationFailed("The video has no frames", code="empty_video", field="asset_id")
    total = sum(c.frames for c in chunks)
    output = OutputOptions.model_validate(data.get("output") or {}).model_dump()
    asked = output["container"] is not None
    if not asked:
        output["container"] = default_container(info)
    job = {"asset_id": asset.id, "model": data["model"], "scale": int(data["scale"]),
           "output": output, "container_from": "input" if asked else "source", "denoise": data.get("denoise"),
           "total_frames": total, "chunks": len(chunks), "started_at": time.time(),
           "source": {**_source_facts(info), "cache": "hit" if hit else "miss"}}
    ctx.progress(0.03, f"{len(chunks)} chunk(s), {total} frames")
    info_doc = info.to_dict()
    return {"job": job, "items": [{"job": job, "chunk": c.to_dict(), "info": info_doc} for c in chunks],
            "info": info_doc}


def _encoder_threads(chunks: int, max_parallel: int) -> int:
    """Split the cores between the chunks that encode at once, rather than each encoder starting its own full
    set of threads and all of them contending for the same cores (0 = the encoder's automatic choice, kept
    when a single chunk has the machine to itself)."""
    parallel = max(1, min(chunks, max_parallel))
    if parallel == 1:
        return 0
    return max(1, (os.cpu_count() or 1) // parallel)


def _native_scale(models: Any, model: str, scale: int, denoise: float | None, info: Any) -> Any:
    """Classical filters (lanczos, bicubic) run inside the decoder's scaler when no pre-filter is asked for and
    the output size is even: frames then never become RGB arrays, so the job runs at the encoder's speed."""
    from reelforge.adapters.media.video import NativeScale

    interpolation = getattr(models.get(TASK, model), "native_interpolation", None)
    w, h = int(info.width) * scale, int(info.height) * scale
    if interpolation is None or denoise or w % 2 or h % 2:
        return None
    return NativeScale(w, h, interpolation)


def upscale_chunk(ctx: StepContext, item: dict[str, Any]) -> dict[str, Any]:
    """Decode one chunk, upscale it in batches, encode it and store it as a temporary asset."""
    from reelforge.adapters.media.video import Chunk, EncodeOptions, process_chunk
    from reelforge.domain.media import check_decode_memory

    svc = ctx.services
    settings = svc.settings
    job, chunk = item["job"], Chunk.from_dict(item["chunk"])
    index = chunk.index
    asset_id = chunk_asset_id(ctx.job_id, index)
    state = _job_state(ctx, int(job["total_frames"]), int(job["chunks"]))
    existing = _existing(svc.assets, ctx.owner_id, asset_id)
    if existing is not None:  # stored by an attempt that died before its checkpoint
        meta = existing.meta or {}
        return {"job": job, "index": index, "asset_id": existing.id, "frames": int(meta.get("frames", 0)),
                "width": meta.get("width"), "height": meta.get("height"), "seconds": meta.get("seconds"),
                "cache": None, "reused": True, "attempt": ctx.attempt}
    ctx.check_cancelled()
    out_opts = job["output"]
    model, scale, denoise = job["model"], int(job["scale"]), job.get("denoise")

    def frame_fn(frames: list[Any]) -> list[Any]:
        return list(upscale_frames(ctx, model, scale, frames, denoise).images)

    def on_frames(done: int) -> None:
        fraction, message = state.update(index, done)
        ctx.progress(fraction, message)

    with _slot(ctx, state):
        source = owned_source(svc.assets, ctx.owner_id, job["asset_id"])
        with local_source(svc, source) as (path, hit), ctx.scratch("chunk") as tmp:
            from reelforge.adapters.media.probe import VideoInfo, probe

            info = VideoInfo.from_dict(item["info"]) if item.get("info") else probe(path)
            out = tmp / f"chunk-{index:05d}.mp4"
            native = _native_scale(svc.models, model, scale, denoise, info)
            check_decode_memory(chunk_memory(info, scale, settings.upscale.batch_size, native is not None),
                                ctx.memory_mb, what="upscaling this chunk")
            threads = _encoder_threads(int(job["chunks"]), settings.upscale.max_chunk_concurrency)
            started = time.perf_counter()
            result = process_chunk(
                path, info, chunk, out, None if native else frame_fn,
                encode=EncodeOptions(codec=out_opts["video_codec"], crf=int(out_opts["crf"]),
                                     preset=out_opts["preset"], threads=threads),
                batch_size=settings.upscale.batch_size, progress=on_frames, cancelled=ctx.stopping, native=native)
            if native is not None and hasattr(svc.models, "record_native"):
                svc.models.record_native(TASK, model, seconds=time.perf_counter() - started, unit="frames",
                                         units=float(result.frames))
            on_frames(result.frames)
            meta = {"kind": f"{KIND}.chunk", "index": index, "frames": result.frames, "width": result.width,
                    "height": result.height, "seconds": round(result.seconds, 4)}
            stored = svc.assets.store_output_file(
                out, owner_id=ctx.owner_id, job_id=ctx.job_id, content_type="video/mp4",
                filename=f"chunk-{index:05d}.mp4", lifecycle="temporary", metadata=meta, category=CHUNK_CATEGORY,
                asset_id=asset_id, multipart_threshold=settings.upscale.multipart_threshold,
                part_size=settings.upscale.part_size)
    release_memory()
    return {"job": job, "index": index, "asset_id": stored.id, "frames": result.frames, "width": result.width,
            "height": result.height, "seconds": round(result.seconds, 4), "elapsed_s": round(result.elapsed_s, 4),
            "cache": "hit" if hit else "miss", "reused": False, "attempt": ctx.attempt}


def _reuse(chunk: dict[str, Any], attempt: int) -> str | None:
    """Where this attempt got a chunk from without computing it: "stored" (its asset was there, stored by an
    attempt that died before its checkpoint), "checkpoint" (an earlier attempt finished it and the runner skipped
    it), or None (computed by this attempt)."""
    if chunk.get("reused"):
        return "stored"
    if chunk.get("attempt") != attempt:  # an output of an earlier attempt, read back from its checkpoint
        return "checkpoint"
    return None


def assemble(ctx: StepContext, chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """Join the chunks without re-encoding, remux every original non-video stream, store the result (hot)."""
    from reelforge.adapters.media.probe import probe
    from reelforge.adapters.media.video import concat_chunks, remux

    svc = ctx.services
    settings = svc.settings
    chunks = sorted(chunks, key=lambda c: int(c["index"]))
    job = chunks[0]["job"]
    container = job["output"]["container"]
    out_id = output_asset_id(ctx.job_id)
    done = _existing(svc.assets, ctx.owner_id, out_id)
    ctx.progress(0.91, "joining chunks")
    with ctx.scratch("assemble") as tmp:
        if done is None:
            paths = []
            for c in chunks:
                asset = svc.assets.owned_asset(ctx.owner_id, c["asset_id"])
                p = tmp / f"chunk-{int(c['index']):05d}.mp4"
                svc.assets.fetch_to(asset, p)
                paths.append(p)
            joined = tmp / "joined.mp4"
            concat_chunks(paths, joined)
            ctx.progress(0.95, "remuxing audio, subtitles and chapters")
            source = owned_source(svc.assets, ctx.owner_id, job["asset_id"])
            final = tmp / f"output.{container}"
            with local_source(svc, source) as (src_path, _):
                report = remux(joined, src_path, final, container=container)
            out_info = probe(final)
            ctx.progress(0.97, "storing")
            name = (source.filename or "video").rsplit(".", 1)[0]
            meta = {"kind": KIND, "model": job["model"], "scale": job["scale"], "source_asset_id": source.id,
                    "frames": out_info.frames, "width": out_info.width, "height": out_info.height,
                    "duration_s": out_info.duration_s, "fps": out_info.fps, "codec": out_info.codec,
                    "dropped": list(report.dropped), "converted": list(report.converted)}
            done = svc.assets.store_output_file(
                final, owner_id=ctx.owner_id, job_id=ctx.job_id, content_type=CONTAINER_TYPES[container],
                filename=f"{name}-x{job['scale']}-{job['model']}.{container}", lifecycle="hot", metadata=meta,
                category="videos", asset_id=out_id, multipart_threshold=settings.upscale.multipart_threshold,
                part_size=settings.upscale.part_size)
    meta = done.meta or {}
    reuse = [_reuse(c, ctx.attempt) for c in chunks]
    run_s = sum(float(c.get("elapsed_s") or 0) for c in chunks)
    frames = sum(int(c.get("frames") or 0) for c in chunks)
    wall = max(1e-6, time.time() - float(job.get("started_at") or time.time()))
    return {"asset_id": done.id, "source_asset_id": job["asset_id"], "model": job["model"], "scale": job["scale"],
            "container": container, "container_from": job.get("container_from", "input"),
            # what the output does not carry as the source had it (streams left out, streams converted)
            "dropped": list(meta.get("dropped") or []), "converted": list(meta.get("converted") or []),
            "video_codec": job["output"]["video_codec"],
            "width": meta.get("width"), "height": meta.get("height"), "frames": meta.get("frames"),
            "duration_s": meta.get("duration_s"), "fps": meta.get("fps"), "size": done.size, "sha256": done.sha256,
            "multipart": "multipart_parts" in meta, "source": job["source"],
            "chunk_count": len(chunks), "chunk_asset_ids": [c["asset_id"] for c in chunks],
            "chunks": [{"index": c["index"], "frames": c["frames"], "seconds": c.get("seconds"),
                        "elapsed_s": c.get("elapsed_s"), "cache": c.get("cache"), "reused": r is not None,
                        "reused_from": r}
                       for c, r in zip(chunks, reuse, strict=True)],
            "chunks_reused": sum(1 for r in reuse if r is not None),
            "frames_upscaled": frames, "upscale_s": round(run_s, 3),
            "frames_per_second": round(frames / wall, 3), "wall_s": round(wall, 3)}


def cleanup(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    """Delete the temporary chunk assets (the sweeper removes them too if a job is abandoned)."""
    removed = ctx.services.assets.delete_owned(ctx.owner_id, list(data.get("chunk_asset_ids") or []))
    _drop_job_state(ctx)
    with suppress(Exception):
        ctx.progress(1.0, f"done: {data.get('frames')} frames at {data.get('width')}x{data.get('height')}")
    out = {k: v for k, v in data.items() if k != "chunk_asset_ids"}
    return {**out, "chunks_deleted": removed}


CHUNK_GRAPH = Graph(start_at="upscale", states=(
    Task("upscale", upscale_chunk, resources=Resources(cpu=2, gpu=1, memory_mb=4096), timeout_s=3600,
         retry=(Retry(errors=("transient_error", "storage_error"), interval_s=1, max_attempts=2),), end=True,
         comment="decode -> model in batches -> encode -> temporary asset"),
))

def chunk_items(data: dict[str, Any]) -> list[Any]:
    """The chunk Map's items: one per planned chunk."""
    return list(data["items"])


def build_pipeline(chunk_concurrency: int = DEFAULT_CHUNK_CONCURRENCY) -> Pipeline:
    """`video.upscale` with its chunk Map running `chunk_concurrency` chunks of a job at once (the
    `upscale.max_chunk_concurrency` setting), which is what its ASL export says too."""
    return Pipeline(
        kind=KIND,
        version=1,
        description="Video super-resolution in chunks at keyframes; every original stream kept.",
        graph=Graph(start_at="probe", states=(
            Task("probe", probe_source, resources=Resources(cpu=1, memory_mb=512), timeout_s=600, next="chunks",
                 retry=(Retry(errors=("transient_error", "storage_error"), interval_s=1, max_attempts=2),)),
            Map("chunks", CHUNK_GRAPH, items=chunk_items, max_concurrency=max(1, int(chunk_concurrency)),
                next="assemble", comment="one item per chunk; upscale.max_chunk_concurrency run at once"),
            Task("assemble", assemble, resources=Resources(cpu=1, memory_mb=1024), timeout_s=3600,
                 next="cleanup",
                 retry=(Retry(errors=("transient_error", "storage_error"), interval_s=1, max_attempts=2),),
                 comment="concat without re-encoding, remux every original stream, store (hot)"),
            Task("cleanup", cleanup, resources=Resources(cpu=0.1, memory_mb=64), timeout_s=300, end=True),
        )),
        input_model=VideoUpscaleInput,
        price=price,
    )


PIPELINE = build_pipeline()
