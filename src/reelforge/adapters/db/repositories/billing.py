"""Credit purchases: one row per Checkout Session, and one per provider event handled (the de-duplication key).

The tables come from core migration 0009. A provider event's id is the primary key of `billing_events`, so the
insert that records it, in the transaction that moves the credits, is what makes each event count once: a second
delivery, even a concurrent one, fails that insert and rolls back everything it did.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Boolean, Float, ForeignKey, Index, String, Text, select, update
from sqlalchemy.orm import Mapped, mapped_column

from reelforge import errors
from reelforge.adapters.db.models import ID, Base
from reelforge.adapters.db.repositories.base import Repository, record, records
from reelforge.domain.billing import Purchase
from reelforge.domain.records import new_id


class BillingPurchase(Base):
    __tablename__ = "billing_purchases"
    __table_args__ = (Index("ix_billing_purchases_account_created", "account_id", "created_at"),)
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    pack_id: Mapped[str] = mapped_column(String(40))
    credits: Mapped[int] = mapped_column(BigInteger)
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(24), default="pending")
    provider: Mapped[str] = mapped_column(String(16), default="stripe")
    session_id: Mapped[str | None] = mapped_column(String(255), nullable=True, unique=True)
    payment_intent: Mapped[str | None] = mapped_column(String(255), nullable=True, index=True)
    checkout_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    customer_email: Mapped[str | None] = mapped_column(String(320), nullable=True)
    paid: Mapped[bool] = mapped_column(Boolean, default=False)
    amount_refunded: Mapped[int] = mapped_column(BigInteger, default=0)
    credits_granted: Mapped[int] = mapped_column(BigInteger, default=0)
    credits_revoked: Mapped[int] = mapped_column(BigInteger, default=0)
    credits_shortfall: Mapped[int] = mapped_column(BigInteger, default=0)
    receipt_number: Mapped[str | None] = mapped_column(String(40), nullable=True)
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)
    paid_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    refunded_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class BillingEvent(Base):
    __tablename__ = "billing_events"
    id: Mapped[str] = mapped_column(String(255), primary_key=True)  # the provider's event id (evt_...)
    type: Mapped[str] = mapped_column(String(100))
    purchase_id: Mapped[str | None] = mapped_column(ID, nullable=True, index=True)
    outcome: Mapped[str] = mapped_column(String(16))
    created: Mapped[float | None] = mapped_column(Float, nullable=True)  # when the provider made it
    received_at: Mapped[float] = mapped_column(Float)


class BillingRepository(Repository):
    """The `BillingRepository` port on one open transaction."""

    @classmethod
    def of(cls, tx: Any) -> BillingRepository:
        return cls(tx.s, tx.pg)

    def add_purchase(self, **values: Any) -> Purchase:
        now = self.now()
        row = BillingPurchase(**{"id": new_id(), "created_at": now, "updated_at": now, "status": "pending",
                                 "provider": "stripe", "paid": False, "amount_refunded": 0, "credits_granted": 0,
                                 "credits_revoked": 0, "credits_shortfall": 0, **values})
        self.s.add(row)
        self.flush()
        return record(Purchase, row)

    def _one(self, where: Any, lock: bool) -> Purchase | None:
        q = select(BillingPurchase).where(where)
        if lock and self.pg:
            q = q.with_for_update()
        row = self.s.execute(q).scalar_one_or_none()
        return record(Purchase, row) if row is not None else None

    def purchase(self, purchase_id: str, *, lock: bool = False) -> Purchase | None:
        return self._one(BillingPurchase.id == purchase_id, lock)

    def purchase_by_session(self, session_id: str, *, lock: bool = False) -> Purchase | None:
        return self._one(BillingPurchase.session_id == session_id, lock)

    def purchase_by_payment_intent(self, payment_intent: str, *, lock: bool = False) -> Purchase | None:
        return self._one(BillingPurchase.payment_intent == payment_intent, lock)

    def purchases(self, account_id: str, *, limit: int = 50, before: float | None = None) -> list[Purchase]:
        q = select(BillingPurchase).where(BillingPurchase.account_id == account_id)
        if before is not None:
            q = q.where(BillingPurchase.created_at < before)
        q = q.order_by(BillingPurchase.created_at.desc(), BillingPurchase.id.desc()).limit(limit)
        return records(Purchase, self.s.execute(q).scalars().all())

    def update_purchase(self, purchase_id: str, **values: Any) -> Purchase:
        self.s.execute(update(BillingPurchase).where(BillingPurchase.id == purchase_id)
                       .values(updated_at=self.now(), **values), execution_options={"synchronize_session": False})
        row = self.s.execute(select(BillingPurchase).where(BillingPurchase.id == purchase_id)
                             .execution_options(populate_existing=True)).scalar_one_or_none()
        if row is None:
            raise errors.NotFound("Purchase not found", code="purchase_not_found")
        return record(Purchase, row)

    def record_event(self, event_id: str, *, type_: str, purchase_id: str | None, outcome: str,
                     created: float | None) -> None:
        self.s.add(BillingEvent(id=event_id, type=type_, purchase_id=purchase_id, outcome=outcome, created=created,
                                received_at=self.now()))
        self.flush()

    def event_seen(self, event_id: str) -> bool:
        return self.s.execute(select(BillingEvent.id).where(BillingEvent.id == event_id)).first() is not None
