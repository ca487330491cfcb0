"""Settings of the `video.segment` engines, as a model the roto application's settings section embeds
(`settings.roto.engines`, REELFORGE_ROTO__ENGINES__...), and the frozen config the adapters are built from."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field


class RotoEngineSettings(BaseModel):
    """The engines' knobs. Defaults suit a 2-core CPU at 854x480."""

    # Offline engine (U^2-Net-p + GrabCut + DIS optical flow).
    # Pixels (at most) of the downscaled region GrabCut runs on for one prompt: its time grows with them.
    grabcut_pixels: int = Field(default=26_000, ge=1_000, le=1_000_000)
    grabcut_iterations: int = Field(default=2, ge=1, le=10)
    # Optical flow is computed on frames scaled by this factor (then scaled back up for the masks).
    flow_scale: float = Field(default=0.5, gt=0.05, le=1.0)
    flow_preset: Literal["ultrafast", "fast", "medium"] = "medium"
    # Every this many tracked frames, each object's warped mask is snapped to the frame's edges again
    # (GrabCut seeded by the warped mask); 0 turns it off.
    reanchor_every: int = Field(default=6, ge=0, le=1000)
    # Lost objects are looked for again (colour model near where they left) for at most this many frames.
    redetect_frames: int = Field(default=10_000, ge=0)
    threads: int = Field(default=0, ge=0, le=256)  # OpenCV/onnxruntime threads; 0 = their defaults

    # SAM 2 / SAM 2.1 (the `sam2` package; weights from a local folder, or the hub where it can be reached).
    # A folder holding the checkpoints (sam2.1_hiera_tiny.pt, ...); empty: <models dir>/sam2.
    sam2_dir: str = ""
    # Load from the Hugging Face hub (facebook/sam2.1-hiera-*) when no local checkpoint is found.
    sam2_hub: bool = False
    sam2_device: Literal["auto", "cpu", "cuda"] = "auto"
    offload_video_to_cpu: bool = True
    offload_state_to_cpu: bool = True
    # Frames of memory (besides the prompted ones) a SAM 2 tracker keeps; the model attends to 7 at most.
    sam2_memory_frames: int = Field(default=7, ge=1, le=64)


class EngineConfig(BaseModel):
    """What the adapters read: the engine settings plus the platform's models folder and device."""

    models_dir: Path
    device: Literal["auto", "cpu", "cuda"] = "auto"
    engines: RotoEngineSettings = Field(default_factory=RotoEngineSettings)

    @classmethod
    def from_settings(cls, settings: Any) -> EngineConfig:
        """From the platform settings: `models_dir`, `models.device`, and `roto.engines` when the roto section
        has one (its defaults otherwise)."""
        roto = getattr(settings, "roto", None)
        engines = getattr(roto, "engines", None)
        if isinstance(engines, dict):
            engines = RotoEngineSettings(**engines)
        if not isinstance(engines, RotoEngineSettings):
            engines = RotoEngineSettings()
        models = getattr(settings, "models", None)
        return cls(models_dir=Path(getattr(settings, "models_dir", Path("models"))),
                   device=getattr(models, "device", "auto"), engines=engines)

    @property
    def sam2_dir(self) -> Path:
        return Path(self.engines.sam2_dir) if self.engines.sam2_dir else self.models_dir / "sam2"
