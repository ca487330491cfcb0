"""The image.generate task's request and result types (the contract of its model adapters)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    pass


@dataclass(frozen=True)
class ImageGenerateRequest:
    prompt: str
    negative_prompt: str | None
    width: int
    height: int
    steps: int
    guidance_scale: float
    seed: int
    num_images: int


@dataclass(frozen=True)
class GeneratedImage:
    png: bytes
    seed: int
    width: int
    height: int


@dataclass(frozen=True)
class ImageGenerateResult:
    images: list[GeneratedImage]
    model: str
    device: str
    load_s: float
    run_s: float
    notes: list[str] = field(default_factory=list)
