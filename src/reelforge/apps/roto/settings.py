"""The rotoscoping application's settings section: `roto` (REELFORGE_ROTO__...)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from reelforge.apps.roto.engines.config import RotoEngineSettings


class RotoSettings(BaseModel):
    """Rotoscoping (sessions, interactive prompts, `video.rotoscope`): input caps, the engine, the workers'
    session cache, prompt limits and pricing."""

    # The `video.segment` engine a new session uses when it names none (empty: the first available one).
    engine: str = Field(default="", max_length=100)
    # The engines' own knobs (REELFORGE_ROTO__ENGINES__...).
    engines: RotoEngineSettings = Field(default_factory=RotoEngineSettings)
    # Caps on top of the platform's media policy (settings `media`), checked when a session is created and again
    # on the worker before decoding.
    max_side: int = Field(default=3840, ge=16)
    max_pixels: int = Field(default=1920 * 1080, ge=256)
    max_duration_s: float = Field(default=10 * 60.0, gt=0)
    # Per session: objects, prompts, and points in one prompt.
    max_objects: int = Field(default=32, ge=1, le=255)
    max_prompts: int = Field(default=2000, ge=1)
    max_points: int = Field(default=64, ge=1, le=1024)
    # The worker-side cache of open sessions (decoded frames and engine features): a session unused for
    # `session_idle_s` is dropped, and the least recently used ones go first when the cache holds more than
    # `cache_max_bytes` (frames, features and mask results together).
    session_idle_s: float = Field(default=600.0, gt=0)
    cache_max_bytes: int = Field(default=1024**3, ge=16 * 1024**2)
    # Decoded frames one session keeps at most (each width x height x 3 bytes).
    cache_frames: int = Field(default=24, ge=1, le=4096)
    # Where workers keep local copies of the sources (empty: data_dir / "cache" / "roto").
    cache_dir: str = ""
    source_cache_max_bytes: int = Field(default=4 * 1024**3, ge=0)
    # How long the API waits for a prompt's answer (the first prompt of a session on a worker loads the engine and
    # fetches the video).
    prompt_timeout_s: float = Field(default=60.0, gt=0, le=3600)
    # Propagation: the trackers' window (frames of state they keep), the frames handled between two looks at the
    # job's cancel flag, and how many spans may run at once.
    window: int = Field(default=8, ge=1, le=256)
    batch_frames: int = Field(default=8, ge=1, le=512)
    # Pricing of `video.rotoscope`: credits per 100 frames of the range, plus per 100 frames per object; the total is
    # rounded up, at least one credit.
    credits_per_100_frames: float = Field(default=1.0, ge=0)
    credits_per_100_object_frames: float = Field(default=1.0, ge=0)


def roto_cache_dir(settings: Any) -> Path:
    """The workers' source cache folder (empty setting: data_dir / "cache" / "roto")."""
    cfg = settings.roto
    return Path(cfg.cache_dir) if cfg.cache_dir else Path(settings.data_dir) / "cache" / "roto"
