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
        return self._reconcile_all([v])[0]

    def _reconcile_all(self, videos: list[Video]) -> list[Video]:
        """`_reconcile` for a list: the jobs of its processing videos are read in one SELECT."""
        pending = [v for v in videos if v.status == "processing" and v.job_id]
        if not pending:
            return videos
        with self.store.tx(write=False) as tx:
            jobs = MobsRepo(tx).jobs_of([str(v.job_id) for v in pending])
        ended = {v.id: jobs[v.job_id] for v in pending
                 if v.job_id in jobs and jobs[v.job_id].status in ("failed", "dead", "cancelled")}
        if not ended:
            return videos
        fresh: dict[str, Video] = {}
        with self.store.tx() as tx:
            repo = MobsRepo(tx)
            for vid, job in ended.items():
                row = repo.video(vid, lock=True)
                if row is not None and row.status == "processing":
                    repo.update_video(vid, status="failed", error_code=job.error_code or job.status,
                                      error_message=job.error_message or f"analysis job {job.status}")
                now = repo.video(vid)
                if now is not None:
                    fresh[vid] = now
        return [fresh.get(v.id, v) for v in videos]

    def list_user(self, p: Principal, user_id: str | None, *, limit: int = 50,
                  cursor: str | None = None) -> Page:
        """A user's videos: one's own (and, for admins, anyone's) in every status but deleted; another
        user's public validated videos only (a creator's page: private, rejected, failed and processing
        ones stay hidden)."""
        owner = user_id or p.user_id
        cur = decode_cursor(cursor)
        public_only = owner != p.user_id and not p.is_admin
        with self.store.tx(write=False) as tx:
            repo = MobsRepo(tx)
            if public_only:
                rows = list(repo.list_videos(owner_id=owner, status="validated", visibility="public",
                                             limit=limit + 1, cursor=cur))
            else:
                rows = list(repo.list_videos(owner_id=owner, limit=limit + 1, cursor=cur))
        return page(self._reconcile_all(rows), limit, lambda v: v.created_at)

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

    # --- signed URLs: `video_url`, `thumbnail_url` and `urls_expire_at` per video ----------------------------------
    # Signed by the platform's result links (services/results.py): `storage.result_url_ttl_s`, per period, so a
    # list answers with the same URLs for a third of the TTL. Only videos the viewer may see are linked, and only
    # the video owner's own assets (the joins and `MobsRepo.video_objects` check the owner).
    def _linked(self, p: Principal, pairs: list[tuple[Any, list[Any]]]) -> dict[str, dict[str, Any]]:
        links = self.ctx.links
        period = links.period()
        urls = links.sign([o for v, objs in pairs if visible(v, p) for o in objs], period)
        expires = float(links.expires_at(period))
        out: dict[str, dict[str, Any]] = {}
        for v, _ in pairs:
            seen = visible(v, p)
            video = urls.get(v.asset_id) if seen and v.asset_id else None
            thumb = urls.get(v.thumbnail_asset_id) if seen and v.thumbnail_asset_id else None
            out[v.id] = {"video_url": video, "thumbnail_url": thumb,
                         "urls_expire_at": expires if (video or thumb) else None}
        return out

    def card_urls(self, p: Principal, cards: list[Any]) -> dict[str, dict[str, Any]]:
        """Signed URLs of cards (repository.CARD_COLUMNS: the storage keys are joined, so no query), by id."""
        pairs = []
        for c in cards:
            objs = []
            if c.video_key:
                objs.append(SimpleNamespace(id=c.asset_id, key=c.video_key, filename=c.video_filename,
                                            content_type=c.video_content_type))
            if c.thumb_key:
                objs.append(SimpleNamespace(id=c.thumbnail_asset_id, key=c.thumb_key, filename=c.thumb_filename,
                                            content_type=c.thumb_content_type))
            pairs.append((c, objs))
        return self._linked(p, pairs)

    def video_urls(self, p: Principal, videos: list[Video]) -> dict[str, dict[str, Any]]:
        """Signed URLs of these videos, by id: their assets are read in one SELECT, whatever their number."""
        shown = [v for v in videos if visible(v, p)]
        objs: dict[str, Any] = {}
        if any(v.asset_id or v.thumbnail_asset_id for v in shown):
            with self.store.tx(write=False) as tx:
                objs = MobsRepo(tx).video_objects(shown)
        return self._linked(p, [(v, [objs[a] for a in (v.asset_id, v.thumbnail_asset_id) if a in objs])
                                for v in videos])

    def mob_of(self, v: Video) -> Mob | None:
        """The mob a video belongs to, if any."""
        if not v.mob_id:
            return None
        with self.store.tx(write=False) as tx:
            return MobsRepo(tx).mob(v.mob_id)

    def mobs(self, p: Principal) -> list[tuple[Mob, int, list[str], float | None]]:
        """Active mobs with the number of members this viewer may see (mobs with none are left out), the
        signed URLs of a few public members' thumbnails and when they expire (one SELECT for every mob's)."""
        with self.store.tx(write=False) as tx:
            repo = MobsRepo(tx)
            rows = list(repo.mobs(status="active"))
            counts = repo.visible_counts([m.id for m in rows], p.user_id)
            thumbs = repo.first_thumbnails([m.id for m in rows])
        links = self.ctx.links
        period = links.period()
        urls = links.sign([t for m in rows if counts.get(m.id, 0) > 0 for t in thumbs.get(m.id, [])], period)
        expires = float(links.expires_at(period))
        out = []
        for m in rows:
            if counts.get(m.id, 0) <= 0:
                continue
            signed = [urls[t.id] for t in thumbs.get(m.id, []) if t.id in urls]
            out.append((m, counts[m.id], signed, expires if signed else None))
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

    async def similar(self, p: Principal, video_id: str, k: int = 10,
                      min_score: float | None = None) -> list[tuple[Any, float]]:
        """The k nearest validated videos this viewer may see (own and public), in the source's embedding space,
        as cards (repository.CARD_COLUMNS) with their scores. The rows are read on the event loop, and so is the
        index search where the index can answer without blocking it (`asearch`).

        Visibility is a filter inside the index search; rows are checked once more against the database
        (a video can change status between the index write and the row write). Hits less similar than
        `min_score` (default: settings `mobs.similar_min_score`) are left out, so fewer than k may come back.
        """
        floor = float(self.cfg.similar_min_score if min_score is None else min_score)
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
            if float(h.score) < floor:
                continue
            out.append((v, float(h.score)))
            if len(out) >= k:
                break
        return out

    def history(self, p: Principal, video_id: str) -> tuple[Video, list[Any]]:
        """The video (owner or admin) and its analysis job's events, oldest first. A video the caller may see
        but does not own is refused as such (403 `history_owner_only`), not as missing."""
        with self.store.tx(write=False) as tx:
            repo = MobsRepo(tx)
            seen = get_visible(repo, p, video_id)
            if seen.owner_id != p.user_id and not p.is_admin:
                raise errors.Forbidden("A video's execution history is shown to its owner only; this video is "
                                       "another user's", code="history_owner_only")
            v = get_own(repo, p, video_id)
            events = list(repo.job_events(v.job_id)) if v.job_id else []
        return v, events
