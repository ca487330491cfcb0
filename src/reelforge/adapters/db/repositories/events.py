"""Events: webhook subscriptions, the outbox and its deliveries."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import case, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from reelforge.adapters.db import models as m
from reelforge.adapters.db.engine import db_epoch
from reelforge.adapters.db.repositories.base import Repository, record, records
from reelforge.domain.records import Delivery, OutboxEvent, Webhook, WebhookCircuit, new_id


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

    def rotate_webhook_secret(self, hook_id: str, secret: str, *, keep_previous_until: float | None) -> None:
        t = m.Webhook
        keep = keep_previous_until is not None
        self.s.execute(update(t).where(t.id == hook_id).values(
            secret=secret, previous_secret=t.secret if keep else None, previous_secret_until=keep_previous_until),
            execution_options={"synchronize_session": False})
        self.s.expire_all()

    def count_webhooks(self, owner_id: str) -> int:
        return int(self.s.execute(
            select(func.count()).select_from(m.Webhook).where(m.Webhook.owner_id == owner_id)).scalar_one())

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

    def due_by_owner(self, limit: int, per_owner: int) -> list[Delivery]:
        # Each owner's due deliveries ranked oldest first, at most per_owner of each, the ranks interleaved (every
        # owner's first, then every owner's second...), so that one owner's backlog never fills the batch. A target
        # whose breaker is open is left out; a half-open one is returned and the service takes one probe of it.
        now = db_epoch()
        circuit = m.WebhookCircuit
        rank = func.row_number().over(partition_by=m.Delivery.owner_id,
                                      order_by=(m.Delivery.next_attempt_at, m.Delivery.id)).label("rank")
        ranked = (
            select(m.Delivery.id, m.Delivery.next_attempt_at, rank)
            .outerjoin(circuit, circuit.host == m.Delivery.host)
            .where(m.Delivery.status == "pending", m.Delivery.next_attempt_at <= now,
                   or_(circuit.open_until.is_(None), circuit.open_until <= now))
            .subquery()
        )
        q = (select(m.Delivery).join(ranked, ranked.c.id == m.Delivery.id).where(ranked.c.rank <= per_owner)
             .order_by(ranked.c.rank, ranked.c.next_attempt_at, ranked.c.id).limit(limit))
        return records(Delivery, self.s.execute(q).scalars().all())

    def claim_deliveries(self, delivery_ids: Sequence[str], until: float) -> set[str]:
        if not delivery_ids:
            return set()
        due = (m.Delivery.id.in_(list(delivery_ids)), m.Delivery.status == "pending",
               m.Delivery.next_attempt_at <= db_epoch())
        if self.pg:
            # Rows another worker is claiming right now are skipped, not waited for.
            ids = list(self.s.execute(select(m.Delivery.id).where(*due).with_for_update(skip_locked=True))
                       .scalars().all())
            if not ids:
                return set()
            due = (m.Delivery.id.in_(ids), *due[1:])
        claimed = self.s.execute(update(m.Delivery).where(*due).values(next_attempt_at=until)
                                 .returning(m.Delivery.id)).scalars().all()
        return set(claimed)

    def circuits(self, hosts: Sequence[str]) -> dict[str, WebhookCircuit]:
        if not hosts:
            return {}
        rows = self.s.execute(select(m.WebhookCircuit).where(m.WebhookCircuit.host.in_(list(hosts)))).scalars().all()
        return {row.host: record(WebhookCircuit, row) for row in rows}

    def all_circuits(self) -> list[WebhookCircuit]:
        return records(WebhookCircuit, self.s.execute(
            select(m.WebhookCircuit).order_by(m.WebhookCircuit.host)).scalars().all())

    def claim_probe(self, host: str, until: float, threshold: int) -> bool:
        res = self.s.execute(
            update(m.WebhookCircuit)
            .where(m.WebhookCircuit.host == host, m.WebhookCircuit.failures >= threshold,
                   or_(m.WebhookCircuit.open_until.is_(None), m.WebhookCircuit.open_until <= db_epoch()))
            .values(open_until=until, updated_at=self.now())
        )
        return bool(res.rowcount == 1)  # type: ignore[attr-defined]

    def target_succeeded(self, host: str) -> None:
        self.s.execute(
            update(m.WebhookCircuit)
            .where(m.WebhookCircuit.host == host,
                   or_(m.WebhookCircuit.failures > 0, m.WebhookCircuit.open_until.is_not(None)))
            .values(failures=0, open_until=None, updated_at=self.now())
        )

    def target_failed(self, host: str, threshold: int, cooldown_s: float) -> int:
        now = self.now()
        dialect: Any = postgresql if self.pg else sqlite
        table = m.WebhookCircuit.__table__
        failures = table.c.failures + 1
        stmt = dialect.insert(table).values(host=host, failures=1, updated_at=now,
                                            open_until=now + cooldown_s if threshold <= 1 else None)
        stmt = stmt.on_conflict_do_update(
            index_elements=[table.c.host],
            set_={"failures": failures, "updated_at": now,
                  "open_until": case((failures >= threshold, now + cooldown_s), else_=table.c.open_until)},
        ).returning(table.c.failures)
        return int(self.s.execute(stmt).scalar_one())

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
