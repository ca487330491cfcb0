"""The Lanczos and bicubic baselines and the denoise pre-filter."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from reelforge.apps.upscale.models import PillowUpscaler, upscale_adapters
from reelforge.apps.upscale.ports import UpscaleRequest
from reelforge.config import Settings
from reelforge.errors import JobCancelled


def photo(height: int, width: int) -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.coffee()[100:100 + height, 200:200 + width])


@pytest.mark.parametrize("method", ["lanczos", "bicubic"])
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_baselines_equal_pillows_own_resize(method: str, scale: int) -> None:
    image = photo(37, 53)
    result = PillowUpscaler(method).run(UpscaleRequest([image, image[::-1].copy()], scale))
    assert (result.backend, result.device, result.tile) == ("pillow", "cpu", None)
    filt = Image.Resampling.LANCZOS if method == "lanczos" else Image.Resampling.BICUBIC
    for source, out in zip([image, image[::-1]], result.images, strict=True):
        assert out.shape == (37 * scale, 53 * scale, 3) and out.dtype == np.uint8
        expected = np.asarray(Image.fromarray(np.ascontiguousarray(source)).resize((53 * scale, 37 * scale), filt))
        assert np.array_equal(out, expected)


@pytest.mark.parametrize("method", ["lanczos", "bicubic"])
def test_baselines_interpolate_correctly(method: str) -> None:
    up = PillowUpscaler(method)
    flat = np.full((20, 30, 3), (10, 128, 250), dtype=np.uint8)
    assert np.array_equal(up.run(UpscaleRequest([flat], 3)).images[0], np.full((60, 90, 3), (10, 128, 250)))
    # A linear ramp stays a ramp inside the frame (both kernels reproduce linear functions exactly).
    ramp = np.repeat(np.repeat((np.arange(32) * 6).astype(np.uint8)[None, :, None], 8, axis=0), 3, axis=2)
    out = up.run(UpscaleRequest([ramp], 2)).images[0][4, 8:-8, 0].astype(np.float64)
    centres = (np.arange(8, 56) + 0.5) / 2 - 0.5
    assert np.abs(out - centres * 6).max() <= 1.0
    # Downscale then upscale a photo: far closer to the original than nearest-neighbour repetition.
    original = photo(128, 128)
    small = np.asarray(Image.fromarray(original).resize((64, 64), Image.Resampling.BICUBIC))
    restored = up.run(UpscaleRequest([small], 2)).images[0].astype(np.float64)
    blocky = small.repeat(2, 0).repeat(2, 1).astype(np.float64)
    assert np.mean((restored - original) ** 2) < 0.8 * np.mean((blocky - original) ** 2)


def test_denoise_prefilter_reduces_noise() -> None:
    rng = np.random.default_rng(0)
    clean = np.full((48, 48, 3), 120, dtype=np.uint8)
    noisy = np.clip(clean + rng.normal(0, 12, clean.shape), 0, 255).astype(np.uint8)
    up = PillowUpscaler("bicubic")
    plain = up.run(UpscaleRequest([noisy], 2)).images[0].astype(np.float64)
    filtered = up.run(UpscaleRequest([noisy], 2, denoise=0.8))
    assert filtered.notes and "denoised" in filtered.notes[0]
    assert filtered.images[0].astype(np.float64).std() < 0.5 * plain.std()
    assert up.run(UpscaleRequest([noisy], 2, denoise=0.0)).notes == ()


def test_progress_per_image_and_cancel(tmp_path: Path) -> None:
    up = {a.name: a for a in upscale_adapters(Settings(data_dir=tmp_path))}["lanczos"]
    seen: list[float] = []
    frames = [photo(16, 16)] * 4
    up.run(UpscaleRequest(frames, 2), progress=lambda f, _m: seen.append(f))
    assert seen == [0.25, 0.5, 0.75, 1.0]
    with pytest.raises(JobCancelled):
        up.run(UpscaleRequest(frames, 2), progress=lambda f, _m: seen.append(f), cancelled=lambda: len(seen) >= 6)
