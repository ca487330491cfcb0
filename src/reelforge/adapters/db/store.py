"""The database behind the persistence ports: `Store.tx()` opens a transaction whose repositories (`tx.jobs`,
`tx.accounts`, ...) hold the SQL of each aggregate (`adapters/db/repositories/`)."""

from __future__ import annotations

import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

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
    def reads(self) -> Any:
        """Reads on the event loop (adapters/db/reads.py)."""
        return self.db.reads

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


# --- rows outside the ORM ------------------------------------------------------------------------------------------
# Statements run on the connection's DB-API cursor return raw tuples; these turn them into records with attribute
# access like `Job`, through the columns' own result processors (JSON, booleans). Event-loop reads of the routes
# live in adapters/db/reads.py.
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


_job_row_shapes: weakref.WeakKeyDictionary[Any, _Rows] = weakref.WeakKeyDictionary()


def _job_rows(engine: Any) -> _Rows:
    """Whole job rows (every column of `jobs`, in table order) for one engine."""
    shape = _job_row_shapes.get(engine)
    if shape is None:
        shape = _job_row_shapes[engine] = _Rows(engine, list(Job.__table__.c))
    return shape
