"""The database behind the persistence ports: `Store.tx()` opens a transaction whose repositories (`tx.jobs`,
`tx.accounts`, ...) hold the SQL of each aggregate (`adapters/db/repositories/`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

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
