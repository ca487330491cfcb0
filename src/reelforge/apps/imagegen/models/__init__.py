"""`image.generate` adapters: diffusers Stable Diffusion pipelines loaded from local folders.

Nothing here imports torch or diffusers at import time; they load on an adapter's first setup().
"""

from typing import Any

from .diffusers_sd import (
    KNOWN_MODELS,
    TASK,
    TINY_SD_NAME,
    DiffusersImageGenerator,
    KnownModel,
    detect_kind,
    known_adapter,
    pull,
    tiny_sd_adapter,
)
from .tiny_sd import build_tiny_sd

__all__ = [
    "KNOWN_MODELS",
    "TASK",
    "TINY_SD_NAME",
    "DiffusersImageGenerator",
    "KnownModel",
    "build_tiny_sd",
    "detect_kind",
    "known_adapter",
    "pull",
    "tiny_sd_adapter",
]


def image_generate_adapters(settings: Any) -> list[Any]:
    """The tiny random-weight test model (`tiny-sd`, always available where the ML extra is installed), the
    known hub models (`sd15`, `sdxl`, `sdxl-turbo`, `sd-turbo`, available once pulled into the models folder),
    and any other Stable Diffusion / SDXL diffusers folder found there, under its folder name."""
    models_dir = settings.models_dir
    device = settings.models.device
    max_pixels = settings.models.max_pixels
    adapters: list[Any] = [tiny_sd_adapter(models_dir, device, max_pixels=max_pixels)]
    adapters += [known_adapter(name, models_dir, device, max_pixels=max_pixels) for name in KNOWN_MODELS]
    taken = {a.name for a in adapters}
    if models_dir.is_dir():
        for folder in sorted(models_dir.iterdir()):
            # Dot-folders are partial downloads and builds in progress.
            if folder.name.startswith(".") or not folder.is_dir() or folder.name in taken:
                continue
            kind = detect_kind(folder)
            if kind is None:
                continue
            adapters.append(DiffusersImageGenerator(
                folder.name, None, models_dir, device, kind=kind,
                description=f"local diffusers {kind} pipeline in {folder}", max_pixels=max_pixels,
            ))
    return adapters
