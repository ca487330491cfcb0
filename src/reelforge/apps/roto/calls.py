"""The interactive calls workers answer for rotoscoping, and the worker-side session cache they share.

Calls (`AppManifest.calls`; the API sends them with affinity = the session id, so one session's calls reach the
same worker while the set of live workers stays the same):

- `roto.prompt` {session_id, owner_id, frame, prompt_id}: the masks of every object on that frame after a prompt
  was stored (the prompted objects segmented again when their prompts changed), the overlay stored;
- `roto.frame` {session_id, owner_id, frame}: the same for any frame, without a new prompt (prompted masks, or
  propagated ones where propagation has run);
- `roto.release` {session_id, owner_id}: forget the session on this worker (its cache entry and local files).

Each answer is `{"frame", "masks": [{object_id, source, rle, area, bbox}], "overlay": {asset_id, key, ...}, ...}`.
The database holds the state (prompts, the masks of prompted frames keyed by their prompts' content); the worker
holds only what is cheap to lose and dear to recompute:

The session cache (`SessionCache`, one per worker process, on the application's service object): per session, a
local copy of the video (hard-linked from the workers' source cache), an open `FrameSource`, the last decoded
frames, the engine's features of the frames prompted, decoded masks and the propagated spans read back. A session
unused for `roto.session_idle_s` is dropped (the maintenance tick and every call look), and when the entries hold
more than `roto.cache_max_bytes` the least recently used sessions go first, then the oldest frames and features of
the one in use. Calls on one session run one at a time (a lock per entry); different sessions run side by side.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from reelforge import errors
from reelforge.apps.roto.ports import TASK, ObjectPrompt, Point
from reelforge.apps.roto.records import Mask, Session, merge_prompts, prompt_key
from reelforge.apps.roto.settings import roto_cache_dir

log = logging.getLogger("reelforge.roto")

PROMPT_CALL = "roto.prompt"
FRAME_CALL = "roto.frame"
RELEASE_CALL = "roto.release"
OVERLAY_CATEGORY = "roto-overlays"


def _service(services: Any) -> Any:
    return services.app("roto")


# --- the session cache -------------------------------------------------------------------------------------------

class SessionEntry:
    """One session open on this worker (see the module docstring). Use it only while holding `lock`."""

    def __init__(self, session: Session, folder: Path, source: Any, engine: Any, cache_frames: int) -> None:
        self.session = session
        self.folder = folder
        self.source = source
        self.engine = engine
        self.lock = threading.RLock()
        self.cache_frames = max(1, cache_frames)
        self.frames: OrderedDict[int, np.ndarray] = OrderedDict()
        self.features: OrderedDict[int, tuple[Any, int]] = OrderedDict()
        self.masks: OrderedDict[tuple[int, int, str], np.ndarray] = OrderedDict()
        self.parts: OrderedDict[str, tuple[dict[int, dict[int, dict[str, Any]]], int]] = OrderedDict()
        self.last_used = time.monotonic()
        self.opened_at = time.monotonic()
        self.hits = {"frame": 0, "features": 0, "mask": 0, "part": 0}
        self.misses = {"frame": 0, "features": 0, "mask": 0, "part": 0}

    # what it holds
    def nbytes(self) -> int:
        frames = sum(int(f.nbytes) for f in self.frames.values())
        feats = sum(n for _, n in self.features.values())
        masks = sum(int(m.nbytes) for m in self.masks.values())
        parts = sum(n for _, n in self.parts.values())
        return frames + feats + masks + parts

    def frame(self, n: int) -> tuple[np.ndarray, bool]:
        hit = self.frames.get(n)
        if hit is not None:
            self.frames.move_to_end(n)
            self.hits["frame"] += 1
            return hit, True
        self.misses["frame"] += 1
        rgb = self.source.frame(n)
        self.frames[n] = rgb
        while len(self.frames) > self.cache_frames:
            self.frames.popitem(last=False)
        return rgb, False

    def prepared(self, n: int, rgb: np.ndarray) -> tuple[Any, bool]:
        hit = self.features.get(n)
        if hit is not None:
            self.features.move_to_end(n)
            self.hits["features"] += 1
            return hit[0], True
        self.misses["features"] += 1
        feats = self.engine.prepare(rgb)
        try:
            size = int(self.engine.nbytes(feats))
        except Exception:  # an engine that cannot size its features: count the frame's size
            size = int(rgb.nbytes)
        self.features[n] = (feats, max(0, size))
        return feats, False

    def mask(self, frame: int, object_id: int, key: str, rle: Mapping[str, Any]) -> np.ndarray:
        from reelforge.apps.roto import masks as M

        k = (frame, object_id, key)
        hit = self.masks.get(k)
        if hit is not None:
            self.masks.move_to_end(k)
            self.hits["mask"] += 1
            return hit
        self.misses["mask"] += 1
        arr = M.decode(rle)
        self.remember_mask(frame, object_id, key, arr)
        return arr

    def remember_mask(self, frame: int, object_id: int, key: str, arr: np.ndarray) -> None:
        for stale in [k for k in self.masks if k[0] == frame and k[1] == object_id and k[2] != key]:
            self.masks.pop(stale, None)
        self.masks[(frame, object_id, key)] = arr
        while len(self.masks) > 4 * self.cache_frames * 4:
            self.masks.popitem(last=False)

    def part(self, services: Any, owner_id: str, asset_id: str) -> dict[int, dict[int, dict[str, Any]]]:
        hit = self.parts.get(asset_id)
        if hit is not None:
            self.parts.move_to_end(asset_id)
            self.hits["part"] += 1
            return hit[0]
        self.misses["part"] += 1
        _, data = services.assets.read_owned(owner_id, asset_id)
        masks = parse_part(data)
        self.parts[asset_id] = (masks, len(data) * 3)
        while len(self.parts) > 8:
            self.parts.popitem(last=False)
        return masks

    def trim(self, target: int) -> None:
        """Drop the oldest frames, features, masks and spans until the entry holds at most `target` bytes."""
        for store in (self.parts, self.masks, self.frames, self.features):
            while store and self.nbytes() > target:
                store.popitem(last=False)  # type: ignore[attr-defined]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.source.close()
        self.frames.clear()
        self.features.clear()
        self.masks.clear()
        self.parts.clear()
        shutil.rmtree(self.folder, ignore_errors=True)


class SessionCache:
    """The worker's open sessions (module docstring): idle timeout, a memory cap, one lock per session."""

    def __init__(self, settings: Any) -> None:
        cfg = settings.roto
        self.settings = settings
        self.idle_s = float(cfg.session_idle_s)
        self.max_bytes = int(cfg.cache_max_bytes)
        self.cache_frames = int(cfg.cache_frames)
        self.root = roto_cache_dir(settings)
        self._lock = threading.Lock()
        self._entries: dict[str, SessionEntry] = {}
        self._opening: dict[str, threading.Lock] = {}
        self.opened = 0
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, session_id: object) -> bool:
        return session_id in self._entries

    def nbytes(self) -> int:
        with self._lock:
            entries = list(self._entries.values())
        return sum(e.nbytes() for e in entries)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            entries = list(self._entries.values())
        return {"sessions": len(entries), "bytes": sum(e.nbytes() for e in entries), "max_bytes": self.max_bytes,
                "opened": self.opened, "evicted": self.evicted}

    @contextlib.contextmanager
    def use(self, services: Any, session: Session) -> Iterator[tuple[SessionEntry, bool]]:
        """The session's entry, opened when missing, locked while the block runs: (entry, was it open)."""
        self.sweep()
        entry, hit = self._entry(services, session)
        with entry.lock:
            entry.last_used = time.monotonic()
            entry.session = session
            try:
                yield entry, hit
            finally:
                entry.last_used = time.monotonic()
        self._fit(keep=session.id)

    def _entry(self, services: Any, session: Session) -> tuple[SessionEntry, bool]:
        with self._lock:
            entry = self._entries.get(session.id)
            if entry is not None and entry.session.asset_id == session.asset_id \
                    and entry.session.engine == session.engine:
                return entry, True
            opening = self._opening.setdefault(session.id, threading.Lock())
        with opening:
            with self._lock:
                entry = self._entries.get(session.id)
                if entry is not None and entry.session.asset_id == session.asset_id \
                        and entry.session.engine == session.engine:
                    return entry, True
            entry = self._open(services, session)
            with self._lock:
                old = self._entries.pop(session.id, None)
                self._entries[session.id] = entry
                self._opening.pop(session.id, None)
                self.opened += 1
            if old is not None:
                with old.lock:
                    old.close()
            return entry, False

    def _open(self, services: Any, session: Session) -> SessionEntry:
        from reelforge.apps.roto.frames import open_frames
        from reelforge.apps.roto.service import media_limits
        from reelforge.runtime.cache import cache_for

        engine = services.models.ensure_ready(TASK, session.engine)
        asset = services.assets.owned_asset(session.owner_id, session.asset_id)
        folder = self.root / "sessions" / f"{session.id}-{uuid.uuid4().hex[:8]}"
        folder.mkdir(parents=True, exist_ok=True)
        local = folder / ("source" + Path(asset.key).suffix[:11])
        sources = cache_for(services, self.root / "sources", int(self.settings.roto.source_cache_max_bytes))
        try:
            with sources.use(asset.sha256, asset.size, lambda p: services.assets.fetch_to(asset, p)) as use:
                try:
                    os.link(use.path, local)  # the entry keeps its copy even when the source cache evicts
                except OSError:
                    shutil.copyfile(use.path, local)
            source = open_frames(local, limits=media_limits(self.settings), cache_frames=2)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        if source.info.frame_count != session.frame_count or (source.info.width, source.info.height) != \
                (session.width, session.height):
            log.warning("session %s: the video decodes to %d frames of %dx%d, the session says %d of %dx%d",
                        session.id, source.info.frame_count, source.info.width, source.info.height,
                        session.frame_count, session.width, session.height)
        return SessionEntry(session, folder, source, engine, self.cache_frames)

    def drop(self, session_id: str) -> bool:
        """Forget a session (its files too); whether it was open."""
        with self._lock:
            entry = self._entries.pop(session_id, None)
        if entry is None:
            return False
        with entry.lock:
            entry.close()
        self.evicted += 1
        return True

    def sweep(self, now: float | None = None) -> int:
        """Drop sessions idle for `roto.session_idle_s` (never one in use); how many went."""
        now = time.monotonic() if now is None else now
        with self._lock:
            idle = [(sid, e) for sid, e in self._entries.items() if now - e.last_used >= self.idle_s]
        dropped = 0
        for sid, entry in idle:
            if not entry.lock.acquire(blocking=False):
                continue  # in use: it is not idle
            try:
                with self._lock:
                    if self._entries.get(sid) is not entry:
                        continue
                    self._entries.pop(sid)
                entry.close()
                self.evicted += 1
                dropped += 1
            finally:
                entry.lock.release()
        return dropped

    def _fit(self, keep: str) -> None:
        """Within `roto.cache_max_bytes`: least recently used sessions first, then the oldest of `keep`'s."""
        total = self.nbytes()
        if total <= self.max_bytes:
            return
        with self._lock:
            order = sorted(self._entries.items(), key=lambda kv: kv[1].last_used)
        for sid, entry in order:
            if total <= self.max_bytes:
                return
            if sid == keep or not entry.lock.acquire(blocking=False):
                continue
            try:
                with self._lock:
                    if self._entries.get(sid) is not entry:
                        continue
                    self._entries.pop(sid)
                total -= entry.nbytes()
                entry.close()
                self.evicted += 1
            finally:
                entry.lock.release()
        if total > self.max_bytes:
            with self._lock:
                entry_kept = self._entries.get(keep)
            if entry_kept is not None and entry_kept.lock.acquire(blocking=False):
                try:
                    entry_kept.trim(max(0, entry_kept.nbytes() - (total - self.max_bytes)))
                finally:
                    entry_kept.lock.release()


# --- propagated spans, as stored --------------------------------------------------------------------------------

def parse_part(data: bytes) -> dict[int, dict[int, dict[str, Any]]]:
    """frame -> object -> RLE of a stored span (pipeline.py writes them)."""
    doc = json.loads(data)
    return {int(f): {int(o): rle for o, rle in objs.items()} for f, objs in (doc.get("masks") or {}).items()}


def covering_parts(manifest: Mapping[str, Any] | None, frame: int) -> list[dict[str, Any]]:
    """The stored spans of a propagation manifest that hold masks of `frame`."""
    if not manifest:
        return []
    return [p for p in manifest.get("parts") or () if int(p["start"]) <= frame <= int(p["stop"])]


def propagated(services: Any, entry: SessionEntry, session: Session, frame: int) -> dict[int, dict[str, Any]]:
    """object -> RLE of the masks the last propagation gave `frame` (empty before any)."""
    out: dict[int, dict[str, Any]] = {}
    for part in covering_parts(session.propagation, frame):
        masks = entry.part(services, session.owner_id, str(part["asset_id"]))
        out.update(masks.get(frame, {}))
    return out


# --- one frame's masks ------------------------------------------------------------------------------------------

@dataclass
class FrameResult:
    frame: int
    masks: dict[int, tuple[np.ndarray, dict[str, Any], str]] = field(default_factory=dict)  # obj -> (mask, rle, src)
    computed: list[Mask] = field(default_factory=list)
    timing_ms: dict[str, float] = field(default_factory=dict)
    cache: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000.0, 2)


def coco_bbox(arr: np.ndarray) -> list[int] | None:
    from reelforge.apps.roto import masks as M

    box = M.bbox(arr)
    if box is None:
        return None
    x0, y0, x1, y1 = box
    return [x0, y0, x1 - x0, y1 - y0]


def resolve_frame(services: Any, entry: SessionEntry, state: Any, frame: int, *,
                  with_propagated: bool = True) -> FrameResult:
    """Every object's mask on `frame`: prompted objects from their stored mask while it matches their prompts,
    else segmented now (refining the propagated mask when there is one); other objects from the propagation."""
    from reelforge.apps.roto import masks as M

    started = time.perf_counter()
    session: Session = state.session
    engine = entry.engine
    out = FrameResult(frame)
    merged = merge_prompts(list(state.prompts)).get(frame, {})
    stored = {m.object_id: m for m in state.masks if m.frame == frame}
    known = {o.object_id for o in state.objects}
    rgb: np.ndarray | None = None
    features: Any = None
    prior_rles: dict[int, dict[str, Any]] | None = None
    for object_id in sorted(merged):
        if object_id not in known:
            continue
        points, box = merged[object_id]
        key = prompt_key(session.engine, points, box)
        mask = stored.get(object_id)
        if mask is not None and mask.prompt_key == key:
            out.masks[object_id] = (entry.mask(frame, object_id, key, mask.rle), mask.rle, "prompt")
            continue
        if rgb is None:
            t = time.perf_counter()
            rgb, hit = entry.frame(frame)
            out.timing_ms["frame"] = _ms(t)
            out.cache["frame"] = "hit" if hit else "miss"
            t = time.perf_counter()
            features, fhit = entry.prepared(frame, rgb)
            out.timing_ms["features"] = _ms(t)
            out.cache["features"] = "hit" if fhit else "miss"
        if prior_rles is None:
            prior_rles = propagated(services, entry, session, frame) if session.propagation else {}
        prior_rle = prior_rles.get(object_id)
        prior = M.decode(prior_rle) if prior_rle is not None else None
        prompt = ObjectPrompt(object_id=object_id, points=tuple(Point(x, y, lab) for x, y, lab in points), box=box)
        t = time.perf_counter()
        try:
            arr = np.asarray(engine.segment(rgb, features, prompt, prior), dtype=bool)
        except errors.ReelforgeError:
            raise
        except (ValueError, TypeError) as exc:
            raise errors.ValidationFailed(f"The engine refused the prompt: {exc}", code="invalid_prompt") from exc
        services.models.record_invocation(TASK, session.engine, time.perf_counter() - t)
        out.timing_ms["segment"] = round(out.timing_ms.get("segment", 0.0) + _ms(t), 2)
        if arr.shape != (session.height, session.width):
            raise errors.ServiceUnavailable(f"The engine gave a {arr.shape} mask for a {session.height}x"
                                            f"{session.width} frame", code="engine_failed")
        rle = M.encode(arr)
        entry.remember_mask(frame, object_id, key, arr)
        out.masks[object_id] = (arr, rle, "prompt")
        out.computed.append(Mask(session_id=session.id, frame=frame, object_id=object_id, prompt_key=key, rle=rle,
                                 area=int(arr.sum()), bbox=tuple(coco_bbox(arr) or ()) or None,  # type: ignore[arg-type]
                                 engine=session.engine))
    if with_propagated and session.propagation:
        if prior_rles is None:
            prior_rles = propagated(services, entry, session, frame)
        for object_id, rle in prior_rles.items():
            if object_id in known and object_id not in out.masks:
                out.masks[object_id] = (M.decode(rle), rle, "propagated")
    out.timing_ms["masks"] = _ms(started)
    return out


def overlay_asset_id(session_id: str, frame: int, digest: str) -> str:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"reelforge:roto:{session_id}:overlay:{frame}:{digest}").hex


def store_overlay(services: Any, entry: SessionEntry, session: Session, result: FrameResult) -> dict[str, Any]:
    """The overlay of `result` as a temporary PNG asset of the session's owner (an identical one is reused)."""
    from reelforge.apps.roto import masks as M

    started = time.perf_counter()
    digest = hashlib.sha256(json.dumps(
        [[oid, src, rle["counts"]] for oid, (_, rle, src) in sorted(result.masks.items())]).encode()).hexdigest()
    asset_id = overlay_asset_id(session.id, result.frame, digest[:32])
    with services.store.tx(write=False) as tx:
        existing = tx.assets.asset(asset_id)
    if existing is None or existing.owner_id != session.owner_id:
        rgb, hit = entry.frame(result.frame)
        result.cache.setdefault("frame", "hit" if hit else "miss")
        png = M.overlay_png(rgb, {oid: arr for oid, (arr, _, _) in sorted(result.masks.items())})
        existing = services.assets.store_output(
            owner_id=session.owner_id, job_id=None, data=png, content_type="image/png",
            filename=f"overlay-{result.frame:06d}.png", lifecycle="temporary", category=OVERLAY_CATEGORY,
            metadata={"kind": "roto.overlay", "session_id": session.id, "frame": result.frame}, asset_id=asset_id)
        result.cache["overlay"] = "miss"
    else:
        result.cache["overlay"] = "hit"
    result.timing_ms["overlay"] = _ms(started)
    return {"asset_id": existing.id, "key": existing.key, "content_type": "image/png", "size": existing.size,
            "filename": existing.filename}


def answer(services: Any, payload: Mapping[str, Any], *, prompt_id: str | None = None) -> dict[str, Any]:
    """What `roto.prompt` and `roto.frame` return (module docstring)."""
    started = time.perf_counter()
    svc = _service(services)
    owner_id, session_id = str(payload.get("owner_id") or ""), str(payload.get("session_id") or "")
    frame = payload.get("frame")
    if not isinstance(frame, int) or isinstance(frame, bool):
        raise errors.ValidationFailed("frame must be an integer", code="frame_out_of_range", field="frame")
    state = svc.frame_state(owner_id, session_id, frame)
    session: Session = state.session
    with svc.cache.use(services, session) as (entry, hit):
        result = resolve_frame(services, entry, state, frame)
        result.cache["session"] = "hit" if hit else "miss"
        svc.put_masks(owner_id, session.id, result.computed)
        overlay = store_overlay(services, entry, session, result)
    result.timing_ms["total"] = _ms(started)
    return {"session_id": session.id, "frame": frame, "revision": session.revision, "engine": session.engine,
            "width": session.width, "height": session.height, "prompt_id": prompt_id,
            "masks": [{"object_id": oid, "source": src, "rle": rle, "area": int(arr.sum()), "bbox": coco_bbox(arr)}
                      for oid, (arr, rle, src) in sorted(result.masks.items())],
            "computed": [m.object_id for m in result.computed],
            "overlay": overlay, "timing_ms": result.timing_ms, "cache": result.cache}


def prompt_call(services: Any, payload: dict[str, Any]) -> dict[str, Any]:
    """`roto.prompt`: the frame's masks after a prompt (module docstring)."""
    return answer(services, payload, prompt_id=str(payload.get("prompt_id") or "") or None)


def frame_call(services: Any, payload: dict[str, Any]) -> dict[str, Any]:
    """`roto.frame`: the frame's masks as they stand (module docstring)."""
    return answer(services, payload)


def release_call(services: Any, payload: dict[str, Any]) -> dict[str, Any]:
    """`roto.release`: forget the session on this worker."""
    svc = _service(services)
    return {"released": svc.cache.drop(str(payload.get("session_id") or ""))}


def calls(settings: Any = None) -> list[Any]:
    """The manifest's `calls`."""
    from reelforge.applications import Call
    from reelforge.domain.pipeline import Resources

    timeout = float(settings.roto.prompt_timeout_s) if settings is not None and hasattr(settings, "roto") else 60.0
    return [Call(PROMPT_CALL, prompt_call, resources=Resources(cpu=1, memory_mb=1024), timeout_s=timeout),
            Call(FRAME_CALL, frame_call, resources=Resources(cpu=1, memory_mb=1024), timeout_s=timeout),
            Call(RELEASE_CALL, release_call, resources=Resources(cpu=0.1, memory_mb=64), timeout_s=10.0)]
