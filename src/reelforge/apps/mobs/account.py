"""Video understanding's part of an account's export and deletion (the manifest's `account_export` and
`account_delete` hooks; the core calls them from `GET /v1/account/export` and `DELETE /v1/account`).

Export: `videos` (every video of the account with its analysis and validation: status, score, scores, reasons,
models, errors, times), `memberships` (the mob each video is in), `mob_events` (the events of the shared mobs that
name one of its videos) and `vectors` (its videos' vectors as the index holds them). Read a page at a time while
written.

Deletion: mobs are shared clusters, so the account's videos leave them as the admin's deletion takes a video out
(`Grouping.leave`: count, centroid and term counts corrected by subtracting the video), its vectors leave the
index, the mob events keep their facts without the video's id, and the video rows go. A page of videos at a time,
vectors first: a run cut short leaves rows that the next run finds again, never a vector without its row. Vectors
of the account's left in the index without a row (an analysis that finished after its row went) are removed last.
The videos' objects (uploads, thumbnails) are the account's assets, which the core removes. Idempotent.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice
from typing import Any

from reelforge.apps.mobs.repository import MobsRepo, Video, blob_to_f32
from reelforge.apps.mobs.services.base import NAMESPACE
from reelforge.ports.vectors import SearchFilter

PAGE = 100

_VIDEO_FIELDS = ("id", "upload_id", "asset_id", "caption", "filename", "status", "visibility", "score", "scores",
                 "analysis", "thumbnail_asset_id", "mob_id", "job_id", "participation_model", "embed_model",
                 "embed_model_version", "error_code", "error_message", "analyzed_job_id", "created_at", "updated_at",
                 "analyzed_at", "validated_at", "deleted_at")


def _videos(store: Any, owner_id: str) -> Iterator[list[dict[str, Any]]]:
    """The account's videos a page at a time, each page as dicts with its mob (read in the same transaction)."""
    after: str | None = None
    while True:
        with store.tx(write=False) as tx:
            repo = MobsRepo(tx)
            page = list(repo.owned_videos(owner_id, after=after, limit=PAGE))
            rows = [_video(v, repo) for v in page]
        yield rows
        if len(page) < PAGE:
            return
        after = page[-1].id


def _video(v: Video, repo: MobsRepo) -> dict[str, Any]:
    out = {f: getattr(v, f) for f in _VIDEO_FIELDS}
    vec = blob_to_f32(v.embedding)
    out["embedding_dim"] = int(vec.shape[0]) if vec is not None else None
    mob = repo.mob(v.mob_id) if v.mob_id else None
    out["_mob"] = None if mob is None else {"video_id": v.id, "mob_id": mob.id, "name": mob.name,
                                            "status": mob.status, "count": mob.count}
    return out


def _public(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "_mob"} for r in rows]


def _events(store: Any, owner_id: str) -> Iterator[dict[str, Any]]:
    for page in _videos(store, owner_id):
        with store.tx(write=False) as tx:
            events = MobsRepo(tx).events_of_videos([r["id"] for r in page])
            rows = [{"id": e.id, "mob_id": e.mob_id, "kind": e.kind, "run_id": e.run_id, "details": e.details,
                     "ts": e.ts} for e in events]
        yield from rows


def _vectors(c: Any, owner_id: str) -> Iterator[dict[str, Any]]:
    flt = SearchFilter(viewer_id=owner_id, owner_id=owner_id)
    for r in c.vectors.iter_all(NAMESPACE, flt=flt, batch=PAGE):
        yield {"id": r.id, "model_version": r.model_version, "visibility": r.visibility,
               "vector": [float(x) for x in r.vector]}


def export(c: Any, account_id: str) -> Iterator[tuple[str, Any]]:
    """The account's video-understanding records, as (file name, rows) pairs (see the module)."""
    store = c.store
    yield "videos", (row for page in _videos(store, account_id) for row in _public(page))
    yield "memberships", (r["_mob"] for page in _videos(store, account_id) for r in page if r["_mob"])
    yield "mob_events", _events(store, account_id)
    yield "vectors", _vectors(c, account_id)


def delete(c: Any, account_id: str) -> None:
    """Remove the account's videos from the mobs, the index and the database (see the module); safe to run
    again."""
    svc = c.app("mobs")
    store = c.store
    while True:
        with store.tx(write=False) as tx:
            ids = [v.id for v in MobsRepo(tx).owned_videos(account_id, limit=PAGE)]
        if not ids:
            break
        svc.ctx.vectors.delete(NAMESPACE, ids)
        with store.tx() as tx:
            repo = MobsRepo(tx)
            repo.lock_mobs()
            for vid in ids:
                v = repo.video(vid, lock=True)
                if v is not None:
                    svc.grouping.leave(repo, v)
            repo.forget_videos(ids)
    flt = SearchFilter(viewer_id=account_id, owner_id=account_id)
    while True:
        records = svc.ctx.vectors.iter_all(NAMESPACE, flt=flt, batch=PAGE)
        left = [r.id for r in islice(records, PAGE)]
        getattr(records, "close", lambda: None)()  # a generator left part read lets go of its cursor now
        if not left:
            break
        svc.ctx.vectors.delete(NAMESPACE, left)
