"""What the rotoscoping application keeps, as plain frozen records (the repository reads them out of its rows, so
nothing outside a transaction holds a database object).

A session is one user's work on one video: the video's facts (probed when the session was made), its objects
(small integers, numbered per session), the prompts (clicks and boxes on a frame for one object), the mask each
prompted object has on each prompted frame, and what the last propagation produced (its spans, stored in the
object store).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Session:
    id: str
    owner_id: str
    asset_id: str
    name: str | None
    engine: str
    width: int  # as shown (rotation applied)
    height: int
    frame_count: int
    fps: float
    duration_s: float
    video: dict[str, Any]  # probe facts: rotation, vfr, codec, coded size, time base, sha256 of the source
    revision: int  # +1 on every change of objects or prompts
    next_object_id: int
    propagation: dict[str, Any] | None  # the last propagation's manifest (see pipeline.py), None before any
    propagation_job_id: str | None
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class RotoObject:
    session_id: str
    object_id: int
    name: str | None
    created_at: float


@dataclass(frozen=True)
class Prompt:
    id: str
    session_id: str
    object_id: int
    frame: int
    points: tuple[tuple[float, float, int], ...]  # (x, y, label)
    box: tuple[float, float, float, float] | None
    seq: int  # the session's revision when it was added: the order of prompts
    created_at: float

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "object_id": self.object_id, "frame": self.frame,
                "points": [{"x": x, "y": y, "label": lab} for x, y, lab in self.points],
                "box": list(self.box) if self.box is not None else None, "seq": self.seq}


@dataclass(frozen=True)
class Mask:
    """An object's mask on a prompted frame, computed from the prompts whose content `prompt_key` names."""

    session_id: str
    frame: int
    object_id: int
    prompt_key: str
    rle: dict[str, Any]  # COCO RLE: {"size": [h, w], "counts": str}
    area: int
    bbox: tuple[int, int, int, int] | None  # x, y, width, height
    engine: str


@dataclass(frozen=True)
class Span:
    """One stored part of a propagation: the masks of the frames `start`..`stop` (inclusive) one direction gave,
    kept in the object store as the asset `asset_id`; `key` is the hash of everything it was computed from."""

    session_id: str
    key: str
    direction: str  # "forward" | "backward"
    start: int
    stop: int
    asset_id: str
    frames: int
    job_id: str | None
    created_at: float


@dataclass(frozen=True)
class FramePrompts:
    """Every object's prompts on one frame, merged as the engine takes them."""

    frame: int
    objects: dict[int, tuple[tuple[tuple[float, float, int], ...], tuple[float, float, float, float] | None]] = \
        field(default_factory=dict)


def merge_prompts(prompts: list[Prompt]) -> dict[int, dict[int, tuple[tuple[tuple[float, float, int], ...],
                                                                      tuple[float, float, float, float] | None]]]:
    """frame -> object -> (all its points in order, its latest box): what one engine call gets per object."""
    out: dict[int, dict[int, tuple[tuple[tuple[float, float, int], ...],
                                   tuple[float, float, float, float] | None]]] = {}
    for p in sorted(prompts, key=lambda q: (q.seq, q.id)):
        frame = out.setdefault(p.frame, {})
        points, box = frame.get(p.object_id, ((), None))
        frame[p.object_id] = (points + tuple(p.points), p.box if p.box is not None else box)
    return out


def prompt_key(engine: str, points: tuple[tuple[float, float, int], ...],
               box: tuple[float, float, float, float] | None) -> str:
    """The content hash of one object's prompts on one frame (with the engine that reads them): a stored mask is
    current while its key is."""
    doc = {"engine": engine, "points": [[round(float(x), 3), round(float(y), 3), int(lab)] for x, y, lab in points],
           "box": [round(float(v), 3) for v in box] if box is not None else None}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
