"""The database behind the persistence ports: `Store.tx()` opens a transaction whose repositories (`tx.jobs`,
`tx.accounts`, ...) hold the SQL of each aggregate (`adapters/db/repositories/`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from reelforge.adapters.db.engine import Database
from reelforge.adapters.db.repositories import (
    AccountDataRepository,
    AccountRepository,
    AlarmRepository,
    AssetRepository,
    AuditRepository,
    CreditRepository,
    EventRepository,
    JobRepository,
    MailRepository,
    OpsRepository,
)
from reelforge.adapters.db.repositories.base import CHANGED_KEYS, flush, tx_now
from reelforge.domain.records import new_id
from reelforge.ports.repositories import DuplicateKey

__all__ = ["DuplicateKey", "Store", "Tx", "new_id"]


class Store:
    """The `Store` port on one database (SQLite or PostgreSQL)."""

    def __init__(self, db: Database, *, changes: Any = None) -> None:
        """`changes`: the change feed (ports/notify.py) told which jobs a committed transaction touched."""
        self.db = db
        self.changes = changes

    @property
    def reads(self) -> Any:
        """Reads on the event loop (adapters/db/reads.py)."""
        return self.db.reads

    @property
    def dialect(self) -> str:
        return self.db.dialect

    @contextmanager
    def tx(self, *, write: bool = True) -> Iterator[Tx]:
        """A transaction. The jobs it changed (history, progress, status) are announced on the change feed:
        inside the transaction on PostgreSQL LISTEN/NOTIFY (delivered at COMMIT, never for a rollback), else
        after the commit."""
        changed: set[str] | None = None
        try:
            with self.db.tx(write=write) as session:
                yield Tx(session, self.db.is_postgres)
                changed = session.info.pop(CHANGED_KEYS, None)
                channel = self.changes.transactional_channel if (changed and self.changes is not None) else None
                if channel and changed:
                    from reelforge.adapters.notify import payloads

                    for payload in payloads(changed):
                        session.execute(_NOTIFY, {"c": channel, "p": payload})
                    changed = None
        except IntegrityError as exc:
            raise DuplicateKey(str(exc.orig)) from exc
        if changed and self.changes is not None:
            self.changes.publish(changed)

    def now(self) -> float:
        return self.db.now()


_NOTIFY = text("SELECT pg_notify(:c, :p)")


class Tx:
    """One transaction (the `UnitOfWork` port): a repository per aggregate, all on the same session."""

    __slots__ = ("account_data", "accounts", "alarms", "assets", "audit", "credits", "events", "jobs", "mail", "ops",
                 "pg", "s")

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
        self.mail = MailRepository(session, postgres)
        self.audit = AuditRepository(session, postgres)
        self.account_data = AccountDataRepository(session, postgres)

    def now(self) -> float:
        return tx_now(self.s)

    def flush(self) -> None:
        flush(self.s)
