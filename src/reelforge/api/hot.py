"""The hot read, `GET /v1/jobs/{id}`, answered without the framework when it can be.

Every client that waits on a job polls this route, so it is the one request the API serves most. Through
FastAPI it costs route matching over every route, dependency solving, and response validation before any work
is done: about four fifths of its CPU time (docs/benchmarks.md, "API latency"). This ASGI layer sits inside the
request-id/metrics/access-log layer (GuardMiddleware) and answers the common case itself:

- a bearer token whose principal is already in the app's PrincipalCache (the cache `deps.principal` fills and
  the auth service empties on every key, role or disabled change),
- a job that exists and belongs to that principal,

with the same bytes the FastAPI route sends (`convert.job_fields` serialized by pydantic's JSON serializer,
which is what FastAPI uses for a response model; tests/api/test_hot_read.py compares the two). Anything else
(no or unknown token, a cache miss, a missing or foreign job, a database error) goes on to the FastAPI route
unchanged, which then answers exactly as it always does: errors are never produced here.

The read itself is one primary-key SELECT (the statement `read_owned_job` compiles), and never through the
threadpool, whose hop costs more than the query:

- SQLite: on a connection this layer keeps per thread, run on the event loop. In WAL mode a reader never waits
  for a writer; `busy_timeout` is 0 on that connection, so in the rare case SQLite does ask a reader to wait (a
  WAL reset racing the read), the read fails at once and the request goes the FastAPI way instead of blocking
  the loop.
- PostgreSQL: on psycopg's asyncio connections, a small pool per event loop (at most `database.pool_size`),
  in autocommit (one statement is one snapshot), with psycopg's automatic server-side prepare. A broken
  connection is dropped and the request goes the FastAPI way. The pool closes at lifespan shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import weakref
from typing import Any

from pydantic_core import to_json
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from reelforge.adapters.db.store import compiled_job_read, read_owned_job_dbapi
from reelforge.api import convert
from reelforge.api.deps import bearer_token, principal_cache_for
from reelforge.observability import account_id_var
from reelforge.tracing import ROUTE_SCOPE_KEY

log = logging.getLogger(__name__)

PREFIX = "/v1/jobs/"
ROUTE = "/v1/jobs/{job_id}"  # the metrics label, as FastAPI's route would give it
MAX_ID = 128


class HotReads:
    def __init__(self, app: ASGIApp, *, container: Any) -> None:
        self.app = app
        self.c = container
        self.sqlite_path = container.db.sqlite_file
        self.postgres = container.db.is_postgres
        # One connection per thread (an app can be served from more than one event loop, as in tests); it closes
        # when its thread ends or the app is dropped.
        self._local = threading.local()
        self._pg_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _PgPool] = weakref.WeakKeyDictionary()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, self._on_shutdown(receive), send)
            return
        if scope["type"] == "http" and scope["method"] == "GET":
            path: str = scope["path"]
            if path.startswith(PREFIX):
                job_id = path[len(PREFIX):]
                if job_id and len(job_id) <= MAX_ID and "/" not in job_id and await self._answer(scope, send, job_id):
                    return
        await self.app(scope, receive, send)

    async def _answer(self, scope: Scope, send: Send, job_id: str) -> bool:
        """Send the job and return True, or return False having sent nothing."""
        header = ""
        for k, v in scope["headers"]:
            if len(k) == 13 and k.lower() == b"authorization":
                header = v.decode("latin-1")
                break
        token = bearer_token(header)
        app = scope.get("app")
        if token is None or app is None:
            return False
        cache = principal_cache_for(app.state, self.c)
        p = cache.get(cache.key(token))
        if p is None:
            return False  # the FastAPI route authenticates (and fills the cache)
        if self.sqlite_path is not None:
            row = self._read_sqlite(job_id, p.user_id)
        elif self.postgres:
            row = await self._read_pg(job_id, p.user_id)
        else:
            return False
        if row is None:
            return False  # 404 (or a failed read) in the route's words
        body = to_json(convert.job_fields(row))
        scope.setdefault("state", {})["principal"] = p
        scope[ROUTE_SCOPE_KEY] = ROUTE
        account_id_var.set(p.user_id)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(body)).encode()),
                                (b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})
        return True

    def _read_sqlite(self, job_id: str, owner_id: str) -> Any | None:
        assert self.sqlite_path is not None
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        try:
            if conn is None:
                conn = sqlite3.connect(self.sqlite_path, timeout=0, isolation_level=None)
                conn.execute("PRAGMA busy_timeout=0")
                conn.execute("PRAGMA query_only=1")
                self._local.conn = conn
            return read_owned_job_dbapi(self.c.db, conn, job_id, owner_id)
        except sqlite3.Error:
            log.debug("hot job read on SQLite failed; the route answers", exc_info=True)
            return None

    async def _read_pg(self, job_id: str, owner_id: str) -> Any | None:
        loop = asyncio.get_running_loop()
        pool = self._pg_pools.get(loop)
        if pool is None:
            size = int(getattr(getattr(self.c.settings, "database", None), "pool_size", 10) or 10)
            pool = self._pg_pools[loop] = _PgPool(self.c.db, max(1, min(size, 16)))
        try:
            return await pool.read(job_id, owner_id)
        except Exception:  # the FastAPI route reads again and answers the error its way
            log.debug("hot job read on PostgreSQL failed; the route answers", exc_info=True)
            return None

    def _on_shutdown(self, receive: Receive) -> Receive:
        async def wrapped() -> Message:
            message = await receive()
            if message["type"] == "lifespan.shutdown":
                pool = self._pg_pools.pop(asyncio.get_running_loop(), None)
                if pool is not None:
                    await pool.close()
            return message

        return wrapped


class _PgPool:
    """psycopg AsyncConnections of one event loop for the hot read: opened on demand, at most `size`."""

    def __init__(self, db: Any, size: int) -> None:
        self.db = db
        self.query = compiled_job_read(db)
        cargs, cparams = db.engine.dialect.create_connect_args(db.engine.url)
        self.cargs, self.cparams = list(cargs), dict(cparams)
        self.slots = asyncio.Semaphore(size)
        self.idle: list[Any] = []

    async def read(self, job_id: str, owner_id: str) -> Any | None:
        import psycopg

        q = self.query
        async with self.slots:
            conn = self.idle.pop() if self.idle else await psycopg.AsyncConnection.connect(
                *self.cargs, **self.cparams, autocommit=True)
            ok = False
            try:
                cur = await conn.execute(q.sql, q.params({"job_id": job_id, "owner_id": owner_id}))
                raw = await cur.fetchone()
                procs = q.processors(cur.description or ())
                ok = True
            finally:
                if ok and not conn.closed:
                    self.idle.append(conn)
                else:
                    await conn.close()
        return None if raw is None else q.row(raw, procs)

    async def close(self) -> None:
        idle, self.idle = self.idle, []
        for conn in idle:
            await conn.close()
