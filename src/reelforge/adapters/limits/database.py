"""Rate-limit counters in the application database: one atomic upsert per call, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import threading
import time
from typing import Any

from sqlalchemy import delete
from sqlalchemy.dialects import postgresql, sqlite

from reelforge.adapters.db.engine import Database
from reelforge.adapters.db.models import RateLimitCounter

_T: Any = RateLimitCounter.__table__
SWEEP_EVERY_S = 60.0


def _key(key: str) -> str:
    return key if len(key) <= 255 else key[:190] + ":" + hashlib.sha256(key.encode()).hexdigest()


class DatabaseWindowCounter:
    """`INSERT .. ON CONFLICT (key, window_start) DO UPDATE SET count = count + n RETURNING count`: one statement,
    one short write transaction; lapsed windows are deleted by the process that next passes a sweep time."""

    def __init__(self, db: Database) -> None:
        self.db = db
        dialect: Any = postgresql if db.is_postgres else sqlite
        self._insert = dialect.insert
        self._next_sweep = 0.0
        self._lock = threading.Lock()

    def add(self, key: str, window_start: int, n: int, expires_at: float) -> int:
        stmt = self._insert(_T).values(key=_key(key), window_start=int(window_start), count=int(n),
                                       expires_at=float(expires_at))
        stmt = stmt.on_conflict_do_update(index_elements=[_T.c.key, _T.c.window_start],
                                          set_={"count": _T.c.count + stmt.excluded.count}).returning(_T.c.count)
        now = time.time()
        sweep = False
        with self._lock:
            if now >= self._next_sweep:
                self._next_sweep, sweep = now + SWEEP_EVERY_S, True
        with self.db.engine.begin() as conn:
            total = int(conn.execute(stmt).scalar_one())
            if sweep:
                conn.execute(delete(_T).where(_T.c.expires_at < now - 1.0))
        return total

    def clear(self, prefix: str) -> None:
        with self.db.engine.begin() as conn:
            conn.execute(delete(_T).where(_T.c.key.startswith(prefix, autoescape=True)))

    def close(self) -> None:
        """Nothing of its own: the database's engine belongs to the container."""
