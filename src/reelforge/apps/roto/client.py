"""The rotoscoping application's client namespace: ``rf.roto``.

Found by `reelforge.client` through the ``reelforge.client`` entry-point group; built on the client's core only
(standard library, httpx, `reelforge.client`), so the blocking and the asyncio client run every method::

    rf = Client(url, api_key=...)
    video = rf.assets.upload("clip.mp4")
    s = rf.roto.create_session(video.id)
    answer = rf.roto.prompt(s.id, frame=0, points=[(320, 180)])          # a new object, its mask on frame 0
    rf.roto.prompt(s.id, frame=0, object_id=answer.prompt.object_id, points=[(40, 30, 0)])   # not this part
    job = rf.roto.propagate(s.id, exports=["alpha_prores", "greenscreen"]).wait()
    for out in job.outputs["exports"]:
        rf.assets.download(out["asset_id"], "out/")
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import httpx

from reelforge.client.core import Call, Flow, Namespace, R, call, clean, nothing, one, seg
from reelforge.client.namespaces import JobHandle, submit_job
from reelforge.client.records import Record, list_of

KIND = "video.rotoscope"
EXPORT_KINDS = ("coco", "alpha_prores", "alpha_webm", "png_zip", "greenscreen")

# A point: (x, y) is a positive click, (x, y, 0) a negative one; or a mapping {"x", "y", "label"}.
PointLike = Sequence[float] | Mapping[str, Any]


@dataclass
class RotoSession(Record):
    """A rotoscoping session: one video, its size as shown (rotation applied), frames and timing."""

    id: str
    asset_id: str
    name: str | None
    engine: str
    width: int
    height: int
    frame_count: int
    fps: float
    duration_s: float
    video: dict[str, Any]
    revision: int
    state: str
    created_at: str | None
    updated_at: str | None


@dataclass
class RotoObject(Record):
    object_id: int
    name: str | None
    created_at: str | None


@dataclass
class RotoPrompt(Record):
    id: str
    object_id: int
    frame: int
    points: list[dict[str, Any]]
    box: list[float] | None
    seq: int


@dataclass
class RotoMask(Record):
    """An object's mask on a frame as COCO RLE (``rle`` = {size: [h, w], counts}), with its area and box."""

    object_id: int
    source: str
    rle: dict[str, Any]
    area: int
    bbox: list[int] | None
    frame: int | None = None


@dataclass
class Overlay(Record):
    url: str
    expires_at: str | None
    asset_id: str
    content_type: str


@dataclass
class FrameMasks(Record):
    """One frame's masks (every object) and the URL of its overlay PNG; after a prompt, the prompt too."""

    session_id: str
    frame: int
    revision: int
    width: int
    height: int
    masks: list[RotoMask]
    overlay: Overlay
    prompt: RotoPrompt | None = None
    object_created: bool = False
    timing_ms: dict[str, float] | None = None
    _nested: ClassVar[dict[str, Callable[[Any], Any]]] = {
        "masks": list_of(RotoMask), "overlay": Overlay.from_dict, "prompt": RotoPrompt.from_dict}


@dataclass
class Propagation(Record):
    job_id: str | None
    status: str | None
    progress: float | None
    progress_message: str | None
    range: list[int] | None
    revision: int | None
    stale: bool
    spans: list[dict[str, Any]]
    finished_at: str | None


@dataclass
class RotoSessionDetail(RotoSession):
    """A session with its objects, prompts, the masks of prompted frames, and its last propagation."""

    objects: list[RotoObject] | None = None
    prompts: list[RotoPrompt] | None = None
    masks: list[RotoMask] | None = None
    propagation: Propagation | None = None
    _nested: ClassVar[dict[str, Callable[[Any], Any]]] = {
        "objects": list_of(RotoObject), "prompts": list_of(RotoPrompt), "masks": list_of(RotoMask),
        "propagation": Propagation.from_dict}


@dataclass
class RotoSessionPage(Record):
    data: list[RotoSession]
    next_cursor: str | None
    _nested: ClassVar[dict[str, Callable[[Any], Any]]] = {"data": list_of(RotoSession)}


def point(p: PointLike) -> dict[str, Any]:
    """A point as the API takes it: ``{"x", "y", "label"}`` (label 1 unless given)."""
    if isinstance(p, Mapping):
        return {"x": float(p["x"]), "y": float(p["y"]), "label": int(p.get("label", 1))}
    values = list(p)
    if len(values) not in (2, 3):
        raise ValueError(f"A point is (x, y) or (x, y, label), not {p!r}")
    return {"x": float(values[0]), "y": float(values[1]), "label": int(values[2]) if len(values) == 3 else 1}


def _png(r: httpx.Response) -> bytes:
    return r.content


class Roto(Namespace[R]):
    """Rotoscoping sessions on your videos (``rf.assets.upload`` first): prompts, frame overlays, propagation."""

    # --- sessions -------------------------------------------------------------------------------------------
    @call
    def create_session(self, asset_id: str, *, name: str | None = None,
                       engine: str | None = None) -> Call[RotoSession]:
        """A session on a stored video; the answer has its size as shown, frame count and timing."""
        return Call("POST", "/v1/roto/sessions", one(RotoSession),
                    json=clean({"asset_id": asset_id, "name": name, "engine": engine}), repeatable=False)

    @call
    def get_session(self, session_id: str) -> Call[RotoSessionDetail]:
        return Call("GET", f"/v1/roto/sessions/{seg(session_id)}", one(RotoSessionDetail))

    @call
    def list_sessions(self, *, limit: int = 50, cursor: str | None = None) -> Call[RotoSessionPage]:
        """Your sessions, newest first; pass ``next_cursor`` as ``cursor`` for more."""
        return Call("GET", "/v1/roto/sessions", one(RotoSessionPage), params=clean({"limit": limit, "cursor": cursor}))

    @call
    def delete_session(self, session_id: str) -> Call[None]:
        return Call("DELETE", f"/v1/roto/sessions/{seg(session_id)}", nothing)

    # --- objects and prompts ----------------------------------------------------------------------------------
    @call
    def add_object(self, session_id: str, name: str | None = None) -> Call[RotoObject]:
        return Call("POST", f"/v1/roto/sessions/{seg(session_id)}/objects", one(RotoObject),
                    json=clean({"name": name}), repeatable=False)

    @call
    def delete_object(self, session_id: str, object_id: int) -> Call[None]:
        """The object, its prompts and masks."""
        return Call("DELETE", f"/v1/roto/sessions/{seg(session_id)}/objects/{int(object_id)}", nothing)

    @call
    def prompt(self, session_id: str, frame: int, points: Iterable[PointLike] = (), *,
               object_id: int | None = None, box: Sequence[float] | None = None) -> Call[FrameMasks]:
        """Clicks (label 1: part of the object; 0: not) and at most one box ``(x0, y0, x1, y1)`` on ``frame`` for
        one object (a new one when ``object_id`` is None). Answers the frame's masks of every object."""
        body: dict[str, Any] = {"frame": int(frame), "points": [point(p) for p in points]}
        if object_id is not None:
            body["object_id"] = int(object_id)
        if box is not None:
            body["box"] = [float(v) for v in box]
        return Call("POST", f"/v1/roto/sessions/{seg(session_id)}/prompts", one(FrameMasks), json=body,
                    repeatable=False, timeout=httpx.Timeout(30.0, read=180.0))

    @call
    def delete_prompt(self, session_id: str, prompt_id: str) -> Call[None]:
        return Call("DELETE", f"/v1/roto/sessions/{seg(session_id)}/prompts/{seg(prompt_id)}", nothing)

    # --- frames ---------------------------------------------------------------------------------------------
    @call
    def frame(self, session_id: str, n: int) -> Call[bytes]:
        """Frame ``n`` as PNG with every object's current mask drawn on it."""
        return Call("GET", f"/v1/roto/sessions/{seg(session_id)}/frames/{int(n)}", _png,
                    headers={"Accept": "image/png"}, timeout=httpx.Timeout(30.0, read=180.0))

    @call
    def frame_masks(self, session_id: str, n: int) -> Call[FrameMasks]:
        """Frame ``n``'s masks (COCO RLE) and its overlay URL."""
        return Call("GET", f"/v1/roto/sessions/{seg(session_id)}/frames/{int(n)}/masks", one(FrameMasks),
                    timeout=httpx.Timeout(30.0, read=180.0))

    # --- propagation ----------------------------------------------------------------------------------------
    @call
    def propagate(self, session_id: str, *, range: tuple[int, int] | None = None,
                  exports: builtins.list[str] | None = None, per_object: bool = False,
                  callback_url: str | None = None, priority: int = 0,
                  idempotency_key: str | None = None) -> Flow[JobHandle[R]]:
        """A ``video.rotoscope`` job: the prompted masks tracked through the video (between the in and out
        frames of ``range``, inclusive), then the ``exports`` (coco, alpha_prores, alpha_webm, png_zip,
        greenscreen; one file of all objects, and one per object with ``per_object``). ``.wait()`` on the
        answer follows it; the job's ``outputs["exports"]`` lists the export assets."""
        body: dict[str, Any] = {"session_id": session_id, "per_object": bool(per_object)}
        if range is not None:
            start, end = range
            body["range"] = {"start": int(start), "end": int(end)}
        if exports is not None:
            body["exports"] = list(exports)
        return submit_job(self.client, KIND, body, callback_url=callback_url, priority=priority,
                          idempotency_key=idempotency_key)
