"""`video.rotoscope`: propagate a session's prompted masks through its video, then export them.

plan -> propagate (forward sweep || backward sweep) -> finish (the session's manifest) -> export.

Which mask a frame gets, per object: on a frame where the object is prompted, its prompted mask; elsewhere the mask
tracked from the object's nearest prompted frame (forward from the last one before, backward from the first one
after; on equal distance, forward). Binary masks do not average, so where the forward and backward passes between
two anchors meet, each frame takes the pass whose anchor is nearer: each pass runs only as far as it is the nearer
one for some object, never over frames the other pass wins for every object.

Spans. The anchor frames (every prompted frame inside the range) cut the range into segments; each direction has
one span per anchor: forward, the frames after it up to the next anchor (or the out marker); backward, the frames
before it down to the previous anchor (or the in marker). A span's tracker starts on its anchor with the prompted
masks of the objects it carries, and with the masks the span before it (in its direction) gave the objects not
prompted on that anchor. A span's key is the hash of everything it is computed from (engine, window, anchor and
frames, which objects it must give on which frames, and the content of its starting masks), and its result (frame
-> object -> COCO RLE) is stored in the object store under that key:

- resume: a crashed attempt's next attempt finds every finished span stored and goes on at the first missing one;
- re-prompting: a changed prompt changes the starting masks of the spans anchored on its frame, so only those are
  computed again; the rest are reused, and their carried masks (hence keys) do not change unless a changed span
  carried an object on;
- memory: a sweep streams its frames (`FrameSource.iter_frames`; backwards one block at a time) through one tracker
  of `roto.window` frames, and holds the RLEs of one span; never the whole video.

Progress is per frame over both sweeps; a cancel is honoured every `roto.batch_frames` frames. Pricing (set at
submit from the session): credits per 100 frames of the range, plus per 100 frames per object, rounded up, at least
one (`roto.credits_per_100_frames`, `roto.credits_per_100_object_frames`); reserved at submit, settled on success
and refunded on failure by the platform.

Exports: the COCO RLE JSON (every frame of the clip an image, the range's masks as annotations, each noting whether
it was prompted or propagated), built here. The picture exports (alpha
mattes, PNG sequences, green screen) come from the application's exports module when it is installed
(`export_hook`).
"""

from __future__ import annotations

import bisect
import hashlib
import json
import math
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from reelforge import errors
from reelforge.apps.roto.records import Span, merge_prompts, prompt_key
from reelforge.domain.pipeline import Graph, Parallel, Pipeline, Resources, Retry, Task
from reelforge.runtime.context import StepContext

KIND = "video.rotoscope"
SPAN_CATEGORY = "roto-spans"
EXPORT_CATEGORY = "roto-exports"
FORWARD, BACKWARD = "forward", "backward"
# Export kinds built here; the exports module adds its own (`export_hook`).
BUILTIN_EXPORTS = ("coco",)
ExportKind = Literal["coco", "alpha_prores", "alpha_webm", "png_zip", "greenscreen"]
PICTURE_EXPORTS = ("alpha_prores", "alpha_webm", "png_zip", "greenscreen")


def default_exports() -> list[ExportKind]:
    return ["coco"]


class FrameRange(BaseModel):
    """In and out markers: the first and the last frame propagated (inclusive)."""

    model_config = ConfigDict(extra="forbid")

    start: int = Field(ge=0, description="In marker: first frame (0-based)")
    end: int = Field(ge=0, description="Out marker: last frame (inclusive)")


class RotoscopeInput(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    session_id: str = Field(min_length=1, max_length=64, description="A rotoscoping session of yours")
    range: FrameRange | None = Field(default=None, description="Default: the whole video")
    exports: list[ExportKind] = Field(default_factory=default_exports, max_length=8,
                                      description="What to produce at the end (COCO RLE JSON by default)")
    per_object: bool = Field(default=False, description="Picture exports: one file per object too")
    plan: dict[str, Any] | None = Field(default=None, description="Set at submit time from the session (frames, "
                                                                     "objects); a value sent by a client is replaced")

    @model_validator(mode="after")
    def _unique_exports(self) -> RotoscopeInput:
        self.exports = list(dict.fromkeys(self.exports))
        return self


# --- the plan: which frame gets which object's mask from where ------------------------------------------------

def object_anchors(prompted: Mapping[int, Any], lo: int, hi: int) -> dict[int, list[int]]:
    """object -> its prompted frames inside [lo, hi], sorted (`prompted`: frame -> object -> anything)."""
    out: dict[int, list[int]] = {}
    for frame in sorted(prompted):
        if lo <= frame <= hi:
            for obj in prompted[frame]:
                out.setdefault(int(obj), []).append(int(frame))
    return out


def direction(anchors: list[int], frame: int) -> str | None:
    """Where an object's mask on `frame` comes from: None (prompted there, or no anchor), forward or backward."""
    i = bisect.bisect_left(anchors, frame)
    if i < len(anchors) and anchors[i] == frame:
        return None
    left = anchors[i - 1] if i > 0 else None
    right = anchors[i] if i < len(anchors) else None
    if left is None and right is None:
        return None
    if right is None:
        return FORWARD
    if left is None:
        return BACKWARD
    return FORWARD if frame - left <= right - frame else BACKWARD


def plan_parts(anchors_by_object: Mapping[int, list[int]], lo: int, hi: int, way: str) -> list[dict[str, Any]]:
    """The spans of one direction, in the order they run (forward: left to right; backward: right to left).

    Each: anchor, start, stop (inclusive, the frames it may cover), `needed` (frame -> objects it must give there,
    only frames where some object needs it), `objects` (what its tracker carries: prompted on the anchor or
    carried from the span before), `last` (the farthest frame it steps to)."""
    frames = sorted({f for fs in anchors_by_object.values() for f in fs})
    parts: list[dict[str, Any]] = []
    for i, a in enumerate(frames):
        if way == FORWARD:
            start, stop = a + 1, (frames[i + 1] if i + 1 < len(frames) else hi)
        else:
            start, stop = (frames[i - 1] if i > 0 else lo), a - 1
        if start > stop:
            continue
        needed: dict[int, list[int]] = {}
        for f in range(start, stop + 1):
            objs = [o for o, fs in sorted(anchors_by_object.items()) if direction(fs, f) == way]
            if objs:
                needed[f] = objs
        if not needed:
            continue
        carried = sorted({o for objs in needed.values() for o in objs})
        last = max(needed) if way == FORWARD else min(needed)
        parts.append({"direction": way, "anchor": a, "start": start, "stop": stop, "last": last,
                      "objects": carried, "needed": {str(f): objs for f, objs in needed.items()}})
    if way == BACKWARD:
        parts.reverse()
    return parts


def _rle_digest(rle: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps([rle.get("size"), rle.get("counts")]).encode()).hexdigest()


def part_key(plan: Mapping[str, Any], part: Mapping[str, Any], inputs: Mapping[int, Mapping[str, Any]],
             prompts: Mapping[int, str] | None = None) -> str:
    """The hash of what a span is computed from: the engine and window, the source, the span's frames and what it
    must give on each, its starting masks (`inputs`) and the prompts' content of the objects prompted on its
    anchor (`prompts`: object -> prompt key)."""
    doc = {"v": 1, "engine": plan["engine"], "window": plan["window"], "source": plan["source_sha256"],
           "direction": part["direction"], "anchor": part["anchor"], "start": part["start"], "stop": part["stop"],
           "needed": part["needed"], "inputs": {str(o): _rle_digest(r) for o, r in sorted(inputs.items())},
           "prompts": {str(o): k for o, k in sorted((prompts or {}).items())}}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def span_asset_id(session_id: str, key: str) -> str:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"reelforge:roto:{session_id}:span:{key}").hex


# --- submit time ----------------------------------------------------------------------------------------------

def _range(session: Any, data: Mapping[str, Any]) -> tuple[int, int]:
    rng = data.get("range") or None
    last = session.frame_count - 1
    if not rng:
        return 0, last
    lo, hi = int(rng["start"]), int(rng["end"])
    if lo > last or hi > last:
        raise errors.ValidationFailed(f"The range {lo}..{hi} reaches past the video's last frame ({last})",
                                      code="frame_out_of_range", field="range", frame_count=session.frame_count)
    if hi < lo:
        raise errors.ValidationFailed("The range ends before it starts", code="invalid_range", field="range")
    return lo, hi


def _prompted(state: Any) -> dict[int, dict[int, Any]]:
    known = {o.object_id for o in state.objects}
    return {f: {o: v for o, v in objs.items() if o in known}
            for f, objs in merge_prompts(list(state.prompts)).items()}


def available_exports() -> tuple[str, ...]:
    """The export kinds this installation produces: COCO JSON here, the rest from the exports module."""
    hook = export_hook()
    return BUILTIN_EXPORTS + (PICTURE_EXPORTS if hook is not None else ())


def submit_check(container: Any, principal: Any, data: dict[str, Any]) -> None:
    """At submit time: the session is the caller's (404 otherwise), the range lies in the video, some object is
    prompted inside it, the exports can be made; the frames and objects are noted for the price."""
    svc = container.app("roto")
    state = svc.state(principal.user_id, str(data["session_id"]))
    session = state.session
    lo, hi = _range(session, data)
    anchors = object_anchors(_prompted(state), lo, hi)
    if not anchors:
        raise errors.ValidationFailed("No object is prompted inside the range: click on a frame first",
                                      code="no_prompts", field="session_id")
    missing = [k for k in data.get("exports") or () if k not in available_exports()]
    if missing:
        raise errors.ValidationFailed(f"Export {missing[0]!r} is not available on this server; available: "
                                      f"{', '.join(available_exports())}", code="export_unavailable",
                                      field="exports")
    data["session_id"] = session.id
    data["plan"] = {"frames": hi - lo + 1, "objects": len(anchors), "start": lo, "end": hi,
                    "width": session.width, "height": session.height}


def credits_for(frames: int, objects: int, per_100_frames: float, per_100_object_frames: float) -> int:
    work = frames / 100.0 * per_100_frames + frames * objects / 100.0 * per_100_object_frames
    return max(1, math.ceil(work - 1e-9))


def make_price(settings: Any) -> Any:
    cfg = getattr(settings, "roto", None)
    per_frames = float(cfg.credits_per_100_frames) if cfg is not None else 1.0
    per_objects = float(cfg.credits_per_100_object_frames) if cfg is not None else 1.0

    def price(data: dict[str, Any]) -> int:
        """Credits per 100 frames plus per 100 object-frames (module docstring)."""
        plan = data.get("plan") or {}
        return credits_for(int(plan.get("frames") or 1), int(plan.get("objects") or 1), per_frames, per_objects)

    return price


# --- steps ----------------------------------------------------------------------------------------------------

class _Progress:
    """Frames done by both sweeps of one job in this worker, reported as one fraction."""

    def __init__(self, total: int) -> None:
        self.total = max(1, total)
        self.done = 0
        self.lock = threading.Lock()
        self.started = time.monotonic()

    def add(self, n: int) -> tuple[float, int, float]:
        with self.lock:
            self.done += n
            fps = self.done / max(1e-6, time.monotonic() - self.started)
            return 0.05 + 0.85 * min(1.0, self.done / self.total), self.done, fps


_PROGRESS_LOCK = threading.Lock()


def _progress(ctx: StepContext, total: int) -> _Progress:
    holder = ctx.services
    key = f"{ctx.job_id}:{ctx.attempt}"
    with _PROGRESS_LOCK:
        states: dict[str, _Progress] | None = getattr(holder, "_roto_jobs", None)
        if states is None:
            states = {}
            holder._roto_jobs = states
        state = states.get(key)
        if state is None:
            state = states[key] = _Progress(total)
        return state


def _drop_progress(ctx: StepContext) -> None:
    states = getattr(ctx.services, "_roto_jobs", None)
    if states is not None:
        with _PROGRESS_LOCK:
            for key in [k for k in states if k.startswith(f"{ctx.job_id}:")]:
                states.pop(key, None)


def plan(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    """Read the session, make sure every prompted frame in the range has current masks (computed on this worker
    through the session cache when not), and lay out the spans of both directions."""
    from reelforge.apps.roto.calls import resolve_frame

    svc = ctx.services.app("roto")
    cfg = ctx.services.settings.roto
    state = svc.state(ctx.owner_id, str(data["session_id"]))
    session = state.session
    lo, hi = _range(session, data)
    prompted = _prompted(state)
    anchors_by_object = object_anchors(prompted, lo, hi)
    if not anchors_by_object:
        raise errors.ValidationFailed("No object is prompted inside the range", code="no_prompts",
                                      field="session_id")
    frames = sorted({f for fs in anchors_by_object.values() for f in fs})
    ctx.progress(0.01, f"{len(frames)} prompted frame(s), {len(anchors_by_object)} object(s)")
    svc.set_propagation(ctx.owner_id, session.id, job_id=ctx.job_id, manifest=None)
    anchors: dict[str, dict[str, Any]] = {}
    with svc.cache.use(ctx.services, session) as (entry, _):
        for i, frame in enumerate(frames):
            ctx.check_cancelled()
            fstate = svc.frame_state(ctx.owner_id, session.id, frame)
            result = resolve_frame(ctx.services, entry, fstate, frame, with_propagated=False)
            svc.put_masks(ctx.owner_id, session.id, result.computed)
            anchors[str(frame)] = {
                str(o): {"key": prompt_key(session.engine, *prompted[frame][o]), "rle": result.masks[o][1]}
                for o in sorted(prompted[frame]) if o in result.masks and lo <= frame <= hi}
            ctx.progress(0.01 + 0.04 * (i + 1) / len(frames), f"prompted frame {frame}: masks ready")
    parts = {way: plan_parts(anchors_by_object, lo, hi, way) for way in (FORWARD, BACKWARD)}
    steps = sum(abs(p["last"] - p["anchor"]) for way in parts for p in parts[way])
    return {"session_id": session.id, "owner_id": ctx.owner_id, "engine": session.engine,
            "source_sha256": session.video.get("sha256") or session.asset_id, "asset_id": session.asset_id,
            "window": int(cfg.window), "range": [lo, hi], "frame_count": session.frame_count,
            "width": session.width, "height": session.height, "revision": session.revision,
            "objects": sorted(anchors_by_object), "names": {str(o.object_id): o.name for o in state.objects},
            "anchors": anchors, "parts": parts, "steps": steps,
            "exports": list(data.get("exports") or ["coco"]), "per_object": bool(data.get("per_object")),
            "started_at": time.time()}


def _load_span(services: Any, owner_id: str, asset_id: str) -> dict[int, dict[int, dict[str, Any]]]:
    from reelforge.apps.roto.calls import parse_part

    _, data = services.assets.read_owned(owner_id, asset_id)
    return parse_part(data)


def _existing_span(services: Any, plan_: Mapping[str, Any], key: str) -> Span | None:
    svc = services.app("roto")
    span = svc.span(plan_["session_id"], key)
    if span is None:
        return None
    try:
        services.assets.owned_asset(plan_["owner_id"], span.asset_id)
    except errors.NotFound:
        return None
    return span


def _source(ctx: StepContext, plan_: Mapping[str, Any]) -> Any:
    """A local copy of the session's video through the workers' source cache, held while the sweep runs."""
    from reelforge.apps.roto.settings import roto_cache_dir
    from reelforge.runtime.cache import cache_for

    svc = ctx.services
    asset = svc.assets.owned_asset(plan_["owner_id"], plan_["asset_id"])
    cache = cache_for(svc, roto_cache_dir(svc.settings) / "sources", int(svc.settings.roto.source_cache_max_bytes))
    return cache.use(asset.sha256, asset.size, lambda p: svc.assets.fetch_to(asset, p))


def _check_memory(ctx: StepContext, plan_: Mapping[str, Any], block: int) -> None:
    from reelforge.domain.media import check_decode_memory

    frame = int(plan_["width"]) * int(plan_["height"]) * 3
    # a backward block of frames, the tracker's window, the decoder's own pictures, and the engine's working set
    need = frame * (block + int(plan_["window"]) + 16) + 256 * 1024**2
    check_decode_memory(need, ctx.memory_mb, what="propagating masks through this video")


def sweep(ctx: StepContext, plan_: dict[str, Any], way: str) -> dict[str, Any]:
    """Run one direction's spans in order: reuse each one stored under its key, compute the others."""
    from reelforge.apps.roto import masks as M
    from reelforge.apps.roto.frames import open_frames
    from reelforge.apps.roto.ports import TASK
    from reelforge.apps.roto.service import media_limits

    svc = ctx.services
    cfg = svc.settings.roto
    parts: list[dict[str, Any]] = plan_["parts"][way]
    progress = _progress(ctx, int(plan_["steps"]))
    done: list[dict[str, Any]] = []
    if not parts:
        return {"direction": way, "parts": done, "computed": 0, "reused": 0, "frames": 0}
    anchors = {int(f): {int(o): v["rle"] for o, v in objs.items()} for f, objs in plan_["anchors"].items()}
    prompt_keys = {int(f): {int(o): str(v["key"]) for o, v in objs.items()} for f, objs in plan_["anchors"].items()}
    previous: dict[int, dict[int, dict[str, Any]]] = {}  # the last span's masks (for what it carries on)
    computed = reused = frames_run = 0
    block = max(16, int(plan_["window"]))
    engine: Any = None
    _check_memory(ctx, plan_, block)
    with _source(ctx, plan_) as use:
        source = None
        try:
            for part in parts:
                ctx.check_cancelled()
                a = int(part["anchor"])
                inputs: dict[int, dict[str, Any]] = {}
                for o in part["objects"]:
                    if o in anchors.get(a, {}):
                        inputs[o] = anchors[a][o]
                    elif o in previous.get(a, {}):
                        inputs[o] = previous[a][o]
                key = part_key(plan_, part, inputs, {o: k for o, k in prompt_keys.get(a, {}).items()
                                                     if o in inputs})
                entry = {"direction": way, "anchor": a, "start": int(part["start"]), "stop": int(part["stop"]),
                         "key": key, "objects": sorted(inputs)}
                steps = abs(int(part["last"]) - a)
                stored = _existing_span(svc, plan_, key)
                if stored is not None:
                    previous = _load_span(svc, plan_["owner_id"], stored.asset_id)
                    reused += 1
                    fraction, n, fps = progress.add(steps)
                    ctx.progress(fraction, f"{way} span at frame {a}: reused ({n}/{progress.total} frames)")
                    done.append({**entry, "asset_id": stored.asset_id, "frames": stored.frames, "reused": True})
                    continue
                if source is None:
                    source = open_frames(use.path, limits=media_limits(svc.settings), cache_frames=2, block=block)
                    engine = svc.models.ensure_ready(TASK, plan_["engine"])
                needed = {int(f): set(objs) for f, objs in part["needed"].items()}
                result: dict[int, dict[int, dict[str, Any]]] = {}
                tracker = engine.tracker(window=int(plan_["window"]))
                last = int(part["last"])
                step = 1 if way == FORWARD else -1
                started = time.perf_counter()
                batch = 0
                for index, rgb in source.iter_frames(a, last + step, step):
                    if index == a:
                        tracker.anchor(a, rgb, {o: M.decode(r) for o, r in inputs.items()})
                        continue
                    masks = tracker.step(index, rgb)
                    want = needed.get(index)
                    if want:
                        result[index] = {o: M.encode(np.asarray(masks[o], dtype=bool)) if o in masks else
                                         M.encode(_empty(plan_)) for o in sorted(want)}
                    batch += 1
                    if batch >= int(cfg.batch_frames):
                        ctx.check_cancelled()
                        fraction, n, fps = progress.add(batch)
                        ctx.progress(fraction, f"{way} from frame {a}: frame {index} ({n}/{progress.total} frames, "
                                               f"{fps:.1f} fps)")
                        batch = 0
                if batch:
                    fraction, n, fps = progress.add(batch)
                    ctx.progress(fraction, f"{way} from frame {a}: done ({n}/{progress.total} frames)")
                svc.models.record_invocation(TASK, plan_["engine"], time.perf_counter() - started)
                frames_run += steps
                doc = {"v": 1, "direction": way, "anchor": a, "start": part["start"], "stop": part["stop"],
                       "key": key, "engine": plan_["engine"],
                       "masks": {str(f): {str(o): r for o, r in objs.items()} for f, objs in sorted(result.items())}}
                asset_id = span_asset_id(plan_["session_id"], key)
                asset = svc.assets.store_output(
                    owner_id=plan_["owner_id"], job_id=None, data=json.dumps(doc, separators=(",", ":")).encode(),
                    content_type="application/json", filename=f"span-{way}-{a:06d}.json", lifecycle="hot",
                    category=SPAN_CATEGORY, asset_id=asset_id,
                    metadata={"kind": "roto.span", "session_id": plan_["session_id"], "direction": way,
                              "anchor": a, "start": part["start"], "stop": part["stop"], "key": key})
                svc.app("roto").add_span(Span(session_id=plan_["session_id"], key=key, direction=way,
                                              start=int(part["start"]), stop=int(part["stop"]), asset_id=asset.id,
                                              frames=len(result), job_id=ctx.job_id, created_at=time.time()))
                computed += 1
                previous = result
                done.append({**entry, "asset_id": asset.id, "frames": len(result), "reused": False})
        finally:
            if source is not None:
                source.close()
    return {"direction": way, "parts": done, "computed": computed, "reused": reused, "frames": frames_run}


def _empty(plan_: Mapping[str, Any]) -> np.ndarray:
    return np.zeros((int(plan_["height"]), int(plan_["width"])), dtype=bool)


def forward(ctx: StepContext, plan_: dict[str, Any]) -> dict[str, Any]:
    """The forward sweep (spans after each anchor, left to right)."""
    return sweep(ctx, plan_, FORWARD)


def backward(ctx: StepContext, plan_: dict[str, Any]) -> dict[str, Any]:
    """The backward sweep (spans before each anchor, right to left)."""
    return sweep(ctx, plan_, BACKWARD)


def summarize(sweeps: list[dict[str, Any]]) -> dict[str, Any]:
    """Both sweeps' spans (the propagation's manifest to be) and their counts."""
    by_way = {s["direction"]: s for s in sweeps}
    parts = by_way.get(FORWARD, {}).get("parts", []) + by_way.get(BACKWARD, {}).get("parts", [])
    return {"parts": sorted(parts, key=lambda p: (p["start"], p["direction"])),
            "computed": sum(int(s.get("computed") or 0) for s in sweeps),
            "reused": sum(int(s.get("reused") or 0) for s in sweeps),
            "frames_propagated": sum(int(s.get("frames") or 0) for s in sweeps)}


def record(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    """Write the manifest onto the session (after both sweeps) and drop the spans it no longer names."""
    plan_, summary = data["plan"], data["summary"]
    manifest = {"job_id": ctx.job_id, "revision": plan_["revision"], "range": plan_["range"],
                "objects": plan_["objects"], "engine": plan_["engine"],
                "anchors": {f: {o: v["key"] for o, v in objs.items()} for f, objs in plan_["anchors"].items()},
                "parts": [{k: p[k] for k in ("direction", "anchor", "start", "stop", "key", "asset_id", "frames")}
                          for p in summary["parts"]],
                "finished_at": time.time()}
    removed = ctx.services.app("roto").set_propagation(plan_["owner_id"], plan_["session_id"], job_id=ctx.job_id,
                                                       manifest=manifest)
    ctx.progress(0.92, f"{summary['computed']} span(s) computed, {summary['reused']} reused")
    return {**data, "manifest": manifest, "spans_removed": len(removed)}


def iter_masks(services: Any, plan_: Mapping[str, Any], manifest: Mapping[str, Any]) -> \
        Iterator[tuple[int, dict[int, tuple[dict[str, Any], str]]]]:
    """(frame, object -> (RLE, "prompt" | "propagated")) for every frame of the range, in order, holding the
    stored spans of one segment at a time."""
    lo, hi = (int(v) for v in plan_["range"])
    anchors = {int(f): {int(o): v["rle"] for o, v in objs.items()} for f, objs in plan_["anchors"].items()}
    parts = sorted(manifest.get("parts") or (), key=lambda p: (int(p["start"]), p["direction"]))
    loaded: dict[str, dict[int, dict[int, dict[str, Any]]]] = {}
    for frame in range(lo, hi + 1):
        covering = [p for p in parts if int(p["start"]) <= frame <= int(p["stop"])]
        for gone in [k for k in loaded if k not in {p["asset_id"] for p in covering}]:
            loaded.pop(gone)
        out: dict[int, tuple[dict[str, Any], str]] = {}
        for p in covering:
            if p["asset_id"] not in loaded:
                loaded[p["asset_id"]] = _load_span(services, plan_["owner_id"], p["asset_id"])
            for o, rle in loaded[p["asset_id"]].get(frame, {}).items():
                out[o] = (rle, "propagated")
        for o, rle in anchors.get(frame, {}).items():
            out[o] = (rle, "prompt")
        yield frame, out


def export_hook() -> Any:
    """The exports module's entry (`exports.export(ctx, plan, manifest, kinds, masks) -> list[dict]`) when the
    application ships it, else None: the picture exports are then not offered."""
    try:
        from reelforge.apps.roto import exports
    except ImportError:
        return None
    return getattr(exports, "run_exports", None)


def coco_export(ctx: StepContext, plan_: Mapping[str, Any], manifest: Mapping[str, Any], tmp: Path) -> Path:
    """The masks as COCO: one image per frame of the clip, one category per object, one RLE annotation per object
    and frame of the range where it has a mask (its source, prompted or propagated, noted). Written as it is
    read."""
    from reelforge.apps.roto import masks as M

    path = tmp / "masks.coco.json"
    lo, hi = (int(v) for v in plan_["range"])
    names = plan_.get("names") or {}
    ann_id = 0
    with open(path, "w", encoding="utf-8") as f:
        info = {"description": "reelforge rotoscoping masks", "session_id": plan_["session_id"],
                "job_id": ctx.job_id, "engine": plan_["engine"], "range": [lo, hi], "revision": plan_["revision"],
                "width": plan_["width"], "height": plan_["height"]}
        f.write('{"info":' + json.dumps(info) + ',"categories":')
        f.write(json.dumps([{"id": o, "name": names.get(str(o)) or f"object {o}", "supercategory": "object"}
                            for o in plan_["objects"]]))
        f.write(',"images":')
        # every frame of the clip is an image, as the picture exports span the whole clip; only the range's
        # frames have annotations
        f.write(json.dumps([{"id": n + 1, "frame_index": n, "width": plan_["width"], "height": plan_["height"],
                             "file_name": f"frame-{n:06d}.png"} for n in range(int(plan_["frame_count"]))]))
        f.write(',"annotations":[')
        first = True
        for frame, masks in iter_masks(ctx.services, plan_, manifest):
            if (frame - lo) % 64 == 0:
                ctx.check_cancelled()
            for o, (rle, src) in sorted(masks.items()):
                a = M.area(rle)
                if a == 0:
                    continue
                box = M.bbox(M.decode(rle))
                ann_id += 1
                ann = {"id": ann_id, "image_id": frame + 1, "category_id": o, "segmentation": rle, "area": a,
                       "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]] if box else [0, 0, 0, 0],
                       "iscrowd": 0, "source": src}
                f.write(("" if first else ",") + json.dumps(ann, separators=(",", ":")))
                first = False
        f.write("]}")
    return path


def export(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    """Produce the chosen exports as the job's outputs (assets, lifecycle hot)."""
    plan_, manifest, summary = data["plan"], data["manifest"], data["summary"]
    svc = ctx.services
    kinds = list(plan_.get("exports") or ["coco"])
    outputs: list[dict[str, Any]] = []
    ctx.progress(0.93, "exporting")
    with ctx.scratch("export") as tmp:
        if "coco" in kinds:
            path = coco_export(ctx, plan_, manifest, tmp)
            asset = svc.assets.store_output_file(
                path, owner_id=ctx.owner_id, job_id=ctx.job_id, content_type="application/json",
                filename=f"roto-{plan_['session_id'][:8]}.coco.json", lifecycle="hot", category=EXPORT_CATEGORY,
                metadata={"kind": "roto.export", "export": "coco", "session_id": plan_["session_id"]},
                asset_id=uuid.uuid5(uuid.NAMESPACE_URL, f"reelforge:{ctx.job_id}:roto:coco").hex)
            outputs.append({"kind": "coco", "asset_id": asset.id, "size": asset.size,
                            "content_type": "application/json", "object_id": None})
        pictures = [k for k in kinds if k != "coco"]
        if pictures:
            hook = export_hook()
            if hook is None:
                raise errors.ValidationFailed(f"Export {pictures[0]!r} is not available on this server",
                                              code="export_unavailable", field="exports")
            outputs.extend(hook(ctx, plan_, manifest, pictures, lambda: iter_masks(svc, plan_, manifest)))
    _drop_progress(ctx)
    lo, hi = plan_["range"]
    wall = max(1e-6, time.time() - float(plan_.get("started_at") or time.time()))
    ctx.progress(1.0, f"done: {hi - lo + 1} frames, {len(plan_['objects'])} object(s)")
    return {"session_id": plan_["session_id"], "range": {"start": lo, "end": hi}, "objects": plan_["objects"],
            "frames": hi - lo + 1, "revision": plan_["revision"], "engine": plan_["engine"],
            "exports": outputs, "asset_id": outputs[0]["asset_id"] if outputs else None,
            "spans": summary["parts"], "spans_computed": summary["computed"], "spans_reused": summary["reused"],
            "frames_propagated": summary["frames_propagated"], "spans_removed": data.get("spans_removed", 0),
            "wall_s": round(wall, 3)}


def _gather(ctx: StepContext, sweeps: list[dict[str, Any]]) -> dict[str, Any]:
    """The two sweeps' outputs with the plan they ran (the Parallel's output is the list of its branches')."""
    plan_ = sweeps[0].pop("plan")
    for s in sweeps[1:]:
        s.pop("plan", None)
    return {"plan": plan_, "summary": summarize(sweeps)}


def forward_with_plan(ctx: StepContext, plan_: dict[str, Any]) -> dict[str, Any]:
    return {**forward(ctx, plan_), "plan": plan_}


def backward_with_plan(ctx: StepContext, plan_: dict[str, Any]) -> dict[str, Any]:
    return {**backward(ctx, plan_), "plan": plan_}


_RETRY = (Retry(errors=("transient_error", "storage_error"), interval_s=1, max_attempts=2),)


def build_pipeline(settings: Any = None) -> Pipeline:
    """`video.rotoscope`, priced from `settings` (the `roto` section)."""
    sweep_resources = Resources(cpu=2, gpu=0, memory_mb=2048)
    return Pipeline(
        kind=KIND,
        version=1,
        description="Propagate a rotoscoping session's prompted masks through its video, then export them.",
        graph=Graph(start_at="plan", states=(
            Task("plan", plan, resources=Resources(cpu=1, memory_mb=1024), timeout_s=1800, next="propagate",
                 retry=_RETRY, comment="prompted frames' masks made current; spans of both directions laid out"),
            Parallel("propagate", branches=(
                Graph(start_at="forward", states=(
                    Task("forward", forward_with_plan, resources=sweep_resources, timeout_s=6 * 3600, end=True,
                         retry=_RETRY, comment="spans after each anchor, left to right; each stored by its key"),)),
                Graph(start_at="backward", states=(
                    Task("backward", backward_with_plan, resources=sweep_resources, timeout_s=6 * 3600, end=True,
                         retry=_RETRY, comment="spans before each anchor, right to left; each stored by its key"),)),
            ), next="gather", comment="both directions at once"),
            Task("gather", _gather, resources=Resources(cpu=0.1, memory_mb=128), timeout_s=60, next="record"),
            Task("record", record, resources=Resources(cpu=0.1, memory_mb=128), timeout_s=300, next="export",
                 retry=_RETRY, comment="the session's manifest; spans it no longer names removed"),
            Task("export", export, resources=Resources(cpu=1, memory_mb=1024), timeout_s=3600, end=True,
                 retry=_RETRY, comment="COCO RLE JSON, and the picture exports when installed"),
        )),
        input_model=RotoscopeInput,
        price=make_price(settings),
    )

