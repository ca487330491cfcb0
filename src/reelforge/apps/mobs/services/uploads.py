"""Submit and upload: the video record and its signed upload, completing it (which queues `video.analyze`
exactly once), the submit-time check of `video.analyze` jobs, and resuming analyses a crash left unqueued."""

from __future__ import annotations

import contextlib
from typing import Any

from reelforge import errors
from reelforge.apps.mobs.repository import MobsRepo, Video
from reelforge.apps.mobs.services.base import RESUME_SCHEDULE, TASK, VIDEO_CONTENT_TYPES, Part, get_own, log
from reelforge.domain.records import new_id
from reelforge.domain.types import Principal


class Uploads(Part):
    def submit(self, p: Principal, *, filename: str | None, content_type: str, size: int, caption: str = "",
               sha256: str | None = None, visibility: str = "public") -> tuple[Video, Any]:
        """Create the video record and a signed upload; completing the upload starts the analysis."""
        ct = (content_type or "").strip().lower()
        if ct not in VIDEO_CONTENT_TYPES:
            raise errors.ValidationFailed(f"content_type must be one of {', '.join(VIDEO_CONTENT_TYPES)}",
                                          code="unsupported_video_type", field="content_type")
        if visibility not in ("public", "private"):
            raise errors.ValidationFailed("visibility must be public or private", code="invalid_visibility",
                                          field="visibility")
        if size > self.cfg.max_upload_bytes:
            raise errors.PayloadTooLarge(f"Videos are limited to {self.cfg.max_upload_bytes} bytes",
                                         code="video_too_large", limit=self.cfg.max_upload_bytes)
        ticket = self.ctx.assets.create_upload(p, filename=filename, content_type=ct, size=size, sha256=sha256,
                                               lifecycle="hot", multipart=False)
        with self.store.tx() as tx:
            v = MobsRepo(tx).add_video(id=new_id(), owner_id=p.user_id, upload_id=ticket.upload.id,
                                       caption=caption, filename=ticket.upload.filename, status="uploading",
                                       visibility=visibility)
        return v, ticket

    def complete(self, p: Principal, video_id: str, *, sha256: str | None = None) -> tuple[Video, Any]:
        """Complete the upload (size and checksum checked), check the bytes under the media policy, and queue
        `video.analyze` exactly once.

        The job is submitted with the idempotency key `video.analyze:<video id>`, so a repeated or concurrent
        completion returns the same job; the video row then records it. A file the policy refuses (not a video,
        over the limits, cut short, a playlist, active content) answers 4xx with the refusal's code and leaves the
        video `failed` with that error, its bytes deleted and no job queued.
        """
        with self.store.tx(write=False) as tx:
            v = get_own(MobsRepo(tx), p, video_id)
        if v.owner_id != p.user_id:
            raise errors.NotFound("Video not found", code="video_not_found")
        if v.upload_id is None:
            raise errors.Conflict("This video has no upload", code="video_no_upload")
        if v.status not in ("uploading", "processing") and v.job_id is None:
            raise errors.Conflict(f"Video is {v.status}", code="video_not_uploading")
        asset = self.ctx.assets.complete_upload(p, v.upload_id, sha256=sha256)
        if v.job_id is None:
            self._inspect(p, v.id, asset)
        return self._queue(p, v.id, asset.id)

    def _inspect(self, p: Principal, video_id: str, asset: Any) -> None:
        """The platform's media policy, with this application's caps, on the uploaded bytes (headers only: the
        size, duration, frame rate and codec, the packets against the container's claims, the container format
        and active content); a refusal fails the video and is raised."""
        if self.ctx.media is None:
            return
        try:
            self.ctx.media.check_video(asset, self.ctx.media_limits())
        except errors.ReelforgeError as exc:
            if exc.status >= 500:
                raise
            self._refuse(p, video_id, asset, exc)
            raise

    def _refuse(self, p: Principal, video_id: str, asset: Any, exc: errors.ReelforgeError) -> None:
        with self.store.tx() as tx:
            repo = MobsRepo(tx)
            row = repo.video(video_id, lock=True)
            if row is not None and row.job_id is None and row.status != "deleted":
                repo.update_video(video_id, status="failed", error_code=exc.code,
                                  error_message=errors.scrub(exc.message)[:4000], asset_id=None)
        # Nothing may serve or analyse the refused bytes; the failed video stays until an admin deletes it.
        with contextlib.suppress(errors.NotFound):
            self.ctx.assets.delete(p, asset.id)

    def _queue(self, p: Principal, video_id: str, asset_id: str) -> tuple[Video, Any]:
        # The asset goes on the row before the job exists: a worker may claim the job at once.
        with self.store.tx() as tx:
            repo = MobsRepo(tx)
            row = repo.video(video_id, lock=True)
            if row is not None and row.asset_id is None:
                repo.update_video(video_id, asset_id=asset_id)
        job, _ = self.ctx.jobs.submit(p, TASK, {"video_id": video_id}, idempotency_key=f"{TASK}:{video_id}")
        with self.store.tx() as tx:
            repo = MobsRepo(tx)
            row = repo.video(video_id, lock=True)
            assert row is not None
            if row.job_id is None:
                repo.update_video(video_id, job_id=job.id,
                                  status="processing" if row.status == "uploading" else row.status)
            row = repo.video(video_id)
            assert row is not None
        return row, job

    def check_analyze(self, p: Principal, data: dict[str, Any]) -> None:
        """At submit time: a `video.analyze` job may name only the caller's own, uploaded video."""
        with self.store.tx(write=False) as tx:
            v = MobsRepo(tx).video(str(data.get("video_id", "")))
        if v is None or v.owner_id != p.user_id or v.status == "deleted":
            raise errors.NotFound("Video not found", code="video_not_found", field="video_id")
        with self.store.tx(write=False) as tx:
            up = tx.assets.upload(v.upload_id) if v.upload_id else None
        if up is None or up.status != "completed" or (v.status == "failed" and v.asset_id is None):
            raise errors.Conflict("The video's upload is not complete", code="video_not_uploaded")

    def resume_stalled(self) -> int:
        """Queue the analysis of videos whose upload completed but whose job was never queued (a crash between
        the two). Same idempotency key as `complete`, so a video still gets exactly one job."""
        from reelforge.domain.types import Role

        with self.store.tx(write=False) as tx:
            stalled = MobsRepo(tx).stalled_uploads()
            owners = {v.owner_id: tx.accounts.user(v.owner_id) for v, _ in stalled}
        n = 0
        for v, asset_id in stalled:
            user = owners.get(v.owner_id)
            if user is None or user.disabled:
                continue
            p = Principal(user.id, user.email, Role(user.role), via="system")
            try:
                with self.store.tx(write=False) as tx:
                    asset = tx.assets.asset(asset_id)
                if asset is None:
                    continue
                self._inspect(p, v.id, asset)
                self._queue(p, v.id, asset_id)
            except errors.ReelforgeError as exc:  # e.g. no credits left: tried again on the next tick
                log.warning("could not queue the analysis of video %s: %s", v.id, exc.code)
                continue
            n += 1
        return n

    def tick(self, runner: str) -> bool:
        """Once a minute, for the caller that wins the schedule's tick (one runner across workers), queue
        analyses that a crash left unqueued (`resume_stalled`). True when this caller ran it."""
        with self.store.tx(write=False) as tx:
            if tx.ops.schedule_pending(RESUME_SCHEDULE):
                return False
        with self.store.tx() as tx:
            due = tx.ops.try_schedule(RESUME_SCHEDULE, 60.0, runner)
        if due:
            try:
                self.resume_stalled()
            except Exception:
                log.exception("could not resume stalled uploads")
        return bool(due)
