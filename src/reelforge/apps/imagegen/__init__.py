"""Image generation: a prompt in, images out (`image.generate`), async or sync, with a console page and a
dashboard card of the latest images."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reelforge.applications import Action, AppManifest, NavItem

HERE = Path(__file__).parent

# Error codes this application adds to the platform's (docs/errors.md).
ERROR_CODES = {
    "unknown_model": "No image-generation model of that name",
    "too_many_pixels": "width x height is over the model's limit",
    "invalid_num_images": "num_images is out of range",
    "invalid_seed": "The seed is out of range",
    "invalid_steps": "steps is out of range",
    "invalid_model_name": "A model name may hold letters, digits, '.', '_' and '-'",
    "hub_repo_not_found": "No such repository on the model hub",
    "hub_unreachable": "The model hub cannot be reached",
}


def _pipelines() -> list[Any]:
    from reelforge.apps.imagegen.pipelines import PIPELINE

    return [PIPELINE]


def _models(settings: Any) -> list[Any]:
    from reelforge.apps.imagegen.models import image_generate_adapters

    return image_generate_adapters(settings)


def _checks(c: Any) -> dict[str, Any]:
    from reelforge.apps.imagegen import pipelines

    return {pipelines.TASK: lambda data: pipelines.check(c.models, data)}


def _console() -> list[Any]:
    from reelforge.apps.imagegen.console import router

    return [router]


def _cli(app: Any, groups: Any) -> None:
    from reelforge.apps.imagegen.cli import register

    register(app, groups)


def _demo(http: Any, out_dir: Path) -> int:
    from reelforge.apps.imagegen.demo import run_demo

    return run_demo(http, out_dir)


APP = AppManifest(
    name="imagegen",
    title="Image generation",
    description="Text-to-image with diffusers pipelines (SD 1.5, SDXL, turbo) or the tiny test model.",
    pipelines=_pipelines,
    models=_models,
    submit_checks=_checks,
    console=_console,
    nav=(NavItem("generate", "/generate", "Generate image", "sparkles", "Workspace"),),
    actions=(Action("/generate", "Generate an image", "sparkles"),),
    dashboard=("imagegen_dashboard.html",),
    dashboard_scripts=("imagegen.js",),
    reuse={"image.generate": "/generate"},
    templates=HERE / "templates",
    static=HERE / "static",
    cli=_cli,
    demo=_demo,
    error_codes=ERROR_CODES,
)
