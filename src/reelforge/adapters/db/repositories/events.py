"""Events: webhook subscriptions, the outbox and its deliveries."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, select, update

from reelforge.adapters.db import models as m
from reelforge.adapters.db.engine import db_epoch
from reelforge.adapters.db.repositories.base import Repository, record, records
from reelforge.domain.records import Delivery, OutboxEvent, Webhook, new_id


class EventRepository(Repository):
    # --- webhooks --------------------------------------------------------------------------------
    def add_webhook(self, **values: Any) -> Webhook:
        hook = m.Webhook(id=new_id(), created_at=self.now(), active=True, **values)
        self.s.add(hook)
        self.flush()
        return record(Webhook, hook)

    def webhook(self, hook_id: str, *, owner_id: str | None = None) -> Webhook | None:
        q = select(m.Webhook).where(m.Webhook.id == hook_id)
        if owner_id is not None:
            q = q.where(m.Webhook.owner_id == owner_id)
        row = self.s.execute(q).scalar_one_or_none()
        return record(Webhook, row) if row is not None else None

    def webhooks(self, owner_id: str) -> list[Webhook]:
        return records(Webhook, self.s.execute(
            select(m.Webhook).where(m.Webhook.owner_id == owner_id).order_by(m.Webhook.created_at)
        ).scalars().all())

    def webhook_secrets_without_prefix(self, prefix: str, *, limit: int = 500) -> list[tuple[str, str]]:
        rows = self.s.execute(select(m.Webhook.id, m.Webhook.secret)
                              .where(~m.Webhook.secret.startswith(prefix, autoescape=True))
                              .order_by(m.Webhook.id).limit(limit)).all()
        return [(str(r[0]), str(r[1])) for r in rows]

    def set_webhook_secret(self, hook_id: str, secret: str) -> None:
        self.s.execute(update(m.Webhook).where(m.Webhook.id == hook_id).values(secret=secret),
                       execution_options={"synchronize_session": False})

    def delete_webhook(self, hook_id: str) -> None:
        self.s.execute(delete(m.Webhook).where(m.Webhook.id == hook_id))

    # --- outbox ----------------------------------------------------------------------------------
    def emit(self, type_: str, payload: dict[str, Any], *, owner_id: str | None = None,
             subject_id: str | None = None) -> OutboxEvent:
        ev = m.OutboxEvent(id=new_id(), type=type_, owner_id=owner_id, subject_id=subject_id, payload=payload,
                           created_at=self.now())
        self.s.add(ev)
        self.flush()
        return record(OutboxEvent, ev)

    def emit_many(self, events: Sequence[tuple[str, dict[str, Any], str | None, str | None]]) -> None:
        if not events:
            return
        now = self.now()
        self.insert_many("outbox", ("id", "type", "payload", "owner_id", "subject_id", "created_at"),
                         [(new_id(), t, payload, owner, subject, now) for t, payload, owner, subject in events])

    def undispatched(self, limit: int = 100) -> list[OutboxEvent]:
        q = select(m.OutboxEvent).where(m.OutboxEvent.dispatched_at.is_(None)).order_by(m.OutboxEvent.seq)
        q = q.limit(limit)
        if self.pg:
            q = q.with_for_update(skip_locked=True)
        return records(OutboxEvent, self.s.execute(q).scalars().all())

    def events_after(self, seq: int, *, owner_id: str | None = None, limit: int = 100) -> list[OutboxEvent]:
        q = select(m.OutboxEvent).where(m.OutboxEvent.seq > seq)
        if owner_id is not None:
            q = q.where(m.OutboxEvent.owner_id == owner_id)
        return records(OutboxEvent, self.s.execute(q.order_by(m.OutboxEvent.seq).limit(limit)).scalars().all())

    def outbox_event(self, event_id: str) -> OutboxEvent | None:
        row = self.s.execute(select(m.OutboxEvent).where(m.OutboxEvent.id == event_id)).scalar_one_or_none()
        return record(OutboxEvent, row) if row is not None else None

    def mark_dispatched(self, seqs: Sequence[int]) -> None:
        if seqs:
            self.s.execute(update(m.OutboxEvent).where(m.OutboxEvent.seq.in_(list(seqs)))
                           .values(dispatched_at=self.now()))

    # --- deliveries ------------------------------------------------------------------------------
    def add_delivery(self, **values: Any) -> None:
        now = self.now()
        exists = self.s.execute(
            select(m.Delivery.id).where(m.Delivery.event_id == values["event_id"],
                                        m.Delivery.target == values["target"])
        ).first()
        if exists:
            return
        self.s.add(m.Delivery(id=new_id(), created_at=now, next_attempt_at=now, status="pending", attempts=0,
                              **values))
        self.flush()

    def due_deliveries(self, limit: int = 50) -> list[Delivery]:
        q = select(m.Delivery).where(m.Delivery.status == "pending", m.Delivery.next_attempt_at <= db_epoch())
        q = q.order_by(m.Delivery.next_attempt_at).limit(limit)
        if self.pg:
            q = q.with_for_update(skip_locked=True)
        return records(Delivery, self.s.execute(q).scalars().all())

    def delivery(self, delivery_id: str) -> Delivery | None:
        row = self.s.get(m.Delivery, delivery_id)
        return record(Delivery, row) if row is not None else None

    def deliveries(self, *, owner_id: str, webhook_id: str | None = None, limit: int = 50) -> list[Delivery]:
        q = select(m.Delivery).where(m.Delivery.owner_id == owner_id)
        if webhook_id:
            q = q.where(m.Delivery.webhook_id == webhook_id)
        return records(Delivery, self.s.execute(q.order_by(m.Delivery.created_at.desc()).limit(limit))
                       .scalars().all())

    def update_delivery(self, delivery_id: str, **values: Any) -> None:
        self.s.execute(update(m.Delivery).where(m.Delivery.id == delivery_id).values(**values))
