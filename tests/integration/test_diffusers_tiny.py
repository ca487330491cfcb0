"""The diffusers image.generate adapter on the tiny random-weight Stable Diffusion pipeline.

Real torch and diffusers, no network: the model is built from in-code configs into a temporary models
folder once per module, then loaded both as the `tiny-sd` test model and through the generic local-folder
path that real SD 1.5 checkpoints use.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("transformers")

import numpy as np
from PIL import Image

from reelforge.adapters.models.registry import ModelRegistry, build_default_registry
from reelforge.apps.imagegen.models import (
    DiffusersImageGenerator,
    build_tiny_sd,
    known_adapter,
    pull,
)
from reelforge.apps.imagegen.models.diffusers_sd import hub_offline
from reelforge.apps.imagegen.ports import ImageGenerateRequest, ImageGenerateResult
from reelforge.config import Settings
from reelforge.errors import JobCancelled, ModelUnavailable, ServiceUnavailable, ValidationFailed

TASK = "image.generate"


def request(seed: int = 7, num_images: int = 1, prompt: str = "a red fox in the snow",
            width: int = 64, height: int = 64) -> ImageGenerateRequest:
    return ImageGenerateRequest(prompt=prompt, negative_prompt=None, width=width, height=height, steps=2,
                                guidance_scale=6.0, seed=seed, num_images=num_images)


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def folder_digest(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def model_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(data_dir=tmp_path_factory.mktemp("data"), models={"device": "cpu", "max_pixels": 256 * 256})


@pytest.fixture(scope="module")
def registry(model_settings: Settings) -> ModelRegistry:
    registry = build_default_registry(model_settings)
    assert not (model_settings.models_dir / "tiny-sd").exists()
    # The first setup builds the tiny model, since its folder is missing, then loads it.
    registry.ensure_ready(TASK, "tiny-sd")
    assert (model_settings.models_dir / "tiny-sd" / "model_index.json").is_file()
    return registry


@pytest.fixture(scope="module")
def tiny(registry: ModelRegistry) -> DiffusersImageGenerator:
    adapter = registry.get(TASK, "tiny-sd")
    assert isinstance(adapter, DiffusersImageGenerator)
    return adapter


@pytest.fixture(scope="module")
def baseline(tiny: DiffusersImageGenerator) -> ImageGenerateResult:
    return tiny.run(request(seed=7))


@pytest.fixture(scope="module")
def seed8(tiny: DiffusersImageGenerator) -> ImageGenerateResult:
    return tiny.run(request(seed=8))


def test_generates_a_png_of_the_requested_size(baseline: ImageGenerateResult) -> None:
    assert baseline.model == "tiny-sd" and baseline.device == "cpu"
    assert baseline.load_s == 0.0 and baseline.run_s > 0
    (image,) = baseline.images
    assert image.png.startswith(b"\x89PNG\r\n\x1a\n")
    decoded = Image.open(io.BytesIO(image.png))
    assert decoded.size == (64, 64) and (image.width, image.height) == (64, 64)
    assert decoded.text["prompt"] == "a red fox in the snow"  # type: ignore[attr-defined]
    assert decoded.text["seed"] == "7" and decoded.text["model"] == "tiny-sd"  # type: ignore[attr-defined]
    assert image.seed == 7
    # Random weights give noise, but not a constant image.
    assert pixels(image.png).std() > 1.0


def test_same_seed_same_pixels_other_seed_other_pixels(
    tiny: DiffusersImageGenerator, baseline: ImageGenerateResult, seed8: ImageGenerateResult
) -> None:
    again = tiny.run(request(seed=7))
    assert np.array_equal(pixels(again.images[0].png), pixels(baseline.images[0].png))
    assert not np.array_equal(pixels(seed8.images[0].png), pixels(baseline.images[0].png))


def test_the_prompt_changes_the_image(tiny: DiffusersImageGenerator, baseline: ImageGenerateResult) -> None:
    other = tiny.run(request(seed=7, prompt="a blue whale"))
    assert not np.array_equal(pixels(other.images[0].png), pixels(baseline.images[0].png))


def test_several_images_use_consecutive_seeds_with_monotonic_progress(
    tiny: DiffusersImageGenerator, baseline: ImageGenerateResult, seed8: ImageGenerateResult
) -> None:
    events: list[tuple[float, str]] = []
    result = tiny.run(request(seed=7, num_images=2), progress=lambda f, m: events.append((f, m)))
    first, second = result.images
    assert (first.seed, second.seed) == (7, 8)
    assert not np.array_equal(pixels(first.png), pixels(second.png))
    # Image i of a batch is the image a single request with seed + i gives.
    assert np.array_equal(pixels(first.png), pixels(baseline.images[0].png))
    assert np.array_equal(pixels(second.png), pixels(seed8.images[0].png))

    fractions = [f for f, _ in events]
    assert fractions == sorted(fractions)
    assert fractions[-1] == 1.0 and all(0.0 < f <= 1.0 for f in fractions)
    messages = [m for _, m in events]
    assert "step 1/2 of image 1/2" in messages and "step 2/2 of image 2/2" in messages
    assert (0.75, "step 1/2 of image 2/2") in events


def test_cancellation_stops_the_run(tiny: DiffusersImageGenerator, baseline: ImageGenerateResult) -> None:
    with pytest.raises(JobCancelled):
        tiny.run(request(), cancelled=lambda: True)
    # Cancelled mid-run: after the first denoising step has reported progress.
    seen: list[float] = []
    with pytest.raises(JobCancelled):
        tiny.run(request(num_images=2), progress=lambda f, m: seen.append(f), cancelled=lambda: bool(seen))
    assert seen == [0.25]
    # The adapter is still usable and still deterministic afterwards.
    again = tiny.run(request(seed=7))
    assert np.array_equal(pixels(again.images[0].png), pixels(baseline.images[0].png))


def test_invalid_sizes_are_refused(tiny: DiffusersImageGenerator) -> None:
    with pytest.raises(ValidationFailed) as info:
        tiny.run(request(width=512, height=512))  # settings cap: 256*256 pixels
    assert info.value.code == "too_many_pixels"
    with pytest.raises(ValidationFailed) as info:
        tiny.run(request(width=60, height=64))
    assert info.value.code == "invalid_size"


def test_concurrent_runs_are_serialized_and_deterministic(
    tiny: DiffusersImageGenerator, baseline: ImageGenerateResult
) -> None:
    results: list[ImageGenerateResult] = []
    threads = [threading.Thread(target=lambda: results.append(tiny.run(request(seed=7)))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 2
    for result in results:
        assert np.array_equal(pixels(result.images[0].png), pixels(baseline.images[0].png))


def test_hub_offline_switch_is_restored(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # tests/conftest.py turns offline mode on for the whole session; start from "online" to see the
    # switch flip and come back.
    import huggingface_hub.constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    seen: list[tuple[str | None, bool]] = []
    with hub_offline():
        with hub_offline():
            seen.append((os.environ.get("HF_HUB_OFFLINE"), huggingface_hub.constants.is_offline_mode()))
        seen.append((os.environ.get("HF_HUB_OFFLINE"), huggingface_hub.constants.is_offline_mode()))
    assert seen == [("1", True), ("1", True)]
    assert "HF_HUB_OFFLINE" not in os.environ and "TRANSFORMERS_OFFLINE" not in os.environ
    assert huggingface_hub.constants.HF_HUB_OFFLINE is False


def test_registry_counts_load_and_runs(registry: ModelRegistry) -> None:
    registry.run(TASK, "tiny-sd", request())
    stats = registry.stats()[f"{TASK}/tiny-sd"]
    assert stats["loaded"] and stats["load_s"] > 0 and stats["invocations"] >= 1


def test_build_is_deterministic_and_safe_under_concurrency(tmp_path: Path, model_settings: Settings) -> None:
    built = model_settings.models_dir / "tiny-sd"
    targets = [tmp_path / "concurrent"] * 3
    errors: list[BaseException] = []

    def builder(target: Path) -> None:
        try:
            build_tiny_sd(target, seed=0)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=builder, args=(t,)) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert folder_digest(tmp_path / "concurrent") == folder_digest(built)
    # Only the folder and its lock file remain: no temporary build folders left behind.
    assert sorted(p.name for p in tmp_path.iterdir()) == [".concurrent.lock", "concurrent"]
    build_tiny_sd(tmp_path / "seed1", seed=1)
    assert folder_digest(tmp_path / "seed1") != folder_digest(built)


def test_an_absent_checkpoint_is_unavailable_with_a_pull_hint(tmp_path: Path) -> None:
    adapter = known_adapter("sd15", tmp_path, "cpu")
    availability = adapter.availability()
    assert not availability.available
    assert availability.reason is not None
    assert str(tmp_path / "sd15") in availability.reason
    assert "reelforge models pull stable-diffusion-v1-5/stable-diffusion-v1-5" in availability.reason
    registry = ModelRegistry()
    registry.register(adapter)
    with pytest.raises(ModelUnavailable):
        registry.ensure_ready(TASK, "sd15")


@pytest.mark.timeout(60)
def test_pull_without_network_fails_fast(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The real download path, with short timeouts so that a network that drops packets instead of
    # refusing them still fails in seconds. huggingface_hub reads these at import, hence the setattr.
    import huggingface_hub.constants

    # tests/conftest.py sets HF_HUB_OFFLINE=1 for the session; this test wants the network attempt.
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    for name in ("HF_HUB_ETAG_TIMEOUT", "HF_HUB_DOWNLOAD_TIMEOUT"):
        monkeypatch.setenv(name, "5")
        monkeypatch.setattr(huggingface_hub.constants, name, 5)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    started = time.monotonic()
    with pytest.raises(ServiceUnavailable) as info:
        pull("sd-turbo", tmp_path / "models")
    assert time.monotonic() - started < 45
    assert info.value.code == "hub_unreachable"
    assert "stabilityai/sd-turbo" in info.value.message
    assert not (tmp_path / "models" / "sd-turbo").exists()
    assert not (tmp_path / "models" / ".sd-turbo.partial").exists()


def test_pull_in_offline_mode_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ServiceUnavailable) as info:
        pull("stabilityai/sdxl-turbo", tmp_path)
    assert info.value.code == "hub_unreachable" and "HF_HUB_OFFLINE" in info.value.message


def test_a_local_folder_loads_through_the_generic_path(
    tmp_path: Path, model_settings: Settings, baseline: ImageGenerateResult
) -> None:
    models_dir = tmp_path / "models"
    shutil.copytree(model_settings.models_dir / "tiny-sd", models_dir / "local-sd")
    adapter = DiffusersImageGenerator("local-sd", None, models_dir, "cpu", kind="sd15",
                                      description="a local SD 1.5 folder")
    assert adapter.availability().available
    result = adapter.run(request(seed=7))
    assert result.load_s > 0
    # Same weights, same pipeline class, so the same image as the test model gives.
    assert np.array_equal(pixels(result.images[0].png), pixels(baseline.images[0].png))
    # The default registry finds such a folder on its own.
    found = build_default_registry(Settings(data_dir=tmp_path, models={"device": "cpu"}))
    info = found.info(TASK, "local-sd")
    assert info.available and info.details["kind"] == "sd15"
