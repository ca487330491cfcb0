"""The image.upscale task's request and result types (the contract of its model adapters)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


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
