"""Job kinds. build_registry() collects the core's own (system.*), each installed application's, and those of
any configured extra module."""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from typing import TYPE_CHECKING

from reelforge.domain.pipeline import Pipeline, PipelineRegistry

if TYPE_CHECKING:
    from reelforge.applications import AppManifest


def build_registry(apps: Iterable[AppManifest] = (), extra_modules: Iterable[str] = ()) -> PipelineRegistry:
    """The core's pipelines, each application's, then those of each extra module (a module exposing
    `PIPELINES`)."""
    from reelforge.pipelines import system

    registry = PipelineRegistry(list(system.PIPELINES))
    for application in apps:
        for p in application.pipelines():
            registry.register(p)
    for name in extra_modules:
        module = importlib.import_module(name)
        found: list[Pipeline] = list(getattr(module, "PIPELINES", []))
        if not found:
            raise ValueError(f"module {name!r} defines no PIPELINES")
        for p in found:
            registry.register(p)
    return registry
