"""Text-to-image with diffusers (Stable Diffusion 1.5, SDXL, SD/SDXL-Turbo, and the tiny test model).

Weights are never fetched at run time: every adapter loads a diffusers folder (one with model_index.json)
from `models_dir/<name>`. `pull()` is the one function that talks to the Hugging Face Hub, for users who
have internet access. torch, diffusers and Pillow are imported lazily, inside functions, so that building
the registry (and importing this module) stays cheap and works where the ML extra is not installed.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import re
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reelforge.apps.imagegen.ports import GeneratedImage, ImageGenerateRequest, ImageGenerateResult
from reelforge.errors import JobCancelled, ModelUnavailable, NotFound, ServiceUnavailable, ValidationFailed
from reelforge.ports.models import Availability, CancelledFn, ProgressFn

from .tiny_sd import build_tiny_sd, dir_lock, is_pipeline_dir, quiet_progress_bars

TASK = "image.generate"
KINDS: tuple[str, ...] = ("sd15", "sdxl", "turbo", "tiny")

# Per kind: default steps, default guidance, default square size. Turbo models are distilled for one
# step without classifier-free guidance.
_KIND_DEFAULTS: dict[str, tuple[int, float, int]] = {
    "sd15": (25, 7.5, 512),
    "sdxl": (30, 5.0, 1024),
    "turbo": (1, 0.0, 512),
    "tiny": (2, 6.0, 64),
}
_REQUIRED_MODULES = ("torch", "diffusers", "transformers")
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
# Diffusers pipelines that this adapter knows how to drive from text alone.
_TEXT2IMAGE_CLASSES = {
    "StableDiffusionPipeline": "sd15",
    "StableDiffusionXLPipeline": "sdxl",
}


@dataclass(frozen=True)
class KnownModel:
    """A model that `reelforge models pull <name or hub id>` knows by name."""

    name: str
    hub_id: str
    kind: str
    description: str
    default_size: int


KNOWN_MODELS: dict[str, KnownModel] = {
    m.name: m
    for m in (
        KnownModel("sd15", "stable-diffusion-v1-5/stable-diffusion-v1-5", "sd15",
                   "Stable Diffusion 1.5: general-purpose text-to-image at 512x512", 512),
        KnownModel("sdxl", "stabilityai/stable-diffusion-xl-base-1.0", "sdxl",
                   "Stable Diffusion XL base 1.0: higher quality at 1024x1024, needs a GPU in practice", 1024),
        KnownModel("sdxl-turbo", "stabilityai/sdxl-turbo", "turbo",
                   "SDXL-Turbo: one-step distilled SDXL at 512x512 (guidance 0)", 512),
        KnownModel("sd-turbo", "stabilityai/sd-turbo", "turbo",
                   "SD-Turbo: one-step distilled SD 2.1 at 512x512 (guidance 0)", 512),
    )
}
TINY_SD_NAME = "tiny-sd"
TINY_SD_DESCRIPTION = (
    "Tiny Stable Diffusion with random weights, test model: produces noise-like images, for tests and "
    "demos. Built from in-code configs on first use; 64x64 in under a second on a CPU."
)

# The Hub offline switch is process-wide; loads in several threads share it, and the last one out
# restores what was there before.
_OFFLINE_LOCK = threading.Lock()
_offline_users = 0
_offline_saved: dict[str, Any] = {}


def missing_modules() -> list[str]:
    """The ML modules that this adapter needs and that are not installed (checked without importing)."""
    return [m for m in _REQUIRED_MODULES if importlib.util.find_spec(m) is None]


@contextlib.contextmanager
def hub_offline() -> Iterator[None]:
    """Make the Hugging Face libraries refuse network access while loading local folders.

    `local_files_only=True` already covers the files themselves, but transformers and diffusers also
    make side calls (tokenizer fixes, telemetry) that only the offline switch stops. huggingface_hub reads
    HF_HUB_OFFLINE once, at import, so its module constant is flipped as well. Both are restored when the
    last concurrent user leaves, so that a later `pull()` in the same process still reaches the Hub.
    """
    global _offline_users
    with _OFFLINE_LOCK:
        if _offline_users == 0:
            _offline_saved.clear()
            _offline_saved.update({k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")})
            os.environ["HF_HUB_OFFLINE"] = "1"
            os.environ["TRANSFORMERS_OFFLINE"] = "1"
            with contextlib.suppress(ImportError):
                import huggingface_hub.constants as constants

                _offline_saved["constant"] = constants.HF_HUB_OFFLINE
                constants.HF_HUB_OFFLINE = True
        _offline_users += 1
    try:
        yield
    finally:
        with _OFFLINE_LOCK:
            _offline_users -= 1
            if _offline_users == 0:
                if "constant" in _offline_saved:
                    import huggingface_hub.constants as constants

                    constants.HF_HUB_OFFLINE = _offline_saved.pop("constant")
                for key, value in _offline_saved.items():
                    if value is None:
                        os.environ.pop(key, None)
                    else:
                        os.environ[key] = value
                _offline_saved.clear()


def _dtype_keyword() -> str:
    # diffusers 0.42 renamed from_pretrained's `torch_dtype` to `dtype`; older releases only know the old one.
    from diffusers.utils import deprecation_utils

    return "dtype" if hasattr(deprecation_utils, "_resolve_dtype") else "torch_dtype"


def detect_kind(folder: Path) -> str | None:
    """The adapter kind for a local diffusers folder, from its model_index.json; None if not text-to-image."""
    try:
        index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return _TEXT2IMAGE_CLASSES.get(str(index.get("_class_name", "")))


class DiffusersImageGenerator:
    """An `image.generate` model adapter running a diffusers text-to-image pipeline from a local folder.

    Thread-safe: setup() loads once under a lock, and run() calls are serialized per adapter because a
    diffusers pipeline keeps per-call state (the scheduler's timesteps) on the pipeline object.
    """

    task = TASK

    def __init__(
        self,
        name: str,
        source: str | None,
        models_dir: Path | str,
        device: str = "auto",
        kind: str = "sd15",
        description: str = "",
        test_model: bool = False,
        default_steps: int | None = None,
        default_guidance: float | None = None,
        *,
        default_size: int | None = None,
        max_pixels: int = 2048 * 2048,
    ) -> None:
        """Describe the adapter; nothing is loaded or checked on disk until availability()/setup().

        `source` is the hub id the folder comes from (shown in listings and in the pull hint), `kind`
        picks the pipeline class and defaults, `max_pixels` caps width*height of one image.
        """
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
        steps, guidance, size = _KIND_DEFAULTS[kind]
        self.name = name
        self.source = source
        self.models_dir = Path(models_dir)
        self.device = device
        self.kind = kind
        self.description = description or f"diffusers {kind} pipeline from {self.model_dir}"
        self.test_model = test_model
        self.default_steps = default_steps if default_steps is not None else steps
        self.default_guidance = default_guidance if default_guidance is not None else guidance
        self.default_size = default_size if default_size is not None else size
        self.max_pixels = max_pixels
        self._pipe: Any = None
        self._device_used: str | None = None
        self._load_s: float | None = None
        self._load_lock = threading.Lock()
        self._run_lock = threading.Lock()

    @property
    def model_dir(self) -> Path:
        """The local diffusers folder this adapter loads."""
        return self.models_dir / self.name

    # ModelAdapter -----------------------------------------------------------------------------

    def availability(self) -> Availability:
        """Available when torch, diffusers and transformers are installed and the weights folder exists.

        The tiny test model builds its own folder on first setup(), so it only needs the libraries.
        """
        missing = missing_modules()
        if missing:
            return Availability(
                False, f"{', '.join(missing)} not installed; install the ML extra: pip install 'reelforge[ml]'"
            )
        if self._pipe is not None or self.kind == "tiny" or is_pipeline_dir(self.model_dir):
            return Availability(True)
        return Availability(False, self._missing_weights_reason())

    def setup(self) -> None:
        """Load the pipeline once; later calls return at once. Safe to call from several threads."""
        if self._pipe is not None:
            return
        with self._load_lock:
            if self._pipe is not None:
                return
            started = time.perf_counter()
            self._pipe, self._device_used = self._load()
            self._load_s = time.perf_counter() - started

    def run(
        self,
        request: ImageGenerateRequest,
        *,
        progress: ProgressFn | None = None,
        cancelled: CancelledFn | None = None,
    ) -> ImageGenerateResult:
        """Generate `request.num_images` PNG images; image i uses seed `request.seed + i`.

        Deterministic for a given model, device, seed and input. Reports progress after every denoising
        step, checks `cancelled()` at the same points (raising JobCancelled), and validates the request
        before loading anything. `load_s` in the result is the loading time paid by this call (0 if warm).
        """
        self._validate(request)
        load_s = 0.0
        if self._pipe is None:
            started = time.perf_counter()
            self.setup()
            load_s = time.perf_counter() - started
        import torch

        if cancelled is not None and cancelled():
            raise JobCancelled("cancelled before generation started")
        images: list[GeneratedImage] = []
        notes: list[str] = []
        with self._run_lock:
            if self._device_used == "cpu":
                # The flag lives in the CPU's per-thread control register, so it is set again on the thread
                # that runs (setup may have run on another): denormal floats can make conv2d ~10x slower.
                torch.set_flush_denormal(True)
            started = time.perf_counter()
            with torch.inference_mode():
                for index in range(request.num_images):
                    image, nsfw = self._generate_one(torch, request, index, progress, cancelled)
                    if nsfw:
                        notes.append(f"image {index + 1}: the safety checker replaced an NSFW result")
                    images.append(
                        GeneratedImage(
                            png=self._encode_png(image, request, request.seed + index),
                            seed=request.seed + index,
                            width=image.width,
                            height=image.height,
                        )
                    )
            run_s = time.perf_counter() - started
        if progress is not None:
            progress(1.0, f"generated {request.num_images} image(s)")
        return ImageGenerateResult(
            images=images,
            model=self.name,
            device=self._device_used or "cpu",
            load_s=load_s,
            run_s=run_s,
            notes=notes,
        )

    # Extras read by the registry ------------------------------------------------------------------

    def details(self) -> dict[str, Any]:
        """Facts for listings: kind, folder, defaults, whether loaded and where."""
        return {
            "kind": self.kind,
            "dir": str(self.model_dir),
            "default_steps": self.default_steps,
            "default_guidance": self.default_guidance,
            "default_width": self.default_size,
            "default_height": self.default_size,
            "max_pixels": self.max_pixels,
            "loaded": self._pipe is not None,
            "device": self._device_used or self.device,
            "load_s": self._load_s,
        }

    # Internals -------------------------------------------------------------------------------------

    def _missing_weights_reason(self) -> str:
        hint = self.source or self.name
        return (
            f"weights not present in {self.model_dir}; run `reelforge models pull {hint}` on a machine with "
            f"internet (then copy the folder here if this machine has none)"
        )

    def _validate(self, request: ImageGenerateRequest) -> None:
        if request.width <= 0 or request.height <= 0 or request.width % 8 or request.height % 8:
            raise ValidationFailed(
                f"width and height must be positive multiples of 8, got {request.width}x{request.height}",
                code="invalid_size",
            )
        if request.width * request.height > self.max_pixels:
            raise ValidationFailed(
                f"{request.width}x{request.height} is more than the {self.max_pixels} pixels allowed per image",
                code="too_many_pixels",
                max_pixels=self.max_pixels,
            )
        if request.steps < 1:
            raise ValidationFailed("steps must be at least 1", code="invalid_steps")
        if request.num_images < 1:
            raise ValidationFailed("num_images must be at least 1", code="invalid_num_images")
        if request.seed < 0 or request.seed + request.num_images > 2**63:
            raise ValidationFailed("seed must be between 0 and 2**63 - 1 - num_images", code="invalid_seed")

    def _resolve_device(self, torch: Any) -> str:
        wanted = self.device
        if wanted == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        if wanted.startswith("cuda") and not torch.cuda.is_available():
            raise ModelUnavailable(f"device {wanted!r} requested but CUDA is not available here")
        return wanted

    def _load(self) -> tuple[Any, str]:
        missing = missing_modules()
        if missing:
            raise ModelUnavailable(f"{', '.join(missing)} not installed; install the ML extra")
        import torch
        from diffusers import AutoPipelineForText2Image, DiffusionPipeline, StableDiffusionXLPipeline

        device = self._resolve_device(torch)
        if device == "cpu":
            torch.set_flush_denormal(True)
        if self.kind == "tiny" and not is_pipeline_dir(self.model_dir):
            build_tiny_sd(self.model_dir)
        if not is_pipeline_dir(self.model_dir):
            raise ModelUnavailable(self._missing_weights_reason())
        if self.kind == "sdxl" and detect_kind(self.model_dir) == "sd15":
            # The SDXL class loads an SD 1.x folder without complaint (missing parts become None) and
            # then fails on the first prompt; refuse here, with the reason.
            raise ModelUnavailable(f"{self.model_dir} holds a Stable Diffusion 1.x/2.x pipeline, not SDXL")
        kwargs: dict[str, Any] = {"local_files_only": True}
        if device.startswith("cuda"):
            # fp16 halves memory and is what these checkpoints are run in on GPUs; CPUs keep fp32, the
            # default.
            kwargs[_dtype_keyword()] = torch.float16
        if self.test_model:
            # Random weights produce noise, and a test model has no safety checker files anyway; real
            # models keep theirs.
            kwargs.update(safety_checker=None, requires_safety_checker=False)
        loader: Any
        if self.kind == "sdxl":
            loader = StableDiffusionXLPipeline
        elif self.kind == "tiny":
            loader = DiffusionPipeline
        else:
            loader = AutoPipelineForText2Image
        with hub_offline(), quiet_progress_bars():
            pipe = loader.from_pretrained(str(self.model_dir), **kwargs)
        pipe = pipe.to(device)
        pipe.set_progress_bar_config(disable=True)
        return pipe, device

    def _generate_one(
        self,
        torch: Any,
        request: ImageGenerateRequest,
        index: int,
        progress: ProgressFn | None,
        cancelled: CancelledFn | None,
    ) -> tuple[Any, bool]:
        count = request.num_images
        if cancelled is not None and cancelled():
            raise JobCancelled(f"cancelled before image {index + 1}/{count}")

        def on_step_end(pipe: Any, step: int, timestep: Any, callback_kwargs: dict[str, Any]) -> dict[str, Any]:
            # Some schedulers run more timesteps than requested steps (Heun, DPM2), so use the real count.
            total = int(getattr(pipe, "num_timesteps", 0) or request.steps)
            done = min(step + 1, total)
            if progress is not None:
                progress(
                    min(1.0, (index * total + done) / (count * total)),
                    f"step {done}/{total} of image {index + 1}/{count}",
                )
            if cancelled is not None and cancelled():
                raise JobCancelled(f"cancelled at step {done}/{total} of image {index + 1}/{count}")
            return callback_kwargs

        # A CPU generator gives the same starting noise on every device, so a seed means the same image
        # on a laptop and on a GPU worker (up to floating-point differences of the device).
        generator = torch.Generator("cpu").manual_seed(request.seed + index)
        output = self._pipe(
            prompt=request.prompt,
            negative_prompt=request.negative_prompt or None,
            width=request.width,
            height=request.height,
            num_inference_steps=request.steps,
            guidance_scale=request.guidance_scale,
            num_images_per_prompt=1,
            generator=generator,
            callback_on_step_end=on_step_end,
            output_type="pil",
        )
        flags = getattr(output, "nsfw_content_detected", None)
        return output.images[0], bool(flags and flags[0])

    def _encode_png(self, image: Any, request: ImageGenerateRequest, seed: int) -> bytes:
        from PIL.PngImagePlugin import PngInfo

        info = PngInfo()
        info.add_text("prompt", request.prompt)
        if request.negative_prompt:
            info.add_text("negative_prompt", request.negative_prompt)
        info.add_text("seed", str(seed))
        info.add_text("model", self.name)
        info.add_text("steps", str(request.steps))
        info.add_text("guidance_scale", str(request.guidance_scale))
        info.add_text("software", "reelforge")
        buf = io.BytesIO()
        image.save(buf, format="PNG", pnginfo=info)
        return buf.getvalue()


def tiny_sd_adapter(models_dir: Path | str, device: str = "auto", *, max_pixels: int = 2048 * 2048,
                    name: str = TINY_SD_NAME) -> DiffusersImageGenerator:
    """The tiny random-weight test model, which builds its own folder on first setup()."""
    return DiffusersImageGenerator(
        name, None, models_dir, device, kind="tiny", description=TINY_SD_DESCRIPTION, test_model=True,
        default_size=64, max_pixels=max_pixels,
    )


def known_adapter(name: str, models_dir: Path | str, device: str = "auto", *,
                  max_pixels: int = 2048 * 2048) -> DiffusersImageGenerator:
    """The adapter for one of KNOWN_MODELS, loading `models_dir/<name>` once it has been pulled."""
    known = KNOWN_MODELS[name]
    return DiffusersImageGenerator(
        known.name, known.hub_id, models_dir, device, kind=known.kind, description=known.description,
        default_size=known.default_size, max_pixels=max_pixels,
    )


def pull(hub_id: str, models_dir: Path, name: str | None = None, *, force: bool = False) -> Path:
    """Download a diffusers pipeline from the Hugging Face Hub into `models_dir/<name>`.

    `hub_id` may also be a known short name (`sd15`, `sdxl`, `sdxl-turbo`, `sd-turbo`). `name` defaults
    to the known short name for the hub id, else the repository's last path segment, lowercased. Only
    the files a diffusers pipeline needs are fetched (configs, tokenizers, fp32 safetensors), into a
    `.partial` folder that a retry resumes, which is renamed into place when complete. An existing
    folder is kept unless `force`. Raises ServiceUnavailable(code="hub_unreachable") when the Hub cannot
    be reached and NotFound(code="hub_repo_not_found") for an unknown or gated repository.
    """
    if hub_id in KNOWN_MODELS:
        hub_id = KNOWN_MODELS[hub_id].hub_id
    if name is None:
        by_hub = {m.hub_id: m.name for m in KNOWN_MODELS.values()}
        name = by_hub.get(hub_id, hub_id.rstrip("/").rsplit("/", 1)[-1].lower())
    if not _NAME_RE.match(name):
        raise ValidationFailed(
            f"invalid model name {name!r}: use lowercase letters, digits, '.', '_' and '-'",
            code="invalid_model_name",
        )
    models_dir = Path(models_dir)
    target = models_dir / name
    if is_pipeline_dir(target) and not force:
        return target
    try:
        from huggingface_hub import constants as hub_constants
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import RepositoryNotFoundError
    except ImportError as exc:
        raise ModelUnavailable("huggingface_hub is not installed; install the ML extra") from exc
    if hub_constants.is_offline_mode():
        raise ServiceUnavailable(
            f"cannot download {hub_id}: Hugging Face offline mode is on (HF_HUB_OFFLINE or "
            f"TRANSFORMERS_OFFLINE is set); unset it on a machine with internet and pull again",
            code="hub_unreachable",
            hub_id=hub_id,
        )

    with dir_lock(target):
        if is_pipeline_dir(target) and not force:
            return target
        partial = models_dir / f".{name}.partial"
        try:
            snapshot_download(
                repo_id=hub_id,
                local_dir=partial,
                # Hub repositories of SD checkpoints also hold single-file .ckpt/.safetensors exports,
                # .bin duplicates and fp16 variants, several GB each, that a diffusers folder does not use.
                allow_patterns=[
                    "model_index.json",
                    "*/*.json",
                    "*/*.txt",
                    "*/*.model",
                    "*/model.safetensors",
                    "*/model-*-of-*.safetensors",
                    "*/diffusion_pytorch_model.safetensors",
                    "*/diffusion_pytorch_model-*-of-*.safetensors",
                ],
            )
        except RepositoryNotFoundError as exc:
            raise NotFound(
                f"{hub_id} is not a public repository on the Hugging Face Hub (or it is gated): {exc}",
                code="hub_repo_not_found",
                hub_id=hub_id,
            ) from exc
        except Exception as exc:
            _drop_if_empty(partial)
            raise ServiceUnavailable(
                f"could not download {hub_id} from the Hugging Face Hub ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else 'no detail'}). This machine may have no internet "
                f"access: run `reelforge models pull {hub_id}` on one that has, then copy {target} here.",
                code="hub_unreachable",
                hub_id=hub_id,
            ) from exc
        if not is_pipeline_dir(partial):
            raise NotFound(f"{hub_id} has no model_index.json: not a diffusers pipeline", code="hub_repo_not_found")
        # huggingface_hub's resume metadata is useless once complete.
        shutil.rmtree(partial / ".cache", ignore_errors=True)
        if target.exists():
            shutil.rmtree(target)
        os.replace(partial, target)
    return target


def _drop_if_empty(partial: Path) -> None:
    # Keep a partial download that holds real files (a retry resumes it); drop one with nothing in it.
    if not partial.exists():
        return
    if not any(p.is_file() for p in partial.rglob("*") if ".cache" not in p.relative_to(partial).parts):
        shutil.rmtree(partial, ignore_errors=True)
