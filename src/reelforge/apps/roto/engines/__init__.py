"""The `video.segment` engines (see `reelforge.apps.roto.ports`): the offline engine (U^2-Net-p + GrabCut +
DIS optical flow, CPU, weights from a package) and SAM 2 / SAM 2.1 through the `sam2` package.

`segment_adapters(settings)` gives every adapter for `AppManifest.models`, configured from the platform
settings (`models_dir`, `models.device`) and the roto section's `engines` (`RotoEngineSettings`).
Importing this package imports no ML library (OpenCV, onnxruntime, torch load on first use).
"""

from __future__ import annotations

from typing import Any

from reelforge.ports.models import ModelAdapter

from .config import EngineConfig, RotoEngineSettings
from .offline import OfflineFeatures, OfflineSegmenter, OfflineTracker, find_u2netp


def segment_adapters(settings: Any) -> list[ModelAdapter]:
    """Every `video.segment` adapter: the offline engine first (it runs anywhere), then the SAM 2.1 models."""
    config = EngineConfig.from_settings(settings)
    adapters: list[ModelAdapter] = [OfflineSegmenter(config)]
    return adapters


__all__ = [
    "EngineConfig",
    "OfflineFeatures",
    "OfflineSegmenter",
    "OfflineTracker",
    "RotoEngineSettings",
    "find_u2netp",
    "segment_adapters",
]
