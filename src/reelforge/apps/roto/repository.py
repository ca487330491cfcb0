"""Tables and SQL of the rotoscoping application: sessions, objects, prompts, prompted masks, propagated spans.

Same Base as adapters/db/models.py (one metadata); the tables are made by this application's own Alembic branch
(`migrations/`, label "roto"). Services open a transaction with `Store.tx()` and wrap it: `RotoRepo(tx)`. Rows
never leave the repository: it answers with the frozen records of records.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    JSON,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    and_,
    delete,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from reelforge.adapters.db.models import ID, Base
from reelforge.adapters.db.repositories.base import AppRepository
from reelforge.apps.roto.records import Mask, Prompt, RotoObject, Session, Span
from reelforge.domain.records import new_id

JSONType = JSON().with_variant(JSONB(), "postgresql")


class RotoSessionRow(Base):
    __tablename__ = "roto_sessions"
    __table_args__ = (Index("ix_roto_sessions_owner_created", "owner_id", "created_at"),)
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    asset_id: Mapped[str] = mapped_column(ID)
    name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    engine: Mapped[str] = mapped_column(String(100))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    frame_count: Mapped[int] = mapped_column(Integer)
    fps: Mapped[float] = mapped_column(Float)
    duration_s: Mapped[float] = mapped_column(Float)
    video: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    revision: Mapped[int] = mapped_column(Integer, default=0)
    next_object_id: Mapped[int] = mapped_column(Integer, default=1)
    propagation: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    propagation_job_id: Mapped[str | None] = mapped_column(ID, nullable=True)
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)


class RotoObjectRow(Base):
    __tablename__ = "roto_objects"
    session_id: Mapped[str] = mapped_column(ForeignKey("roto_sessions.id", ondelete="CASCADE"), primary_key=True)
    object_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    name: Mapped[str | None] = mapped_column(String(100), nullable=True)
    created_at: Mapped[float] = mapped_column(Float)


class RotoPromptRow(Base):
    __tablename__ = "roto_prompts"
    __table_args__ = (Index("ix_roto_prompts_session_frame", "session_id", "frame"),)
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("roto_sessions.id", ondelete="CASCADE"))
    object_id: Mapped[int] = mapped_column(Integer)
    frame: Mapped[int] = mapped_column(Integer)
    points: Mapped[list[Any]] = mapped_column(JSONType, default=list)
    box: Mapped[list[Any] | None] = mapped_column(JSONType, nullable=True)
    seq: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[float] = mapped_column(Float)


class RotoMaskRow(Base):
    __tablename__ = "roto_masks"
    session_id: Mapped[str] = mapped_column(ForeignKey("roto_sessions.id", ondelete="CASCADE"), primary_key=True)
    frame: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    object_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    prompt_key: Mapped[str] = mapped_column(String(64))
    rle: Mapped[dict[str, Any]] = mapped_column(JSONType)
    area: Mapped[int] = mapped_column(Integer)
    bbox: Mapped[list[Any] | None] = mapped_column(JSONType, nullable=True)
    engine: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[float] = mapped_column(Float)


class RotoSpanRow(Base):
    __tablename__ = "roto_spans"
    session_id: Mapped[str] = mapped_column(ForeignKey("roto_sessions.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    direction: Mapped[str] = mapped_column(String(16))
    start: Mapped[int] = mapped_column(Integer)
    stop: Mapped[int] = mapped_column(Integer)
    asset_id: Mapped[str] = mapped_column(ID)
    frames: Mapped[int] = mapped_column(Integer)
    job_id: Mapped[str | None] = mapped_column(ID, nullable=True)
    created_at: Mapped[float] = mapped_column(Float)


def _session(r: RotoSessionRow) -> Session:
    return Session(id=r.id, owner_id=r.owner_id, asset_id=r.asset_id, name=r.name, engine=r.engine, width=r.width,
                   height=r.height, frame_count=r.frame_count, fps=float(r.fps), duration_s=float(r.duration_s),
                   video=dict(r.video or {}), revision=int(r.revision), next_object_id=int(r.next_object_id),
                   propagation=dict(r.propagation) if r.propagation else None,
                   propagation_job_id=r.propagation_job_id, created_at=float(r.created_at),
                   updated_at=float(r.updated_at))


def _object(r: RotoObjectRow) -> RotoObject:
    return RotoObject(session_id=r.session_id, object_id=int(r.object_id), name=r.name,
                      created_at=float(r.created_at))


def _prompt(r: RotoPromptRow) -> Prompt:
    points = tuple((float(p[0]), float(p[1]), int(p[2])) for p in (r.points or []))
    box = tuple(float(v) for v in r.box) if r.box else None
    return Prompt(id=r.id, session_id=r.session_id, object_id=int(r.object_id), frame=int(r.frame), points=points,
                  box=box, seq=int(r.seq), created_at=float(r.created_at))  # type: ignore[arg-type]


def _mask(r: RotoMaskRow) -> Mask:
    return Mask(session_id=r.session_id, frame=int(r.frame), object_id=int(r.object_id), prompt_key=r.prompt_key,
                rle=dict(r.rle), area=int(r.area), bbox=tuple(int(v) for v in r.bbox) if r.bbox else None,  # type: ignore[arg-type]
                engine=r.engine)


def _span(r: RotoSpanRow) -> Span:
    return Span(session_id=r.session_id, key=r.key, direction=r.direction, start=int(r.start), stop=int(r.stop),
                asset_id=r.asset_id, frames=int(r.frames), job_id=r.job_id, created_at=float(r.created_at))


class RotoRepo(AppRepository):
    """SQL for the rotoscoping use cases on one open transaction (the `UnitOfWork` of ports/repositories.py)."""

    # --- sessions ----------------------------------------------------------------------------------------
    def add_session(self, **values: Any) -> Session:
        now = self.now()
        row = RotoSessionRow(id=new_id(), created_at=now, updated_at=now, revision=0, next_object_id=1, **values)
        self.s.add(row)
        self.tx.flush()
        return _session(row)

    def _session_row(self, session_id: str, *, lock: bool = False) -> RotoSessionRow | None:
        q = select(RotoSessionRow).where(RotoSessionRow.id == session_id)
        if lock and self.pg:
            q = q.with_for_update()
        return self.s.execute(q).scalar_one_or_none()

    def session(self, session_id: str, *, lock: bool = False) -> Session | None:
        row = self._session_row(session_id, lock=lock)
        return _session(row) if row is not None else None

    def sessions(self, owner_id: str, *, limit: int, cursor: tuple[float, str] | None = None) -> list[Session]:
        q = select(RotoSessionRow).where(RotoSessionRow.owner_id == owner_id)
        if cursor is not None:
            created, sid = cursor
            q = q.where(or_(RotoSessionRow.created_at < created,
                            and_(RotoSessionRow.created_at == created, RotoSessionRow.id < sid)))
        q = q.order_by(RotoSessionRow.created_at.desc(), RotoSessionRow.id.desc()).limit(limit)
        return [_session(r) for r in self.s.execute(q).scalars()]

    def update_session(self, session_id: str, **values: Any) -> None:
        values.setdefault("updated_at", self.now())
        self.s.execute(update(RotoSessionRow).where(RotoSessionRow.id == session_id).values(**values))
        self.s.expire_all()

    def bump(self, session_id: str, **values: Any) -> int:
        """The session's next revision (written), with other values changed in the same statement."""
        row = self._session_row(session_id, lock=True)
        assert row is not None
        revision = int(row.revision) + 1
        self.update_session(session_id, revision=revision, **values)
        return revision

    def delete_session(self, session_id: str) -> None:
        for table in (RotoSpanRow, RotoMaskRow, RotoPromptRow, RotoObjectRow):
            self.s.execute(delete(table).where(table.session_id == session_id))
        self.s.execute(delete(RotoSessionRow).where(RotoSessionRow.id == session_id))

    def owned_sessions(self, owner_id: str, *, after: str | None = None, limit: int = 100) -> list[Session]:
        """One page of the account's sessions, by id (after `after`)."""
        q = select(RotoSessionRow).where(RotoSessionRow.owner_id == owner_id)
        if after is not None:
            q = q.where(RotoSessionRow.id > after)
        return [_session(r) for r in self.s.execute(q.order_by(RotoSessionRow.id).limit(limit)).scalars()]

    def delete_owned(self, owner_id: str) -> list[str]:
        """Every session of the account with its objects, prompts, masks and spans; the ids of the sessions."""
        ids = list(self.s.execute(select(RotoSessionRow.id).where(RotoSessionRow.owner_id == owner_id)).scalars())
        opts = {"synchronize_session": False}
        for start in range(0, len(ids), 500):
            part = ids[start:start + 500]
            for table in (RotoSpanRow, RotoMaskRow, RotoPromptRow, RotoObjectRow):
                self.s.execute(delete(table).where(table.session_id.in_(part)), execution_options=opts)
            self.s.execute(delete(RotoSessionRow).where(RotoSessionRow.id.in_(part)), execution_options=opts)
        return ids

    def count_sessions(self) -> dict[str, int]:
        sessions = self.s.execute(select(func.count()).select_from(RotoSessionRow)).scalar_one()
        owners = self.s.execute(select(func.count(func.distinct(RotoSessionRow.owner_id)))).scalar_one()
        prompts = self.s.execute(select(func.count()).select_from(RotoPromptRow)).scalar_one()
        spans = self.s.execute(select(func.count()).select_from(RotoSpanRow)).scalar_one()
        return {"sessions": int(sessions), "users": int(owners), "prompts": int(prompts), "spans": int(spans)}

    # --- objects --------------------------------------------------------------------------------------------
    def add_object(self, session_id: str, object_id: int, name: str | None) -> RotoObject:
        row = RotoObjectRow(session_id=session_id, object_id=object_id, name=name, created_at=self.now())
        self.s.add(row)
        self.tx.flush()
        return _object(row)

    def objects(self, session_id: str) -> list[RotoObject]:
        q = select(RotoObjectRow).where(RotoObjectRow.session_id == session_id).order_by(RotoObjectRow.object_id)
        return [_object(r) for r in self.s.execute(q).scalars()]

    def object(self, session_id: str, object_id: int) -> RotoObject | None:
        row = self.s.get(RotoObjectRow, (session_id, object_id))
        return _object(row) if row is not None else None

    def delete_object(self, session_id: str, object_id: int) -> None:
        for table in (RotoMaskRow, RotoPromptRow, RotoObjectRow):
            self.s.execute(delete(table).where(table.session_id == session_id, table.object_id == object_id))

    # --- prompts --------------------------------------------------------------------------------------------
    def add_prompt(self, *, session_id: str, object_id: int, frame: int, points: Sequence[tuple[float, float, int]],
                   box: tuple[float, float, float, float] | None, seq: int) -> Prompt:
        row = RotoPromptRow(id=new_id(), session_id=session_id, object_id=object_id, frame=frame,
                            points=[[float(x), float(y), int(lab)] for x, y, lab in points],
                            box=[float(v) for v in box] if box is not None else None, seq=seq,
                            created_at=self.now())
        self.s.add(row)
        self.tx.flush()
        return _prompt(row)

    def prompts(self, session_id: str, *, frame: int | None = None) -> list[Prompt]:
        q = select(RotoPromptRow).where(RotoPromptRow.session_id == session_id)
        if frame is not None:
            q = q.where(RotoPromptRow.frame == frame)
        return [_prompt(r) for r in self.s.execute(q.order_by(RotoPromptRow.seq, RotoPromptRow.id)).scalars()]

    def prompt(self, session_id: str, prompt_id: str) -> Prompt | None:
        row = self.s.get(RotoPromptRow, prompt_id)
        return _prompt(row) if row is not None and row.session_id == session_id else None

    def count_prompts(self, session_id: str) -> int:
        q = select(func.count()).select_from(RotoPromptRow).where(RotoPromptRow.session_id == session_id)
        return int(self.s.execute(q).scalar_one())

    def delete_prompt(self, prompt_id: str) -> None:
        self.s.execute(delete(RotoPromptRow).where(RotoPromptRow.id == prompt_id))

    # --- masks of prompted frames ---------------------------------------------------------------------------
    def masks(self, session_id: str, *, frame: int | None = None) -> list[Mask]:
        q = select(RotoMaskRow).where(RotoMaskRow.session_id == session_id)
        if frame is not None:
            q = q.where(RotoMaskRow.frame == frame)
        return [_mask(r) for r in self.s.execute(q.order_by(RotoMaskRow.frame, RotoMaskRow.object_id)).scalars()]

    def put_mask(self, mask: Mask) -> None:
        """Insert or replace the mask of (session, frame, object)."""
        row = self.s.get(RotoMaskRow, (mask.session_id, mask.frame, mask.object_id))
        values = {"prompt_key": mask.prompt_key, "rle": mask.rle, "area": mask.area,
                  "bbox": list(mask.bbox) if mask.bbox is not None else None, "engine": mask.engine,
                  "created_at": self.now()}
        if row is None:
            self.s.add(RotoMaskRow(session_id=mask.session_id, frame=mask.frame, object_id=mask.object_id, **values))
        else:
            for k, v in values.items():
                setattr(row, k, v)
        self.tx.flush()

    def delete_masks(self, session_id: str, *, frame: int, object_id: int) -> None:
        self.s.execute(delete(RotoMaskRow).where(RotoMaskRow.session_id == session_id, RotoMaskRow.frame == frame,
                                                 RotoMaskRow.object_id == object_id))

    # --- propagated spans -----------------------------------------------------------------------------------
    def span(self, session_id: str, key: str) -> Span | None:
        row = self.s.get(RotoSpanRow, (session_id, key))
        return _span(row) if row is not None else None

    def spans(self, session_id: str) -> list[Span]:
        q = select(RotoSpanRow).where(RotoSpanRow.session_id == session_id).order_by(RotoSpanRow.start)
        return [_span(r) for r in self.s.execute(q).scalars()]

    def add_span(self, span: Span) -> Span:
        """Record a stored span; a span already recorded under its key is kept (the first one wins)."""
        existing = self.s.get(RotoSpanRow, (span.session_id, span.key))
        if existing is not None:
            return _span(existing)
        row = RotoSpanRow(session_id=span.session_id, key=span.key, direction=span.direction, start=span.start,
                          stop=span.stop, asset_id=span.asset_id, frames=span.frames, job_id=span.job_id,
                          created_at=self.now())
        self.s.add(row)
        self.tx.flush()
        return _span(row)

    def delete_spans(self, session_id: str, keys: Sequence[str]) -> None:
        if keys:
            self.s.execute(delete(RotoSpanRow).where(RotoSpanRow.session_id == session_id,
                                                     RotoSpanRow.key.in_(list(keys))))
