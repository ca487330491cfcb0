"""Engine, transactions and the database clock for SQLite (WAL) and PostgreSQL."""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Float, create_engine, event, text
from sqlalchemy.engine import Engine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.functions import FunctionElement

from reelforge.adapters.files import private_sqlite

_begin_mode: contextvars.ContextVar[str] = contextvars.ContextVar("_begin_mode", default="IMMEDIATE")


class db_epoch(FunctionElement[float]):
    """Seconds since the epoch on the database server's clock: leases and timeouts use only this clock."""

    type = Float()
    inherit_cache = True


EPOCH_SQL_SQLITE = "((julianday('now') - 2440587.5) * 86400.0)"
EPOCH_SQL_PG = "(extract(epoch from clock_timestamp())::float8)"


@compiles(db_epoch)
def _epoch_sqlite(element: Any, compiler: Any, **kw: Any) -> str:
    return EPOCH_SQL_SQLITE


@compiles(db_epoch, "postgresql")
def _epoch_pg(element: Any, compiler: Any, **kw: Any) -> str:
    return EPOCH_SQL_PG


def normalize_url(url: str) -> str:
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return url


class Database:
    """One engine per process; short transactions through tx()."""

    def __init__(self, url: str, *, echo: bool = False, pool_size: int = 10) -> None:
        self.url = normalize_url(url)
        self.pool_size = pool_size
        self._reads: Any = None
        self.dialect = "sqlite" if self.url.startswith("sqlite") else "postgresql"
        # The SQLite database file; None for PostgreSQL, ":memory:" (one database per connection) and URIs.
        self.sqlite_file: str | None = None
        if self.dialect == "sqlite":
            path = self.url.split("///", 1)[-1]
            if path and path != ":memory:":
                self.sqlite_file = None if path.startswith("file:") else path
                if self.sqlite_file is not None:
                    private_sqlite(self.sqlite_file)  # the database holds password hashes and secrets
            self.engine: Engine = create_engine(
                self.url, echo=echo, pool_size=pool_size, max_overflow=pool_size * 2,
                connect_args={"timeout": 60, "check_same_thread": False}
            )  # QueuePool, not NullPool
            event.listen(self.engine, "connect", _sqlite_connect)
            event.listen(self.engine, "begin", _sqlite_begin)
        else:
            self.engine = create_engine(
                self.url, echo=echo, pool_size=pool_size, max_overflow=pool_size * 2, pool_pre_ping=True
            )

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    @property
    def reads(self) -> Any:
        """The event-loop reads of this database (adapters/db/reads.py), made on first use."""
        if self._reads is None:
            from reelforge.adapters.db.reads import AsyncReads

            self._reads = AsyncReads(self, pool_size=self.pool_size)
        return self._reads

    async def close_reads(self) -> None:
        """Close the calling event loop's read connections (an app's lifespan shutdown)."""
        if self._reads is not None:
            await self._reads.aclose()

    @contextmanager
    def tx(self, *, write: bool = True) -> Iterator[Session]:
        """A transaction; on SQLite a writer takes the lock at BEGIN so concurrent writers queue, not deadlock."""
        token = _begin_mode.set("IMMEDIATE" if write else "DEFERRED")
        try:
            with Session(self.engine, expire_on_commit=False, autoflush=True) as session, session.begin():
                yield session
        finally:
            _begin_mode.reset(token)

    def now(self) -> float:
        with self.engine.connect() as conn:
            return float(conn.execute(db_epoch().select()).scalar_one())

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def dispose(self) -> None:
        if self._reads is not None:
            self._reads.close()
        self.engine.dispose()


def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite's implicit BEGIN is DEFERRED).
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=60000")
    cur.close()


def _sqlite_begin(conn: Any) -> None:
    conn.exec_driver_sql(f"BEGIN {_begin_mode.get()}")
