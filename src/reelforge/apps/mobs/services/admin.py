"""Administration: every user's videos, deleting a video, statistics and model usage."""

from __future__ import annotations

from typing import Any

from reelforge import errors
from reelforge.apps.mobs.repository import MobsRepo, Video
from reelforge.apps.mobs.services.base import NAMESPACE, TASK, VIDEO_STATUSES, MobsContext, Part, check_id
from reelforge.apps.mobs.services.cursors import Page, decode_cursor, page
from reelforge.apps.mobs.services.grouping import Grouping


class Admin(Part):
    def __init__(self, ctx: MobsContext, grouping: Grouping) -> None:
        super().__init__(ctx)
        self.grouping = grouping

    def list_videos(self, *, status: str | None = None, owner_id: str | None = None, limit: int = 50,
                   cursor: str | None = None) -> Page:
        """Every user's videos, newest first, optionally of one status or owner; cursor pagination."""
        if status is not None and status not in VIDEO_STATUSES:
            raise errors.ValidationFailed(f"status must be one of {', '.join(VIDEO_STATUSES)}",
                                          code="invalid_status", field="status")
        cur = decode_cursor(cursor)
        with self.store.tx(write=False) as tx:
            rows = list(MobsRepo(tx).list_videos(owner_id=owner_id, status=status, limit=limit + 1, cursor=cur))
        return page(rows, limit, lambda v: v.created_at)

    def delete_video(self, video_id: str) -> Video:
        """Remove the video's objects, its vector and its mob membership (count and centroid corrected by
        subtracting its vector). The row stays as a `deleted` tombstone without analysis or scores."""
        check_id(video_id, "video")
        with self.store.tx() as tx:
            repo = MobsRepo(tx)
            repo.lock_mobs()
            v = repo.video(video_id, lock=True)
            if v is None or v.status == "deleted":
                raise errors.NotFound("Video not found", code="video_not_found")
            self.grouping.leave(repo, v)
            repo.update_video(video_id, status="deleted", deleted_at=tx.now(), embedding=None, raw_features=None,
                              analysis=None, scores=None, score=None, mob_id=None)
            asset_ids = [a for a in (v.asset_id, v.thumbnail_asset_id) if a]
            assets = [a for a in (tx.assets.asset(i) for i in asset_ids) if a is not None]
            for a in assets:
                tx.assets.delete_asset(a.id)
            upload = tx.assets.upload(v.upload_id) if v.upload_id else None
            upload_key = upload.key if upload is not None and upload.status == "pending" else None
            if upload is not None and upload.status == "pending":
                tx.assets.update_upload(upload.id, status="aborted")
        self.vectors.delete(NAMESPACE, [video_id])
        for a in assets:
            self.ctx.objects.delete(a.key)
        if upload_key:
            self.ctx.objects.delete(upload_key)
        with self.store.tx(write=False) as tx:
            fresh = MobsRepo(tx).video(video_id)
        assert fresh is not None
        return fresh

    def stats(self) -> dict[str, Any]:
        """Videos by status, validation rate, mean scores, mobs, the last re-cluster runs, analysis times."""
        from reelforge.services.stats import percentile

        with self.store.tx(write=False) as tx:
            repo = MobsRepo(tx)
            counts = repo.status_counts()
            scores = repo.score_summary()
            mobs = list(repo.mobs(status="active"))
            runs = list(repo.runs(5))
            durations = sorted(repo.analyze_durations(TASK))
        decided = counts.get("validated", 0) + counts.get("rejected", 0)
        return {
            "videos": {s: counts.get(s, 0) for s in VIDEO_STATUSES},
            "total": sum(v for s, v in counts.items() if s != "deleted"),
            "validation_rate": (counts.get("validated", 0) / decided) if decided else None,
            "scores": scores,
            "mobs": {"active": len(mobs), "largest": [{"id": m.id, "name": m.name, "count": m.count}
                                                      for m in mobs[:10]]},
            "analysis_seconds": {"count": len(durations), "p50": percentile(durations, 0.5),
                                 "p95": percentile(durations, 0.95)},
            "recluster_runs": runs,
        }

    def usage(self, *, days: int = 14) -> list[dict[str, Any]]:
        """Model invocations and units processed per model per day (from the model invocation metering)."""
        if not 1 <= days <= 366:
            raise errors.ValidationFailed("days must be between 1 and 366", code="invalid_days", field="days")
        with self.store.tx(write=False) as tx:
            now = tx.now()
            since = (int(now // 86400) - (days - 1)) * 86400.0
            return MobsRepo(tx).usage_per_day(since)
