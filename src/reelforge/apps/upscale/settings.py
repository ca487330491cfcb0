"""The upscaling application's settings section: `upscale` (REELFORGE_UPSCALE__...)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field


class UpscaleSettings(BaseModel):
    """Upscaling (video.upscale, image.upscale): input limits, chunking, the worker-side source cache and the
    model backend."""

    # Inputs longer or larger (width x height of the source) than these are refused at probe time.
    max_duration_s: float = Field(default=15 * 60, gt=0)
    max_pixels: int = Field(default=1920 * 1080, gt=0)
    # Output frames (width x height after upscaling) are capped too, for memory per batch.
    max_output_pixels: int = Field(default=3840 * 2160, gt=0)
    chunk_seconds: float = Field(default=10.0, gt=0)
    # Chunks of one job processed at once in a worker (the Map's MaxConcurrency).
    max_chunk_concurrency: int = Field(default=2, ge=1, le=64)
    # Frames handed to the upscaling model per call; a cancel is honoured between batches.
    batch_size: int = Field(default=4, ge=1, le=256)
    # Worker-side cache of source videos (empty: data_dir / "cache" / "sources").
    cache_dir: str = ""
    cache_max_bytes: int = Field(default=2 * 1024**3, ge=0)
    # Job outputs larger than this go to object storage as a multipart upload (parts of part_size; S3 takes a
    # smaller last part, so any threshold works).
    multipart_threshold: int = Field(default=64 * 1024**2, ge=0)
    part_size: int = Field(default=16 * 1024**2, ge=5 * 1024**2)
    # image.upscale: Pillow's decompression-bomb cap for input images.
    max_image_pixels: int = Field(default=4096 * 4096, gt=0)
    # image.upscale: "auto" = torch fp16 batched on CUDA when found, else the fastest correct CPU backend, measured
    # once per machine on first use (ncnn, torch fp32, torch bf16); "torch" forces the converted torch models;
    # "ncnn" forces ncnn on the CPU. `models.upscale_backend`, when set, takes precedence over this.
    backend: Literal["auto", "ncnn", "torch"] = "auto"
    # The torch backend's precision on a CPU: "auto" = bf16 where the processor has bf16 instructions (AVX-512
    # BF16 or AMX), else fp32.
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    tile: int = Field(default=0, ge=0, le=8192)  # tile side in input pixels; 0 = each model's default
    threads: int = Field(default=2, ge=1, le=256)  # CPU threads per ncnn network
    model_batch: int = Field(default=8, ge=1, le=256)  # frames per forward pass on CUDA


def upscale_cache_dir(settings: Any) -> Path:
    """The worker-side source cache folder (empty setting: data_dir / "cache" / "sources")."""
    up = settings.upscale
    return Path(up.cache_dir) if up.cache_dir else Path(settings.data_dir) / "cache" / "sources"
