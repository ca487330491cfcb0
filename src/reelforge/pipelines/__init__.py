"""Job kinds: one module per kind. build_registry() collects them (plus any configured extra modules)."""

from __future__ import annotations

import importlib
from collections.abc import Iterable

from reelforge.domain.pipeline import Pipeline, PipelineRegistry


def build_registry(extra_modules: Iterable[str] = ()) -> PipelineRegistry:
    """Built-in pipelines, then those of each extra module (a module exposing `PIPELINES`)."""
    from reelforge.pipelines import image_generate, image_upscale, system, video_analyze, video_upscale

    registry = PipelineRegistry([image_generate.PIPELINE, *system.PIPELINES])
    registry.register(video_upscale.PIPELINE)
    registry.register(image_upscale.PIPELINE)
    registry.register(video_analyze.PIPELINE)
    for name in extra_modules:
        module = importlib.import_module(name)
        found: list[Pipeline] = list(getattr(module, "PIPELINES", []))
        if not found:
            raise ValueError(f"module {name!r} defines no PIPELINES")
        for p in found:
            registry.register(p)
    return registry
