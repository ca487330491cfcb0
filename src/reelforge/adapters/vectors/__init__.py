"""VectorIndex adapters: exact NumPy search over vectors in the database (default), and pgvector HNSW."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from reelforge.adapters.db.engine import Database, normalize_url
from reelforge.adapters.vectors.numpy_index import NumpyVectorIndex
from reelforge.errors import ReelforgeError

if TYPE_CHECKING:
    from reelforge.adapters.vectors.pgvector_index import PgVectorIndex
    from reelforge.config import Settings
    from reelforge.ports.vectors import VectorIndex

__all__ = ["NumpyVectorIndex", "PgVectorIndex", "build_pgvector_index", "build_vector_index"]

log = logging.getLogger(__name__)


def __getattr__(name: str) -> Any:
    # psycopg and pgvector load only when the pgvector backend is used.
    if name == "PgVectorIndex":
        from reelforge.adapters.vectors.pgvector_index import PgVectorIndex

        return PgVectorIndex
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _database(engine_or_store: Any) -> tuple[Database, bool]:
    """(database, owned): a Database, a Store (its .db), a SQLAlchemy Engine or a URL."""
    if isinstance(engine_or_store, Database):
        return engine_or_store, False
    db = getattr(engine_or_store, "db", None)
    if isinstance(db, Database):
        return db, False
    if isinstance(engine_or_store, str):
        return Database(engine_or_store), True
    url = getattr(engine_or_store, "url", None)
    if url is not None and hasattr(url, "render_as_string"):
        return Database(url.render_as_string(hide_password=False)), True
    raise TypeError(f"expected a Database, Store, Engine or URL, got {type(engine_or_store).__name__}")


def build_pgvector_index(settings: Settings, url: str | None = None) -> PgVectorIndex:
    """The pgvector index configured by ``settings.vectors`` on `url` (default: vectors.url or the database)."""
    from reelforge.adapters.vectors.pgvector_index import PgVectorIndex

    vs = settings.vectors
    return PgVectorIndex(url or vs.url or settings.database_url, dim=vs.dimension, m=vs.hnsw_m,
                         ef_construction=vs.hnsw_ef_construction, ef_search=vs.hnsw_ef_search,
                         iterative_scan=vs.hnsw_iterative_scan, max_scan_tuples=vs.hnsw_max_scan_tuples)


def build_vector_index(settings: Settings, engine_or_store: Any) -> VectorIndex:
    """The VectorIndex that ``settings.vectors.backend`` names.

    ``auto`` takes pgvector when the vectors URL (default: the database) is a PostgreSQL server that offers the
    ``vector`` extension, and the NumPy index on the database otherwise (SQLite, or PostgreSQL without pgvector).
    """
    vs = settings.vectors
    if vs.backend == "pgvector":
        return build_pgvector_index(settings)
    if vs.backend == "auto":
        url = vs.url or settings.database_url
        if normalize_url(url).startswith("postgresql"):
            from reelforge.adapters.vectors.pgvector_index import pgvector_available

            if pgvector_available(url):
                try:
                    return build_pgvector_index(settings)
                except ReelforgeError as exc:
                    log.warning("pgvector offered but unusable (%s); using the NumPy index", exc)
    db, owned = _database(engine_or_store)
    return NumpyVectorIndex(db, dim=vs.dimension, owns_db=owned)
