"""`image.generate` adapters: diffusers Stable Diffusion pipelines loaded from local folders.

Nothing here imports torch or diffusers at import time; they load on an adapter's first setup().
"""

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
