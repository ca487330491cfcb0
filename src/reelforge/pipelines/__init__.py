"""Job kinds: one module per kind. build_registry() collects them (plus any configured extra modules)."""

from __future__ import annotations

import importlib
from collections.abc import Iterable

from reelforge.domain.pipeline import Pipeline, PipelineRegistry


def build_registry(extra_modules: Iterable[str] = ()) -> PipelineRegistry:
    """Built-in pipelines, then those of each extra module (a module exposing `PIPELINES`)."""
    from reelforge.pipelines import image_generate, system

    registry = PipelineRegistry([image_generate.PIPELINE, *system.PIPELINES])
    for name in extra_modules:
        module = importlib.import_module(name)
        found: list[Pipeline] = list(getattr(module, "PIPELINES", []))
        if not found:
            raise ValueError(f"module {name!r} defines no PIPELINES")
        for p in found:
            registry.register(p)
    return registry
