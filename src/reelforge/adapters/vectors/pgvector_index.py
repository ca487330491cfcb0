"""pgvector HNSW on PostgreSQL (the OpenSearch k-NN of the AWS designs).

The adapter owns its schema on its own connection URL (``vectors.url``, default: the database URL): it creates
the ``vector`` extension, one table per dimension and an HNSW index (cosine) idempotently under an advisory
lock, so several processes may start at once and a main database without pgvector is never touched.

Filters are SQL WHERE clauses of the same query that walks the index. pgvector 0.8's iterative index scan
(``hnsw.iterative_scan``) keeps walking the graph until LIMIT rows pass the filter, so a restrictive filter
still yields k hits; when the walk stops short (``hnsw.max_scan_tuples``), the same query runs once more as an
exact scan, so fewer than k hits always means fewer than k visible vectors exist.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import psycopg
from anyio import to_thread
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine

from reelforge.adapters.db.engine import normalize_url
from reelforge.errors import ServiceUnavailable
from reelforge.ports.vectors import (
    Hit,
    InvalidVector,
    SearchFilter,
    VectorRecord,
    as_vector,
    check_filter,
    check_k,
    check_key,
    check_namespace,
    check_records,
    check_visibility,
)

log = logging.getLogger(__name__)

_SETUP_LOCK = 0x7266_7665_6374  # advisory lock key for schema creation ("rfvect")
_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,40}$")
ITERATIVE_SCANS = ("off", "relaxed_order", "strict_order")


def plain_url(url: str) -> str:
    """A libpq URL (psycopg.connect) from a SQLAlchemy one."""
    url = normalize_url(url)
    return "postgresql://" + url.split("://", 1)[1]


def pgvector_available(url: str, *, timeout: float = 5.0) -> bool:
    """Whether the server at `url` can run ``CREATE EXTENSION vector`` (or already has it)."""
    try:
        with psycopg.connect(plain_url(url), connect_timeout=int(max(1, timeout))) as conn:
            row = conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'").fetchone()
            return row is not None
    except psycopg.Error:
        return False


def _flt_sql(flt: SearchFilter | None) -> tuple[str, dict[str, Any]]:
    """WHERE clauses (AND-ed, each with a leading ' AND ') and their parameters."""
    if flt is None:
        return "", {}
    parts: list[str] = []
    params: dict[str, Any] = {}
    if flt.viewer_id is None:
        parts.append("visibility = 'public'")
    else:
        parts.append("(visibility = 'public' OR owner_id = %(viewer)s)")
        params["viewer"] = flt.viewer_id
    if flt.owner_id is not None:
        parts.append("owner_id = %(owner)s")
        params["owner"] = flt.owner_id
    if flt.model_version is not None:
        parts.append("model_version = %(mver)s")
        params["mver"] = flt.model_version
    if flt.exclude_ids:
        parts.append("NOT (id = ANY(%(exclude)s))")
        params["exclude"] = list(flt.exclude_ids)
    return "".join(f" AND {p}" for p in parts), params


class PgVectorIndex:
    """HNSW (cosine) in PostgreSQL with pgvector >= 0.8."""

    name = "pgvector"

    def __init__(self, url: str, *, dim: int = 256, m: int = 16, ef_construction: int = 64, ef_search: int = 100,
                 iterative_scan: str = "relaxed_order", max_scan_tuples: int = 20_000, table: str | None = None,
                 pool_size: int = 5, maintenance_work_mem: str = "256MB") -> None:
        if dim < 1 or dim > 16_000:
            raise ValueError(f"dimension must be between 1 and 16000 for pgvector, got {dim}")
        if iterative_scan not in ITERATIVE_SCANS:
            raise ValueError(f"iterative_scan must be one of {ITERATIVE_SCANS}, got {iterative_scan!r}")
        if not normalize_url(url).startswith("postgresql"):
            raise ValueError("the pgvector index needs a PostgreSQL URL (set vectors.url), got a "
                             f"{url.split(':', 1)[0]} URL")
        self.dim = dim
        self.m = int(m)
        self.ef_construction = int(ef_construction)
        self.ef_search = int(ef_search)
        self.iterative_scan = iterative_scan
        self.max_scan_tuples = int(max_scan_tuples)
        self.table = table or f"vectors_hnsw_{dim}"
        if not _IDENT.match(self.table):
            raise ValueError(f"invalid table name {self.table!r}")
        if not re.fullmatch(r"\d+\s*(kB|MB|GB)", maintenance_work_mem):
            raise ValueError(f"invalid maintenance_work_mem {maintenance_work_mem!r}")
        self._mwm = maintenance_work_mem
        self.url = url
        self._ensure_schema()
        self._engine: Engine = create_engine(normalize_url(url), pool_size=pool_size, max_overflow=pool_size * 2,
                                             pool_pre_ping=True)
        event.listen(self._engine, "connect", _register)

    # Schema --------------------------------------------------------------------------------------------
    def _ensure_schema(self) -> None:
        t = self.table
        try:
            conn = psycopg.connect(plain_url(self.url), autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            raise ServiceUnavailable(f"cannot reach the pgvector server: {exc}", code="vectors_unavailable") from exc
        with conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SETUP_LOCK,))
            try:
                conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            except psycopg.Error as exc:
                raise ServiceUnavailable(
                    f"the pgvector extension is not available on this server ({exc}); install pgvector "
                    "there, point vectors.url at a server that has it, or set vectors.backend=numpy",
                    code="vectors_unavailable") from exc
            version = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
            self.extension_version = str(version[0]) if version else ""
            conn.execute(f"SET LOCAL maintenance_work_mem = '{self._mwm}'")
            conn.execute(f"""
                    CREATE TABLE IF NOT EXISTS {t} (
                        namespace text NOT NULL,
                        id text NOT NULL,
                        owner_id text NOT NULL,
                        visibility text NOT NULL,
                        model_version text NOT NULL DEFAULT '',
                        embedding vector({self.dim}) NOT NULL,
                        updated_at double precision NOT NULL DEFAULT extract(epoch from clock_timestamp()),
                        PRIMARY KEY (namespace, id)
                    )""")
            conn.execute(f"CREATE INDEX IF NOT EXISTS {t}_owner ON {t} (namespace, owner_id)")
            conn.execute(f"CREATE INDEX IF NOT EXISTS {t}_visibility ON {t} (namespace, visibility)")
            conn.execute(f"CREATE INDEX IF NOT EXISTS {t}_hnsw ON {t} USING hnsw (embedding vector_cosine_ops) "
                         f"WITH (m = {self.m}, ef_construction = {self.ef_construction})")
        major = tuple(int(x) for x in re.findall(r"\d+", self.extension_version)[:2])
        if major < (0, 8) and self.iterative_scan != "off":
            log.warning("pgvector %s has no iterative index scans; restrictive filters fall back to exact scans",
                        self.extension_version)
            self.iterative_scan = "off"

    @contextmanager
    def _tx(self) -> Iterator[psycopg.Connection[Any]]:
        raw = self._engine.raw_connection()
        try:
            conn: psycopg.Connection[Any] = raw.driver_connection  # type: ignore[assignment]
            if not conn.autocommit:
                # The pool's pre-ping (or a failed call) may have left an implicit transaction open; with
                # autocommit, transaction() below is a real BEGIN/COMMIT and never a savepoint inside it.
                conn.rollback()
                conn.autocommit = True
            with conn.transaction():
                yield conn
        finally:
            raw.close()

    # Writes --------------------------------------------------------------------------------------------
    def upsert(self, namespace: str, records: Sequence[VectorRecord]) -> None:
        check_namespace(namespace)
        # Sorted ids: two concurrent upserts of overlapping ids lock rows in the same order (no deadlock).
        recs = sorted(check_records(records, self.dim), key=lambda r: r.id)
        if not recs:
            return
        sql = (f"INSERT INTO {self.table} (namespace, id, owner_id, visibility, model_version, embedding) "
               "VALUES (%s, %s, %s, %s, %s, %b) ON CONFLICT (namespace, id) DO UPDATE SET "
               "owner_id = EXCLUDED.owner_id, visibility = EXCLUDED.visibility, "
               "model_version = EXCLUDED.model_version, embedding = EXCLUDED.embedding, "
               "updated_at = extract(epoch from clock_timestamp())")
        with self._tx() as conn, conn.cursor() as cur:
            cur.executemany(sql, [(namespace, r.id, r.owner_id, r.visibility, r.model_version, r.vector)
                                  for r in recs])

    def delete(self, namespace: str, ids: Sequence[str]) -> int:
        check_namespace(namespace)
        wanted = sorted({check_key(i, "id") for i in ids})
        if not wanted:
            return 0
        with self._tx() as conn:
            cur = conn.execute(f"DELETE FROM {self.table} WHERE namespace = %s AND id = ANY(%s)", (namespace, wanted))
            return int(cur.rowcount or 0)

    def set_visibility(self, namespace: str, id: str, visibility: str) -> bool:
        check_namespace(namespace)
        check_key(id, "id")
        check_visibility(visibility)
        with self._tx() as conn:
            cur = conn.execute(f"UPDATE {self.table} SET visibility = %s, "
                               "updated_at = extract(epoch from clock_timestamp()) "
                               "WHERE namespace = %s AND id = %s", (visibility, namespace, id))
            return bool(cur.rowcount)

    # Reads ---------------------------------------------------------------------------------------------
    def get(self, namespace: str, id: str) -> VectorRecord | None:
        check_namespace(namespace)
        check_key(id, "id")
        with self._tx() as conn:
            row = conn.execute(f"SELECT owner_id, visibility, model_version, embedding FROM {self.table} "
                               "WHERE namespace = %s AND id = %s", (namespace, id)).fetchone()
        if row is None:
            return None
        return VectorRecord(id=id, vector=_array(row[3]), owner_id=row[0],
                            visibility=row[1], model_version=row[2])

    def search(self, namespace: str, vector: np.ndarray[Any, Any], k: int,
               flt: SearchFilter = SearchFilter()) -> list[Hit]:
        approx, exact, params, k = self._search_sql(namespace, vector, k, flt)
        with self._tx() as conn:
            self._configure(conn, k)
            # prepare=False: a cached generic plan would ignore how selective this call's filter is.
            rows = conn.execute(approx, params, prepare=False).fetchall()
            if len(rows) < k:
                rows = conn.execute(exact, params, prepare=False).fetchall()
        return [Hit(id=r[0], score=1.0 - float(r[1])) for r in rows]

    async def asearch(self, namespace: str, vector: np.ndarray[Any, Any], k: int,
                      flt: SearchFilter = SearchFilter()) -> list[Hit]:
        """On a worker thread: the search is a query on this index's own synchronous connections."""
        return await to_thread.run_sync(self.search, namespace, vector, k, flt)

    def explain(self, namespace: str, vector: np.ndarray[Any, Any], k: int,
                flt: SearchFilter = SearchFilter()) -> str:
        """The executed plan (EXPLAIN ANALYZE) of the query search() runs first: shows whether the HNSW index
        was walked, and how many rows the filter removed."""
        approx, _, params, k = self._search_sql(namespace, vector, k, flt)
        with self._tx() as conn:
            self._configure(conn, k)
            rows = conn.execute("EXPLAIN (ANALYZE, COSTS OFF) " + approx, params, prepare=False).fetchall()
        return "\n".join(str(r[0]) for r in rows)

    def _search_sql(self, namespace: str, vector: np.ndarray[Any, Any], k: int,
                    flt: SearchFilter | None) -> tuple[str, str, dict[str, Any], int]:
        check_namespace(namespace)
        q = as_vector(vector, self.dim, "query vector")
        k = check_k(k)
        where, params = _flt_sql(check_filter(flt) or SearchFilter())
        params.update(ns=namespace, q=q)
        # `embedding <=> q` as ORDER BY walks the HNSW index; `(embedding <=> q) + 0` cannot, so it is exact.
        # relaxed_order may return the index's hits slightly out of order: the outer query sorts them again.
        approx = (f"WITH r AS MATERIALIZED (SELECT id, embedding <=> %(q)b AS d FROM {self.table} "
                  f"WHERE namespace = %(ns)s{where} ORDER BY d LIMIT {k}) SELECT id, d FROM r ORDER BY d + 0, id")
        exact = (f"SELECT id, (embedding <=> %(q)b) + 0 AS d FROM {self.table} "
                 f"WHERE namespace = %(ns)s{where} ORDER BY d, id LIMIT {k}")
        return approx, exact, params, k

    def _configure(self, conn: psycopg.Connection[Any], k: int) -> None:
        ef = str(max(self.ef_search, k))
        if self.iterative_scan == "off":  # pgvector < 0.8 refuses the iterative scan settings
            conn.execute("SELECT set_config('hnsw.ef_search', %s, true)", (ef,))
        else:
            conn.execute("SELECT set_config('hnsw.ef_search', %s, true), set_config('hnsw.iterative_scan', %s, true),"
                         " set_config('hnsw.max_scan_tuples', %s, true)",
                         (ef, self.iterative_scan, str(self.max_scan_tuples)))

    def count(self, namespace: str) -> int:
        check_namespace(namespace)
        with self._tx() as conn:
            row = conn.execute(f"SELECT count(*) FROM {self.table} WHERE namespace = %s", (namespace,)).fetchone()
        return int(row[0]) if row else 0

    def iter_all(self, namespace: str, *, flt: SearchFilter | None = None,
                 batch: int = 1000) -> Iterator[VectorRecord]:
        check_namespace(namespace)
        check_filter(flt)
        if batch < 1:
            raise InvalidVector(f"batch must be positive, got {batch}")
        where, params = _flt_sql(flt)
        params["ns"] = namespace
        after: str | None = None
        while True:
            cond = "" if after is None else " AND id > %(after)s"
            params["after"] = after
            with self._tx() as conn:
                rows = conn.execute(f"SELECT id, owner_id, visibility, model_version, embedding FROM {self.table} "
                                    f"WHERE namespace = %(ns)s{where}{cond} ORDER BY id LIMIT {int(batch)}",
                                    params).fetchall()
            for r in rows:
                yield VectorRecord(id=r[0], vector=_array(r[4]), owner_id=r[1],
                                   visibility=r[2], model_version=r[3])
            if len(rows) < batch:
                return
            after = rows[-1][0]

    def close(self) -> None:
        self._engine.dispose()

    # Maintenance (initial imports, benchmarks, operators) ----------------------------------------------
    def bulk_import(self, namespace: str, records: Sequence[VectorRecord]) -> None:
        """Upsert many records at once: binary COPY, then the HNSW index is built again over the whole table.

        Building the graph once is several times faster than inserting into it row by row, but the table is
        locked while it runs (searches of every namespace wait): for initial loads and re-imports, not for
        live traffic, which goes through upsert().
        """
        check_namespace(namespace)
        recs = check_records(records, self.dim)
        if not recs:
            return
        t = self.table
        with self._tx() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SETUP_LOCK,))
            conn.execute(f"SET LOCAL maintenance_work_mem = '{self._mwm}'")
            conn.execute(f"DROP INDEX IF EXISTS {t}_hnsw")
            conn.execute(f"CREATE TEMP TABLE {t}_import (LIKE {t} INCLUDING DEFAULTS) ON COMMIT DROP")
            with conn.cursor() as cur, cur.copy(
                    f"COPY {t}_import (namespace, id, owner_id, visibility, model_version, embedding) "
                    "FROM STDIN WITH (FORMAT BINARY)") as copy:
                copy.set_types(["text", "text", "text", "text", "text", "vector"])
                for r in recs:
                    copy.write_row((namespace, r.id, r.owner_id, r.visibility, r.model_version, r.vector))
            conn.execute(f"INSERT INTO {t} (namespace, id, owner_id, visibility, model_version, embedding) "
                         f"SELECT namespace, id, owner_id, visibility, model_version, embedding FROM {t}_import "
                         "ON CONFLICT (namespace, id) DO UPDATE SET owner_id = EXCLUDED.owner_id, "
                         "visibility = EXCLUDED.visibility, model_version = EXCLUDED.model_version, "
                         "embedding = EXCLUDED.embedding, updated_at = extract(epoch from clock_timestamp())")
            conn.execute(f"CREATE INDEX {t}_hnsw ON {t} USING hnsw (embedding vector_cosine_ops) "
                         f"WITH (m = {self.m}, ef_construction = {self.ef_construction})")


def _array(value: Any) -> np.ndarray[Any, Any]:
    return np.asarray(value.to_numpy() if hasattr(value, "to_numpy") else value, dtype=np.float32)


def _register(dbapi_conn: Any, _record: Any) -> None:
    from pgvector.psycopg import register_vector

    register_vector(dbapi_conn)
    dbapi_conn.rollback()  # the type lookup opened a transaction
    dbapi_conn.autocommit = True
