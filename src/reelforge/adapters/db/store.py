"""The database behind the persistence ports: `Store.tx()` opens a transaction whose repositories (`tx.jobs`,
`tx.accounts`, ...) hold the SQL of each aggregate (`adapters/db/repositories/`)."""

from __future__ import annotations

import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from reelforge.adapters.db.engine import Database
from reelforge.adapters.db.models import Job
from reelforge.adapters.db.repositories import (
    AccountRepository,
    AlarmRepository,
    AssetRepository,
    CreditRepository,
    EventRepository,
    JobRepository,
    OpsRepository,
)
from reelforge.adapters.db.repositories.base import flush, tx_now
from reelforge.domain.records import new_id
from reelforge.ports.repositories import DuplicateKey

__all__ = ["DuplicateKey", "Store", "Tx", "new_id"]


class Store:
    """The `Store` port on one database (SQLite or PostgreSQL)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @property
    def dialect(self) -> str:
        return self.db.dialect

    @contextmanager
    def tx(self, *, write: bool = True) -> Iterator[Tx]:
        try:
            with self.db.tx(write=write) as session:
                yield Tx(session, self.db.is_postgres)
        except IntegrityError as exc:
            raise DuplicateKey(str(exc.orig)) from exc

    def now(self) -> float:
        return self.db.now()


class Tx:
    """One transaction (the `UnitOfWork` port): a repository per aggregate, all on the same session."""

    __slots__ = ("accounts", "alarms", "assets", "credits", "events", "jobs", "ops", "pg", "s")

    def __init__(self, session: Session, postgres: bool) -> None:
        self.s = session
        self.pg = postgres
        self.jobs = JobRepository(session, postgres)
        self.accounts = AccountRepository(session, postgres)
        self.credits = CreditRepository(session, postgres)
        self.assets = AssetRepository(session, postgres)
        self.events = EventRepository(session, postgres)
        self.alarms = AlarmRepository(session, postgres)
        self.ops = OpsRepository(session, postgres)

    def now(self) -> float:
        return tx_now(self.s)

    def flush(self) -> None:
        flush(self.s)


# --- hot reads outside the ORM ------------------------------------------------------------------------------------
# `GET /v1/jobs/{id}` is polled by every client that waits on a job. The statement is a Core SELECT, compiled once
# per engine and run on a pooled DB-API cursor with the columns' own result processors: about a fifth of the CPU of
# an ORM read in its own Session, half of a Core `Connection.execute` with its BEGIN/ROLLBACK. The ownership rule is
# part of the WHERE clause, so another owner's job reads exactly like a missing one.
_JOB_PUBLIC_COLUMNS = [Job.__table__.c[name] for name in (
    "id", "owner_id", "kind", "status", "input", "outputs", "error_code", "error_message", "progress",
    "progress_message", "credits", "credits_state", "attempt", "max_attempts", "priority", "cancel_requested",
    "callback_url", "idempotency_key", "created_at", "started_at", "finished_at", "expires_at")]
_OWNED_JOB = select(*_JOB_PUBLIC_COLUMNS).where(
    Job.__table__.c.id == bindparam("job_id"), Job.__table__.c.owner_id == bindparam("owner_id"))


class _Rows:
    """Rows of known columns from a DB-API cursor, through the columns' own result processors (JSON, booleans)."""

    def __init__(self, engine: Any, columns: Sequence[Any]) -> None:
        self.dialect = engine.dialect
        self.columns = list(columns)
        self.names = [c.name for c in columns]
        self.procs: list[Any] | None = None  # from the first cursor's description (drivers' type codes)

    def processors(self, description: Sequence[Any]) -> list[Any]:
        if self.procs is None:
            self.procs = [c.type._cached_result_processor(self.dialect, d[1])
                          for c, d in zip(self.columns, description, strict=True)]
        return self.procs

    def row(self, raw: Sequence[Any], procs: list[Any]) -> SimpleNamespace:
        return SimpleNamespace(**{n: (p(v) if p is not None else v) for n, p, v in zip(self.names, procs, raw,
                                                                                        strict=True)})


class _CompiledRead(_Rows):
    """One SELECT compiled for one engine's dialect: SQL text, parameter order and per-column result processors."""

    def __init__(self, engine: Any, stmt: Any, columns: Sequence[Any]) -> None:
        super().__init__(engine, columns)
        compiled = stmt.compile(dialect=self.dialect)
        self.sql = str(compiled)
        self.order = list(compiled.positiontup or []) if self.dialect.positional else None

    def params(self, values: dict[str, Any]) -> Any:
        return tuple(values[k] for k in self.order) if self.order is not None else values


_job_row_shapes: weakref.WeakKeyDictionary[Any, _Rows] = weakref.WeakKeyDictionary()


def _job_rows(engine: Any) -> _Rows:
    """Whole job rows (every column of `jobs`, in table order) for one engine."""
    shape = _job_row_shapes.get(engine)
    if shape is None:
        shape = _job_row_shapes[engine] = _Rows(engine, list(Job.__table__.c))
    return shape


_compiled_reads: weakref.WeakKeyDictionary[Any, _CompiledRead] = weakref.WeakKeyDictionary()


def compiled_job_read(db: Database) -> _CompiledRead:
    """The owned-job SELECT compiled for db's dialect (SQL text with `job_id` and `owner_id` parameters)."""
    q = _compiled_reads.get(db.engine)
    if q is None:
        q = _compiled_reads[db.engine] = _CompiledRead(db.engine, _OWNED_JOB, _JOB_PUBLIC_COLUMNS)
    return q


def read_owned_job(db: Database, job_id: str, owner_id: str) -> SimpleNamespace | None:
    """The job's public columns (attribute access like `Job`), or None when it is missing or not owner_id's.

    One statement, no explicit transaction: a single SELECT reads one consistent snapshot on SQLite and on
    PostgreSQL; the pool rolls the connection back when it is returned. Takes no SQLite write lock.
    """
    conn = db.engine.raw_connection()
    try:
        return read_owned_job_dbapi(db, conn, job_id, owner_id)
    finally:
        conn.close()


def read_owned_job_dbapi(db: Database, conn: Any, job_id: str, owner_id: str) -> SimpleNamespace | None:
    """read_owned_job() on a DB-API connection of db's dialect that the caller holds."""
    q = compiled_job_read(db)
    cur = conn.cursor()
    try:
        cur.execute(q.sql, q.params({"job_id": job_id, "owner_id": owner_id}))
        raw = cur.fetchone()
        procs = q.processors(cur.description)
    finally:
        cur.close()
    return None if raw is None else q.row(raw, procs)
