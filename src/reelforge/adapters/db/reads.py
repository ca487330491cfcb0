"""Reads on the event loop: one SELECT per call, answered without a threadpool hop when the database allows.

Read routes are the requests the API serves most (clients poll jobs, list them, fetch assets). Through the sync
ORM path each costs a threadpool hop, a Session and a BEGIN/ROLLBACK around a query that takes microseconds; the
hop alone costs more than the query. :class:`AsyncReads` runs a Core SELECT (compiled once per statement and
dialect, rows built through the columns' own result processors) like this:

- SQLite: on a connection of the calling thread, on the event loop. In WAL mode a reader never waits for the
  writer, so the read does not block the loop; `busy_timeout` is 0 on that connection, so in the rare case
  SQLite does ask a reader to wait (a WAL reset racing the read) it fails at once and the read is done again on
  a threadpool thread with the engine's own connection (which waits like every other read).
- PostgreSQL: on psycopg's asyncio connections, a small pool per event loop (at most `pool_size`), in
  autocommit (one statement is one snapshot). A connection that fails (a restart, a failover, a terminated
  backend) is dropped with every idle one, and the read is done again on a threadpool thread through the
  engine's pool (which pre-pings). The pool closes at the app's lifespan shutdown (`aclose`).

A single SELECT reads one consistent snapshot on both engines, so no explicit transaction is needed. Rows are
records with attribute access like the ORM's (`row.status`), never ORM objects.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import weakref
from collections.abc import Sequence
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from anyio import CapacityLimiter, to_thread
from anyio.lowlevel import RunVar
from sqlalchemy import and_, bindparam, or_, select

from reelforge.adapters.db.models import Asset, Job, JobEvent

if TYPE_CHECKING:
    from reelforge.adapters.db.engine import Database

log = logging.getLogger(__name__)

MAX_POOL = 16


class Query:
    """One SELECT compiled for one dialect: SQL text, parameter order and per-column result processors."""

    def __init__(self, dialect: Any, stmt: Any) -> None:
        self.dialect = dialect
        self.columns = list(stmt.selected_columns)
        self.names = [c.name for c in self.columns]
        compiled = stmt.compile(dialect=dialect)
        self.sql = str(compiled)
        self.order = list(compiled.positiontup or []) if dialect.positional else None
        # Parameters the dialect adds with a value of its own (SQLite's OFFSET after a bound LIMIT).
        self.defaults = {k: v for k, v in compiled.params.items() if v is not None}
        self.procs: list[Any] | None = None  # from the first cursor's description (drivers' type codes)

    def params(self, values: dict[str, Any]) -> Any:
        if self.defaults:
            values = {**self.defaults, **values}
        return tuple(values[k] for k in self.order) if self.order is not None else values

    def processors(self, description: Sequence[Any]) -> list[Any]:
        """The columns' result processors, from the first description seen (later calls may pass ())."""
        if self.procs is None:
            self.procs = [c.type._cached_result_processor(self.dialect, d[1])
                          for c, d in zip(self.columns, description, strict=True)]
        return self.procs

    def rows(self, raw: Sequence[Sequence[Any]], description: Sequence[Any]) -> list[SimpleNamespace]:
        procs = self.processors(description)
        names = self.names
        return [SimpleNamespace(**{n: (p(v) if p is not None else v) for n, p, v in zip(names, procs, r, strict=True)})
                for r in raw]


class AsyncReads:
    """`await reads.one(stmt, **params)` / `await reads.all(stmt, **params)` for module-level Core SELECTs."""

    def __init__(self, db: Database, *, pool_size: int = 10) -> None:
        self.db = db
        self.pool_size = max(1, min(int(pool_size), MAX_POOL))
        self.sqlite_file = db.sqlite_file
        self.postgres = db.is_postgres
        self._queries: dict[int, tuple[Any, Query]] = {}
        self._local = threading.local()
        self._sqlite_conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._pg_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _PgPool] = weakref.WeakKeyDictionary()
        self._limiter: RunVar[CapacityLimiter] = RunVar(f"reelforge_reads_{id(self)}")

    def query(self, stmt: Any) -> Query:
        hit = self._queries.get(id(stmt))
        if hit is None or hit[0] is not stmt:
            hit = (stmt, Query(self.db.engine.dialect, stmt))
            self._queries[id(stmt)] = hit  # the statement is kept, so its id is never reused for another
        return hit[1]

    async def job(self, job_id: str) -> SimpleNamespace | None:
        """A job's public columns."""
        return await self.one(JOB_BY_ID, job_id=job_id)

    async def job_events(self, job_id: str, *, after: int = 0, limit: int = 500) -> list[SimpleNamespace]:
        """A job's history events with an id above `after`, oldest first, at most `limit`."""
        return await self.all(JOB_EVENTS_AFTER, job_id=job_id, after=after, limit=limit)

    async def asset(self, asset_id: str) -> SimpleNamespace | None:
        """An asset's columns; the "metadata" column is also `meta`, as on the record."""
        row = await self.one(ASSET_BY_ID, asset_id=asset_id)
        if row is not None:
            row.meta = row.metadata
        return row

    async def jobs_page(self, owner_id: str, *, limit: int, status: str | None = None, kind: str | None = None,
                        before: tuple[float, str] | None = None) -> list[SimpleNamespace]:
        """The owner's jobs newest first, at most `limit`, after the cursor `before` (created_at, id)."""
        params: dict[str, Any] = {"owner_id": owner_id, "limit": limit}
        if status:
            params["status"] = status
        if kind:
            params["kind"] = kind
        if before is not None:
            params.update(before_ts=before[0], before_id=before[1])
        stmt = jobs_page(status=bool(status), kind=bool(kind), cursor=before is not None)
        return await self.all(stmt, **params)

    async def owned_assets(self, owner_id: str, asset_ids: list[str]) -> list[SimpleNamespace]:
        """The owner's assets among `asset_ids` (at most OWNED_ASSETS_MAX), in one SELECT."""
        if not asset_ids:
            return []
        stmt, params = _owned_assets(owner_id, asset_ids)
        return await self.all(stmt, **params)

    def owned_assets_now(self, owner_id: str, asset_ids: list[str]) -> list[SimpleNamespace]:
        """`owned_assets` for a synchronous caller (through the engine's pool)."""
        if not asset_ids:
            return []
        stmt, params = _owned_assets(owner_id, asset_ids)
        return self._pooled(self.query(stmt), params)

    async def one(self, stmt: Any, **params: Any) -> SimpleNamespace | None:
        rows = await self.all(stmt, **params)
        return rows[0] if rows else None

    async def all(self, stmt: Any, **params: Any) -> list[SimpleNamespace]:
        q = self.query(stmt)
        if self.sqlite_file is not None:
            try:
                return self._sqlite(q, params)
            except sqlite3.Error:
                log.debug("read on the event loop failed (SQLite busy?); reading on a thread", exc_info=True)
        elif self.postgres:
            try:
                return await self._pg_pool().read(q, params)
            except Exception as exc:
                if not _connection_error(exc):
                    raise
                log.info("asynchronous PostgreSQL read failed (%s); reading on a thread", exc)
        return await to_thread.run_sync(self._pooled, q, params, limiter=self._thread_limiter())

    # --- SQLite on the event loop -----------------------------------------------------------------------------
    def _sqlite(self, q: Query, params: dict[str, Any]) -> list[SimpleNamespace]:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            assert self.sqlite_file is not None
            conn = sqlite3.connect(self.sqlite_file, timeout=0, isolation_level=None, check_same_thread=False)
            try:
                conn.execute("PRAGMA busy_timeout=0")
                conn.execute("PRAGMA query_only=1")
            except sqlite3.Error:
                conn.close()
                raise
            self._local.conn = conn
            with self._lock:
                self._sqlite_conns.append(conn)
        cur = conn.execute(q.sql, q.params(params))
        try:
            return q.rows(cur.fetchall(), cur.description)
        finally:
            cur.close()

    # --- the fallback: the engine's pool on a threadpool thread ---------------------------------------------------
    def _pooled(self, q: Query, params: dict[str, Any]) -> list[SimpleNamespace]:
        conn = self.db.engine.raw_connection()
        try:
            cur = conn.cursor()
            try:
                cur.execute(q.sql, q.params(params))
                return q.rows(cur.fetchall(), cur.description)
            finally:
                cur.close()
        finally:
            conn.close()

    def _thread_limiter(self) -> CapacityLimiter:
        # At most as many fallback reads in flight as the engine's pool keeps connections (more would open and
        # close overflow connections on every burst), per event loop.
        try:
            return self._limiter.get()
        except LookupError:
            limiter = CapacityLimiter(self.pool_size)
            self._limiter.set(limiter)
            return limiter

    # --- PostgreSQL on psycopg's asyncio connections ----------------------------------------------------------
    def _pg_pool(self) -> _PgPool:
        loop = asyncio.get_running_loop()
        pool = self._pg_pools.get(loop)
        if pool is None:
            pool = self._pg_pools[loop] = _PgPool(self.db, self.pool_size)
        return pool

    def pg_pool_sizes(self) -> list[int]:
        """Idle asynchronous connections per event loop (for tests and diagnostics)."""
        return [len(p.idle) for p in self._pg_pools.values()]

    async def aclose(self) -> None:
        """Close this event loop's PostgreSQL connections and this thread's SQLite connection."""
        pool = self._pg_pools.pop(asyncio.get_running_loop(), None)
        if pool is not None:
            await pool.close()
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            self._local.conn = None
            with self._lock:
                if conn in self._sqlite_conns:
                    self._sqlite_conns.remove(conn)
            conn.close()

    def close(self) -> None:
        """Close every SQLite connection (PostgreSQL pools close on their own loop, in `aclose`)."""
        with self._lock:
            conns, self._sqlite_conns = self._sqlite_conns, []
        for conn in conns:
            try:
                conn.close()
            except sqlite3.Error:
                pass

    def open_connections(self) -> int:
        """SQLite connections held plus idle PostgreSQL connections (for tests and diagnostics)."""
        return len(self._sqlite_conns) + sum(self.pg_pool_sizes())


def _connection_error(exc: Exception) -> bool:
    import psycopg

    return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)


class _PgPool:
    """psycopg AsyncConnections of one event loop: opened on demand, at most `size` in use."""

    def __init__(self, db: Database, size: int) -> None:
        cargs, cparams = db.engine.dialect.create_connect_args(db.engine.url)
        self.cargs, self.cparams = list(cargs), dict(cparams)
        self.slots = asyncio.Semaphore(size)
        self.idle: list[Any] = []

    async def read(self, q: Query, params: dict[str, Any]) -> list[SimpleNamespace]:
        import psycopg

        async with self.slots:
            conn = self.idle.pop() if self.idle else await psycopg.AsyncConnection.connect(
                *self.cargs, **self.cparams, autocommit=True)
            ok = False
            try:
                cur = await conn.execute(q.sql, q.params(params))
                raw = await cur.fetchall()
                # psycopg builds a Column object per column on every `description`: only the first read of a
                # statement needs it (for the result processors).
                description = (cur.description or ()) if q.procs is None else ()
                ok = True
            except Exception as exc:
                if _connection_error(exc):
                    await self._drop_idle()  # a failover or restart took the others too
                raise
            finally:
                if ok and not conn.closed:
                    self.idle.append(conn)
                else:
                    await conn.close()
        return q.rows(raw, description)

    async def _drop_idle(self) -> None:
        idle, self.idle = self.idle, []
        for conn in idle:
            await conn.close()

    async def close(self) -> None:
        await self._drop_idle()


# --- the statements of the read routes ----------------------------------------------------------------------------
_J = Job.__table__.c
JOB_PUBLIC_COLUMNS = [_J[name] for name in (
    "id", "owner_id", "kind", "status", "input", "outputs", "error_code", "error_message", "progress",
    "progress_message", "credits", "credits_state", "attempt", "max_attempts", "priority", "cancel_requested",
    "callback_url", "idempotency_key", "created_at", "started_at", "finished_at", "expires_at")]

JOB_BY_ID = select(*JOB_PUBLIC_COLUMNS).where(_J.id == bindparam("job_id"))

_E = JobEvent.__table__.c
JOB_EVENTS_AFTER = (select(_E.id, _E.job_id, _E.ts, _E.type, _E.path, _E.attempt, _E.details)
                    .where(_E.job_id == bindparam("job_id"), _E.id > bindparam("after"))
                    .order_by(_E.id).limit(bindparam("limit")))

_A = Asset.__table__.c
ASSET_BY_ID = select(*Asset.__table__.c).where(_A.id == bindparam("asset_id"))


def _jobs_page(status: bool, kind: bool, cursor: bool) -> Any:
    q = select(*JOB_PUBLIC_COLUMNS).where(_J.owner_id == bindparam("owner_id"))
    if status:
        q = q.where(_J.status == bindparam("status"))
    if kind:
        q = q.where(_J.kind == bindparam("kind"))
    if cursor:
        q = q.where(or_(_J.created_at < bindparam("before_ts"),
                        and_(_J.created_at == bindparam("before_ts"), _J.id < bindparam("before_id"))))
    return q.order_by(_J.created_at.desc(), _J.id.desc()).limit(bindparam("limit"))


# One statement per combination of filters, so each compiles once.
_JOB_PAGES = {(s, k, c): _jobs_page(s, k, c) for s in (False, True) for k in (False, True) for c in (False, True)}


def jobs_page(*, status: bool, kind: bool, cursor: bool) -> Any:
    """The owner's jobs newest first, with the filters named (parameters owner_id, limit, and status, kind,
    before_ts and before_id as named)."""
    return _JOB_PAGES[(status, kind, cursor)]


# Asset lookups by a list of ids: one statement per size class (each compiles once); shorter lists repeat their
# last id to fill the class.
OWNED_ASSETS_MAX = 256
_OWNED_SIZES = (1, 4, 16, 64, OWNED_ASSETS_MAX)
_OWNED_ASSETS = {n: select(_A.id, _A.key, _A.filename, _A.content_type)
                 .where(_A.owner_id == bindparam("owner_id"), _A.id.in_([bindparam(f"id{i}") for i in range(n)]))
                 for n in _OWNED_SIZES}


def _owned_assets(owner_id: str, asset_ids: list[str]) -> tuple[Any, dict[str, Any]]:
    ids = list(dict.fromkeys(asset_ids))[:OWNED_ASSETS_MAX]
    size = next(n for n in _OWNED_SIZES if n >= len(ids))
    params: dict[str, Any] = {"owner_id": owner_id}
    for i in range(size):
        params[f"id{i}"] = ids[min(i, len(ids) - 1)]
    return _OWNED_ASSETS[size], params
