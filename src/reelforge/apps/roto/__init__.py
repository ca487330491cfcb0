"""Rotoscoping ("roto"): interactive video object masks. A session on one of the user's videos takes prompts
(clicks and boxes on a frame, per object) answered by a worker within an interactive budget, then the
`video.rotoscope` job propagates the masks through the video and exports them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reelforge.applications import Action, AppManifest, NavItem, Tick
from reelforge.apps.roto.settings import RotoSettings

HERE = Path(__file__).parent
KIND = "video.rotoscope"

# Error codes this application adds to the platform's (docs/errors.md).
ERROR_CODES = {
    "session_not_found": "No such rotoscoping session (or not yours)",
    "object_not_found": "The session has no object with that id",
    "prompt_not_found": "The session has no prompt with that id",
    "unknown_object": "The prompt names an object the session does not have",
    "unknown_engine": "No rotoscoping engine of that name",
    "frame_out_of_range": "A frame index is past the end of the video (or negative)",
    "invalid_range": "The frame range ends before it starts",
    "point_outside_frame": "A prompt's point lies outside the frame",
    "box_outside_frame": "A prompt's box reaches outside the frame",
    "box_inverted": "A prompt's box has x1 <= x0 or y1 <= y0",
    "invalid_label": "A point's label is not 1 (object) or 0 (not the object)",
    "empty_prompt": "A prompt has neither points nor a box",
    "invalid_prompt": "The engine could not use the prompt",
    "too_many_points": "A prompt holds more points than allowed (`limit`)",
    "too_many_prompts": "The session holds the most prompts allowed (`limit`)",
    "too_many_objects": "The session holds the most objects allowed (`limit`)",
    "no_prompts": "Propagation needs at least one prompted object inside the range",
    "export_unavailable": "That export cannot be produced on this server",
    "empty_video": "The video has no frames",
    "engine_failed": "The engine gave a result of the wrong shape",
    "frame_count_mismatch": "The video decodes to other frames than its packets promise",
    "invalid_frame": "A frame given to an engine is not an RGB picture of the session's size",
    "invalid_mask": "A mask given to an engine does not match the frame's size",
    "tracker_not_anchored": "A tracker was stepped before it was anchored on known masks",
    "invalid_request": "A rotoscoping engine was called with something other than a segmentation request",
}


def _pipelines(settings: Any = None) -> list[Any]:
    from reelforge.apps.roto.pipeline import build_pipeline

    return [build_pipeline(settings)]


def _models(settings: Any) -> list[Any]:
    from reelforge.apps.roto.engines import segment_adapters

    return list(segment_adapters(settings))


def _service(c: Any) -> Any:
    from reelforge.apps.roto.service import RotoService

    return RotoService(c)


def _owner_checks(c: Any) -> dict[str, Any]:
    from reelforge.apps.roto.pipeline import submit_check

    return {KIND: lambda p, data: submit_check(c, p, data)}


def _routers() -> list[Any]:
    from reelforge.apps.roto.routes import router

    return [router]


def _calls(settings: Any = None) -> list[Any]:
    from reelforge.apps.roto.calls import calls

    return calls(settings)


def _console() -> list[Any]:
    from reelforge.apps.roto.console import router

    return [router]


def _cli(app: Any, groups: Any) -> None:
    from reelforge.apps.roto.cli import register

    register(app, groups)


def _demo(http: Any, out_dir: Path) -> int:
    from reelforge.apps.roto.demo import run_demo

    return run_demo(http, out_dir)


def _sweep_cache(c: Any, worker_id: str) -> None:
    # Cheap when nothing is open: the cache exists only in processes that answered a call.
    c.app("roto").sweep_cache()


def _admin_stats(c: Any) -> dict[str, Any]:
    return {"roto": dict(c.app("roto").stats())}


def _account_export(c: Any, account_id: str) -> Any:
    from reelforge.apps.roto.account import export

    return export(c, account_id)


def _account_delete(c: Any, account_id: str) -> None:
    from reelforge.apps.roto.account import delete

    delete(c, account_id)


APP = AppManifest(
    name="roto",
    title="Rotoscoping",
    description="Object masks on video: click on a frame, get the mask at once, propagate it through the clip, "
                "export mattes.",
    settings=RotoSettings,
    pipelines=_pipelines,
    models=_models,
    service=_service,
    owner_checks=_owner_checks,
    routers=_routers,
    calls=_calls,
    console=_console,
    nav=(NavItem("roto", "/roto", "Rotoscope", "image", "Workspace"),),
    actions=(Action("/roto", "Rotoscope a video", "image"),),
    reuse={"video.rotoscope": "/roto"},
    templates=HERE / "templates",
    static=HERE / "static",
    cli=_cli,
    demo=_demo,
    ticks=(Tick("roto.cache", _sweep_cache),),
    migrations=HERE / "migrations",
    admin_stats=_admin_stats,
    error_codes=ERROR_CODES,
    account_export=_account_export,
    account_delete=_account_delete,
)
