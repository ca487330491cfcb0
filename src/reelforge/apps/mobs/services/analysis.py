"""The analysis pipeline's writes and validation: the job's start, the analysis results and vector, the
validation scores (applied by the pipeline, or again on request), the `video.analyzed` event and failure.

A video's vector enters the index private, becomes public once the video is validated and public, and a
rejected video's vector leaves the index (its copy stays on the row for re-validation).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from reelforge import errors
from reelforge.apps.mobs.repository import MobsRepo, Video, f32_to_blob
from reelforge.apps.mobs.services.base import (
    EVENT_ANALYZED,
    LOCAL_EMBED,
    NAMESPACE,
    MobsContext,
    Part,
    get_own,
    get_visible,
)
from reelforge.apps.mobs.services.grouping import Grouping
from reelforge.domain.types import Principal


class Analysis(Part):
    def __init__(self, ctx: MobsContext, grouping: Grouping) -> None:
        super().__init__(ctx)
        self.grouping = grouping

    def validation(self, p: Principal, video_id: str) -> Video:
        """A video this viewer may see, once it has validation scores."""
        with self.store.tx(write=False) as tx:
            v = get_visible(MobsRepo(tx), p, video_id)
        if v.scores is None:
            raise errors.Conflict("This video has not been validated yet", code="video_not_analyzed",
                                  video_status=v.status)
        return v

    def revalidate(self, p: Principal, video_id: str) -> Video:
        """Run validation again on the stored analysis with the current settings (owner or admin)."""
        with self.store.tx(write=False) as tx:
            v = get_own(MobsRepo(tx), p, video_id)
        if v.analysis is None or v.embedding is None or v.status not in ("validated", "rejected"):
            raise errors.Conflict(f"Video is {v.status}; only analysed videos can be validated again",
                                  code="video_not_analyzed", video_status=v.status)
        result = self.compute_validation(v.analysis, video_id=v.id)
        self.apply_validation(v.id, result)
        self.grouping.assign(v.id)
        with self.store.tx(write=False) as tx:
            fresh = MobsRepo(tx).video(v.id)
        assert fresh is not None
        return fresh

    def compute_validation(self, analysis: dict[str, Any], *, video_id: str | None = None) -> dict[str, Any]:
        """The weighted multimodal score of a stored participation analysis (computed, never defaulted). With
        `video_id`, the terms of the mob the video lies within are evidence for its hashtags
        (Grouping.nearby_terms)."""
        from reelforge.apps.mobs.models import validate_scores
        from reelforge.apps.mobs.ports import ParticipationResult

        fields = ParticipationResult.__dataclass_fields__
        data = {k: analysis[k] for k in fields if k in analysis}
        data["notes"] = tuple(data.get("notes") or ())
        context = self.grouping.nearby_terms(video_id) if video_id else []
        res = validate_scores(ParticipationResult(**data), self.ctx.settings, context_terms=context)
        return {"status": res.status, "score": float(res.score), "components": dict(res.components),
                "reasons": list(res.reasons), "threshold": float(res.threshold)}

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
                vec, model_version = self.grouping.in_current_space(raw, vec, model_version)
            repo.update_video(video_id, analysis=analysis, embedding=f32_to_blob(vec),
                              raw_features=f32_to_blob(raw) if raw is not None else None,
                              embed_model_version=model_version, participation_model=participation_model,
                              embed_model=embed_model, thumbnail_asset_id=thumbnail_asset_id, analyzed_at=tx.now())
        self.grouping.publish(video_id, lambda _v: "private")

    @staticmethod
    def _locked_live_video(repo: MobsRepo, video_id: str) -> Video:
        """Under the mobs lock: the video's row, locked, unless it was deleted meanwhile."""
        repo.lock_mobs()
        v = repo.video(video_id, lock=True)
        if v is None or v.status == "deleted":
            raise errors.ReelforgeError("The video was deleted", code="video_deleted")
        return v

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
                    self.grouping.leave(repo, v)
            repo.update_video(video_id, **values)
        if status == "rejected":
            self.vectors.delete(NAMESPACE, [video_id])
        return str(status)

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
        """The `video.analyzed` event's body."""
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
