"""Video understanding ("mobs") use cases: submit and upload, visibility, feed, mobs, similar search,
validation, admin, statistics; the pipeline's writes; and the scheduled re-clustering.

Visibility, in one place (`_visible`): a video is visible to its owner (and admins); once validated and
public it is visible to every signed-in user. The feed, mob member lists and similar search only ever show
validated videos, and another user's only when public. Another user's invisible video answers 404.

Vectors live in the vector index (namespace `videos`), private until the video is validated and public; a
rejected video's vector leaves the index (its copy stays on the row for re-validation). Mob membership
changes (join, leave, re-cluster) run under one lock so counts and centroids always equal the members'.

The local embedding model's raw features are stored with each video. Before k-means, the re-clustering
refits the local projection when it is due (services/clustering.py `refit_due`): the new projection is saved
(a new version; every worker's adapter picks it up on its next run) and, in the same locked transaction,
every stored raw feature is re-projected and mob centroids are recomputed; then the index follows, keeping
each record's visibility. A vector that a worker computed with the old projection during a refit is
re-projected from its raw features when it is stored, so only one local space is ever in use.
"""

from __future__ import annotations

import base64
import builtins
import json
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from reelforge import errors
from reelforge.adapters.db.mobs import (
    Mob,
    MobsRepo,
    Video,
    blob_to_f32,
    blob_to_vec,
    f32_to_blob,
    vec_to_blob,
)
from reelforge.config import Settings
from reelforge.domain.records import new_id
from reelforge.domain.types import Principal
from reelforge.ports.repositories import Store
from reelforge.services import clustering as cl

log = logging.getLogger("reelforge.mobs")

TASK = "video.analyze"
NAMESPACE = "videos"
SCHEDULE = "mobs.recluster"
RESUME_SCHEDULE = "mobs.resume"
VIDEO_STATUSES = ("uploading", "processing", "validated", "rejected", "failed", "deleted")
VIDEO_CONTENT_TYPES = ("video/mp4", "video/quicktime", "video/webm", "video/x-matroska", "video/mpeg")
EVENT_ANALYZED = "video.analyzed"
LOCAL_EMBED = "local"  # the embed adapter whose raw features are stored and whose projection is refitted
_ID = re.compile(r"^[0-9a-f]{32}$")


def _check_id(value: str, what: str) -> str:
    if not isinstance(value, str) or not _ID.match(value):
        raise errors.NotFound(f"{what.capitalize()} not found", code=f"{what}_not_found")
    return value


def encode_cursor(key: float | None, item_id: str) -> str:
    raw = json.dumps([key, item_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> tuple[float, str] | None:
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        key, item_id = json.loads(raw)
        if not isinstance(item_id, str) or not isinstance(key, int | float) or isinstance(key, bool):
            raise ValueError("bad cursor")
        return float(key), item_id
    except (ValueError, TypeError, json.JSONDecodeError) as exc:
        raise errors.ValidationFailed("Malformed cursor", code="invalid_cursor", field="cursor") from exc


@dataclass
class Page:
    items: list[Video]
    next_cursor: str | None


class MobService:
    def __init__(self, store: Store, settings: Settings, *, assets: Any, objects: Any, jobs: Any,
                 vectors: Callable[[], Any]) -> None:
        self.store = store
        self.settings = settings
        self.assets = assets
        self.objects = objects
        self.jobs = jobs
        self._vectors = vectors
        self._recluster_thread: threading.Thread | None = None
        self._projections: Any = None

    @property
    def vectors(self) -> Any:
        return self._vectors()

    @property
    def cfg(self) -> Any:
        return self.settings.mobs

    @property
    def projections(self) -> Any:
        """The local embedding's current projection file (`ProjectionFile`, one stat() per look)."""
        if self._projections is None:
            from reelforge.adapters.models.video_understanding import projection_file

            self._projections = projection_file(self.settings)
        return self._projections

    # --- visibility ----------------------------------------------------------------------------
    @staticmethod
    def _visible(v: Video | None, p: Principal) -> bool:
        if v is None or v.status == "deleted":
            return False
        if v.owner_id == p.user_id or p.is_admin:
            return True
        return v.status == "validated" and v.visibility == "public"

    def _get_visible(self, repo: MobsRepo, p: Principal, video_id: str) -> Video:
        _check_id(video_id, "video")
        v = repo.video(video_id)
        if v is None or not self._visible(v, p):
            raise errors.NotFound("Video not found", code="video_not_found")
        return v

    def _get_own(self, repo: MobsRepo, p: Principal, video_id: str) -> Video:
        """Owner (or admin) only; others get 404 even for a public video."""
        _check_id(video_id, "video")
        v = repo.video(video_id)
        if v is None or v.status == "deleted" or (v.owner_id != p.user_id and not p.is_admin):
            raise errors.NotFound("Video not found", code="video_not_found")
        return v

    # --- submit and upload ---------------------------------------------------------------------
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
        ticket = self.assets.create_upload(p, filename=filename, content_type=ct, size=size, sha256=sha256,
                                           lifecycle="hot", multipart=False)
        with self.store.tx() as tx:
            v = MobsRepo(tx).add_video(id=new_id(), owner_id=p.user_id, upload_id=ticket.upload.id,
                                       caption=caption, filename=ticket.upload.filename, status="uploading",
                                       visibility=visibility)
        return v, ticket

    def complete(self, p: Principal, video_id: str, *, sha256: str | None = None) -> tuple[Video, Any]:
        """Complete the upload (size and checksum checked) and queue `video.analyze` exactly once.

        The job is submitted with the idempotency key `video.analyze:<video id>`, so a repeated or concurrent
        completion returns the same job; the video row then records it.
        """
        with self.store.tx(write=False) as tx:
            v = self._get_own(MobsRepo(tx), p, video_id)
        if v.owner_id != p.user_id:
            raise errors.NotFound("Video not found", code="video_not_found")
        if v.upload_id is None:
            raise errors.Conflict("This video has no upload", code="video_no_upload")
        if v.status not in ("uploading", "processing") and v.job_id is None:
            raise errors.Conflict(f"Video is {v.status}", code="video_not_uploading")
        asset = self.assets.complete_upload(p, v.upload_id, sha256=sha256)
        return self._queue(p, v.id, asset.id)

    def _queue(self, p: Principal, video_id: str, asset_id: str) -> tuple[Video, Any]:
        # The asset goes on the row before the job exists: a worker may claim the job at once.
        with self.store.tx() as tx:
            repo = MobsRepo(tx)
            row = repo.video(video_id, lock=True)
            if row is not None and row.asset_id is None:
                repo.update_video(video_id, asset_id=asset_id)
        job, _ = self.jobs.submit(p, TASK, {"video_id": video_id}, idempotency_key=f"{TASK}:{video_id}")
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
        if up is None or up.status != "completed":
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
                self._queue(p, v.id, asset_id)
            except errors.ReelforgeError as exc:  # e.g. no credits left: tried again on the next tick
                log.warning("could not queue the analysis of video %s: %s", v.id, exc.code)
                continue
            n += 1
        return n

    # --- reading -------------------------------------------------------------------------------
    def get(self, p: Principal, video_id: str) -> Video:
        with self.store.tx(write=False) as tx:
            v = self._get_visible(MobsRepo(tx), p, video_id)
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
        return self._page([self._reconcile(v) for v in rows], limit, lambda v: v.created_at)

    @staticmethod
    def _page(rows: list[Video], limit: int, key: Callable[[Video], float | None]) -> Page:
        nxt = None
        if len(rows) > limit:
            rows = rows[:limit]
            nxt = encode_cursor(key(rows[-1]), rows[-1].id)
        return Page(rows, nxt)

    def feed(self, p: Principal, *, order: str = "new", mob_id: str | None = None, limit: int | None = None,
             cursor: str | None = None) -> Page:
        """Validated public videos, newest or best first, optionally of one mob; cursor pagination."""
        if order not in ("new", "best"):
            raise errors.ValidationFailed("order must be new or best", code="invalid_order", field="order")
        limit = limit or self.cfg.feed_page_size
        cur = decode_cursor(cursor)
        with self.store.tx(write=False) as tx:
            rows = list(MobsRepo(tx).feed(order=order, mob_id=mob_id, limit=limit + 1, cursor=cur))
        return self._page(rows, limit, (lambda v: v.validated_at) if order == "new" else (lambda v: v.score))

    def thumbnail_urls(self, asset_ids: list[str]) -> list[str]:
        """Signed download URLs of the thumbnails that still exist, in order."""
        with self.store.tx(write=False) as tx:
            assets = [tx.assets.asset(a) for a in asset_ids]
        return [self.assets.download_url(a).url for a in assets if a is not None]

    def mob_of(self, v: Video) -> Mob | None:
        """The mob a video belongs to, if any."""
        if not v.mob_id:
            return None
        with self.store.tx(write=False) as tx:
            return MobsRepo(tx).mob(v.mob_id)

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
            out["thumbnail_url"] = self.assets.download_url(thumb).url
        src = found.get(v.asset_id) if (playback and v.asset_id) else None
        if src is not None:
            out["playback_url"] = self.assets.download_url(src).url
        return out

    # --- mobs ----------------------------------------------------------------------------------
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
        _check_id(mob_id, "mob")
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
        with self.store.tx(write=False) as tx:
            return list(MobsRepo(tx).mob_events(mob_id=mob_id, limit=limit))

    # --- similar search ------------------------------------------------------------------------
    def similar(self, p: Principal, video_id: str, k: int = 10) -> list[tuple[Video, float]]:
        """The k nearest validated videos this viewer may see (own and public), in the source's embedding space.

        Visibility is a filter inside the index search; rows are checked once more against the database
        (a video can change status between the index write and the row write).
        """
        if not 1 <= k <= 100:
            raise errors.ValidationFailed("k must be between 1 and 100", code="invalid_k", field="k")
        with self.store.tx(write=False) as tx:
            src = self._get_visible(MobsRepo(tx), p, video_id)
        vec = blob_to_f32(src.embedding)
        if vec is None:
            raise errors.Conflict("This video has no embedding yet", code="video_not_analyzed")
        from reelforge.ports.vectors import SearchFilter

        flt = SearchFilter(viewer_id=p.user_id, exclude_ids=(src.id,), model_version=src.embed_model_version)
        hits = self.vectors.search(NAMESPACE, vec, min(1000, k + 10), flt)
        with self.store.tx(write=False) as tx:
            rows = MobsRepo(tx).videos_by_ids([h.id for h in hits])
        out: list[tuple[Video, float]] = []
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

    # --- validation --------------------------------------------------------------------------
    def validation(self, p: Principal, video_id: str) -> Video:
        with self.store.tx(write=False) as tx:
            v = self._get_visible(MobsRepo(tx), p, video_id)
        if v.scores is None:
            raise errors.Conflict("This video has not been validated yet", code="video_not_analyzed",
                                  video_status=v.status)
        return v

    def revalidate(self, p: Principal, video_id: str) -> Video:
        """Run validation again on the stored analysis with the current settings (owner or admin)."""
        with self.store.tx(write=False) as tx:
            v = self._get_own(MobsRepo(tx), p, video_id)
        if v.analysis is None or v.embedding is None or v.status not in ("validated", "rejected"):
            raise errors.Conflict(f"Video is {v.status}; only analysed videos can be validated again",
                                  code="video_not_analyzed", video_status=v.status)
        result = self.compute_validation(v.analysis)
        self.apply_validation(v.id, result)
        self.assign(v.id)
        with self.store.tx(write=False) as tx:
            fresh = MobsRepo(tx).video(v.id)
        assert fresh is not None
        return fresh

    def compute_validation(self, analysis: dict[str, Any]) -> dict[str, Any]:
        """The weighted multimodal score of a stored participation analysis (computed, never defaulted)."""
        from reelforge.adapters.models.video_understanding import validate_scores
        from reelforge.ports.models import ParticipationResult

        fields = ParticipationResult.__dataclass_fields__
        data = {k: analysis[k] for k in fields if k in analysis}
        data["notes"] = tuple(data.get("notes") or ())
        res = validate_scores(ParticipationResult(**data), self.settings)
        return {"status": res.status, "score": float(res.score), "components": dict(res.components),
                "reasons": list(res.reasons), "threshold": float(res.threshold)}

    # --- pipeline writes -------------------------------------------------------------------------
    def start_processing(self, video_id: str, job_id: str, owner_id: str) -> Video:
        """The job's owner must own the video: a job naming someone else's video fails like a missing one."""
        with self.store.tx() as tx:
            repo = MobsRepo(tx)
            v = repo.video(video_id, lock=True)
            if v is None or v.owner_id != owner_id:
                raise errors.ReelforgeError("Video not found", code="video_not_found")
            if v.status == "deleted":
                raise errors.ReelforgeError("The video was deleted", code="video_deleted")
            if v.asset_id is None:
                raise errors.ReelforgeError("The video's upload is not complete", code="video_not_uploaded")
            repo.update_video(video_id, status="processing", job_id=job_id, error_code=None, error_message=None)
            fresh = repo.video(video_id)
        assert fresh is not None
        return fresh

    def store_results(self, video_id: str, *, analysis: dict[str, Any], vector: np.ndarray, model_version: str,
                      participation_model: str, embed_model: str, thumbnail_asset_id: str | None,
                      raw_features: np.ndarray | None = None) -> None:
        """Analysis, embedding and raw features on the row; the vector into the index, private until validated.

        A local embedding whose version is no longer the current projection (the worker projected it just
        before a refit) is re-projected from its raw features, under the mobs lock that the refit holds."""
        vec = np.asarray(vector, dtype=np.float32)
        raw = np.asarray(raw_features, dtype=np.float32).ravel() if raw_features is not None else None
        with self.store.tx() as tx:
            repo = MobsRepo(tx)
            self._locked_live_video(repo, video_id)
            if raw is not None and embed_model == LOCAL_EMBED:
                vec, model_version = self._in_current_space(raw, vec, model_version)
            repo.update_video(video_id, analysis=analysis, embedding=f32_to_blob(vec),
                              raw_features=f32_to_blob(raw) if raw is not None else None,
                              embed_model_version=model_version, participation_model=participation_model,
                              embed_model=embed_model, thumbnail_asset_id=thumbnail_asset_id, analyzed_at=tx.now())
        self._publish(video_id, lambda _v: "private")

    @staticmethod
    def _locked_live_video(repo: MobsRepo, video_id: str) -> Video:
        """Under the mobs lock: the video's row, locked, unless it was deleted meanwhile."""
        repo.lock_mobs()
        v = repo.video(video_id, lock=True)
        if v is None or v.status == "deleted":
            raise errors.ReelforgeError("The video was deleted", code="video_deleted")
        return v

    def _in_current_space(self, raw: np.ndarray, vec: np.ndarray, version: str) -> tuple[np.ndarray, str]:
        try:
            current = self.projections.current()
        except errors.ReelforgeError:
            return vec, version
        if current.version == version or raw.shape != (current.in_dim,):
            return vec, version
        log.info("re-projecting a %s embedding into the current projection %s", version, current.version)
        return current.project(raw), str(current.version)

    def _publish(self, video_id: str, visibility: Callable[[Video], str], *, validated_only: bool = False) -> None:
        """Write the row's vector into the index. The row is read again afterwards: when a projection refit
        changed it meanwhile, the new vector is written too (the index never keeps a vector of an old space)."""
        from reelforge.ports.vectors import VectorRecord

        written: tuple[str, bytes] | None = None
        for _ in range(4):
            with self.store.tx(write=False) as tx:
                v = MobsRepo(tx).video(video_id)
            if v is None or v.embedding is None or v.status == "deleted":
                return
            if validated_only and v.status != "validated":
                return
            key = (v.embed_model_version or "", bytes(v.embedding))
            if key == written:
                return
            vec = blob_to_f32(v.embedding)
            assert vec is not None
            self.vectors.upsert(NAMESPACE, [VectorRecord(id=v.id, vector=vec, owner_id=v.owner_id,
                                                         visibility=visibility(v), model_version=key[0])])
            written = key

    def apply_validation(self, video_id: str, result: dict[str, Any]) -> str:
        """Scores and status (validated/rejected) on the row. A video that is no longer validated leaves
        its mob and the index keeps it only privately."""
        status = result["status"]
        if status not in ("validated", "rejected"):
            raise errors.ReelforgeError(f"validation returned {status!r}", code="invalid_validation")
        with self.store.tx() as tx:
            repo = MobsRepo(tx)
            v = self._locked_live_video(repo, video_id)
            values: dict[str, Any] = {"status": status, "score": float(result["score"]), "scores": result,
                                      "error_code": None, "error_message": None}
            if status == "validated":
                values["validated_at"] = v.validated_at if v.status == "validated" and v.validated_at else tx.now()
            else:
                values["validated_at"] = None
                if v.mob_id:
                    self._leave(repo, v)
            repo.update_video(video_id, **values)
        if status == "rejected":
            self.vectors.delete(NAMESPACE, [video_id])
        return str(status)

    def assign(self, video_id: str) -> str | None:
        """Validated: join the nearest mob (or found one) and publish the vector. Idempotent."""
        with self.store.tx() as tx:
            repo = MobsRepo(tx)
            repo.lock_mobs()
            v = repo.video(video_id, lock=True)
            if v is None or v.status != "validated":
                return None
            if v.mob_id is None:
                self._join(repo, v)
            v = repo.video(video_id)
            assert v is not None
        if v.embedding is None:
            raise errors.ReelforgeError("video has no embedding", code="video_not_analyzed")
        self._publish(video_id, lambda row: "public" if row.visibility == "public" else "private",
                      validated_only=True)
        return v.mob_id

    def emit_analyzed(self, video_id: str, job_id: str) -> dict[str, Any]:
        """Write `video.analyzed` to the outbox once per analysis job (same transaction as the marker)."""
        with self.store.tx() as tx:
            repo = MobsRepo(tx)
            v = repo.video(video_id, lock=True)
            if v is None:
                raise errors.ReelforgeError("The video was deleted", code="video_deleted")
            payload = self.event_payload(v)
            if v.analyzed_job_id != job_id:
                tx.events.emit(EVENT_ANALYZED, payload, owner_id=v.owner_id, subject_id=v.id)
                repo.update_video(video_id, analyzed_job_id=job_id)
        return payload

    @staticmethod
    def event_payload(v: Video) -> dict[str, Any]:
        scores = v.scores or {}
        return {"video_id": v.id, "status": v.status, "score": v.score,
                "scores": {"score": scores.get("score"), "components": scores.get("components", {}),
                           "threshold": scores.get("threshold")},
                "mob_id": v.mob_id, "embed_model_version": v.embed_model_version}

    def mark_failed(self, video_id: str, code: str, message: str) -> None:
        """The analysis failed: status failed, the error kept; no score is written."""
        with self.store.tx() as tx:
            repo = MobsRepo(tx)
            v = repo.video(video_id, lock=True)
            if v is None or v.status == "deleted":
                return
            repo.update_video(video_id, status="failed", error_code=code[:100], error_message=message[:4000],
                              score=None, scores=None)

    # --- membership (under the mobs lock) ---------------------------------------------------------
    def _join(self, repo: MobsRepo, v: Video) -> str:
        vec = blob_to_f32(v.embedding)
        if vec is None:
            raise errors.ReelforgeError("video has no embedding", code="video_not_analyzed")
        version = v.embed_model_version or ""
        mobs = list(repo.mobs(status="active", model_version=version))
        cents = [(m.id, c) for m in mobs if (c := blob_to_vec(m.centroid)) is not None]
        best = cl.nearest(vec, cents)
        terms = cl.terms_of(v.analysis)
        if best is not None and best[1] <= self.cfg.mob_distance_threshold:
            m = next(x for x in mobs if x.id == best[0])
            c = cl.add_to_centroid(blob_to_vec(m.centroid), m.count, vec)
            counts = dict(m.term_counts or {})
            for t in terms:
                counts[t] = int(counts.get(t, 0)) + 1
            self._save_mob(repo, m.id, c, m.count + 1, counts)
            mob_id = m.id
        else:
            mob_id = new_id()
            counts = dict.fromkeys(terms, 1)
            top = cl.top_terms(counts, n=self.cfg.top_terms)
            repo.add_mob(id=mob_id, name=cl.mob_name(top, self.cfg.mob_name_terms), top_terms=top,
                         term_counts=counts, centroid=vec_to_blob(vec.astype(np.float64)), count=1,
                         model_version=version, status="active")
            repo.add_mob_event(mob_id, "created", details={"by": "assignment", "video_id": v.id,
                                                           "distance": round(best[1], 6) if best else None})
        repo.update_video(v.id, mob_id=mob_id)
        return mob_id

    def _leave(self, repo: MobsRepo, v: Video) -> None:
        """Take a member out: centroid and count by subtracting its vector; term counts likewise."""
        if not v.mob_id:
            return
        m = repo.mob(v.mob_id)
        repo.update_video(v.id, mob_id=None)
        if m is None:
            return
        vec = blob_to_f32(v.embedding)
        counts = dict(m.term_counts or {})
        for t in cl.terms_of(v.analysis):
            if t in counts:
                counts[t] = int(counts[t]) - 1
                if counts[t] <= 0:
                    del counts[t]
        c = blob_to_vec(m.centroid)
        if m.count <= 1 or c is None or vec is None:
            repo.update_mob(m.id, centroid=None, count=0, term_counts={}, top_terms=[], status="empty")
            repo.add_mob_event(m.id, "emptied", details={"video_id": v.id})
            return
        self._save_mob(repo, m.id, cl.remove_from_centroid(c, m.count, vec), m.count - 1, counts)

    def _save_mob(self, repo: MobsRepo, mob_id: str, centroid: np.ndarray | None, count: int,
                  counts: dict[str, int]) -> None:
        top = cl.top_terms(counts, n=self.cfg.top_terms)
        repo.update_mob(mob_id, centroid=vec_to_blob(centroid) if centroid is not None else None, count=count,
                        term_counts=counts, top_terms=top, name=cl.mob_name(top, self.cfg.mob_name_terms))

    # --- re-clustering -------------------------------------------------------------------------
    def tick(self, runner: str) -> bool:
        """Run the re-clustering when this caller wins the schedule's tick (one runner across workers); once a
        minute, queue analyses that a crash left unqueued."""
        with self.store.tx(write=False) as tx:
            resume_due = not tx.ops.schedule_pending(RESUME_SCHEDULE)
        if resume_due:
            with self.store.tx() as tx:
                resume_due = tx.ops.try_schedule(RESUME_SCHEDULE, 60.0, runner)
            if resume_due:
                try:
                    self.resume_stalled()
                except Exception:
                    log.exception("could not resume stalled uploads")
        interval = float(self.cfg.recluster_interval_s)
        if interval <= 0:
            return False
        with self.store.tx(write=False) as tx:
            if tx.ops.schedule_pending(SCHEDULE):
                return False
        with self.store.tx() as tx:
            due = tx.ops.try_schedule(SCHEDULE, interval, runner)
        if due:
            # Off the maintenance loop: k-means over many videos must not hold up lease reaping or deliveries.
            t = threading.Thread(target=self._recluster_logged, args=(runner,), name="reelforge-recluster",
                                 daemon=True)
            t.start()
            self._recluster_thread = t
        return bool(due)

    def _recluster_logged(self, runner: str) -> None:
        try:
            self.recluster(runner=runner)
        except Exception:
            log.exception("re-clustering failed")

    def recluster(self, *, runner: str | None = None) -> dict[str, Any]:
        """The local projection refitted when due (`refit_projection`), then k-means over every validated video
        of the newest embedding space; stable ids, splits and merges recorded, names from top terms; centroids
        and counts recomputed exactly from the members. The refit is recorded in the run's details."""
        run_id = new_id()
        with self.store.tx() as tx:
            MobsRepo(tx).add_run(id=run_id, runner=runner, status="running", started_at=tx.now(), videos=0,
                                 criterion=cl.CRITERION, model_version="", details={})
        try:
            projection = self.refit_projection(run_id=run_id)
        except Exception as exc:  # the clustering still runs, in the space the videos are in
            log.exception("refitting the embedding projection failed")
            projection = {"refit": False, "error": f"{type(exc).__name__}: {exc}"[:2000]}
        try:
            with self.store.tx(write=False) as tx:
                snapshot = MobsRepo(tx).validated_for_clustering()
            summary = self._recluster(run_id, snapshot, projection)
        except Exception as exc:
            with self.store.tx() as tx:
                repo = MobsRepo(tx)
                repo.update_run(run_id, status="failed", finished_at=tx.now(), error=str(exc)[:2000],
                                details=self._run_details(repo, run_id, {"projection": projection}))
            raise
        return summary

    # --- projection refit ------------------------------------------------------------------------
    @staticmethod
    def _run_details(repo: MobsRepo, run_id: str, details: dict[str, Any]) -> dict[str, Any]:
        """`details` added to what the run recorded so far (an `index_pending` mark stays until cleared)."""
        run = repo.run(run_id)
        return {**((run.details or {}) if run is not None else {}), **details}

    def refit_projection(self, *, run_id: str | None = None) -> dict[str, Any]:
        """Refit the local embedding's projection when it is due, and bring every stored vector into it.

        Due (clustering.refit_due): at least `projection_min_videos` validated local-model videos have raw
        features, and the current projection is the seeded random one or was fitted on fewer than half as
        many. The PCA is fitted on the raw features of the validated videos (rejected and failed ones say
        little about the content); every local-model video is re-projected.

        Then, holding the mobs lock: the new projection is saved (atomic file replace; adapters in every
        process load it on their next run), every local-model video whose vector is not in the current
        projection's space is re-projected from its raw features (this also repairs a refit interrupted
        after its save), and the mobs those videos belong to get the new version and centroids recomputed
        from the new vectors; ids and memberships stay. A member without raw features cannot follow and
        leaves its mob (videos stored since raw features are kept always have them). Last, the index gets the
        new vectors, each record keeping its visibility; a video not in the index (rejected) stays out.
        Videos of other embed models (hosted) are never touched.

        The re-clustering run (`run_id`) is marked `index_pending` in the same transaction as the rows and
        cleared once the index has every new vector; a mark left by a refit that stopped in between (the
        process died) makes the next call bring the index up to the rows first.
        """
        from reelforge.adapters.models.video_understanding import explained_variance, fit_projection

        cfg = self.cfg
        files = self.projections
        current = files.current()
        repaired = self._repair_index(current.version)
        with self.store.tx(write=False) as tx:
            n = MobsRepo(tx).count_raw_features(LOCAL_EMBED, status="validated")
        due, reason = cl.refit_due(n, min_videos=int(cfg.projection_min_videos), kind=current.kind,
                                   n_fit=current.n_fit)
        info: dict[str, Any] = {"refit": False, "reason": reason, "old_version": current.version,
                                "new_version": current.version, "videos": n, "n_fit": current.n_fit or None,
                                "explained_variance": None}
        new = None
        if due:
            with self.store.tx(write=False) as tx:
                rows = MobsRepo(tx).raw_features(LOCAL_EMBED, status="validated")
            raw = [r[4] for r in rows if r[4].shape == (files.in_dim,)]
            x = np.vstack(raw) if raw else np.zeros((0, files.in_dim), np.float32)
            fitted = fit_projection(x, files.dim, seed=files.seed)
            info["explained_variance"] = round(explained_variance(fitted, x), 6)
            if fitted.version == current.version:
                info["reason"] = "the refit gave the projection in use"
            else:
                new = fitted
                info.update(refit=True, new_version=fitted.version, n_fit=fitted.n_fit, videos=len(raw))
        moved = self._move_to_projection(new, run_id)
        info.update(moved)
        if repaired is not None:
            info["index_repaired"] = repaired
        if new is not None:
            log.info("embedding projection refitted: %s -> %s on %d videos (explained variance %s); "
                     "%d vectors re-projected", current.version, new.version, new.n_fit,
                     info["explained_variance"], moved["reprojected"])
        return info

    def _move_to_projection(self, new: Any, run_id: str | None) -> dict[str, Any]:
        """Save `new` (when given) and re-project every local-model vector not in the current space."""

        files = self.projections
        with self.store.tx() as tx:
            repo = MobsRepo(tx)
            repo.lock_mobs()
            if new is not None:
                files.save(new)
            target = files.current()
            stale = [r for r in repo.raw_features(LOCAL_EMBED, not_version=target.version)
                     if r[4].shape == (target.in_dim,)]
            if not stale:
                return {"reprojected": 0, "mobs_updated": 0, "left_mobs": 0, "indexed": 0}
            vectors = target.project(np.vstack([r[4] for r in stale]))
            repo.set_embeddings([(r[0], f32_to_blob(vec), target.version) for r, vec in
                                 zip(stale, vectors, strict=True)])
            if run_id is not None:
                repo.update_run(run_id, details=self._run_details(repo, run_id, {"index_pending": target.version}))
            mob_ids = sorted({r[2] for r in stale if r[2] and r[1] == "validated"})
            left = 0
            for mob_id, members in repo.mob_vectors(mob_ids).items():
                m = repo.mob(mob_id)
                if m is None or m.status != "active":
                    continue
                keep = [(vid, vec, an) for vid, ver, vec, an in members if ver == target.version and vec is not None]
                gone = [vid for vid, ver, vec, _an in members if ver != target.version or vec is None]
                for vid in gone:
                    repo.update_video(vid, mob_id=None)
                left += len(gone)
                c = cl.centroid([vec for _, vec, _ in keep])
                if c is None:
                    repo.update_mob(mob_id, centroid=None, count=0, term_counts={}, top_terms=[], status="empty",
                                    model_version=target.version)
                    repo.add_mob_event(mob_id, "emptied", details={"by": "projection refit"})
                    continue
                repo.update_mob(mob_id, model_version=target.version)
                if gone:
                    self._save_mob(repo, mob_id, c, len(keep), cl.term_counts(cl.terms_of(an) for _, _, an in keep))
                else:
                    repo.update_mob(mob_id, centroid=vec_to_blob(c), count=len(keep))
        indexed = self._reindex([(r[0], vec) for r, vec in zip(stale, vectors, strict=True)], target.version)
        if run_id is not None:
            with self.store.tx() as tx:
                repo = MobsRepo(tx)
                repo.update_run(run_id, details=self._run_details(repo, run_id, {"index_pending": None}))
        return {"reprojected": len(stale), "mobs_updated": len(mob_ids), "left_mobs": left, "indexed": indexed}

    def _reindex(self, items: builtins.list[tuple[str, np.ndarray]], version: str) -> int:
        """Put (id, vector) into the index in `version`, each record keeping its owner and visibility; ids
        not in the index (rejected videos) stay out."""
        from reelforge.ports.vectors import VectorRecord

        n = 0
        for vid, vec in items:
            rec = self.vectors.get(NAMESPACE, vid)
            if rec is None:
                continue
            if rec.model_version != version or not np.array_equal(np.asarray(rec.vector, np.float32), vec):
                self.vectors.upsert(NAMESPACE, [VectorRecord(id=vid, vector=vec, owner_id=rec.owner_id,
                                                             visibility=rec.visibility, model_version=version)])
            n += 1
        return n

    def _repair_index(self, version: str) -> int | None:
        """When a refit stopped between its row update and the end of its index update (an `index_pending`
        run), the index gets the rows' vectors of `version` now; returns how many (None: nothing pending)."""
        with self.store.tx(write=False) as tx:
            repo = MobsRepo(tx)
            pending = [r.id for r in repo.runs(50) if (r.details or {}).get("index_pending")]
            if not pending:
                return None
            rows = repo.embeddings(LOCAL_EMBED, version)
        n = self._reindex(rows, version)
        with self.store.tx() as tx:
            repo = MobsRepo(tx)
            for run_id in pending:
                repo.update_run(run_id, details=self._run_details(repo, run_id, {"index_pending": None}))
        log.warning("a projection refit had stopped before the index was updated; %d index records checked", n)
        return n

    def _recluster(self, run_id: str, snapshot: builtins.list[Any],
                   projection: dict[str, Any] | None = None) -> dict[str, Any]:
        cfg = self.cfg
        versions = [s[2] or "" for s in snapshot if s[3] is not None]
        version = versions[-1] if versions else ""
        rows = [s for s in snapshot if s[3] is not None and (s[2] or "") == version]
        ids = [r[0] for r in rows]
        if not rows:
            with self.store.tx() as tx:
                repo = MobsRepo(tx)
                repo.update_run(run_id, status="succeeded", finished_at=tx.now(), videos=0, k=0,
                                details=self._run_details(repo, run_id, {"projection": projection}))
            return {"run_id": run_id, "videos": 0, "k": 0, "events": [], "projection": projection}
        x = np.vstack([r[3] for r in rows]).astype(np.float64)
        choice = cl.choose_k(x, k_min=cfg.recluster_k_min, k_max=max(cfg.recluster_k_min, cfg.recluster_k_max),
                             seed=cfg.recluster_seed, min_silhouette=cfg.recluster_min_silhouette)
        k = max(1, choice.k)
        new_sets = [{ids[i] for i in range(len(ids)) if int(choice.labels[i]) == c} for c in range(k)]
        events: builtins.list[dict[str, Any]] = []
        with self.store.tx() as tx:
            repo = MobsRepo(tx)
            repo.lock_mobs()
            old_sets: dict[str, set[str]] = {}
            in_run = set(ids)
            for vid, mob_id, _ver, _vec, _an in repo.validated_for_clustering():
                if mob_id and vid in in_run:
                    old_sets.setdefault(mob_id, set()).add(vid)
            plan = cl.match_clusters(new_sets, old_sets)
            cluster_ids = [mid or new_id() for mid in plan.ids]
            now = tx.now()
            for i, mid in enumerate(plan.ids):
                if mid is None:
                    repo.add_mob(id=cluster_ids[i], name="", top_terms=[], term_counts={}, centroid=None, count=0,
                                 model_version=version, status="active", created_at=now, updated_at=now)
                else:
                    repo.update_mob(mid, status="active", merged_into=None, model_version=version)
            for i, parent, moved in plan.splits:
                d = {"parent": parent, "child": cluster_ids[i], "moved": moved}
                repo.add_mob_event(cluster_ids[i], "split", run_id=run_id, details=d)
                repo.add_mob_event(parent, "split", run_id=run_id, details=d)
                events.append({"kind": "split", **d})
            for i in plan.created:
                repo.add_mob_event(cluster_ids[i], "created", run_id=run_id, details={"by": "recluster",
                                                                                       "members": len(new_sets[i])})
                events.append({"kind": "created", "mob_id": cluster_ids[i]})
            merged_into: dict[str, str] = {}
            for old, i, moved in plan.merges:
                d = {"from": old, "into": cluster_ids[i], "moved": moved}
                merged_into[old] = cluster_ids[i]
                repo.update_mob(old, status="merged", merged_into=cluster_ids[i], centroid=None, count=0,
                                term_counts={}, top_terms=[])
                repo.add_mob_event(old, "merge", run_id=run_id, details=d)
                repo.add_mob_event(cluster_ids[i], "merge", run_id=run_id, details=d)
                events.append({"kind": "merge", **d})
            for old in plan.emptied:
                repo.update_mob(old, status="empty", centroid=None, count=0, term_counts={}, top_terms=[])
                repo.add_mob_event(old, "emptied", run_id=run_id, details={})
            label_of = {vid: cluster_ids[c] for c, members in enumerate(new_sets) for vid in members}
            # Videos validated since the snapshot keep their mob (following a merge).
            current = repo.validated_for_clustering()
            touched: set[str] = set(cluster_ids)
            for vid, mob_id, _ver, _vec, _an in current:
                target = label_of.get(vid)
                if target is None and mob_id in merged_into:
                    target = merged_into[mob_id]
                if target is not None and target != mob_id:
                    repo.update_video(vid, mob_id=target)
                if mob_id:
                    touched.add(mob_id)
                if target:
                    touched.add(target)
            # Exact centroids, counts and names from the members.
            by_mob: dict[str, builtins.list[tuple[np.ndarray, builtins.list[str]]]] = {}
            for vid, _mob_id, _ver, vec, an in repo.validated_for_clustering():
                fresh = repo.video(vid)
                if fresh is None or fresh.mob_id is None or vec is None:
                    continue
                by_mob.setdefault(fresh.mob_id, []).append((vec.astype(np.float64), cl.terms_of(an)))
            counts_of = {m: cl.term_counts(t for _, t in members) for m, members in by_mob.items()}
            df = cl.term_counts(list(c) for c in counts_of.values())
            for mob_id in touched:
                m = repo.mob(mob_id)
                if m is None or m.status == "merged":
                    continue
                members = by_mob.get(mob_id, [])
                if not members:
                    if m.status == "active":
                        repo.update_mob(mob_id, status="empty", centroid=None, count=0, term_counts={},
                                        top_terms=[])
                        repo.add_mob_event(mob_id, "emptied", run_id=run_id, details={})
                    continue
                centroid = np.mean(np.vstack([v for v, _ in members]), axis=0)
                counts = counts_of[mob_id]
                top = cl.top_terms(counts, n=cfg.top_terms, df=df, groups=max(1, len(counts_of)))
                repo.update_mob(mob_id, status="active", centroid=vec_to_blob(centroid), count=len(members),
                                term_counts=counts, top_terms=top, name=cl.mob_name(top, cfg.mob_name_terms))
            repo.update_run(run_id, status="succeeded", finished_at=tx.now(), videos=len(ids), k=k,
                            score=choice.score, model_version=version,
                            details=self._run_details(repo, run_id, {
                                "silhouette_by_k": {str(kk): round(s, 6) for kk, s in choice.scores.items()},
                                "mobs": cluster_ids, "events": events, "projection": projection}))
        return {"run_id": run_id, "videos": len(ids), "k": k, "score": choice.score, "mobs": cluster_ids,
                "events": events, "projection": projection}

    def runs(self, limit: int = 10) -> builtins.list[Any]:
        with self.store.tx(write=False) as tx:
            return list(MobsRepo(tx).runs(limit))

    # --- execution history -----------------------------------------------------------------------
    def history(self, p: Principal, video_id: str) -> tuple[Video, builtins.list[Any]]:
        with self.store.tx(write=False) as tx:
            repo = MobsRepo(tx)
            v = self._get_own(repo, p, video_id)
            events = list(repo.job_events(v.job_id)) if v.job_id else []
        return v, events

    # --- admin ------------------------------------------------------------------------------------
    def admin_list(self, *, status: str | None = None, owner_id: str | None = None, limit: int = 50,
                   cursor: str | None = None) -> Page:
        if status is not None and status not in VIDEO_STATUSES:
            raise errors.ValidationFailed(f"status must be one of {', '.join(VIDEO_STATUSES)}",
                                          code="invalid_status", field="status")
        cur = decode_cursor(cursor)
        with self.store.tx(write=False) as tx:
            rows = list(MobsRepo(tx).list_videos(owner_id=owner_id, status=status, limit=limit + 1, cursor=cur))
        return self._page(rows, limit, lambda v: v.created_at)

    def admin_delete(self, video_id: str) -> Video:
        """Remove the video's objects, its vector and its mob membership (count and centroid corrected by
        subtracting its vector). The row stays as a `deleted` tombstone without analysis or scores."""
        _check_id(video_id, "video")
        with self.store.tx() as tx:
            repo = MobsRepo(tx)
            repo.lock_mobs()
            v = repo.video(video_id, lock=True)
            if v is None or v.status == "deleted":
                raise errors.NotFound("Video not found", code="video_not_found")
            self._leave(repo, v)
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
            self.objects.delete(a.key)
        if upload_key:
            self.objects.delete(upload_key)
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

    def usage(self, *, days: int = 14) -> builtins.list[dict[str, Any]]:
        """Model invocations and units processed per model per day (from the model invocation metering)."""
        if not 1 <= days <= 366:
            raise errors.ValidationFailed("days must be between 1 and 366", code="invalid_days", field="days")
        with self.store.tx(write=False) as tx:
            now = tx.now()
            since = (int(now // 86400) - (days - 1)) * 86400.0
            return MobsRepo(tx).usage_per_day(since)
