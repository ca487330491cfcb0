"""Model adapter contract: one model or tool behind setup() and run()."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np

ProgressFn = Callable[[float, str], None]
CancelledFn = Callable[[], bool]


@dataclass(frozen=True)
class Availability:
    available: bool
    reason: str | None = None


@dataclass(frozen=True)
class ModelInfo:
    name: str
    task: str
    description: str
    available: bool
    reason: str | None = None
    test_model: bool = False
    source: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class ModelAdapter(Protocol):
    name: str
    task: str
    description: str
    test_model: bool

    def availability(self) -> Availability:
        """Whether the adapter can run here (weights present, dependency installed) and why not."""
        ...

    def setup(self) -> None:
        """Load weights; idempotent and safe to call from several threads."""
        ...

    def run(self, request: Any, *, progress: ProgressFn | None = None,
            cancelled: CancelledFn | None = None) -> Any:
        """Run once on a task-specific request."""
        ...


@dataclass(frozen=True)
class ImageGenerateRequest:
    prompt: str
    negative_prompt: str | None
    width: int
    height: int
    steps: int
    guidance_scale: float
    seed: int
    num_images: int


@dataclass(frozen=True)
class GeneratedImage:
    png: bytes
    seed: int
    width: int
    height: int


@dataclass(frozen=True)
class ImageGenerateResult:
    images: list[GeneratedImage]
    model: str
    device: str
    load_s: float
    run_s: float
    notes: list[str] = field(default_factory=list)


# Video understanding ("mobs") ---------------------------------------------------------------------------


@dataclass(frozen=True)
class VideoAnalysisRequest:
    """One local video file to analyse; `caption` is the uploader's text (hashtags and mentions count)."""

    path: Path
    caption: str = ""
    duration_s: float | None = None


@dataclass(frozen=True)
class ParticipationResult:
    """What a video shows, says and writes, and how much it takes part (score 0..1, with its components)."""

    ocr_text: list[str]
    transcript: str
    words: list[dict[str, Any]]  # {word, start, end, probability}
    hashtags: list[str]
    mentions: list[str]
    terms: list[str]
    activity: dict[str, float]  # motion, scene_cuts, subject_presence, ...
    components: dict[str, float]
    score: float
    model: str
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class EmbedResult:
    """A video's embedding: float32, `dim` long, unit norm, in the space named by `model_version`."""

    vector: np.ndarray
    model_version: str
    frame_dim: int
    text_dim: int
    model: str
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ValidationResult:
    """The weighted multimodal check: `validated` when score >= threshold, else `rejected`."""

    status: str  # "validated" | "rejected"
    score: float
    components: dict[str, float]
    reasons: list[str]
    threshold: float


@dataclass(frozen=True)
class UpscaleRequest:
    """A batch of frames for an `image.upscale` adapter.

    images: RGB uint8 arrays of shape (H, W, 3), all the same size (for example a batch of video frames).
    scale: one of the adapter's `scales`.
    tile: tile side in input pixels; None or 0 means the adapter's default.
    denoise: 0..1 strength of a denoising pre-filter applied before upscaling; None means off.
    """

    images: list[np.ndarray]
    scale: int
    tile: int | None = None
    denoise: float | None = None


@dataclass(frozen=True)
class UpscaleResult:
    """The upscaled frames (RGB uint8, (H*scale, W*scale, 3)), where they ran, and the tile size finally used
    (smaller than asked when an out-of-memory error made the adapter halve it; None for untiled backends)."""

    images: list[np.ndarray]
    device: str
    backend: str
    tile: int | None
    notes: tuple[str, ...] = ()
