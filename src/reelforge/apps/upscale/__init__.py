"""Upscaling: video super-resolution (`video.upscale`, chunked and streamed) and single images
(`image.upscale`), with Real-ESRGAN and resampling baselines."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from reelforge.applications import Action, AppManifest, NavItem
from reelforge.apps.upscale.settings import UpscaleSettings

HERE = Path(__file__).parent

# Error codes this application adds to the platform's (docs/errors.md).
ERROR_CODES = {
    "unknown_model": "No upscaling model of that name",
    "unsupported_scale": "The model does not support this scale",
    "output_too_large": "The upscaled picture would be over the output pixel limit",
    "empty_video": "The video has no frames",
    "invalid_request": "The model was called with something other than an upscale request",
    "invalid_images": "The frames given to the model are not RGB images of one size",
    "invalid_tile": "The tile size is out of range",
    "invalid_denoise": "denoise must be between 0 and 1",
    "denoise_unavailable": "The model has no denoise strength",
    "upscale_out_of_memory": "The device ran out of memory even with the smallest tiles",
}


def _pipelines(settings: Any = None) -> list[Any]:
    from reelforge.apps.upscale import image_pipeline, video_pipeline

    video = (video_pipeline.build_pipeline(settings.upscale.max_chunk_concurrency)
             if settings is not None and getattr(settings, "upscale", None) is not None else video_pipeline.PIPELINE)
    return [video, image_pipeline.PIPELINE]


def _models(settings: Any) -> list[Any]:
    from reelforge.apps.upscale.models import upscale_adapters

    return list(upscale_adapters(settings))


def _checks(c: Any) -> dict[str, Any]:
    from reelforge.apps.upscale import image_pipeline, video_pipeline

    def check(data: dict[str, Any]) -> None:
        image_pipeline.check_model(c.models, data)

    return {video_pipeline.KIND: check, image_pipeline.KIND: check}


def _owner_checks(c: Any) -> dict[str, Any]:
    from reelforge.apps.upscale import image_pipeline, video_pipeline

    return {video_pipeline.KIND: partial(video_pipeline.submit_check, c),
            image_pipeline.KIND: partial(image_pipeline.submit_check, c)}


def _console() -> list[Any]:
    from reelforge.apps.upscale.console import router

    return [router]


def _cli(app: Any, groups: Any) -> None:
    from reelforge.apps.upscale.cli import register

    register(app, groups)


def _demo(http: Any, out_dir: Path) -> int:
    from reelforge.apps.upscale.demo import run_demo

    return run_demo(http, out_dir)


APP = AppManifest(
    name="upscale",
    title="Upscaling",
    description="Video super-resolution in parallel chunks, every source stream kept; single images too.",
    settings=UpscaleSettings,
    pipelines=_pipelines,
    models=_models,
    submit_checks=_checks,
    owner_checks=_owner_checks,
    console=_console,
    nav=(NavItem("upscale", "/upscale", "Upscale video", "sparkles", "Workspace"),),
    actions=(Action("/upscale", "Upscale a video", "sparkles"),),
    templates=HERE / "templates",
    static=HERE / "static",
    cli=_cli,
    demo=_demo,
    error_codes=ERROR_CODES,
)
