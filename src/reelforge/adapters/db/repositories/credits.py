"""Credits: the balance on the account row and the ledger line of every move."""

from __future__ import annotations

from sqlalchemy import select, update

from reelforge import errors
from reelforge.adapters.db import models as m
from reelforge.adapters.db.repositories.base import Repository, record, records
from reelforge.domain.records import CreditEntry


class CreditRepository(Repository):
    def credit(self, account_id: str, amount: int, kind: str, *, job_id: str | None = None,
               note: str = "", require_balance: bool = False) -> CreditEntry:
        res = self.s.execute(
            update(m.User).where(
                m.User.id == account_id, *([m.User.credits + amount >= 0] if require_balance else [])
            ).values(credits=m.User.credits + amount).returning(m.User.credits)
        )
        row = res.first()
        if row is None:
            if require_balance:
                raise errors.PaymentRequired(
                    "Not enough credits for this job", needed=-amount, balance=self.balance(account_id)
                )
            raise errors.NotFound("Account not found")
        entry = m.CreditEntry(account_id=account_id, job_id=job_id, kind=kind, amount=amount,
                              balance_after=int(row[0]), note=note, created_at=self.now())
        self.s.add(entry)
        self.flush()
        return record(CreditEntry, entry)

    def balance(self, account_id: str) -> int:
        return int(self.s.execute(select(m.User.credits).where(m.User.id == account_id)).scalar_one_or_none() or 0)

    def ledger(self, account_id: str, *, limit: int = 100, before: int | None = None) -> list[CreditEntry]:
        q = select(m.CreditEntry).where(m.CreditEntry.account_id == account_id)
        if before is not None:
            q = q.where(m.CreditEntry.id < before)
        return records(CreditEntry, self.s.execute(q.order_by(m.CreditEntry.id.desc()).limit(limit)).scalars().all())

    def job_ledger(self, job_id: str) -> list[CreditEntry]:
        return records(CreditEntry, self.s.execute(
            select(m.CreditEntry).where(m.CreditEntry.job_id == job_id).order_by(m.CreditEntry.id)
        ).scalars().all())
