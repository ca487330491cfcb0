"""Tables and SQL of the video-understanding application ("mobs"): videos, mobs, mob events, re-cluster runs.

Same Base as adapters/db/models.py (one metadata, one Alembic history: migration 0004). Services open a
transaction with `Store.tx()` and wrap it: `MobsRepo(tx)`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy import (
    JSON,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    and_,
    bindparam,
    case,
    cast,
    delete,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from reelforge.adapters.db.models import ID, Asset, Base, Job, JobEvent, ModelInvocation
from reelforge.adapters.db.repositories.base import AppRepository

JSONType = JSON().with_variant(JSONB(), "postgresql")

# One PostgreSQL advisory lock serializes mob membership changes (incremental assignment, deletes,
# re-clustering) across workers; on SQLite every writer already holds the database's write lock.
_MOBS_LOCK = 0x6D6F6273  # "mobs"


def vec_to_blob(v: np.ndarray) -> bytes:
    return np.asarray(v, dtype=np.float64).tobytes()


def blob_to_vec(b: bytes | None) -> np.ndarray | None:
    if not b:
        return None
    return np.frombuffer(b, dtype=np.float64).copy()


def f32_to_blob(v: np.ndarray) -> bytes:
    return np.asarray(v, dtype=np.float32).tobytes()


def blob_to_f32(b: bytes | None) -> np.ndarray | None:
    if not b:
        return None
    return np.frombuffer(b, dtype=np.float32).copy()


class Video(Base):
    __tablename__ = "videos"
    __table_args__ = (
        Index("ix_videos_owner_created", "owner_id", "created_at"),
        Index("ix_videos_feed_new", "status", "visibility", "validated_at"),
        Index("ix_videos_feed_score", "status", "visibility", "score"),
        Index("ix_videos_mob", "mob_id"),
    )
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    upload_id: Mapped[str | None] = mapped_column(ID, nullable=True, unique=True)
    asset_id: Mapped[str | None] = mapped_column(ID, nullable=True)
    caption: Mapped[str] = mapped_column(Text, default="")
    filename: Mapped[str | None] = mapped_column(String(500), nullable=True)
    # uploading | processing | validated | rejected | failed | deleted
    status: Mapped[str] = mapped_column(String(16))
    visibility: Mapped[str] = mapped_column(String(16), default="public")
    score: Mapped[float | None] = mapped_column(Float, nullable=True)
    scores: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    analysis: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    # The embedding as stored in the vector index (float32), kept for re-validation and mob arithmetic.
    embedding: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    # The unprojected features the embedding was projected from (float32; local model only), so a refitted
    # projection re-projects the video without it. Deferred: read only by the queries that need it.
    raw_features: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True, deferred=True)
    thumbnail_asset_id: Mapped[str | None] = mapped_column(ID, nullable=True)
    mob_id: Mapped[str | None] = mapped_column(ID, nullable=True)
    job_id: Mapped[str | None] = mapped_column(ID, nullable=True, index=True)
    participation_model: Mapped[str | None] = mapped_column(String(100), nullable=True)
    embed_model: Mapped[str | None] = mapped_column(String(100), nullable=True)
    embed_model_version: Mapped[str | None] = mapped_column(String(100), nullable=True)
    error_code: Mapped[str | None] = mapped_column(String(100), nullable=True)
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    # The job whose `video.analyzed` event was written (the emit step is idempotent on it).
    analyzed_job_id: Mapped[str | None] = mapped_column(ID, nullable=True)
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)
    analyzed_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    validated_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    deleted_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class Mob(Base):
    __tablename__ = "mobs"
    __table_args__ = (Index("ix_mobs_status", "status"),)
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    top_terms: Mapped[list[Any]] = mapped_column(JSONType, default=list)
    # term -> number of member videos carrying it (names and top terms follow membership exactly)
    term_counts: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    centroid: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)  # float64, mean of members
    count: Mapped[int] = mapped_column(Integer, default=0)
    model_version: Mapped[str] = mapped_column(String(100), default="")
    # active | empty | merged
    status: Mapped[str] = mapped_column(String(16), default="active")
    merged_into: Mapped[str | None] = mapped_column(ID, nullable=True)
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)


class MobEvent(Base):
    """Append-only: mobs created, split, merged, emptied (per re-cluster run, or by incremental assignment)."""

    __tablename__ = "mob_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str | None] = mapped_column(ID, nullable=True, index=True)
    mob_id: Mapped[str] = mapped_column(ID, index=True)
    kind: Mapped[str] = mapped_column(String(16))
    details: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    ts: Mapped[float] = mapped_column(Float)


class ReclusterRun(Base):
    __tablename__ = "recluster_runs"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    runner: Mapped[str | None] = mapped_column(String(200), nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="running")
    started_at: Mapped[float] = mapped_column(Float, index=True)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    videos: Mapped[int] = mapped_column(Integer, default=0)
    k: Mapped[int | None] = mapped_column(Integer, nullable=True)
    criterion: Mapped[str] = mapped_column(String(64), default="")
    score: Mapped[float | None] = mapped_column(Float, nullable=True)
    model_version: Mapped[str] = mapped_column(String(100), default="")
    details: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)


VISIBLE_STATUSES = ("validated",)

# --- video cards: what a list of videos shows, one SELECT with the storage keys of its video and thumbnail -----
# Lists (the feed, similar search) need neither the analysis, the scores nor the vectors, and building ORM
# objects for them (JSON columns decoded, blobs copied) cost more than the rest of the request. A card is a
# Core row of these columns, read on the event loop through `Store.reads` where the route is async. The video's
# and the thumbnail's assets are joined only when they are the video owner's (what the answer's signed URLs
# point at), so a list needs no second query for its URLs.
_V = Video.__table__.c
_THUMB = Asset.__table__.alias("thumb")
_SRC = Asset.__table__.alias("src")
CARD_COLUMNS = (
    _V.id, _V.owner_id, _V.status, _V.visibility, _V.caption, _V.filename, _V.score, _V.mob_id, _V.job_id,
    _V.embed_model_version, _V.error_code, _V.error_message, _V.created_at, _V.validated_at,
    _V.thumbnail_asset_id, _THUMB.c.key.label("thumb_key"), _THUMB.c.filename.label("thumb_filename"),
    _THUMB.c.content_type.label("thumb_content_type"),
    _V.asset_id, _SRC.c.key.label("video_key"), _SRC.c.filename.label("video_filename"),
    _SRC.c.content_type.label("video_content_type"),
)
_CARDS = select(*CARD_COLUMNS).select_from(
    Video.__table__
    .outerjoin(_THUMB, and_(_THUMB.c.id == _V.thumbnail_asset_id, _THUMB.c.owner_id == _V.owner_id))
    .outerjoin(_SRC, and_(_SRC.c.id == _V.asset_id, _SRC.c.owner_id == _V.owner_id)))


@functools.cache
def feed_cards(order: str, mob: bool, cursor: bool) -> Any:
    """Validated public videos, newest (validated_at) or best (score) first (parameters: limit, and mob_id,
    after_key and after_id as named): the statement of `MobsRepo.feed`, as cards."""
    col = _V.validated_at if order == "new" else _V.score
    q = _CARDS.where(_V.status == "validated", _V.visibility == "public")
    if mob:
        q = q.where(_V.mob_id == bindparam("mob_id"))
    if cursor:
        key: Any = bindparam("after_key")
        q = q.where(or_(col < key, and_(col == key, _V.id < bindparam("after_id"))))
    return q.order_by(col.desc(), _V.id.desc()).limit(bindparam("limit"))


@functools.cache
def cards_by_ids(n: int) -> Any:
    """Cards of `n` videos named by the parameters id0 ... id<n-1> (one statement per count, compiled once)."""
    return _CARDS.where(_V.id.in_([bindparam(f"id{i}") for i in range(n)]))


# The source of a similar-video search: what visibility needs, and the vector.
SEARCH_SOURCE = select(_V.id, _V.owner_id, _V.status, _V.visibility, _V.embedding, _V.embed_model_version).where(
    _V.id == bindparam("video_id"))


class MobsRepo(AppRepository):
    """SQL for the mobs use cases on one open transaction (the `UnitOfWork` of ports/repositories.py)."""

    def lock_mobs(self) -> None:
        """Serialize membership changes (PostgreSQL: transaction-scoped advisory lock)."""
        if self.pg:
            self.s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MOBS_LOCK})

    # --- videos ---------------------------------------------------------------------------------
    def add_video(self, **values: Any) -> Video:
        now = self.now()
        v = Video(created_at=now, updated_at=now, **values)
        self.s.add(v)
        self.tx.flush()
        return v

    def video(self, video_id: str, *, lock: bool = False) -> Video | None:
        q = select(Video).where(Video.id == video_id)
        if lock and self.pg:
            q = q.with_for_update()
        return self.s.execute(q).scalar_one_or_none()

    def update_video(self, video_id: str, **values: Any) -> None:
        values.setdefault("updated_at", self.now())
        self.s.execute(update(Video).where(Video.id == video_id).values(**values))
        self.s.expire_all()

    def video_objects(self, videos: Sequence[Video]) -> dict[str, Any]:
        """The stored video and thumbnail of these videos (assets of each video's owner), by asset id: one
        SELECT whatever the number of videos."""
        owners = {a: v.owner_id for v in videos for a in (v.asset_id, v.thumbnail_asset_id) if a}
        if not owners:
            return {}
        a = Asset.__table__.c
        rows = self.s.execute(select(a.id, a.owner_id, a.key, a.filename, a.content_type)
                              .where(a.id.in_(list(owners)))).all()
        return {r.id: r for r in rows if owners.get(r.id) == r.owner_id}

    def jobs_of(self, job_ids: Sequence[str]) -> dict[str, Any]:
        """Status and error of these jobs, by id (one SELECT)."""
        if not job_ids:
            return {}
        j = Job.__table__.c
        rows = self.s.execute(select(j.id, j.status, j.error_code, j.error_message)
                              .where(j.id.in_(list(dict.fromkeys(job_ids))))).all()
        return {r.id: r for r in rows}

    def list_videos(self, *, owner_id: str | None, status: str | None = None, limit: int = 50,
                    cursor: tuple[float, str] | None = None, include_deleted: bool = False,
                    visibility: str | None = None) -> Sequence[Video]:
        q = select(Video)
        if owner_id is not None:
            q = q.where(Video.owner_id == owner_id)
        if visibility is not None:
            q = q.where(Video.visibility == visibility)
        if status:
            q = q.where(Video.status == status)
        elif not include_deleted:
            q = q.where(Video.status != "deleted")
        if cursor:
            created, vid = cursor
            q = q.where(or_(Video.created_at < created, and_(Video.created_at == created, Video.id < vid)))
        return self.s.execute(q.order_by(Video.created_at.desc(), Video.id.desc()).limit(limit)).scalars().all()

    def stalled_uploads(self, limit: int = 100) -> list[tuple[Video, str]]:
        """Videos still `uploading` whose upload was completed but whose analysis job was never queued (the
        process stopped between the two): (video, completed asset id)."""
        from reelforge.adapters.db.models import Upload

        rows = self.s.execute(
            select(Video, Upload.asset_id).join(Upload, Upload.id == Video.upload_id)
            .where(Video.status == "uploading", Video.job_id.is_(None), Upload.status == "completed",
                   Upload.asset_id.is_not(None)).limit(limit)
        ).all()
        return [(r[0], str(r[1])) for r in rows]

    def feed(self, *, order: str, mob_id: str | None, limit: int,
             cursor: tuple[float, str] | None) -> Sequence[Video]:
        """Validated public videos, newest (validated_at) or best (score) first; keyset pagination."""
        col = Video.validated_at if order == "new" else Video.score
        q = select(Video).where(Video.status == "validated", Video.visibility == "public")
        if mob_id:
            q = q.where(Video.mob_id == mob_id)
        if cursor:
            key, vid = cursor
            q = q.where(or_(col < key, and_(col == key, Video.id < vid)))
        return self.s.execute(q.order_by(col.desc(), Video.id.desc()).limit(limit)).scalars().all()

    def mob_members(self, mob_id: str, *, viewer_id: str | None, limit: int = 200) -> Sequence[Video]:
        """Validated members a viewer may see: public ones, plus the viewer's own (None: public only)."""
        vis = Video.visibility == "public"
        if viewer_id is not None:
            vis = or_(vis, Video.owner_id == viewer_id)
        q = select(Video).where(Video.mob_id == mob_id, Video.status == "validated", vis)
        return self.s.execute(q.order_by(Video.score.desc(), Video.id).limit(limit)).scalars().all()

    def members_with_vectors(self, mob_id: str) -> list[tuple[str, np.ndarray | None, dict[str, Any] | None]]:
        rows = self.s.execute(
            select(Video.id, Video.embedding, Video.analysis).where(Video.mob_id == mob_id,
                                                                     Video.status == "validated")
        ).all()
        return [(r[0], blob_to_f32(r[1]), r[2]) for r in rows]

    def validated_for_clustering(self) -> list[tuple[str, str | None, str | None, np.ndarray | None,
                                                     dict[str, Any] | None]]:
        """(id, mob_id, model version, vector, analysis) of every validated video (any visibility)."""
        rows = self.s.execute(
            select(Video.id, Video.mob_id, Video.embed_model_version, Video.embedding, Video.analysis)
            .where(Video.status == "validated").order_by(Video.created_at, Video.id)
        ).all()
        return [(r[0], r[1], r[2], blob_to_f32(r[3]), r[4]) for r in rows]

    def raw_features(self, embed_model: str, *, status: str | None = None, not_version: str | None = None
                     ) -> list[tuple[str, str, str | None, str | None, np.ndarray]]:
        """(id, status, mob id, model version, raw features) of every video of `embed_model` that has raw
        features (deleted ones never do), optionally of one status or only those not in `not_version`;
        oldest first."""
        q = select(Video.id, Video.status, Video.mob_id, Video.embed_model_version, Video.raw_features).where(
            Video.embed_model == embed_model, Video.raw_features.is_not(None), Video.status != "deleted")
        if status is not None:
            q = q.where(Video.status == status)
        if not_version is not None:
            q = q.where(or_(Video.embed_model_version.is_(None), Video.embed_model_version != not_version))
        rows = self.s.execute(q.order_by(Video.created_at, Video.id)).all()
        out = []
        for r in rows:
            raw = blob_to_f32(r[4])
            if raw is not None:
                out.append((r[0], r[1], r[2], r[3], raw))
        return out

    def embeddings(self, embed_model: str, version: str) -> list[tuple[str, np.ndarray]]:
        """(id, vector) of every video of `embed_model` whose vector is in `version` (deleted ones have none)."""
        rows = self.s.execute(
            select(Video.id, Video.embedding).where(Video.embed_model == embed_model,
                                                    Video.embed_model_version == version,
                                                    Video.embedding.is_not(None)).order_by(Video.id)
        ).all()
        out = []
        for vid, blob in rows:
            vec = blob_to_f32(blob)
            if vec is not None:
                out.append((vid, vec))
        return out

    def count_validated(self) -> int:
        return int(self.s.execute(select(func.count()).select_from(Video)
                                  .where(Video.status == "validated")).scalar_one())

    def count_raw_features(self, embed_model: str, *, status: str = "validated") -> int:
        return int(self.s.execute(
            select(func.count()).select_from(Video).where(Video.embed_model == embed_model, Video.status == status,
                                                          Video.raw_features.is_not(None))).scalar_one())

    def set_embeddings(self, rows: Sequence[tuple[str, bytes, str]]) -> None:
        """(id, float32 vector blob, model version) for many videos at once (a projection refit)."""
        if not rows:
            return
        now = self.now()
        self.s.execute(update(Video), [{"id": vid, "embedding": blob, "embed_model_version": ver, "updated_at": now}
                                       for vid, blob, ver in rows])
        self.s.expire_all()

    def mob_vectors(self, mob_ids: Sequence[str]
                    ) -> dict[str, list[tuple[str, str | None, np.ndarray | None, dict[str, Any] | None]]]:
        """Validated members of each mob: (id, model version, vector, analysis)."""
        out: dict[str, list[tuple[str, str | None, np.ndarray | None, dict[str, Any] | None]]] = {
            m: [] for m in mob_ids}
        if not mob_ids:
            return out
        rows = self.s.execute(
            select(Video.mob_id, Video.id, Video.embed_model_version, Video.embedding, Video.analysis)
            .where(Video.mob_id.in_(list(mob_ids)), Video.status == "validated").order_by(Video.id)
        ).all()
        for mob_id, vid, ver, emb, an in rows:
            out[mob_id].append((vid, ver, blob_to_f32(emb), an))
        return out

    def status_counts(self) -> dict[str, int]:
        rows = self.s.execute(select(Video.status, func.count()).group_by(Video.status)).all()
        return {r[0]: int(r[1]) for r in rows}

    def score_summary(self) -> dict[str, float | None]:
        avg_v, avg_r = self.s.execute(select(
            func.avg(case((Video.status == "validated", Video.score), else_=None)),
            func.avg(case((Video.status == "rejected", Video.score), else_=None)),
        )).one()
        return {"validated_mean": float(avg_v) if avg_v is not None else None,
                "rejected_mean": float(avg_r) if avg_r is not None else None}

    def visible_counts(self, mob_ids: Sequence[str], viewer_id: str | None) -> dict[str, int]:
        if not mob_ids:
            return {}
        vis = Video.visibility == "public"
        if viewer_id is not None:
            vis = or_(vis, Video.owner_id == viewer_id)
        rows = self.s.execute(
            select(Video.mob_id, func.count()).where(Video.mob_id.in_(list(mob_ids)), Video.status == "validated",
                                                     vis).group_by(Video.mob_id)
        ).all()
        return {r[0]: int(r[1]) for r in rows}

    def first_thumbnails(self, mob_ids: Sequence[str], per_mob: int = 4) -> dict[str, list[Any]]:
        """A few thumbnails of public validated members per mob (best first): the assets' id, key, filename
        and content type (the video owner's assets only), in one SELECT."""
        out: dict[str, list[Any]] = {}
        if not mob_ids:
            return out
        a = Asset.__table__.c
        rows = self.s.execute(
            select(Video.mob_id, a.id, a.key, a.filename, a.content_type)
            .join(Asset.__table__, and_(a.id == Video.thumbnail_asset_id, a.owner_id == Video.owner_id))
            .where(Video.mob_id.in_(list(mob_ids)), Video.status == "validated", Video.visibility == "public")
            .order_by(Video.score.desc(), Video.id)
        ).all()
        for row in rows:
            lst = out.setdefault(row.mob_id, [])
            if len(lst) < per_mob:
                lst.append(row)
        return out

    # --- mobs -------------------------------------------------------------------------------------
    def add_mob(self, **values: Any) -> Mob:
        now = self.now()
        values.setdefault("created_at", now)
        values.setdefault("updated_at", now)
        m = Mob(**values)
        self.s.add(m)
        self.tx.flush()
        return m

    def mob(self, mob_id: str) -> Mob | None:
        return self.s.get(Mob, mob_id)

    def mobs(self, *, status: str | None = "active", model_version: str | None = None) -> Sequence[Mob]:
        q = select(Mob)
        if status:
            q = q.where(Mob.status == status)
        if model_version is not None:
            q = q.where(Mob.model_version == model_version)
        return self.s.execute(q.order_by(Mob.count.desc(), Mob.created_at, Mob.id)).scalars().all()

    def update_mob(self, mob_id: str, **values: Any) -> None:
        values.setdefault("updated_at", self.now())
        self.s.execute(update(Mob).where(Mob.id == mob_id).values(**values))
        self.s.expire_all()

    def add_mob_event(self, mob_id: str, kind: str, *, run_id: str | None = None,
                      details: dict[str, Any] | None = None) -> None:
        self.s.add(MobEvent(mob_id=mob_id, kind=kind, run_id=run_id, details=details or {}, ts=self.now()))

    def mob_events(self, *, mob_id: str | None = None, run_id: str | None = None,
                   limit: int = 200) -> Sequence[MobEvent]:
        q = select(MobEvent)
        if mob_id:
            q = q.where(MobEvent.mob_id == mob_id)
        if run_id:
            q = q.where(MobEvent.run_id == run_id)
        return self.s.execute(q.order_by(MobEvent.id.desc()).limit(limit)).scalars().all()

    def add_run(self, **values: Any) -> ReclusterRun:
        r = ReclusterRun(**values)
        self.s.add(r)
        self.tx.flush()
        return r

    def run(self, run_id: str) -> ReclusterRun | None:
        return self.s.get(ReclusterRun, run_id)

    def runs(self, limit: int = 10) -> Sequence[ReclusterRun]:
        return self.s.execute(
            select(ReclusterRun).order_by(ReclusterRun.started_at.desc(), ReclusterRun.id).limit(limit)
        ).scalars().all()

    def update_run(self, run_id: str, **values: Any) -> None:
        self.s.execute(update(ReclusterRun).where(ReclusterRun.id == run_id).values(**values))
        self.s.expire_all()

    # --- an account's export and deletion ----------------------------------------------------------------
    def owned_videos(self, owner_id: str, *, after: str | None = None, limit: int = 100) -> Sequence[Video]:
        """One page of the account's videos of every status (tombstones too), by id (after `after`)."""
        q = select(Video).where(Video.owner_id == owner_id)
        if after is not None:
            q = q.where(Video.id > after)
        return self.s.execute(q.order_by(Video.id).limit(limit)).scalars().all()

    def events_of_videos(self, video_ids: Sequence[str]) -> Sequence[MobEvent]:
        """The mob events that name one of these videos (`details.video_id`), oldest first."""
        if not video_ids:
            return []
        q = select(MobEvent).where(MobEvent.details["video_id"].as_string().in_(list(video_ids)))
        return self.s.execute(q.order_by(MobEvent.id)).scalars().all()

    def forget_videos(self, video_ids: Sequence[str]) -> None:
        """Delete these video rows, and their ids from the mob events that name them (the events of the shared
        mobs stay, without the video)."""
        if not video_ids:
            return
        self.s.flush()  # events added earlier in this transaction (a mob emptied by a leave) are searched too
        for e in self.events_of_videos(video_ids):
            self.s.execute(update(MobEvent).where(MobEvent.id == e.id).values(
                details={k: v for k, v in (e.details or {}).items() if k != "video_id"}))
        self.s.execute(delete(Video).where(Video.id.in_(list(video_ids))),
                       execution_options={"synchronize_session": False})
        self.s.expire_all()

    # --- jobs, history and model usage ---------------------------------------------------------------
    def job_events(self, job_id: str, limit: int = 1000) -> Sequence[JobEvent]:
        return self.s.execute(
            select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id).limit(limit)
        ).scalars().all()

    def job(self, job_id: str) -> Job | None:
        return self.s.get(Job, job_id)

    def analyze_durations(self, kind: str, limit: int = 1000) -> list[float]:
        rows = self.s.execute(
            select(Job.finished_at - Job.started_at).where(Job.kind == kind, Job.status == "succeeded",
                                                           Job.started_at.is_not(None))
            .order_by(Job.finished_at.desc()).limit(limit)
        ).all()
        return [float(r[0] or 0.0) for r in rows]

    def usage_per_day(self, since: float, tasks: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Per (day, task, model): invocations, errors, units processed (with the unit), run seconds."""
        day = func.floor(ModelInvocation.ts / 86400) if self.pg else cast(ModelInvocation.ts / 86400, Integer)
        errs = func.sum(case((ModelInvocation.ok.is_(False), 1), else_=0))
        q = (select(day, ModelInvocation.task, ModelInvocation.model, ModelInvocation.unit, func.count(), errs,
                    func.coalesce(func.sum(ModelInvocation.units), 0.0),
                    func.coalesce(func.sum(ModelInvocation.seconds), 0.0))
             .where(ModelInvocation.ts >= since)
             .group_by(day, ModelInvocation.task, ModelInvocation.model, ModelInvocation.unit))
        if tasks:
            q = q.where(ModelInvocation.task.in_(list(tasks)))
        out = []
        for d, task, model, unit, n, e, units, secs in self.s.execute(q).all():
            out.append({"day": int(d), "task": task, "model": model, "unit": unit, "invocations": int(n),
                        "errors": int(e or 0), "units": float(units or 0.0), "seconds": float(secs or 0.0)})
        out.sort(key=lambda r: (r["day"], r["task"], r["model"], r["unit"] or ""))
        return out


__all__ = ["Mob", "MobEvent", "MobsRepo", "ReclusterRun", "Video"]
