"""Reading: one video, a user's videos, the feed, mobs and their members, similar search, a video's job
history and its signed URLs. Every read applies the visibility rules of `base`."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from reelforge import errors
from reelforge.apps.mobs.repository import (
    SEARCH_SOURCE,
    Mob,
    MobsRepo,
    Video,
    blob_to_f32,
    cards_by_ids,
    feed_cards,
)
from reelforge.apps.mobs.services.base import NAMESPACE, Part, check_id, get_own, get_visible, visible
from reelforge.apps.mobs.services.cursors import Page, decode_cursor, page
from reelforge.domain.types import Principal


class Reads(Part):
    def get(self, p: Principal, video_id: str) -> Video:
        """One video this viewer may see, its status reconciled with its analysis job."""
        with self.store.tx(write=False) as tx:
            v = get_visible(MobsRepo(tx), p, video_id)
        return self._reconcile(v)

    def _reconcile(self, v: Video) -> Video:
        """A video whose analysis job ended without reaching the pipeline's own failure step (its worker
        died on the last attempt, say) is reported failed: the job is the source of truth."""
        if v.status != "processing" or not v.job_id:
            return v
        with self.store.tx(write=False) as tx:
            job = MobsRepo(tx).job(v.job_id)
        if job is None or job.status not in ("failed", "dead", "cancelled"):
            return v
        with self.store.tx() as tx:
            repo = MobsRepo(tx)
            row = repo.video(v.id, lock=True)
            if row is not None and row.status == "processing":
                repo.update_video(v.id, status="failed", error_code=job.error_code or job.status,
                                  error_message=job.error_message or f"analysis job {job.status}")
            fresh = repo.video(v.id)
        return fresh or v

    def list_user(self, p: Principal, user_id: str | None, *, limit: int = 50,
                  cursor: str | None = None) -> Page:
        """A user's own videos (every status but deleted); admins may name any user."""
        owner = user_id or p.user_id
        if owner != p.user_id and not p.is_admin:
            raise errors.NotFound("User not found", code="user_not_found")
        cur = decode_cursor(cursor)
        with self.store.tx(write=False) as tx:
            rows = list(MobsRepo(tx).list_videos(owner_id=owner, limit=limit + 1, cursor=cur))
        return page([self._reconcile(v) for v in rows], limit, lambda v: v.created_at)

    def feed(self, p: Principal, *, order: str = "new", mob_id: str | None = None, limit: int | None = None,
             cursor: str | None = None) -> Page:
        """Validated public videos, newest or best first, optionally of one mob; cursor pagination."""
        if order not in ("new", "best"):
            raise errors.ValidationFailed("order must be new or best", code="invalid_order", field="order")
        limit = limit or self.cfg.feed_page_size
        cur = decode_cursor(cursor)
        with self.store.tx(write=False) as tx:
            rows = list(MobsRepo(tx).feed(order=order, mob_id=mob_id, limit=limit + 1, cursor=cur))
        return page(rows, limit, (lambda v: v.validated_at) if order == "new" else (lambda v: v.score))

    async def feed_cards(self, p: Principal, *, order: str = "new", mob_id: str | None = None,
                         limit: int | None = None, cursor: str | None = None) -> Page:
        """`feed`, as cards (repository.CARD_COLUMNS) read on the event loop: what the feed routes show."""
        if order not in ("new", "best"):
            raise errors.ValidationFailed("order must be new or best", code="invalid_order", field="order")
        limit = limit or self.cfg.feed_page_size
        cur = decode_cursor(cursor)
        params: dict[str, Any] = {"limit": limit + 1}
        if mob_id:
            params["mob_id"] = mob_id
        if cur is not None:
            params["after_key"], params["after_id"] = cur
        rows = await self.store.reads.all(feed_cards(order, bool(mob_id), cur is not None), **params)
        return page(rows, limit, (lambda v: v.validated_at) if order == "new" else (lambda v: v.score))

    def card_thumbnail_url(self, card: Any) -> str | None:
        """The signed thumbnail URL of a card (None when it has none, or its asset is gone)."""
        if not card.thumb_key:
            return None
        thumb = SimpleNamespace(key=card.thumb_key, filename=card.thumb_filename,
                                content_type=card.thumb_content_type)
        return str(self.ctx.assets.download_url(thumb).url)

    def urls(self, v: Video, *, playback: bool = True) -> dict[str, str | None]:
        """Signed thumbnail and playback URLs (playback only for the detail view)."""
        out: dict[str, str | None] = {"thumbnail_url": None, "playback_url": None}
        ids = [i for i in (v.thumbnail_asset_id, v.asset_id if playback else None) if i]
        if not ids:
            return out
        with self.store.tx(write=False) as tx:
            found = {i: tx.assets.asset(i) for i in ids}
        thumb = found.get(v.thumbnail_asset_id) if v.thumbnail_asset_id else None
        if thumb is not None:
            out["thumbnail_url"] = self.ctx.assets.download_url(thumb).url
        src = found.get(v.asset_id) if (playback and v.asset_id) else None
        if src is not None:
            out["playback_url"] = self.ctx.assets.download_url(src).url
        return out

    def thumbnail_urls(self, asset_ids: list[str]) -> list[str]:
        """Signed download URLs of the thumbnails that still exist, in order."""
        with self.store.tx(write=False) as tx:
            assets = [tx.assets.asset(a) for a in asset_ids]
        return [self.ctx.assets.download_url(a).url for a in assets if a is not None]

    def mob_of(self, v: Video) -> Mob | None:
        """The mob a video belongs to, if any."""
        if not v.mob_id:
            return None
        with self.store.tx(write=False) as tx:
            return MobsRepo(tx).mob(v.mob_id)

    def mobs(self, p: Principal) -> list[tuple[Mob, int, list[str]]]:
        """Active mobs with the number of members this viewer may see (mobs with none are left out) and a
        few thumbnail asset ids."""
        with self.store.tx(write=False) as tx:
            repo = MobsRepo(tx)
            rows = list(repo.mobs(status="active"))
            counts = repo.visible_counts([m.id for m in rows], p.user_id)
            thumbs = repo.first_thumbnails([m.id for m in rows])
        out = [(m, counts.get(m.id, 0), thumbs.get(m.id, [])) for m in rows if counts.get(m.id, 0) > 0]
        out.sort(key=lambda t: (-t[1], t[0].created_at, t[0].id))
        return out

    def mob(self, p: Principal, mob_id: str, *, limit: int = 200) -> tuple[Mob, list[Video]]:
        """One mob and the members this viewer may see. A merged mob answers with `merged_into`."""
        check_id(mob_id, "mob")
        with self.store.tx(write=False) as tx:
            repo = MobsRepo(tx)
            m = repo.mob(mob_id)
            if m is None:
                raise errors.NotFound("Mob not found", code="mob_not_found")
            members = list(repo.mob_members(mob_id, viewer_id=p.user_id, limit=limit))
        if m.status == "active" and not members:
            raise errors.NotFound("Mob not found", code="mob_not_found")
        return m, members

    def mob_events(self, mob_id: str, limit: int = 50) -> list[Any]:
        """A mob's history (created, split, merge, emptied), newest first."""
        with self.store.tx(write=False) as tx:
            return list(MobsRepo(tx).mob_events(mob_id=mob_id, limit=limit))

    async def similar(self, p: Principal, video_id: str, k: int = 10) -> list[tuple[Any, float]]:
        """The k nearest validated videos this viewer may see (own and public), in the source's embedding space,
        as cards (repository.CARD_COLUMNS) with their scores. The rows are read on the event loop, and so is the
        index search where the index can answer without blocking it (`asearch`).

        Visibility is a filter inside the index search; rows are checked once more against the database
        (a video can change status between the index write and the row write).
        """
        if not 1 <= k <= 100:
            raise errors.ValidationFailed("k must be between 1 and 100", code="invalid_k", field="k")
        check_id(video_id, "video")
        src = await self.store.reads.one(SEARCH_SOURCE, video_id=video_id)
        if src is None or not visible(src, p):
            raise errors.NotFound("Video not found", code="video_not_found")
        vec = blob_to_f32(src.embedding)
        if vec is None:
            raise errors.Conflict("This video has no embedding yet", code="video_not_analyzed")
        from reelforge.ports.vectors import SearchFilter

        flt = SearchFilter(viewer_id=p.user_id, exclude_ids=(src.id,), model_version=src.embed_model_version)
        hits = await self.vectors.asearch(NAMESPACE, vec, min(1000, k + 10), flt)
        rows: dict[str, Any] = {}
        if hits:
            found = await self.store.reads.all(cards_by_ids(len(hits)),
                                               **{f"id{i}": h.id for i, h in enumerate(hits)})
            rows = {r.id: r for r in found}
        out: list[tuple[Any, float]] = []
        for h in hits:
            v = rows.get(h.id)
            if v is None or v.status != "validated":
                continue
            if v.owner_id != p.user_id and v.visibility != "public":
                continue
            out.append((v, float(h.score)))
            if len(out) >= k:
                break
        return out

    def history(self, p: Principal, video_id: str) -> tuple[Video, list[Any]]:
        """The video (owner or admin) and its analysis job's events, oldest first."""
        with self.store.tx(write=False) as tx:
            repo = MobsRepo(tx)
            v = get_own(repo, p, video_id)
            events = list(repo.job_events(v.job_id)) if v.job_id else []
        return v, events
