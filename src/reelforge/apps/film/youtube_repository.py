"""Tables and SQL of YouTube publishing: each account's connection (its refresh token, sealed), the pending OAuth
states of connects in progress (single use, expiring) and the resumable uploads of `film.publish` jobs (the session
URI, sealed, and the bytes the server confirmed), so that a retried or resumed job continues its upload session.

The tables come from the application's Alembic branch (`migrations/f003_youtube.py`). Sealing and opening is the
service's: this module stores and returns the sealed text as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, Float, ForeignKey, Index, Integer, String, Text, delete, select, update
from sqlalchemy.orm import Mapped, mapped_column

from reelforge.adapters.db.models import ID, Base
from reelforge.adapters.db.repositories.base import AppRepository, record

CONNECTED, INVALID = "connected", "invalid"


class FilmYoutubeConnection(Base):
    __tablename__ = "film_youtube_connections"
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    refresh_token: Mapped[str] = mapped_column(Text)  # sealed
    access_token: Mapped[str | None] = mapped_column(Text, nullable=True)  # sealed
    access_expires_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    scopes: Mapped[str] = mapped_column(Text, default="")
    channel_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    channel_title: Mapped[str | None] = mapped_column(String(200), nullable=True)
    status: Mapped[str] = mapped_column(String(16), default=CONNECTED)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)


class FilmYoutubeState(Base):
    __tablename__ = "film_youtube_states"
    __table_args__ = (Index("ix_film_youtube_states_user", "user_id", "created_at"),
                      Index("ix_film_youtube_states_expires", "expires_at"))
    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 of the state (never stored itself)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    code_verifier: Mapped[str] = mapped_column(Text)  # sealed (PKCE)
    redirect_uri: Mapped[str] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float)


class FilmYoutubeUpload(Base):
    __tablename__ = "film_youtube_uploads"
    __table_args__ = (Index("ix_film_youtube_uploads_user", "user_id", "created_at"),)
    job_id: Mapped[str] = mapped_column(ID, primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    project_id: Mapped[str] = mapped_column(ID)
    asset_id: Mapped[str] = mapped_column(ID)
    sha256: Mapped[str] = mapped_column(String(64))
    total_bytes: Mapped[int] = mapped_column(BigInteger)
    session_uri: Mapped[str | None] = mapped_column(Text, nullable=True)  # sealed
    confirmed_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    sessions: Mapped[int] = mapped_column(Integer, default=0)  # upload sessions started
    resumes: Mapped[int] = mapped_column(Integer, default=0)  # times an interrupted upload went on
    video_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)


@dataclass(frozen=True, slots=True)
class Connection:
    user_id: str
    refresh_token: str  # sealed
    access_token: str | None  # sealed
    access_expires_at: float | None
    scopes: str
    channel_id: str | None
    channel_title: str | None
    status: str  # connected | invalid (the user must connect again)
    error: str | None
    created_at: float
    updated_at: float


@dataclass(frozen=True, slots=True)
class PendingState:
    id: str
    user_id: str
    code_verifier: str  # sealed
    redirect_uri: str
    created_at: float
    expires_at: float


@dataclass(frozen=True, slots=True)
class UploadState:
    job_id: str
    user_id: str
    project_id: str
    asset_id: str
    sha256: str
    total_bytes: int
    session_uri: str | None  # sealed
    confirmed_bytes: int
    sessions: int
    resumes: int
    video_id: str | None
    created_at: float
    updated_at: float


class YoutubeRepo(AppRepository):
    """SQL of YouTube publishing on one open transaction."""

    # --- connections ------------------------------------------------------------------------------------------
    def connection(self, user_id: str) -> Connection | None:
        row = self.s.get(FilmYoutubeConnection, user_id)
        return record(Connection, row) if row is not None else None

    def put_connection(self, user_id: str, **values: Any) -> Connection:
        """Create or replace the account's connection."""
        now = self.now()
        row = self.s.get(FilmYoutubeConnection, user_id)
        if row is None:
            row = FilmYoutubeConnection(user_id=user_id, created_at=now, updated_at=now, **values)
            self.s.add(row)
        else:
            for k, v in values.items():
                setattr(row, k, v)
            row.updated_at = now
        self.tx.flush()
        return record(Connection, row)

    def update_connection(self, user_id: str, **values: Any) -> None:
        values.setdefault("updated_at", self.now())
        self.s.execute(update(FilmYoutubeConnection).where(FilmYoutubeConnection.user_id == user_id)
                       .values(**values))
        self.s.expire_all()

    def delete_connection(self, user_id: str) -> bool:
        done = self.s.execute(delete(FilmYoutubeConnection).where(FilmYoutubeConnection.user_id == user_id))
        self.s.expire_all()
        return bool(getattr(done, "rowcount", 0))

    # --- OAuth states -----------------------------------------------------------------------------------------
    def add_state(self, *, state_hash: str, user_id: str, code_verifier: str, redirect_uri: str, ttl_s: float,
                  keep: int) -> None:
        """A pending state; expired ones (anyone's) are dropped, and the account keeps its `keep` newest."""
        now = self.now()
        self.s.execute(delete(FilmYoutubeState).where(FilmYoutubeState.expires_at < now))
        old = self.s.execute(select(FilmYoutubeState.id).where(FilmYoutubeState.user_id == user_id)
                             .order_by(FilmYoutubeState.created_at.desc(), FilmYoutubeState.id)
                             .offset(max(0, keep - 1))).scalars().all()
        if old:
            self.s.execute(delete(FilmYoutubeState).where(FilmYoutubeState.id.in_(list(old))))
        self.s.add(FilmYoutubeState(id=state_hash, user_id=user_id, code_verifier=code_verifier,
                                    redirect_uri=redirect_uri, created_at=now, expires_at=now + ttl_s))
        self.tx.flush()

    def take_state(self, state_hash: str) -> PendingState | None:
        """The pending state, removed: whoever deletes the row has it, so it is used once even by concurrent
        callbacks. Expired or not (the caller checks)."""
        row = self.s.get(FilmYoutubeState, state_hash)
        if row is None:
            return None
        found = record(PendingState, row)
        done = self.s.execute(delete(FilmYoutubeState).where(FilmYoutubeState.id == state_hash))
        self.s.expire_all()
        return found if getattr(done, "rowcount", 0) == 1 else None

    # --- uploads ----------------------------------------------------------------------------------------------
    def upload(self, job_id: str) -> UploadState | None:
        row = self.s.get(FilmYoutubeUpload, job_id)
        return record(UploadState, row) if row is not None else None

    def add_upload(self, **values: Any) -> UploadState:
        now = self.now()
        row = FilmYoutubeUpload(created_at=now, updated_at=now, confirmed_bytes=0, sessions=0, resumes=0, **values)
        self.s.add(row)
        self.tx.flush()
        return record(UploadState, row)

    def uploads(self, user_id: str, *, after: str | None = None, limit: int = 200) -> list[UploadState]:
        """One page of the account's uploads, by job id (after `after`)."""
        q = select(FilmYoutubeUpload).where(FilmYoutubeUpload.user_id == user_id)
        if after is not None:
            q = q.where(FilmYoutubeUpload.job_id > after)
        rows = self.s.execute(q.order_by(FilmYoutubeUpload.job_id).limit(limit)).scalars().all()
        return [record(UploadState, r) for r in rows]

    # --- the account's deletion -------------------------------------------------------------------------------
    def delete_account(self, user_id: str) -> None:
        """Every row of the account's: its connection, pending OAuth states and uploads."""
        opts = {"synchronize_session": False}
        self.s.execute(delete(FilmYoutubeUpload).where(FilmYoutubeUpload.user_id == user_id), execution_options=opts)
        self.s.execute(delete(FilmYoutubeState).where(FilmYoutubeState.user_id == user_id), execution_options=opts)
        self.s.execute(delete(FilmYoutubeConnection).where(FilmYoutubeConnection.user_id == user_id),
                       execution_options=opts)
        self.s.expire_all()

    def update_upload(self, job_id: str, **values: Any) -> None:
        values.setdefault("updated_at", self.now())
        self.s.execute(update(FilmYoutubeUpload).where(FilmYoutubeUpload.job_id == job_id).values(**values))
        self.s.expire_all()


__all__ = ["CONNECTED", "INVALID", "Connection", "FilmYoutubeConnection", "FilmYoutubeState", "FilmYoutubeUpload",
           "PendingState", "UploadState", "YoutubeRepo"]
