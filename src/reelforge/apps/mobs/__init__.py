"""Video understanding ("mobs"): short videos analysed (OCR, speech, embeddings, validation), grouped into
mobs, a feed, similar-video search and admin statistics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reelforge.applications import AppManifest, NavItem, Tick
from reelforge.apps.mobs.settings import MobsSettings

HERE = Path(__file__).parent

# Error codes this application adds to the platform's (docs/errors.md).
ERROR_CODES = {
    "video_not_found": "No such video (or not yours to see)",
    "mob_not_found": "No such mob",
    "video_no_upload": "The video has no upload to complete",
    "video_not_uploading": "The video's upload is already settled",
    "video_not_uploaded": "The video's upload is not complete",
    "video_not_analyzed": "The video has no analysis or embedding yet",
    "video_deleted": "The video was deleted",
    "unsupported_video_type": "The content type is not one of the accepted video types",
    "invalid_visibility": "visibility must be public or private",
    "invalid_order": "order must be new or best",
    "invalid_k": "k must be between 1 and 100",
    "invalid_days": "days is out of range",
    "invalid_status": "Unknown video status",
    "invalid_request": "A video model was called with something other than an analysis request",
    "invalid_embedding": "The embedding model returned an unusable vector",
    "invalid_dimension": "The embedding dimension does not match the index",
    "dimension_mismatch": "Vectors of different dimensions were mixed",
    "invalid_validation": "The validation settings are not valid",
    "invalid_weights": "The validation weights are not valid",
    "not_enough_data": "Too few videos to fit the projection",
    "projection_corrupt": "The stored projection cannot be read",
    "hosted_model_error": "The hosted model failed; retried",
    "hosted_model_rejected": "The hosted model refused the video",
    "analysis_failed": "The video's analysis failed",
    "history_owner_only": "A video's execution history is shown to its owner (and admins) only",
}
KIND = "video.analyze"


def _pipelines() -> list[Any]:
    from reelforge.apps.mobs.pipelines import PIPELINE

    return [PIPELINE]


def _models(settings: Any) -> list[Any]:
    from reelforge.apps.mobs.models import video_understanding_adapters

    return list(video_understanding_adapters(settings))


def _service(c: Any) -> Any:
    from reelforge.apps.mobs.services import MobService

    return MobService(c.store, c.settings, assets=c.assets, objects=c.objects, jobs=c.jobs,
                      vectors=lambda: c.vectors, media=getattr(c, "media", None),
                      links=getattr(c, "results", None))


def _owner_checks(c: Any) -> dict[str, Any]:
    return {KIND: lambda p, data: c.app("mobs").uploads.check_analyze(p, data)}


def _routers() -> list[Any]:
    from reelforge.apps.mobs.routes import router

    return [router]


def _console() -> list[Any]:
    from reelforge.apps.mobs.console import router

    return [router]


def _recluster(c: Any, worker_id: str) -> None:
    svc = c.app("mobs")
    svc.uploads.tick(worker_id)  # once a minute: analyses a crash left unqueued
    svc.grouping.tick(worker_id)  # hourly re-clustering: one runner per interval across workers


def _admin_stats(c: Any) -> dict[str, Any]:
    from reelforge.apps.mobs.routes import video_stats

    return {"videos": video_stats(c)}


def _account_export(c: Any, account_id: str) -> Any:
    from reelforge.apps.mobs.account import export

    return export(c, account_id)


def _account_delete(c: Any, account_id: str) -> None:
    from reelforge.apps.mobs.account import delete

    delete(c, account_id)


def _on_worker_start(c: Any) -> None:
    from reelforge.apps.mobs.models.runtime import preload

    preload(c)


def _cli(app: Any, groups: Any) -> None:
    from reelforge.apps.mobs.cli import register

    register(app, groups)


def _demo(http: Any, out_dir: Path) -> int:
    from reelforge.apps.mobs.demo import run_demo

    return run_demo(http, out_dir)


APP = AppManifest(
    name="mobs",
    title="Video understanding",
    description="Short videos analysed, validated and grouped into mobs; feed, similar search, statistics.",
    settings=MobsSettings,
    pipelines=_pipelines,
    models=_models,
    service=_service,
    owner_checks=_owner_checks,
    routers=_routers,
    console=_console,
    nav=(
        NavItem("mobs-feed", "/mobs/feed", "Video feed", "list", "Videos"),
        NavItem("mobs-list", "/mobs", "Mobs", "users", "Videos"),
        NavItem("mobs-upload", "/mobs/upload", "Upload video", "upload", "Videos"),
        NavItem("mobs-admin-videos", "/admin/videos", "Videos", "list", "Admin", admin=True),
        NavItem("mobs-admin-stats", "/admin/video-stats", "Video statistics", "chart", "Admin", admin=True),
    ),
    templates=HERE / "templates",
    static=HERE / "static",
    ticks=(Tick("mobs.recluster", _recluster),),
    event_types=("video.analyzed",),
    migrations=HERE / "migrations",
    admin_stats=_admin_stats,
    demo=_demo,
    error_codes=ERROR_CODES,
    account_export=_account_export,
    account_delete=_account_delete,
    on_worker_start=_on_worker_start,
    cli=_cli,
)
