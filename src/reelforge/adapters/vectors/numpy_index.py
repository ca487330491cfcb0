"""Exact search in NumPy over vectors kept in the database (SQLite by default; PostgreSQL as bytea works too).

The database is the source of truth. Each namespace searched in this process is held in memory as a float32
matrix of unit rows, so a search is one matrix-vector product over the rows the filter lets through.

Keeping that copy in sync: every write bumps the namespace's row in ``vector_namespaces`` in the same
transaction. A writer in this process applies its own change to the copy when the version it committed is the
one after the copy's; a search reads the version first (one primary-key lookup) and reloads the namespace when
another process (or another index instance) moved it. Rows are read after the version, so a copy never claims
a version newer than its contents: at worst it reloads once more than needed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from anyio import to_thread
from sqlalchemy import and_, bindparam, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.elements import ColumnElement

from reelforge.adapters.db.engine import Database, db_epoch
from reelforge.adapters.db.models import VectorItem, VectorNamespace
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

_LOAD_CHUNK = 5000
# `asearch` runs a search on the event loop when the in-memory copy is current and holds at most this many
# numbers (rows x dimension; about 0.5 ms of one core), else on a worker thread. A thread hop costs little CPU,
# but under load the hop back waits behind every other ready request, and the threads contend for the GIL.
INLINE_SEARCH_MAX = 1_000_000
_VERSION = select(VectorNamespace.version).where(VectorNamespace.namespace == bindparam("namespace"))


class _Space:
    """The in-memory copy of one namespace: unit rows plus the columns filters need, as integer codes."""

    def __init__(self, dim: int, version: int) -> None:
        self.dim = dim
        self.version = version
        self.lock = threading.Lock()
        self.n = 0
        self.mat = np.empty((0, dim), dtype=np.float32)
        self.owner = np.empty(0, dtype=np.int32)
        self.mver = np.empty(0, dtype=np.int32)
        self.public = np.empty(0, dtype=bool)
        self.ids: list[str] = []
        self.rows: dict[str, int] = {}
        self.owner_codes: dict[str, int] = {}
        self.mver_codes: dict[str, int] = {}

    # Writes (caller holds self.lock) -----------------------------------------------------------------
    def _reserve(self, need: int) -> None:
        cap = self.mat.shape[0]
        if need <= cap:
            return
        new_cap = max(need, cap * 2, 64)
        mat = np.empty((new_cap, self.dim), dtype=np.float32)
        mat[: self.n] = self.mat[: self.n]
        self.mat = mat
        for name, dtype in (("owner", np.int32), ("mver", np.int32), ("public", bool)):
            arr = np.empty(new_cap, dtype=dtype)
            arr[: self.n] = getattr(self, name)[: self.n]
            setattr(self, name, arr)

    def put(self, rows: Sequence[tuple[str, str, str, str]], units: np.ndarray[Any, Any]) -> None:
        """Insert or overwrite (id, owner_id, visibility, model_version) rows with their unit vectors."""
        self._reserve(self.n + len(rows))
        for (id_, owner_id, visibility, model_version), unit in zip(rows, units, strict=True):
            row = self.rows.get(id_)
            if row is None:
                row = self.n
                self.n += 1
                self.rows[id_] = row
                self.ids.append(id_)
            self.mat[row] = unit
            self.owner[row] = self.owner_codes.setdefault(owner_id, len(self.owner_codes))
            self.mver[row] = self.mver_codes.setdefault(model_version, len(self.mver_codes))
            self.public[row] = visibility == "public"

    def extend(self, rows: Sequence[Any], units: np.ndarray[Any, Any]) -> None:
        """Append rows (id, owner_id, visibility, model_version) whose ids are not held yet (the load path)."""
        m = len(rows)
        self._reserve(self.n + m)
        start, end = self.n, self.n + m
        oc, mc = self.owner_codes, self.mver_codes
        self.mat[start:end] = units
        self.owner[start:end] = [oc.setdefault(r[1], len(oc)) for r in rows]
        self.mver[start:end] = [mc.setdefault(r[3], len(mc)) for r in rows]
        self.public[start:end] = [r[2] == "public" for r in rows]
        new_ids = [r[0] for r in rows]
        self.rows.update(zip(new_ids, range(start, end), strict=True))
        self.ids.extend(new_ids)
        self.n = end

    def remove(self, ids: Sequence[str]) -> None:
        for id_ in ids:
            row = self.rows.pop(id_, None)
            if row is None:
                continue
            last = self.n - 1
            if row != last:  # move the last row into the hole
                moved = self.ids[last]
                self.mat[row] = self.mat[last]
                self.owner[row] = self.owner[last]
                self.mver[row] = self.mver[last]
                self.public[row] = self.public[last]
                self.ids[row] = moved
                self.rows[moved] = row
            self.ids.pop()
            self.n = last

    def set_public(self, id_: str, public: bool) -> None:
        row = self.rows.get(id_)
        if row is not None:
            self.public[row] = public

    # Reads (caller holds self.lock) ------------------------------------------------------------------
    def mask(self, flt: SearchFilter) -> np.ndarray[Any, Any] | None:
        """Rows `flt` lets through (a fresh bool array), or None when none can pass."""
        n = self.n
        if flt.viewer_id is None:
            m = self.public[:n].copy()
        else:
            code = self.owner_codes.get(flt.viewer_id)
            m = self.public[:n].copy() if code is None else self.public[:n] | (self.owner[:n] == code)
        if flt.owner_id is not None:
            code = self.owner_codes.get(flt.owner_id)
            if code is None:
                return None
            m &= self.owner[:n] == code
        if flt.model_version is not None:
            code = self.mver_codes.get(flt.model_version)
            if code is None:
                return None
            m &= self.mver[:n] == code
        for id_ in flt.exclude_ids:
            row = self.rows.get(id_)
            if row is not None:
                m[row] = False
        return m

    def search(self, q: np.ndarray[Any, Any], k: int, flt: SearchFilter) -> list[Hit]:
        n = self.n
        if n == 0:
            return []
        mask = self.mask(flt)
        if mask is None:
            return []
        rows = np.flatnonzero(mask)
        if rows.size == 0:
            return []
        # einsum, not `@`: a matrix-vector product through multithreaded BLAS stalls for milliseconds when the
        # cores are busy (measured 12 ms vs 0.4 ms at 10k x 256 on 2 loaded cores); one thread is memory-bound
        # anyway, and concurrent searches run in parallel.
        if rows.size == n:
            scores = np.einsum("ij,j->i", self.mat[:n], q)
        elif rows.size * 4 < n:
            scores = np.einsum("ij,j->i", self.mat[rows], q)  # a narrow filter: gather the few rows first
        else:
            scores = np.einsum("ij,j->i", self.mat[:n], q)[rows]
        if k < scores.size:
            top = np.argpartition(-scores, k - 1)[:k]
        else:
            top = np.arange(scores.size)
        top = top[np.argsort(-scores[top], kind="stable")]
        return [Hit(id=self.ids[int(rows[i])], score=float(scores[i])) for i in top]


def _units(vectors: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / norms).astype(np.float32, copy=False)


def sql_filter(flt: SearchFilter | None) -> list[ColumnElement[bool]]:
    """The WHERE clauses of a filter on the ``vectors`` table (the same rules as _Space.mask)."""
    if flt is None:
        return []
    t = VectorItem
    clauses: list[ColumnElement[bool]] = []
    if flt.viewer_id is None:
        clauses.append(t.visibility == "public")
    else:
        clauses.append(or_(t.visibility == "public", t.owner_id == flt.viewer_id))
    if flt.owner_id is not None:
        clauses.append(t.owner_id == flt.owner_id)
    if flt.model_version is not None:
        clauses.append(t.model_version == flt.model_version)
    if flt.exclude_ids:
        clauses.append(t.id.not_in(list(flt.exclude_ids)))
    return clauses


class NumpyVectorIndex:
    """Exact cosine search in NumPy; vectors persisted in the ``vectors`` table (see migration 0003)."""

    name = "numpy"

    def __init__(self, db: Database, *, dim: int = 256, owns_db: bool = False) -> None:
        if dim < 1:
            raise ValueError(f"dimension must be positive, got {dim}")
        self.dim = dim
        self._db = db
        self._owns_db = owns_db
        self._spaces: dict[str, _Space] = {}
        self._lock = threading.Lock()  # guards the two dicts below and _spaces
        self._write_locks: dict[str, threading.Lock] = {}
        self._load_locks: dict[str, threading.Lock] = {}

    # Writes --------------------------------------------------------------------------------------------
    def upsert(self, namespace: str, records: Sequence[VectorRecord]) -> None:
        check_namespace(namespace)
        recs = sorted(check_records(records, self.dim), key=lambda r: r.id)
        if not recs:
            return
        dialect_insert = postgresql.insert if self._db.is_postgres else sqlite.insert
        stmt = dialect_insert(VectorItem).values(updated_at=db_epoch())
        stmt = stmt.on_conflict_do_update(
            index_elements=["namespace", "id"],
            set_={c: stmt.excluded[c] for c in ("owner_id", "visibility", "model_version", "dim", "vector",
                                                 "updated_at")},
        )
        rows = [{"namespace": namespace, "id": r.id, "owner_id": r.owner_id, "visibility": r.visibility,
                 "model_version": r.model_version, "dim": self.dim, "vector": r.vector.astype("<f4").tobytes()}
                for r in recs]
        units = _units(np.stack([r.vector for r in recs]))

        meta = [(r.id, r.owner_id, r.visibility, r.model_version) for r in recs]

        def apply(space: _Space) -> None:
            space.put(meta, units)

        with self._write_lock(namespace):
            with self._db.tx(write=True) as s:
                version = self._bump(s, namespace)
                for i in range(0, len(rows), 1000):
                    s.execute(stmt, rows[i:i + 1000])
            self._apply(namespace, version, apply)

    def delete(self, namespace: str, ids: Sequence[str]) -> int:
        check_namespace(namespace)
        wanted = sorted({check_key(i, "id") for i in ids})
        if not wanted:
            return 0
        removed = 0
        with self._write_lock(namespace):
            with self._db.tx(write=True) as s:
                version = self._bump(s, namespace)
                for i in range(0, len(wanted), 500):
                    part = wanted[i:i + 500]
                    res = s.execute(delete(VectorItem).where(VectorItem.namespace == namespace,
                                                             VectorItem.id.in_(part)))
                    removed += int(res.rowcount or 0)  # type: ignore[attr-defined]
            self._apply(namespace, version, lambda space: space.remove(wanted))
        return removed

    def set_visibility(self, namespace: str, id: str, visibility: str) -> bool:
        check_namespace(namespace)
        check_key(id, "id")
        check_visibility(visibility)
        with self._write_lock(namespace):
            with self._db.tx(write=True) as s:
                version = self._bump(s, namespace)
                res = s.execute(update(VectorItem)
                                .where(VectorItem.namespace == namespace, VectorItem.id == id)
                                .values(visibility=visibility, updated_at=db_epoch()))
                found = bool(res.rowcount)  # type: ignore[attr-defined]
            self._apply(namespace, version, lambda space: space.set_public(id, visibility == "public"))
        return found

    def _bump(self, s: Any, namespace: str) -> int:
        """Take the namespace's row lock first (writers of one namespace queue here) and return its new version."""
        dialect_insert = postgresql.insert if self._db.is_postgres else sqlite.insert
        s.execute(dialect_insert(VectorNamespace)
                  .values(namespace=namespace, version=0, updated_at=db_epoch())
                  .on_conflict_do_nothing(index_elements=["namespace"]))
        return int(s.execute(update(VectorNamespace)
                             .where(VectorNamespace.namespace == namespace)
                             .values(version=VectorNamespace.version + 1, updated_at=db_epoch())
                             .returning(VectorNamespace.version)).scalar_one())

    def _apply(self, namespace: str, version: int, change: Any) -> None:
        with self._lock:
            space = self._spaces.get(namespace)
        if space is None:
            return  # loaded on first search
        with space.lock:
            if space.version == version - 1:
                change(space)
                space.version = version
            # Otherwise another process wrote in between: the next search sees the version and reloads.

    def _write_lock(self, namespace: str) -> threading.Lock:
        with self._lock:
            return self._write_locks.setdefault(namespace, threading.Lock())

    # Reads ---------------------------------------------------------------------------------------------
    def get(self, namespace: str, id: str) -> VectorRecord | None:
        check_namespace(namespace)
        check_key(id, "id")
        t = VectorItem
        with self._db.tx(write=False) as conn:
            row = conn.execute(select(t.owner_id, t.visibility, t.model_version, t.dim, t.vector)
                               .where(t.namespace == namespace, t.id == id)).first()
        if row is None:
            return None
        return VectorRecord(id=id, vector=self._decode(namespace, row.dim, row.vector), owner_id=row.owner_id,
                            visibility=row.visibility, model_version=row.model_version)

    def search(self, namespace: str, vector: np.ndarray[Any, Any], k: int,
               flt: SearchFilter = SearchFilter()) -> list[Hit]:
        check_namespace(namespace)
        q = as_vector(vector, self.dim, "query vector")
        k = check_k(k)
        flt = check_filter(flt) or SearchFilter()
        q /= np.linalg.norm(q)
        space = self._fresh(namespace)
        with space.lock:
            return space.search(q, k, flt)

    async def asearch(self, namespace: str, vector: np.ndarray[Any, Any], k: int,
                      flt: SearchFilter = SearchFilter()) -> list[Hit]:
        check_namespace(namespace)
        row = await self._db.reads.one(_VERSION, namespace=namespace)
        version = int(row.version or 0) if row is not None else 0
        with self._lock:
            space = self._spaces.get(namespace)
        if space is None or space.version < version or space.n * self.dim > INLINE_SEARCH_MAX:
            return await to_thread.run_sync(self.search, namespace, vector, k, flt)
        q = as_vector(vector, self.dim, "query vector")
        k = check_k(k)
        flt = check_filter(flt) or SearchFilter()
        q /= np.linalg.norm(q)
        with space.lock:
            return space.search(q, k, flt)

    def count(self, namespace: str) -> int:
        check_namespace(namespace)
        with self._db.tx(write=False) as conn:
            return int(conn.execute(select(func.count()).select_from(VectorItem)
                                    .where(VectorItem.namespace == namespace)).scalar_one())

    def iter_all(self, namespace: str, *, flt: SearchFilter | None = None,
                 batch: int = 1000) -> Iterator[VectorRecord]:
        check_namespace(namespace)
        check_filter(flt)
        if batch < 1:
            raise InvalidVector(f"batch must be positive, got {batch}")
        t = VectorItem
        where = [t.namespace == namespace, *sql_filter(flt)]
        after: str | None = None
        while True:
            clauses = [*where] if after is None else [*where, t.id > after]
            stmt = (select(t.id, t.owner_id, t.visibility, t.model_version, t.dim, t.vector)
                    .where(and_(*clauses)).order_by(t.id).limit(batch))
            with self._db.tx(write=False) as conn:
                rows = conn.execute(stmt).all()
            for row in rows:
                yield VectorRecord(id=row.id, vector=self._decode(namespace, row.dim, row.vector),
                                   owner_id=row.owner_id, visibility=row.visibility,
                                   model_version=row.model_version)
            if len(rows) < batch:
                return
            after = rows[-1].id

    def close(self) -> None:
        with self._lock:
            self._spaces.clear()
        if self._owns_db:
            self._db.dispose()

    # The in-memory copy --------------------------------------------------------------------------------
    def _version(self, conn: Any, namespace: str) -> int:
        v = conn.connection().execute(select(VectorNamespace.version)
                         .where(VectorNamespace.namespace == namespace)).scalar_one_or_none()
        return int(v or 0)

    def _fresh(self, namespace: str) -> _Space:
        with self._db.tx(write=False) as conn:
            version = self._version(conn, namespace)
        with self._lock:
            space = self._spaces.get(namespace)
            load_lock = self._load_locks.setdefault(namespace, threading.Lock())
        if space is not None and space.version >= version:
            return space
        with load_lock:  # one loader per namespace; the others wait and take its copy
            with self._lock:
                space = self._spaces.get(namespace)
            if space is not None and space.version >= version:
                return space
            space = self._load(namespace)
            with self._lock:
                self._spaces[namespace] = space
            return space

    def _load(self, namespace: str) -> _Space:
        t = VectorItem
        with self._db.tx(write=False) as conn:
            # The version is read before the rows, so the copy is never older than the version it claims.
            version = self._version(conn, namespace)
            total = int(conn.execute(select(func.count()).select_from(t)
                                     .where(t.namespace == namespace)).scalar_one())
            space = _Space(self.dim, version)
            space._reserve(total)
            # Core rows straight from the session's connection: the ORM's row handling doubled the load time.
            result = conn.connection().execute(
                select(t.id, t.owner_id, t.visibility, t.model_version, t.dim, t.vector)
                .where(t.namespace == namespace).execution_options(yield_per=_LOAD_CHUNK))
            for part in result.partitions():
                bad = next((r[4] for r in part if r[4] != self.dim), None)
                if bad is not None:
                    raise InvalidVector(f"namespace {namespace!r} holds {bad}-d vectors but this index is "
                                        f"{self.dim}-d; set vectors.dimension to match or use another namespace")
                mat = np.frombuffer(b"".join(r[5] for r in part), dtype="<f4").reshape(len(part), self.dim)
                space.extend(part, _units(mat.astype(np.float32)))
        return space

    def _decode(self, namespace: str, dim: int, blob: bytes) -> np.ndarray[Any, Any]:
        if dim != self.dim:
            raise InvalidVector(f"namespace {namespace!r} holds {dim}-d vectors but this index is {self.dim}-d")
        return np.frombuffer(blob, dtype="<f4").astype(np.float32)
