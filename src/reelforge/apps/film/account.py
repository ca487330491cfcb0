"""The film studio's part of an account's export and deletion (the manifest's `account_export` and
`account_delete` hooks; the core calls them from `GET /v1/account/export` and `DELETE /v1/account`).

Export: `projects` (in full: script, characters, backgrounds, music, breakdown), `shares_given` (the shares of the
account's projects), `shares_received` (other accounts' projects shared with it), `youtube_connection` (the
channel and state only: never a token), `youtube_uploads` (metadata only: never the upload session's URI). Pending
OAuth states hold nothing but secrets and are not exported. Each list is read a page at a time while it is written.

Deletion: the account's projects and every share of them, the shares other projects gave it, its YouTube
connection (the grant revoked at Google when publishing is configured, best effort), pending states and uploads.
The assets a project names are the account's and go with the core's objects. Idempotent: what is gone stays gone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from reelforge.apps.film.repository import FilmRepo
from reelforge.apps.film.youtube_repository import YoutubeRepo

log = logging.getLogger("reelforge.film.account")

PAGE = 100
R = TypeVar("R")


def _pages(store: Any, read: Callable[[Any, str | None], list[R]], key: Callable[[R], str]) -> Iterator[R]:
    """Every row `read(tx, after)` gives, one page (one short transaction) at a time."""
    after: str | None = None
    while True:
        with store.tx(write=False) as tx:
            rows = read(tx, after)
        yield from rows
        if len(rows) < PAGE:
            return
        after = key(rows[-1])


def _project(p: Any) -> dict[str, Any]:
    return {"id": p.id, "title": p.title, "description": p.description, "script": p.script,
            "script_format": p.script_format, "script_bytes": p.script_bytes, "characters": p.characters,
            "backgrounds": p.backgrounds, "music": p.music, "revision": p.revision, "breakdown": p.breakdown,
            "analyzed_revision": p.analyzed_revision, "analyzed_at": p.analyzed_at,
            "last_render_job_id": p.last_render_job_id, "created_at": p.created_at, "updated_at": p.updated_at}


def _share(s: Any) -> dict[str, Any]:
    return {"id": s.id, "project_id": s.project_id, "owner_id": s.owner_id, "user_id": s.user_id, "email": s.email,
            "created_at": s.created_at}


def _upload(u: Any) -> dict[str, Any]:
    return {"job_id": u.job_id, "project_id": u.project_id, "asset_id": u.asset_id, "sha256": u.sha256,
            "total_bytes": u.total_bytes, "confirmed_bytes": u.confirmed_bytes, "sessions": u.sessions,
            "resumes": u.resumes, "video_id": u.video_id, "created_at": u.created_at, "updated_at": u.updated_at}


def export(c: Any, account_id: str) -> Iterator[tuple[str, Any]]:
    """The account's film studio records, as (file name, rows) pairs (see the module)."""
    store = c.store
    with store.tx(write=False) as tx:
        user = tx.accounts.user(account_id)
        conn = YoutubeRepo(tx).connection(account_id)
    email = user.email.strip().lower() if user is not None and user.email else None
    yield "projects", (_project(p) for p in _pages(
        store, lambda tx, after: FilmRepo(tx).owned_projects(account_id, after=after, limit=PAGE), lambda p: p.id))
    yield "shares_given", (_share(s) for s in _pages(
        store, lambda tx, after: FilmRepo(tx).shares_given(account_id, after=after, limit=PAGE), lambda s: s.id))
    yield "shares_received", (_share(s) for s in _pages(
        store, lambda tx, after: FilmRepo(tx).shares_received(account_id, email, after=after, limit=PAGE),
        lambda s: s.id))
    yield "youtube_connection", None if conn is None else {
        "channel_id": conn.channel_id, "channel_title": conn.channel_title, "status": conn.status,
        "scopes": conn.scopes.split(), "error": conn.error, "created_at": conn.created_at,
        "updated_at": conn.updated_at}
    yield "youtube_uploads", (_upload(u) for u in _pages(
        store, lambda tx, after: YoutubeRepo(tx).uploads(account_id, after=after, limit=PAGE), lambda u: u.job_id))


def delete(c: Any, account_id: str) -> None:
    """Remove the account's film studio rows (see the module); safe to run again."""
    try:
        c.app("film").youtube.forget(account_id)
    except Exception:  # the revocation is a courtesy to Google; the rows go below whatever it did
        log.warning("deleting account %s: revoking its YouTube grant failed", account_id, exc_info=True)
    with c.store.tx() as tx:
        YoutubeRepo(tx).delete_account(account_id)
        FilmRepo(tx).delete_account(account_id)
