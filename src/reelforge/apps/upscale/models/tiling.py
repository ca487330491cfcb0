"""Tiled super-resolution with bounded memory: overlapping tiles, context margins, seamless blending, and
halving the tile size when the backend runs out of memory.

A frame is cut into a grid of tiles of at most `tile` x `tile` input pixels. Neighbouring tiles overlap by
`overlap` pixels, and in the overlap their outputs are cross-faded with linear ramps that sum to one, so no seam
can show. Each tile is also run with `pad` extra pixels of real image around it (a context margin, cut off again
after the model), so the convolutions near a tile edge see the same neighbourhood as in the whole frame; with a
margin at least the model's receptive radius, the tiled result equals the untiled one.

Only one row of tiles is held in float at a time (the finished rows go to the uint8 output), so the working memory
is bounded by the tile size and the frame width, whatever the frame height.

The tiler is backend-agnostic: a backend is a callable that takes a uint8 batch (N, h, w, 3) and returns the
upscaled batch as float32 (N, h*scale, w*scale, 3) in 0..1 (unclipped).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from reelforge.errors import JobCancelled, ReelforgeError

Backend = Callable[[np.ndarray], np.ndarray]
CancelledFn = Callable[[], bool]
TileFn = Callable[[int, int], None]  # (tiles done, tiles total) in the current batch

MIN_TILE = 32


class UpscaleOutOfMemory(ReelforgeError):
    """Even the smallest tile did not fit in memory. Not retryable on the same worker."""

    status, code, title = 507, "upscale_out_of_memory", "Not enough memory to upscale"


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether `exc` is an allocation failure (host MemoryError, torch's OutOfMemoryError on any device, or an
    older torch's RuntimeError text), as opposed to a bug that halving the tile would not cure."""
    if isinstance(exc, MemoryError):
        return True
    if type(exc).__name__ == "OutOfMemoryError":
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def axis_tiles(length: int, tile: int, overlap: int) -> list[tuple[int, int]]:
    """[start, end) spans that cover 0..length, each at most `tile` long; consecutive spans overlap by exactly
    `overlap` and spans two apart never overlap (tile >= 2 * overlap + 1 is required)."""
    if tile >= length:
        return [(0, length)]
    if tile < 2 * overlap + 1:
        raise ValueError("tile must be larger than twice the overlap")
    count = math.ceil((length - overlap) / (tile - overlap))
    step = math.ceil((length - overlap) / count)
    spans = []
    for i in range(count):
        start = i * step
        spans.append((start, min(start + step + overlap, length)))
    return spans


def _ramp(span: tuple[int, int], length: int, overlap: int, scale: int) -> np.ndarray:
    """Blend weights along one axis for a span, at output resolution: a linear rise over the overlap at an
    edge shared with a neighbour, flat 1 elsewhere. The two ramps of an overlap sum to exactly 1."""
    start, end = span
    size = (end - start) * scale
    weights = np.ones(size, dtype=np.float32)
    width = overlap * scale
    if width == 0:
        return weights
    rise = (np.arange(width, dtype=np.float32) + 0.5) / width
    if start > 0:
        weights[:width] = np.minimum(weights[:width], rise)
    if end < length:
        weights[size - width:] = np.minimum(weights[size - width:], rise[::-1])
    return weights


@dataclass(frozen=True)
class TilePlan:
    tile: int
    overlap: int
    pad: int

    def effective(self, height: int, width: int) -> TilePlan:
        """The plan for a frame of this size: the overlap shrinks with small tiles so that tiles still
        advance, and a tile never exceeds the frame."""
        tile = max(1, min(self.tile, max(height, width)))
        overlap = min(self.overlap, max(0, (tile - 1) // 4))
        return TilePlan(tile, overlap, self.pad)


def upscale_tiled(images: np.ndarray, backend: Backend, scale: int, plan: TilePlan, *,
                  cancelled: CancelledFn | None = None, on_tile: TileFn | None = None) -> np.ndarray:
    """Upscale a uint8 batch (N, H, W, 3) tile by tile with `backend`; returns uint8 (N, H*s, W*s, 3).

    Every tile position is run for the whole batch at once (one backend call per position), which is what
    lets a GPU backend batch frames. `cancelled` is checked before each tile.
    """
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError("expected a uint8 batch of shape (N, H, W, 3)")
    count, height, width, _ = images.shape
    plan = plan.effective(height, width)
    rows = axis_tiles(height, plan.tile, plan.overlap)
    cols = axis_tiles(width, plan.tile, plan.overlap)
    col_weights = [_ramp(c, width, plan.overlap, scale) for c in cols]
    out = np.empty((count, height * scale, width * scale, 3), dtype=np.uint8)
    total, done = len(rows) * len(cols), 0
    band: np.ndarray | None = None  # float accumulator for the current row of tiles
    band_top = 0  # its first output row
    for y0, y1 in rows:
        new_band = np.zeros((count, (y1 - y0) * scale, width * scale, 3), dtype=np.float32)
        if band is not None:
            # Rows above this tile row are complete; the overlap carries over into the new band.
            keep_from = y0 * scale - band_top
            new_band[:, : band.shape[1] - keep_from] = band[:, keep_from:]
            out[:, band_top:y0 * scale] = _to_uint8(band[:, :keep_from])
        row_weight = _ramp((y0, y1), height, plan.overlap, scale)
        for (x0, x1), col_weight in zip(cols, col_weights, strict=True):
            if cancelled is not None and cancelled():
                raise JobCancelled("upscale cancelled")
            py0, py1 = max(0, y0 - plan.pad), min(height, y1 + plan.pad)
            px0, px1 = max(0, x0 - plan.pad), min(width, x1 + plan.pad)
            result = backend(np.ascontiguousarray(images[:, py0:py1, px0:px1]))
            expected = (count, (py1 - py0) * scale, (px1 - px0) * scale, 3)
            if result.shape != expected:
                raise RuntimeError(f"backend returned {result.shape}, expected {expected}")
            core = result[:, (y0 - py0) * scale:(y1 - py0) * scale, (x0 - px0) * scale:(x1 - px0) * scale]
            weight = (row_weight[:, None] * col_weight[None, :])[None, :, :, None]
            new_band[:, :, x0 * scale:x1 * scale] += core * weight
            done += 1
            if on_tile is not None:
                on_tile(done, total)
        band, band_top = new_band, y0 * scale
    if band is not None:
        out[:, band_top:] = _to_uint8(band)
    return out


def _to_uint8(values: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(values * 255.0), 0, 255).astype(np.uint8)


def upscale_with_retry(images: np.ndarray, backend: Backend, scale: int, plan: TilePlan, *,
                       min_tile: int = MIN_TILE, cancelled: CancelledFn | None = None,
                       on_tile: TileFn | None = None,
                       on_oom: Callable[[BaseException, int], None] | None = None) -> tuple[np.ndarray, int]:
    """upscale_tiled(), halving the tile after an out-of-memory error and trying again, down to `min_tile`.

    Returns the output and the tile size that worked (the caller keeps it for the next batch). `on_oom` is
    told about each failure and the new tile size (a torch backend empties its allocator cache there).
    Raises UpscaleOutOfMemory when a tile of `min_tile` still does not fit.
    """
    height, width = images.shape[1:3]
    tile = plan.effective(height, width).tile
    while True:
        try:
            out = upscale_tiled(images, backend, scale, TilePlan(tile, plan.overlap, plan.pad),
                                cancelled=cancelled, on_tile=on_tile)
            return out, tile
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            smaller = tile // 2
            if smaller < min_tile:
                raise UpscaleOutOfMemory(
                    f"out of memory even with {tile}px tiles ({type(exc).__name__}: {exc}); "
                    f"lower the batch size or use a machine with more memory",
                    tile=tile, min_tile=min_tile,
                ) from exc
            if on_oom is not None:
                on_oom(exc, smaller)
            tile = smaller
