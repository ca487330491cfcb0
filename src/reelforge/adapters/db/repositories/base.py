"""What every repository shares: the transaction's session, its one clock reading, flushes, batch inserts, records."""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Sequence
from typing import Any, TypeVar

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from reelforge.adapters.db.engine import db_epoch
from reelforge.ports.repositories import DuplicateKey

R = TypeVar("R")

_NOW = "reelforge.now"  # key of the transaction's clock reading in Session.info (one Session per transaction)
_JSON_COLUMNS = frozenset({"details", "payload", "output", "outputs"})
ROWS_PER_STATEMENT = 500  # well under SQLite's 32766 bound parameters per statement
# Session.info key of the job ids this transaction changed, announced on the change feed (Store.tx).
CHANGED_KEYS = "reelforge.changed"


def mark_changed(session: Session, keys: Any) -> None:
    """Record that the transaction changed what live streams of these keys (job ids) show."""
    changed = session.info.get(CHANGED_KEYS)
    if changed is None:
        changed = session.info[CHANGED_KEYS] = set()
    if isinstance(keys, str):
        changed.add(keys)
    else:
        changed.update(keys)


def tx_now(session: Session) -> float:
    """One clock reading per transaction (like PostgreSQL's now()), not one round trip per call."""
    now = session.info.get(_NOW)
    if now is None:
        now = session.info[_NOW] = float(session.execute(db_epoch().select()).scalar_one())
    return float(now)


def known_now(session: Session) -> float | None:
    """The transaction's clock reading if something read it already."""
    return session.info.get(_NOW)


def set_now(session: Session, now: float) -> None:
    """Adopt a statement's own clock reading as the transaction's (when nothing read the clock before)."""
    session.info.setdefault(_NOW, float(now))


def flush(session: Session) -> None:
    try:
        session.flush()
    except IntegrityError as exc:
        raise DuplicateKey(str(exc.orig)) from exc


_field_names: dict[type, tuple[str, ...]] = {}


def _names(cls: type) -> tuple[str, ...]:
    names = _field_names.get(cls)
    if names is None:
        names = _field_names[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names


def record(cls: type[R], obj: Any) -> R:
    """An ORM row as its record (same attribute names)."""
    return cls(*[getattr(obj, n) for n in _names(cls)])


def records(cls: type[R], objs: Sequence[Any]) -> list[R]:
    names = _names(cls)
    return [cls(*[getattr(o, n) for n in names]) for o in objs]


@functools.lru_cache(maxsize=512)
def values_sql(columns: tuple[str, ...], n: int, pg: bool) -> str:
    """`(?, ?), (?, ?)` for n rows (`%s` on PostgreSQL, with a jsonb cast on JSON columns)."""
    if pg:
        one = "(" + ", ".join("CAST(%s AS JSONB)" if c in _JSON_COLUMNS else "%s" for c in columns) + ")"
    else:
        one = "(" + ", ".join("?" for _ in columns) + ")"
    return ", ".join([one] * n)


class Repository:
    """One aggregate's SQL on one open transaction."""

    def __init__(self, session: Session, postgres: bool) -> None:
        self.s = session
        self.pg = postgres

    def now(self) -> float:
        return tx_now(self.s)

    def flush(self) -> None:
        flush(self.s)

    # The history/outbox/checkpoint INSERTs run once per job on the worker's hot path. As plain SQL on the
    # session's connection they are one statement each whatever the batch size (docs/decisions.md, "Batch
    # inserts"). JSON values are serialized as the JSON column type does (json.dumps) and cast to jsonb on
    # PostgreSQL.
    def insert_many(self, table: str, columns: tuple[str, ...], rows: Sequence[tuple[Any, ...]],
                    suffix: str = "") -> None:
        json_at = [i for i, c in enumerate(columns) if c in _JSON_COLUMNS]
        self.s.flush()  # ORM objects added earlier in this transaction go first (foreign keys, order)
        conn = self.s.connection()
        for start in range(0, len(rows), ROWS_PER_STATEMENT):
            chunk = rows[start:start + ROWS_PER_STATEMENT]
            params: list[Any] = []
            for row in chunk:
                values = list(row)
                for i in json_at:
                    values[i] = json.dumps(values[i])
                params.extend(values)
            conn.exec_driver_sql(
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
                f"{values_sql(columns, len(chunk), self.pg)}{suffix}", tuple(params))


class AppRepository:
    """The base of an application's repository: SQL on one open transaction (the `UnitOfWork` of
    ports/repositories.py), with its session (`s`), whether it is PostgreSQL (`pg`) and its one clock reading."""

    def __init__(self, tx: Any) -> None:
        self.tx = tx
        self.s = tx.s
        self.pg: bool = tx.pg

    def now(self) -> float:
        return float(self.tx.now())
