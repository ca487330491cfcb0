"""The `video.segment` port: what a rotoscoping engine does, whatever model is behind it.

Two faces, both on decoded RGB frames (numpy uint8, shape (H, W, 3)) and boolean masks (shape (H, W)):

- Interactive: `prepare(frame)` computes the per-frame features an engine reuses between clicks on that frame
  (image embeddings, a salient-object map); the caller caches them (the worker's session cache) and passes
  them back to `segment(...)`, which turns one object's prompts on that frame into its mask.
- Propagation: `tracker(...)` returns a stateful tracker for one direction of one span. The caller anchors it
  on a frame with known masks (`anchor`), then feeds it the following frames (forward) or preceding frames
  (backward) one at a time (`step`), for all objects at once. A tracker keeps at most `window` frames of
  state, whatever the video's length, so memory is bounded; it may be anchored again mid-span (a prompted
  frame, or a periodic re-anchor of its own).

Coordinates are pixels of the frame as given (x to the right, y down); a box is (x0, y0, x1, y1). Engines
never read files or the database: the application decodes frames and stores results.

Additions beyond the protocols (optional, not part of `isinstance` checks): the engines of
`reelforge.apps.roto.engines` give their trackers a `held_frames` property (frames held now, at most `window`),
and refuse bad input with `ValidationFailed` (codes "invalid_frame", "invalid_mask", "tracker_not_anchored").
The adapters come from `reelforge.apps.roto.engines.segment_adapters(settings)`, for `AppManifest.models`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np

TASK = "video.segment"


@dataclass(frozen=True)
class Point:
    """A click: label 1 is a positive point (part of the object), 0 a negative one (not part of it)."""

    x: float
    y: float
    label: int = 1


@dataclass(frozen=True)
class ObjectPrompt:
    """Every prompt of one object on one frame: its points and at most one box."""

    object_id: int
    points: tuple[Point, ...] = ()
    box: tuple[float, float, float, float] | None = None


@dataclass(frozen=True)
class SegmentRequest:
    """One frame's prompts, for `ModelAdapter.run` (the registry's generic entry; `segment` is the direct one).

    features: what `prepare(frame)` returned for this frame, or None to compute them now.
    priors: per object, a mask already known on this frame (from propagation); an engine uses it to refine
    rather than start over, so that a click after propagation changes that result and nothing else.
    """

    frame: np.ndarray
    prompts: tuple[ObjectPrompt, ...]
    features: Any = None
    priors: Mapping[int, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class SegmentResult:
    """Per object, its boolean mask on the frame; notes say what the engine could not do (honestly)."""

    masks: dict[int, np.ndarray]
    engine: str
    notes: tuple[str, ...] = ()


@runtime_checkable
class Tracker(Protocol):
    """Propagates masks of several objects through consecutive frames in one direction (see the module)."""

    def anchor(self, index: int, frame: np.ndarray, masks: Mapping[int, np.ndarray]) -> None:
        """Known masks on frame `index` (an object absent from `masks` is no longer tracked from here)."""
        ...

    def step(self, index: int, frame: np.ndarray) -> dict[int, np.ndarray]:
        """The masks on frame `index`, the next frame in this tracker's direction; an object that left the
        frame gets an empty mask and may come back."""
        ...


@runtime_checkable
class SegmentEngine(Protocol):
    """A `video.segment` model adapter (the platform's ModelAdapter contract plus these methods)."""

    name: str
    task: str  # TASK

    def prepare(self, frame: np.ndarray) -> Any:
        """Per-frame features to reuse between prompts on this frame; `nbytes(features)` sizes the cache."""
        ...

    def nbytes(self, features: Any) -> int:
        """Memory the features hold, for the caller's cache accounting."""
        ...

    def segment(self, frame: np.ndarray, features: Any, prompt: ObjectPrompt,
                prior: np.ndarray | None = None) -> np.ndarray:
        """One object's mask on this frame from its prompts (refining `prior` when given)."""
        ...

    def tracker(self, *, window: int = 8) -> Tracker:
        """A new tracker holding at most `window` frames of state."""
        ...
