"""Tables and SQL of the film studio: projects and their read-only shares.

Same Base as adapters/db/models.py (one metadata); the tables come from the application's own Alembic branch
(`migrations/`, label "film"). Services open a transaction with `Store.tx()` and wrap it: `FilmRepo(tx)`.
Every method returns records (`records.py`), never rows.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
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
from reelforge.apps.film.records import Project, Share

JSONType = JSON().with_variant(JSONB(), "postgresql")


class FilmProject(Base):
    __tablename__ = "film_projects"
    __table_args__ = (Index("ix_film_projects_owner_created", "owner_id", "created_at"),)
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    script: Mapped[str] = mapped_column(Text, default="")
    script_format: Mapped[str] = mapped_column(String(16), default="auto")
    script_bytes: Mapped[int] = mapped_column(Integer, default=0)
    characters: Mapped[list[Any]] = mapped_column(JSONType, default=list)
    backgrounds: Mapped[list[Any]] = mapped_column(JSONType, default=list)
    music: Mapped[list[Any]] = mapped_column(JSONType, default=list)
    revision: Mapped[int] = mapped_column(Integer, default=1)
    breakdown: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    analyzed_revision: Mapped[int | None] = mapped_column(Integer, nullable=True)
    analyzed_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    last_render_job_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)


class FilmProjectShare(Base):
    __tablename__ = "film_project_shares"
    __table_args__ = (
        UniqueConstraint("project_id", "user_id", name="uq_film_project_shares_user"),
        UniqueConstraint("project_id", "email", name="uq_film_project_shares_email"),
        Index("ix_film_project_shares_user", "user_id"),
        Index("ix_film_project_shares_email", "email"),
    )
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("film_projects.id", ondelete="CASCADE"))
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=True)
    email: Mapped[str | None] = mapped_column(String(320), nullable=True)
    created_at: Mapped[float] = mapped_column(Float)


_P = FilmProject
# What a list shows: everything but the script and the breakdown.
_SUMMARY = (_P.id, _P.owner_id, _P.title, _P.description, _P.script_format, _P.script_bytes, _P.characters,
            _P.backgrounds, _P.music, _P.revision, _P.analyzed_revision, _P.analyzed_at, _P.last_render_job_id,
            _P.created_at, _P.updated_at)


def _project(row: Any, *, full: bool) -> Project:
    return Project(
        id=row.id, owner_id=row.owner_id, title=row.title, description=row.description or "",
        script=(row.script or "") if full else None, script_format=row.script_format,
        script_bytes=int(row.script_bytes or 0), characters=list(row.characters or []),
        backgrounds=list(row.backgrounds or []), music=list(row.music or []), revision=int(row.revision),
        breakdown=(row.breakdown if full else None), analyzed_revision=row.analyzed_revision,
        analyzed_at=row.analyzed_at, last_render_job_id=row.last_render_job_id, created_at=row.created_at,
        updated_at=row.updated_at)


def _share(row: FilmProjectShare) -> Share:
    return Share(id=row.id, project_id=row.project_id, owner_id=row.owner_id, user_id=row.user_id,
                 email=row.email, created_at=row.created_at)


class FilmRepo(AppRepository):
    """SQL for the film studio's use cases on one open transaction (the `UnitOfWork` of ports/repositories.py)."""

    # --- projects ---------------------------------------------------------------------------------------------
    def add_project(self, **values: Any) -> Project:
        now = self.now()
        row = FilmProject(created_at=now, updated_at=now, revision=1, **values)
        self.s.add(row)
        self.tx.flush()
        return _project(row, full=True)

    def project(self, project_id: str, *, lock: bool = False) -> Project | None:
        q = select(FilmProject).where(FilmProject.id == project_id)
        if lock and self.pg:
            q = q.with_for_update()
        row = self.s.execute(q).scalar_one_or_none()
        return _project(row, full=True) if row is not None else None

    def update_project(self, project_id: str, **values: Any) -> None:
        values.setdefault("updated_at", self.now())
        self.s.execute(update(FilmProject).where(FilmProject.id == project_id).values(**values))
        self.s.expire_all()

    def delete_project(self, project_id: str) -> None:
        """The project and its shares (explicitly: SQLite enforces the cascade only with foreign keys on)."""
        self.s.execute(delete(FilmProjectShare).where(FilmProjectShare.project_id == project_id))
        self.s.execute(delete(FilmProject).where(FilmProject.id == project_id))
        self.s.expire_all()

    def projects(self, *, user_id: str, email: str, scope: str, limit: int,
                 after: tuple[float, str] | None = None) -> list[Project]:
        """The projects a user owns (`owned`), has been shared (`shared`) or both (`all`), newest first
        (created_at, id); at most `limit`, after the cursor `after`."""
        shared = select(FilmProjectShare.project_id).where(
            or_(FilmProjectShare.user_id == user_id, FilmProjectShare.email == email))
        mine = _P.owner_id == user_id
        theirs = and_(_P.owner_id != user_id, _P.id.in_(shared))
        where = {"owned": mine, "shared": theirs}.get(scope, or_(mine, theirs))
        q = select(*_SUMMARY).where(where)
        if after is not None:
            created, pid = after
            q = q.where(or_(_P.created_at < created, and_(_P.created_at == created, _P.id < pid)))
        rows = self.s.execute(q.order_by(_P.created_at.desc(), _P.id.desc()).limit(limit)).all()
        return [_project(r, full=False) for r in rows]

    # --- shares -----------------------------------------------------------------------------------------------
    def add_share(self, **values: Any) -> Share:
        row = FilmProjectShare(created_at=self.now(), **values)
        self.s.add(row)
        self.tx.flush()
        return _share(row)

    def share(self, share_id: str) -> Share | None:
        row = self.s.get(FilmProjectShare, share_id)
        return _share(row) if row is not None else None

    def shares(self, project_id: str) -> list[Share]:
        rows = self.s.execute(select(FilmProjectShare).where(FilmProjectShare.project_id == project_id)
                              .order_by(FilmProjectShare.created_at, FilmProjectShare.id)).scalars().all()
        return [_share(r) for r in rows]

    def count_shares(self, project_id: str) -> int:
        return int(self.s.execute(select(func.count()).select_from(FilmProjectShare)
                                  .where(FilmProjectShare.project_id == project_id)).scalar_one())

    def find_share(self, project_id: str, *, user_id: str | None = None, email: str | None = None) -> Share | None:
        """The project's share with this account or address (either matches)."""
        conds = []
        if user_id is not None:
            conds.append(FilmProjectShare.user_id == user_id)
        if email is not None:
            conds.append(FilmProjectShare.email == email)
        if not conds:
            return None
        row = self.s.execute(select(FilmProjectShare).where(FilmProjectShare.project_id == project_id, or_(*conds))
                             .order_by(FilmProjectShare.created_at).limit(1)).scalar_one_or_none()
        return _share(row) if row is not None else None

    def delete_share(self, share_id: str) -> None:
        self.s.execute(delete(FilmProjectShare).where(FilmProjectShare.id == share_id))
        self.s.expire_all()

    # --- the account's export and deletion --------------------------------------------------------------------
    def owned_projects(self, owner_id: str, *, after: str | None = None, limit: int = 100) -> list[Project]:
        """One page of the account's projects in full (script and breakdown), by id (after `after`)."""
        q = select(FilmProject).where(FilmProject.owner_id == owner_id)
        if after is not None:
            q = q.where(FilmProject.id > after)
        rows = self.s.execute(q.order_by(FilmProject.id).limit(limit)).scalars().all()
        return [_project(r, full=True) for r in rows]

    def shares_given(self, owner_id: str, *, after: str | None = None, limit: int = 200) -> list[Share]:
        """One page of the shares of the account's projects, by id."""
        q = select(FilmProjectShare).where(FilmProjectShare.owner_id == owner_id)
        if after is not None:
            q = q.where(FilmProjectShare.id > after)
        return [_share(r) for r in self.s.execute(q.order_by(FilmProjectShare.id).limit(limit)).scalars().all()]

    def shares_received(self, user_id: str, email: str | None, *, after: str | None = None,
                        limit: int = 200) -> list[Share]:
        """One page of the shares of other accounts' projects with this account (by id, or by its address)."""
        who = FilmProjectShare.user_id == user_id
        if email:
            who = or_(who, FilmProjectShare.email == email)
        q = select(FilmProjectShare).where(who, FilmProjectShare.owner_id != user_id)
        if after is not None:
            q = q.where(FilmProjectShare.id > after)
        return [_share(r) for r in self.s.execute(q.order_by(FilmProjectShare.id).limit(limit)).scalars().all()]

    def delete_account(self, user_id: str) -> None:
        """The account's projects with every share of them, and the shares other projects gave the account (by
        id: its address is replaced before this runs)."""
        owned = select(FilmProject.id).where(FilmProject.owner_id == user_id).scalar_subquery()
        opts = {"synchronize_session": False}
        self.s.execute(delete(FilmProjectShare).where(or_(FilmProjectShare.owner_id == user_id,
                                                          FilmProjectShare.user_id == user_id,
                                                          FilmProjectShare.project_id.in_(owned))),
                       execution_options=opts)
        self.s.execute(delete(FilmProject).where(FilmProject.owner_id == user_id), execution_options=opts)
        self.s.expire_all()


__all__ = ["FilmProject", "FilmProjectShare", "FilmRepo"]
