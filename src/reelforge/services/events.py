"""Webhook subscriptions and the outbox dispatcher (at-least-once delivery, stable event ids)."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from reelforge import errors
from reelforge.adapters.events.http import SendResult, check_target_url, send_signed
from reelforge.config import Settings
from reelforge.domain.records import Delivery, OutboxEvent, Webhook, new_signing_secret
from reelforge.domain.types import Principal, retry_delay
from reelforge.ports.repositories import Store
from reelforge.ports.secrets import SecretBox
from reelforge.services.ownership import owned

log = logging.getLogger("reelforge.events")

CORE_EVENT_TYPES = ("job.succeeded", "job.failed", "job.cancelled", "webhook.test")


def matches(patterns: list[str], type_: str) -> bool:
    if not patterns:
        return True
    for p in patterns:
        if p == type_ or p == "*" or (p.endswith(".*") and type_.startswith(p[:-1])):
            return True
    return False


def envelope(ev: OutboxEvent) -> dict[str, Any]:
    return {"id": ev.id, "type": ev.type, "created_at": ev.created_at, "data": ev.payload}


class EventService:
    def __init__(self, store: Store, settings: Settings, box: SecretBox,
                 sender: Callable[..., SendResult] = send_signed, event_types: tuple[str, ...] = ()) -> None:
        self.store = store
        # Signing secrets are stored sealed (encrypted under the instance secret) and opened to sign.
        self.box = box
        # The core's event types and those the installed applications declare.
        self.event_types = (*CORE_EVENT_TYPES, *event_types)
        self.settings = settings
        self.sender = sender
        self._rng = random.Random()
        self.delivered = 0
        self.failed = 0

    def guard(self, url: str) -> None:
        check_target_url(url, allow_private=self.settings.webhooks.allow_private_targets)

    # --- subscriptions ---------------------------------------------------------------------------
    def create_webhook(self, principal: Principal, url: str, event_types: list[str], description: str = "") -> Webhook:
        self.guard(url)
        for t in event_types:
            if not (t in self.event_types or t == "*" or t.endswith(".*") or "." in t):
                raise errors.ValidationFailed(f"Unknown event type {t!r}", code="invalid_event_type",
                                              field="event_types")
        secret = new_signing_secret()
        with self.store.tx() as tx:
            hook = tx.events.add_webhook(owner_id=principal.user_id, url=url, event_types=event_types,
                                         description=description, secret=self.box.seal(secret))
        return replace(hook, secret=secret)  # shown once, in the answer to this request

    def list_webhooks(self, principal: Principal) -> list[Webhook]:
        with self.store.tx(write=False) as tx:
            return list(tx.events.webhooks(principal.user_id))

    def get_webhook(self, principal: Principal, hook_id: str) -> Webhook:
        with self.store.tx(write=False) as tx:
            return owned(tx.events.webhook(hook_id), principal, "Webhook")

    def delete_webhook(self, principal: Principal, hook_id: str) -> None:
        with self.store.tx() as tx:
            owned(tx.events.webhook(hook_id), principal, "Webhook")
            tx.events.delete_webhook(hook_id)

    def test_webhook(self, principal: Principal, hook_id: str) -> OutboxEvent:
        """Queue a `webhook.test` event for this subscription only."""
        with self.store.tx() as tx:
            hook = owned(tx.events.webhook(hook_id), principal, "Webhook")
            ev = tx.events.emit("webhook.test", {"webhook_id": hook.id, "message": "test delivery"},
                                owner_id=principal.user_id, subject_id=hook.id)
            return ev

    def deliveries(self, principal: Principal, hook_id: str | None = None) -> list[Delivery]:
        with self.store.tx(write=False) as tx:
            if hook_id:
                owned(tx.events.webhook(hook_id), principal, "Webhook")
            return list(tx.events.deliveries(owner_id=principal.user_id, webhook_id=hook_id))

    def signing_secret(self, principal: Principal) -> str:
        """The secret that signs deliveries to a job's callback_url."""
        with self.store.tx(write=False) as tx:
            user = tx.accounts.user(principal.user_id)
            assert user is not None
        return self.reveal(user.webhook_secret)

    def reveal(self, stored: str) -> str:
        """A stored signing secret in plain text: opened when sealed; a plain one (written before secrets were
        encrypted, and not yet sealed by `seal_stored_secrets`) as it is."""
        return self.box.open(stored) if self.box.is_sealed(stored) else stored

    def seal_stored_secrets(self, batch: int = 500) -> int:
        """Encrypt every signing secret still stored in plain text (subscriptions' and accounts'); returns how
        many. Run on every migrate, so an upgraded installation seals its old rows once."""
        sealed = 0
        while True:
            with self.store.tx() as tx:
                hooks = tx.events.webhook_secrets_without_prefix(self.box.prefix, limit=batch)
                for hook_id, plain in hooks:
                    tx.events.set_webhook_secret(hook_id, self.box.seal(plain))
                users = tx.accounts.webhook_secrets_without_prefix(self.box.prefix, limit=batch)
                for user_id, plain in users:
                    tx.accounts.set_webhook_secret(user_id, self.box.seal(plain))
            sealed += len(hooks) + len(users)
            if len(hooks) < batch and len(users) < batch:
                return sealed

    # --- dispatch ----------------------------------------------------------------------------------
    def fan_out(self, limit: int = 200) -> int:
        """Turn new outbox events into one delivery per matching target."""
        with self.store.tx() as tx:
            events = tx.events.undispatched(limit)
            # one webhook lookup per owner and one job lookup per batch, not two SELECTs per event.
            hooks_of: dict[str, Any] = {}
            subject_ids = [ev.subject_id for ev in events if ev.type.startswith("job.") and ev.subject_id]
            callbacks = tx.jobs.job_callbacks(subject_ids) if subject_ids else {}
            for ev in events:
                if ev.owner_id is None:
                    continue
                if ev.type == "webhook.test":
                    hook = tx.events.webhook(str(ev.subject_id))
                    if hook is not None:
                        tx.events.add_delivery(event_id=ev.id, owner_id=ev.owner_id, webhook_id=hook.id,
                                               target=f"webhook:{hook.id}", url=hook.url)
                    continue
                if ev.owner_id not in hooks_of:
                    hooks_of[ev.owner_id] = tx.events.webhooks(ev.owner_id)
                for hook in hooks_of[ev.owner_id]:
                    if hook.active and matches(list(hook.event_types or []), ev.type):
                        tx.events.add_delivery(event_id=ev.id, owner_id=ev.owner_id, webhook_id=hook.id,
                                               target=f"webhook:{hook.id}", url=hook.url)
                if ev.type.startswith("job.") and ev.subject_id:
                    url = callbacks.get(ev.subject_id)
                    if url:
                        tx.events.add_delivery(event_id=ev.id, owner_id=ev.owner_id, webhook_id=None,
                                               target=f"callback:{ev.subject_id}", url=url)
            tx.events.mark_dispatched([ev.seq for ev in events])
            return len(events)

    def deliver_due(self, limit: int = 20) -> int:
        """Send due deliveries. Each is claimed first (next attempt pushed out) so two workers never both send."""
        wh = self.settings.webhooks
        with self.store.tx() as tx:
            due = tx.events.due_deliveries(limit)
            now = tx.now()
            jobs: list[tuple[str, str, str, dict[str, Any]]] = []
            for d in due:
                ev = tx.events.outbox_event(d.event_id)
                if ev is None:
                    tx.events.update_delivery(d.id, status="failed", last_error="event no longer exists")
                    continue
                if d.webhook_id:
                    hook = tx.events.webhook(d.webhook_id)
                    stored = hook.secret if hook else ""
                else:
                    user = tx.accounts.user(d.owner_id)
                    stored = user.webhook_secret if user else ""
                if not stored:
                    tx.events.update_delivery(d.id, status="failed", last_error="subscription removed")
                    continue
                try:
                    secret = self.reveal(stored)
                except errors.SecretUnreadable as exc:
                    log.error("delivery %s not sent: %s", d.id, exc.message)
                    tx.events.update_delivery(d.id, status="failed", last_error=exc.message)
                    continue
                tx.events.update_delivery(d.id, next_attempt_at=now + wh.timeout_s + 30)
                jobs.append((d.id, d.url, secret, envelope(ev)))
        for delivery_id, url, secret, body in jobs:
            res = self.sender(url, secret, body, timeout_s=wh.timeout_s, allow_private=wh.allow_private_targets)
            with self.store.tx() as tx:
                d2 = tx.events.delivery(delivery_id)
                if d2 is None:
                    continue
                attempts = d2.attempts + 1
                values: dict[str, Any] = {"attempts": attempts, "last_status_code": res.status_code,
                                          "last_error": res.error}
                if res.ok:
                    values.update(status="delivered", delivered_at=tx.now())
                    self.delivered += 1
                elif attempts >= wh.max_attempts:
                    values["status"] = "failed"
                    self.failed += 1
                else:
                    values["next_attempt_at"] = tx.now() + retry_delay(attempts, wh.retry_base_s, wh.retry_max_s,
                                                                       self._rng.random())
                tx.events.update_delivery(d2.id, **values)
        return len(jobs)
