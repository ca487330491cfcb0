"""Job kinds. build_registry() collects the core's own (system.*), each installed application's, and those of
any configured extra module."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from reelforge.domain.pipeline import Pipeline, PipelineRegistry

if TYPE_CHECKING:
    from reelforge.applications import AppManifest


def build_registry(apps: Iterable[AppManifest] = (), extra_modules: Iterable[str] = (),
                   settings: Any = None) -> PipelineRegistry:
    """The core's pipelines, each application's (built with `settings` where its callable takes them), then those
    of each extra module (a module exposing `PIPELINES`)."""
    from reelforge.pipelines import system

    registry = PipelineRegistry(list(system.PIPELINES))
    for application in apps:
        for p in _call(application.pipelines, settings):
            registry.register(p)
    for name in extra_modules:
        module = importlib.import_module(name)
        found: list[Pipeline] = list(getattr(module, "PIPELINES", []))
        if not found:
            raise ValueError(f"module {name!r} defines no PIPELINES")
        for p in found:
            registry.register(p)
    return registry


def _call(pipelines: Callable[..., Iterable[Any]], settings: Any) -> Iterable[Any]:
    """An application's pipelines callable, with the settings when it takes a parameter."""
    if settings is None:
        return pipelines()
    try:
        params = inspect.signature(pipelines).parameters
    except (TypeError, ValueError):  # a builtin or another callable without a signature
        return pipelines()
    return pipelines(settings) if params else pipelines()
