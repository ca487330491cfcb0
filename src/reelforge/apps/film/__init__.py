"""Film studio: projects that hold a script (Fountain or prose), its characters (portrait, voice),
backgrounds and music; read-only sharing; the script's breakdown into scenes, dialogue and action with
estimated durations, optionally enriched by a language model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reelforge.applications import AppManifest, NavItem
from reelforge.apps.film.settings import FilmSettings

HERE = Path(__file__).parent

# Error codes this application adds to the platform's (docs/errors.md).
ERROR_CODES = {
    "project_not_found": "No such project (or not yours to see)",
    "share_not_found": "No such share of this project",
    "read_only_share": "The project is shared with you read-only: only its owner may change it or its shares",
    "script_too_large": "The script is larger than `film.max_script_bytes` (`limit`)",
    "empty_script": "The project has no script, or the script has no action or dialogue",
    "unknown_character": "Dialogue is given to characters the project does not define (`names`)",
    "duplicate_character": "Two characters share a name or an alias",
    "unknown_voice": "The voice is not one of GET /v1/film/voices",
    "voice_out_of_range": "A voice's rate or pitch is outside the allowed range (`min`, `max`)",
    "too_many_items": "More characters, backgrounds or music than a project may hold (`limit`)",
    "invalid_asset_type": "The asset is not of the kind the field needs (an image, or audio)",
    "temporary_asset": "The asset is temporary and would expire; a project names only kept assets",
    "share_with_owner": "A project cannot be shared with its owner",
    "share_limit_reached": "The project is shared with the most accounts allowed (`limit`)",
    "text_too_long": "A voice preview's text is longer than 300 characters (`limit`)",
    "empty_text": "A voice preview's text has no word to speak",
    "film_too_long": "The script would make a film longer than `film.render.max_seconds` (`limit`, `seconds`)",
    # publishing to YouTube
    "youtube_not_configured": "YouTube publishing is not configured on this server (`film.youtube.client_id`)",
    "youtube_not_connected": "No YouTube channel is connected: POST /v1/film/youtube/connect first",
    "youtube_auth_failed": "YouTube refused the authorization (revoked or expired grant, refused client): "
                           "connect the channel again",
    "youtube_access_denied": "The YouTube authorization was declined at Google",
    "youtube_forbidden": "YouTube refused the request for this channel (a permission it lacks)",
    "youtube_quota_exceeded": "YouTube's quota or upload limit is reached (`reasons`); try again later",
    "youtube_rejected": "YouTube rejected the request (metadata, file or video it does not accept)",
    "youtube_unavailable": "YouTube did not answer, or answered with a server error; retried, the upload resumes",
    "invalid_oauth_state": "The OAuth state is unknown, used already or expired (`reason`): connect again",
    "thumbnail_too_large": "The thumbnail is larger than YouTube takes (`limit`)",
}


def _service(c: Any) -> Any:
    from reelforge.apps.film.service import FilmService

    return FilmService(c.store, c.settings, assets=c.assets, secrets=c.secret_box)


def _pipelines(settings: Any = None) -> list[Any]:
    from reelforge.apps.film.publish import build_pipeline as publish_pipeline
    from reelforge.apps.film.render import build_pipeline

    return [build_pipeline(settings), publish_pipeline(settings)]


def _owner_checks(c: Any) -> dict[str, Any]:
    from reelforge.apps.film.render import KIND, submit_check

    return {KIND: lambda p, data: submit_check(c, p, data),
            "film.publish": lambda p, data: c.app("film").youtube.check_publish(p, data)}


def _cli(app: Any, groups: Any) -> None:
    from reelforge.apps.film.cli import register

    register(app, groups)


def _routers() -> list[Any]:
    from reelforge.apps.film.preview_routes import router as preview_router
    from reelforge.apps.film.publish_routes import router as publish_router
    from reelforge.apps.film.routes import router

    return [router, preview_router, publish_router]


def _calls(settings: Any = None) -> list[Any]:
    from reelforge.apps.film.calls import calls

    return calls(settings)


def _console() -> list[Any]:
    from reelforge.apps.film.console import router

    return [router]


def _account_export(c: Any, account_id: str) -> Any:
    from reelforge.apps.film.account import export

    return export(c, account_id)


def _account_delete(c: Any, account_id: str) -> None:
    from reelforge.apps.film.account import delete

    delete(c, account_id)


APP = AppManifest(
    name="film",
    title="Film studio",
    description="Projects from script to film: characters, voices, backgrounds, music, sharing and the "
                "script's breakdown into scenes.",
    settings=FilmSettings,
    pipelines=_pipelines,
    service=_service,
    owner_checks=_owner_checks,
    cli=_cli,
    routers=_routers,
    calls=_calls,
    console=_console,
    nav=(NavItem("film", "/film", "Film studio", "file", "Workspace"),),
    templates=HERE / "templates",
    static=HERE / "static",
    migrations=HERE / "migrations",
    error_codes=ERROR_CODES,
    account_export=_account_export,
    account_delete=_account_delete,
)
