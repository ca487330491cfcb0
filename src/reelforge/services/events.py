"""Webhook subscriptions and the outbox dispatcher (at-least-once delivery, stable event ids).

Deliveries are sent by a bounded pool of threads per process (`webhooks.concurrency`), claimed fairly across
accounts (round robin, at most `webhooks.account_concurrency` in flight per account), and never to a target
whose circuit breaker is open (docs/decisions.md, "Webhook delivery: fair, parallel, and a breaker per target").
"""

from __future__ import annotations

import itertools
import logging
import random
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_all
from dataclasses import replace
from typing import Any

from reelforge import errors
from reelforge.adapters.events.http import SendResult, check_target_url, send_signed, target_host
from reelforge.config import Settings
from reelforge.domain.records import Delivery, OutboxEvent, Webhook, new_signing_secret
from reelforge.domain.types import Principal, retry_delay
from reelforge.ports.repositories import Store
from reelforge.ports.secrets import SecretBox
from reelforge.services.ownership import owned

log = logging.getLogger("reelforge.webhooks")

CORE_EVENT_TYPES = ("job.succeeded", "job.failed", "job.cancelled", "webhook.test", "billing.purchase.completed",
                    "billing.purchase.refunded")
# Facts for the in-process consumers only (the CRM sync), never sent to webhook subscriptions.
INTERNAL_EVENT_TYPES = frozenset({"account.created"})
# Deliveries to an in-process consumer (`EventService.add_consumer`) have this URL prefix instead of a web address.
CONSUMER = "consumer:"
# A claim holds a delivery this long past the send timeout; a sender that died lets it go after that.
CLAIM_MARGIN_S = 30.0
# One claimed delivery: id, owner, target host, url, secret, event envelope, secrets a rotation replaced.
_Send = tuple[str, str, str | None, str, str, dict[str, Any], list[str]]


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
        # In-process subscribers: each gets every batch of new outbox events inside the transaction that fans
        # them out, so what it writes commits with the batch being marked dispatched (the mail queue, say).
        self.tx_consumers: list[Callable[[Any, list[OutboxEvent]], None]] = []
        self._rng = random.Random()
        self.delivered = 0
        self.failed = 0
        # This process's sending state: the pool, what is in flight (delivery id -> owner), and when each owner
        # was last served (the round robin's order among owners with as much in flight).
        self._lock = threading.Lock()
        self._claiming = threading.Lock()  # one claim at a time per process, so free senders are not counted twice
        self._pool: ThreadPoolExecutor | None = None
        self._in_flight: dict[str, str] = {}
        self._served: dict[str, int] = {}
        self._turn = itertools.count(1)
        # In-process consumers of the outbox (name -> (event type patterns, handler)): each matching event becomes a
        # delivery of its own, claimed, retried with backoff and recorded like a webhook's (at least once).
        self.consumers: dict[str, tuple[tuple[str, ...], Callable[[dict[str, Any]], None]]] = {}

    def add_consumer(self, name: str, event_types: tuple[str, ...], handler: Callable[[dict[str, Any]], None]) -> None:
        """Hand every outbox event of these types (patterns as subscriptions take them) with an owner to
        `handler(envelope)`, at least once: an exception is a failed attempt, retried like a webhook delivery."""
        self.consumers[name] = (tuple(event_types), handler)

    def guard(self, url: str) -> None:
        check_target_url(url, allow_private=self.settings.webhooks.allow_private_targets)

    # --- subscriptions ---------------------------------------------------------------------------
    def create_webhook(self, principal: Principal, url: str, event_types: list[str], description: str = "") -> Webhook:
        self.guard(url)
        for t in event_types:
            if not (t in self.event_types or t == "*" or t.endswith(".*") or "." in t):
                raise errors.ValidationFailed(f"Unknown event type {t!r}", code="invalid_event_type",
                                              field="event_types")
        cap = self.settings.webhooks.max_per_account
        secret = new_signing_secret()
        with self.store.tx() as tx:
            # The account's row lock (PostgreSQL; SQLite writers are serial) keeps two creates from both passing.
            tx.accounts.user(principal.user_id, lock=True)
            if tx.events.count_webhooks(principal.user_id) >= cap:
                raise errors.Conflict(f"An account may hold at most {cap} webhook subscriptions; delete one first",
                                      code="webhook_limit_reached", limit=cap)
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

    def rotate_webhook_secret(self, principal: Principal, hook_id: str) -> tuple[str, float | None]:
        """A new signing secret for a subscription (shown once); deliveries carry a signature with the replaced
        one too for `webhooks.rotation_overlap_s`. Returns the secret and until when the old one signs."""
        secret = new_signing_secret()
        overlap = self.settings.webhooks.rotation_overlap_s
        with self.store.tx() as tx:
            hook = owned(tx.events.webhook(hook_id), principal, "Webhook")
            until = tx.now() + overlap if overlap > 0 else None
            tx.events.rotate_webhook_secret(hook.id, self.box.seal(secret), keep_previous_until=until)
        return secret, until

    def rotate_signing_secret(self, principal: Principal) -> tuple[str, float | None]:
        """The same for the account's secret, which signs deliveries to its jobs' callback_url."""
        secret = new_signing_secret()
        overlap = self.settings.webhooks.rotation_overlap_s
        with self.store.tx() as tx:
            tx.accounts.user(principal.user_id, lock=True)
            until = tx.now() + overlap if overlap > 0 else None
            tx.accounts.rotate_webhook_secret(principal.user_id, self.box.seal(secret), keep_previous_until=until)
        return secret, until

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
            for consume in self.tx_consumers:
                consume(tx, events)
            for ev in events:
                if ev.owner_id is None:
                    continue
                if ev.type == "webhook.test":
                    hook = tx.events.webhook(str(ev.subject_id))
                    if hook is not None:
                        tx.events.add_delivery(event_id=ev.id, owner_id=ev.owner_id, webhook_id=hook.id,
                                               target=f"webhook:{hook.id}", url=hook.url,
                                               host=target_host(hook.url))
                    continue
                for name, (patterns, _) in self.consumers.items():
                    if matches(list(patterns), ev.type):
                        tx.events.add_delivery(event_id=ev.id, owner_id=ev.owner_id, webhook_id=None,
                                               target=f"{CONSUMER}{name}"[:100], url=f"{CONSUMER}{name}", host=None)
                if ev.type in INTERNAL_EVENT_TYPES:
                    continue
                if ev.owner_id not in hooks_of:
                    hooks_of[ev.owner_id] = tx.events.webhooks(ev.owner_id)
                for hook in hooks_of[ev.owner_id]:
                    if hook.active and matches(list(hook.event_types or []), ev.type):
                        tx.events.add_delivery(event_id=ev.id, owner_id=ev.owner_id, webhook_id=hook.id,
                                               target=f"webhook:{hook.id}", url=hook.url,
                                               host=target_host(hook.url))
                if ev.type.startswith("job.") and ev.subject_id:
                    url = callbacks.get(ev.subject_id)
                    if url:
                        tx.events.add_delivery(event_id=ev.id, owner_id=ev.owner_id, webhook_id=None,
                                               target=f"callback:{ev.subject_id}", url=url,
                                               host=target_host(url))
            tx.events.mark_dispatched([ev.seq for ev in events])
            return len(events)

    def dispatch(self) -> int:
        """One pass of the worker's maintenance: fan out new events, then hand due deliveries to the free senders
        without waiting for them (they finish on the pool; the next pass refills what has freed up)."""
        self.fan_out()
        return self.deliver_due(wait=False)

    def deliver_due(self, limit: int | None = None, *, wait: bool = True) -> int:
        """Claim due deliveries for the free senders of the pool and send them, in parallel; returns how many.

        Fair across accounts: the claim interleaves accounts (each one's oldest first), an account gets at most
        `webhooks.account_concurrency` senders, and among accounts the one with least in flight, then the one
        served longest ago, goes first. A target whose breaker is open is not claimed (its deliveries stay
        pending, no attempt counted); a half-open one gets a single probe. With `wait` this returns once the
        claimed deliveries have been sent and recorded.
        """
        wh = self.settings.webhooks
        with self._claiming:
            with self._lock:
                free = wh.concurrency - len(self._in_flight)
                busy = Counter(self._in_flight.values())
            if limit is not None:
                free = min(free, limit)
            if free <= 0:
                return 0
            claimed = self._claim(free, busy)
        futures: list[Future[None]] = []
        for job in claimed:
            try:
                futures.append(self._executor().submit(self._send, *job))
            except RuntimeError:  # the senders are being shut down: the claim lapses and a later pass sends it
                with self._lock:
                    self._in_flight.pop(job[0], None)
        if wait:
            wait_all(futures)
        return len(claimed)

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.settings.webhooks.concurrency,
                                                thread_name_prefix="reelforge-webhook")
            return self._pool

    def close(self) -> None:
        """Wait for the deliveries in flight and stop the senders (a later delivery starts a new pool)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            # Cancelled before they started: their claims lapse and another pass sends them.
            self._in_flight.clear()

    def _pick(self, candidates: list[Delivery], free: int, busy: Counter[str]) -> list[Delivery]:
        """Round robin over owners: each round gives every owner with room its next candidate."""
        room = max(1, min(self.settings.webhooks.account_concurrency, self.settings.webhooks.concurrency))
        queues: dict[str, list[Delivery]] = defaultdict(list)
        for d in candidates:
            queues[d.owner_id].append(d)
        owners = sorted(queues, key=lambda o: (busy[o], self._served.get(o, 0)))
        picked: list[Delivery] = []
        taken = Counter(busy)
        while len(picked) < free:
            progressed = False
            for owner in owners:
                if len(picked) >= free:
                    break
                if queues[owner] and taken[owner] < room:
                    picked.append(queues[owner].pop(0))
                    taken[owner] += 1
                    progressed = True
            if not progressed:
                break
        return picked

    def _claim(self, free: int, busy: Counter[str]) -> list[_Send]:
        wh = self.settings.webhooks
        hold_s = wh.timeout_s + CLAIM_MARGIN_S
        jobs: list[_Send] = []
        with self.store.tx() as tx:
            per_owner = max(1, min(wh.account_concurrency, wh.concurrency))
            candidates = tx.events.due_by_owner(limit=max(4 * free, 100), per_owner=per_owner)
            if not candidates:
                return jobs
            circuits = tx.events.circuits(sorted({d.host for d in candidates if d.host}))
            half_open = {h for h, c in circuits.items() if c.failures >= wh.breaker_failures}
            # A half-open target gets one delivery (its probe) from this pass, and only if the probe is ours.
            probes: set[str] = set()
            kept: list[Delivery] = []
            for d in candidates:
                if d.host in half_open:
                    if d.host in probes:
                        continue
                    probes.add(d.host)
                kept.append(d)
            candidates = kept
            picked = self._pick(candidates, free, busy)
            now = tx.now()
            claimed = tx.events.claim_deliveries([d.id for d in picked], now + hold_s)
            for d in picked:
                if d.id not in claimed:
                    continue
                if d.host in half_open and not tx.events.claim_probe(d.host, now + hold_s, wh.breaker_failures):
                    tx.events.update_delivery(d.id, next_attempt_at=d.next_attempt_at)  # not ours to probe
                    continue
                ev = tx.events.outbox_event(d.event_id)
                if ev is None:
                    tx.events.update_delivery(d.id, status="failed", last_error="event no longer exists")
                    continue
                if d.url.startswith(CONSUMER):
                    jobs.append((d.id, d.owner_id, None, d.url, "", envelope(ev), []))
                    continue
                previous: tuple[str | None, float | None] = (None, None)
                if d.webhook_id:
                    hook = tx.events.webhook(d.webhook_id)
                    stored = hook.secret if hook else ""
                    if hook is not None:
                        previous = (hook.previous_secret, hook.previous_secret_until)
                else:
                    user = tx.accounts.user(d.owner_id)
                    stored = user.webhook_secret if user else ""
                    if user is not None:
                        previous = tx.accounts.previous_webhook_secret(d.owner_id)
                if not stored:
                    tx.events.update_delivery(d.id, status="failed", last_error="subscription removed")
                    continue
                try:
                    secret = self.reveal(stored)
                    # A rotated-out secret signs too while its overlap lasts.
                    old = [self.reveal(previous[0])] if previous[0] and (previous[1] or 0) > now else []
                except errors.SecretUnreadable as exc:
                    log.error("delivery %s not sent: %s", d.id, exc.message)
                    tx.events.update_delivery(d.id, status="failed", last_error=exc.message)
                    continue
                jobs.append((d.id, d.owner_id, d.host, d.url, secret, envelope(ev), old))
        with self._lock:
            for delivery_id, owner_id, *_ in jobs:
                self._in_flight[delivery_id] = owner_id
                self._served[owner_id] = next(self._turn)
        return jobs

    def _send(self, delivery_id: str, owner_id: str, host: str | None, url: str, secret: str,
              body: dict[str, Any], previous: list[str]) -> None:
        wh = self.settings.webhooks
        extra: dict[str, Any] = {}
        if previous:
            extra["previous"] = previous
        if not wh.legacy_signature:
            extra["legacy"] = False
        try:
            if url.startswith(CONSUMER):
                res = self._consume(url.removeprefix(CONSUMER), body)
            else:
                res = self.sender(url, secret, body, timeout_s=wh.timeout_s, allow_private=wh.allow_private_targets,
                                  **extra)
            self._record(delivery_id, host, res)
        except Exception:
            # The claim lapses and another pass sends it again: at least once.
            log.exception("webhook delivery %s could not be recorded", delivery_id)
        finally:
            with self._lock:
                self._in_flight.pop(delivery_id, None)

    def _consume(self, name: str, body: dict[str, Any]) -> SendResult:
        consumer = self.consumers.get(name)
        started = time.monotonic()
        if consumer is None:
            return SendResult(ok=False, status_code=None, error=f"no consumer named {name!r} in this process",
                              duration_s=0.0)
        try:
            consumer[1](body)
        except Exception as exc:
            log.warning("outbox consumer %s failed on event %s: %s", name, body.get("id"), exc)
            return SendResult(ok=False, status_code=getattr(exc, "status_code", None),
                              error=f"{type(exc).__name__}: {exc}"[:1000], duration_s=time.monotonic() - started)
        return SendResult(ok=True, status_code=None, error=None, duration_s=time.monotonic() - started)

    def _record(self, delivery_id: str, host: str | None, res: SendResult) -> None:
        wh = self.settings.webhooks
        with self.store.tx() as tx:
            d = tx.events.delivery(delivery_id)
            if d is None:
                return
            attempts = d.attempts + 1
            values: dict[str, Any] = {"attempts": attempts, "last_status_code": res.status_code,
                                      "last_error": res.error}
            if res.ok:
                values.update(status="delivered", delivered_at=tx.now())
            elif attempts >= wh.max_attempts:
                values["status"] = "failed"
            else:
                values["next_attempt_at"] = tx.now() + retry_delay(attempts, wh.retry_base_s, wh.retry_max_s,
                                                                   self._rng.random())
            tx.events.update_delivery(d.id, **values)
            opened = False
            if host and res.ok:
                tx.events.target_succeeded(host)
            elif host and res.target_unhealthy:
                failures = tx.events.target_failed(host, wh.breaker_failures, wh.breaker_cooldown_s)
                opened = failures >= wh.breaker_failures
        with self._lock:
            if res.ok:
                self.delivered += 1
            elif values.get("status") == "failed":
                self.failed += 1
        if opened:
            log.warning("webhook target %s: %d consecutive failures, breaker open for %.0f s", host, failures,
                        wh.breaker_cooldown_s)
