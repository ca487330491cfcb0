"""Buying credits: packs, Checkout Sessions, and the payment provider's webhooks turned into ledger lines.

A checkout stores a pending purchase, then asks the provider (`PaymentGateway`) for a payment page that names it.
The provider's signed events then say what happened to it: paid (`checkout.session.completed` with
`payment_status=paid`, or `checkout.session.async_payment_succeeded` for a delayed method), refunded
(`charge.refunded`, cumulative `amount_refunded`), failed or expired. Each event is handled in ONE transaction
that records its id (the de-duplication key: a replay or a concurrent second delivery fails that insert and
changes nothing), updates the purchase's facts, moves the credits the facts call for (`domain.billing.settlement`)
on the ledger, and writes the platform event (`billing.purchase.completed` / `billing.purchase.refunded`) to the
outbox. Because the credits follow the facts and not the events, any order gives the same balance: a refund that
arrives before its payment is kept, and the payment, when it comes, grants and claws back in the same transaction.

A refund never takes a balance below zero: what the balance no longer holds (spent on jobs) is recorded on the
purchase as `credits_shortfall`, a debt shown to the user and the admins, and logged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from reelforge import errors
from reelforge.config import Settings
from reelforge.domain.billing import (
    LEDGER_CLAWBACK,
    LEDGER_PURCHASE,
    PURCHASE_COMPLETED,
    PURCHASE_REFUNDED,
    EventOutcome,
    Pack,
    Purchase,
    PurchaseStatus,
    settlement,
    status_of,
)
from reelforge.domain.types import Principal
from reelforge.ports.billing import BillingRepository, PaymentGateway
from reelforge.ports.repositories import DuplicateKey, Store, UnitOfWork

log = logging.getLogger("reelforge.billing")

SESSION_EVENTS = ("checkout.session.completed", "checkout.session.async_payment_succeeded",
                  "checkout.session.async_payment_failed", "checkout.session.expired")
HANDLED_EVENTS = (*SESSION_EVENTS, "charge.refunded")


class BillingNotConfigured(errors.ServiceUnavailable):
    code, title, retryable = "billing_not_configured", "Billing is not configured on this server", False


def receipt(p: Purchase, email: str | None = None) -> dict[str, Any]:
    """What a receipt shows (the outbox events' payload; the console's receipt view shows the same fields)."""
    return {"purchase_id": p.id, "account_id": p.account_id, "email": email or p.customer_email,
            "receipt_number": p.receipt_number, "pack_id": p.pack_id, "credits": p.credits, "amount": p.amount,
            "currency": p.currency, "status": p.status, "paid_at": p.paid_at, "refunded_at": p.refunded_at,
            "amount_refunded": p.amount_refunded, "credits_granted": p.credits_granted,
            "credits_revoked": p.credits_revoked, "credits_shortfall": p.credits_shortfall,
            "provider": p.provider, "session_id": p.session_id}


def _text(value: Any) -> str | None:
    """A string field of a provider object, or the id of an expanded one."""
    if isinstance(value, str) and value:
        return value
    if isinstance(value, dict) and isinstance(value.get("id"), str):
        return str(value["id"])
    return None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class BillingService:
    def __init__(self, store: Store, settings: Settings, gateway: PaymentGateway | None,
                 repo: Callable[[UnitOfWork], BillingRepository], audit: Any = None) -> None:
        """`gateway`: None while billing is not configured; `repo`: the purchases' repository on a transaction;
        `audit`: the audit trail (services.audit.AuditService) purchases and refunds are recorded in, or None."""
        self.store = store
        self.settings = settings
        self.gateway = gateway
        self.repo = repo
        self.audit = audit

    @property
    def configured(self) -> bool:
        return self.gateway is not None and self.settings.billing.configured

    def _gateway(self) -> PaymentGateway:
        if self.gateway is None or not self.settings.billing.configured:
            raise BillingNotConfigured("Credit purchases are not configured on this server: set "
                                       "billing.stripe.secret_key (REELFORGE_BILLING__STRIPE__SECRET_KEY)")
        return self.gateway

    # --- packs and checkout -------------------------------------------------------------------------------------
    def packs(self) -> list[Pack]:
        """The credit packs on sale, as configured (`billing.packs`)."""
        return [Pack(id=p.id, name=p.name or f"{p.credits} credits", credits=p.credits, price=p.price,
                     currency=p.currency) for p in self.settings.billing.packs]

    def pack(self, pack_id: str) -> Pack:
        for p in self.packs():
            if p.id == pack_id:
                return p
        raise errors.ValidationFailed(f"No credit pack {pack_id!r}; see GET /v1/billing/packs", code="unknown_pack",
                                      field="pack")

    def console_url(self) -> str:
        return self.settings.billing.console_url or f"{str(self.settings.public_url).rstrip('/')}/credits"

    def checkout(self, principal: Principal, pack_id: str) -> Purchase:
        """A pending purchase of `pack_id` and the provider's payment page for it (`checkout_url`)."""
        gateway = self._gateway()
        pack = self.pack(pack_id)
        with self.store.tx() as tx:
            if tx.accounts.user(principal.user_id) is None:
                raise errors.NotFound("Account not found", code="user_not_found")
            purchase = self.repo(tx).add_purchase(account_id=principal.user_id, pack_id=pack.id, credits=pack.credits,
                                                  amount=pack.price, currency=pack.currency,
                                                  customer_email=principal.email)
        back = self.console_url()
        sep = "&" if "?" in back else "?"
        try:
            # Stripe replaces {CHECKOUT_SESSION_ID} in the success URL with the session's id.
            session = gateway.create_checkout(
                purchase_id=purchase.id, account_id=principal.user_id, email=principal.email, pack=pack,
                success_url=f"{back}{sep}checkout=success&purchase={purchase.id}&session_id={{CHECKOUT_SESSION_ID}}",
                cancel_url=f"{back}{sep}checkout=cancelled&purchase={purchase.id}")
        except Exception:
            with self.store.tx() as tx:
                self.repo(tx).update_purchase(purchase.id, status=PurchaseStatus.failed.value)
            raise
        with self.store.tx() as tx:
            return self.repo(tx).update_purchase(purchase.id, session_id=session.id, checkout_url=session.url,
                                                 payment_intent=session.payment_intent)

    def purchases(self, principal: Principal, *, limit: int = 50, before: float | None = None) -> list[Purchase]:
        with self.store.tx(write=False) as tx:
            return self.repo(tx).purchases(principal.user_id, limit=limit, before=before)

    def purchase(self, principal: Principal, purchase_id: str) -> Purchase:
        """One of the caller's purchases; another account's answers 404 like a missing one."""
        with self.store.tx(write=False) as tx:
            p = self.repo(tx).purchase(purchase_id)
        if p is None or p.account_id != principal.user_id:
            raise errors.NotFound("Purchase not found", code="purchase_not_found")
        return p

    # --- webhooks ------------------------------------------------------------------------------------------------
    def handle_webhook(self, payload: bytes, signature_header: str) -> dict[str, Any]:
        """Verify and apply one provider event (the raw body as received). Answers what was done; a replay answers
        `duplicate: true` and changes nothing."""
        if not self.settings.billing.stripe.webhook_secrets:
            raise BillingNotConfigured("Stripe webhooks are not configured on this server: set "
                                       "billing.stripe.webhook_secrets (REELFORGE_BILLING__STRIPE__WEBHOOK_SECRETS)")
        event = self._gateway().verify_event(payload, signature_header, now=time.time())
        event_id, event_type = str(event["id"]), str(event["type"])
        created = _int(event.get("created"))
        try:
            with self.store.tx() as tx:
                repo = self.repo(tx)
                if repo.event_seen(event_id):
                    return {"received": True, "duplicate": True, "event_id": event_id}
                outcome, purchase = self._apply(tx, repo, event_type, event["data"]["object"])
                repo.record_event(event_id, type_=event_type, purchase_id=purchase.id if purchase else None,
                                  outcome=outcome.value, created=float(created) if created is not None else None)
        except DuplicateKey:
            # A concurrent delivery of the same event recorded it first; this one's changes were rolled back.
            return {"received": True, "duplicate": True, "event_id": event_id}
        return {"received": True, "duplicate": False, "event_id": event_id, "outcome": outcome.value,
                **({"purchase_id": purchase.id, "status": purchase.status} if purchase else {})}

    def _find(self, repo: BillingRepository, obj: dict[str, Any], *, session: bool) -> Purchase | None:
        metadata = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
        found: Purchase | None = None
        if session and _text(obj.get("id")):
            found = repo.purchase_by_session(str(obj["id"]), lock=True)
        if found is None and not session and _text(obj.get("payment_intent")):
            found = repo.purchase_by_payment_intent(str(_text(obj.get("payment_intent"))), lock=True)
        if found is None and isinstance(metadata, dict) and isinstance(metadata.get("purchase_id"), str):
            found = repo.purchase(metadata["purchase_id"][:64], lock=True)
        return found

    def _apply(self, tx: UnitOfWork, repo: BillingRepository, event_type: str,
               obj: dict[str, Any]) -> tuple[EventOutcome, Purchase | None]:
        if event_type not in HANDLED_EVENTS:
            return EventOutcome.ignored, None
        session = event_type in SESSION_EVENTS
        p = self._find(repo, obj, session=session)
        if p is None:
            log.info("stripe event %s names no purchase of ours; ignored", event_type)
            return EventOutcome.ignored, None
        problem = self._mismatch(p, obj, session=session)
        if problem:
            log.error("stripe event %s for purchase %s disagrees with it (%s); nothing moved", event_type, p.id,
                      problem)
            return EventOutcome.mismatch, p
        was_paid, was_refunded = p.paid, p.amount_refunded
        facts: dict[str, Any] = {}
        intent = _text(obj.get("payment_intent"))
        if intent and not p.payment_intent:
            facts["payment_intent"] = intent
        if session:
            if not p.session_id and _text(obj.get("id")):
                facts["session_id"] = _text(obj.get("id"))
            payment_status = obj.get("payment_status")
            if event_type == "checkout.session.async_payment_succeeded" or (
                    event_type == "checkout.session.completed" and payment_status in ("paid", "no_payment_required")):
                facts["paid"] = True
            elif not p.paid and p.status == PurchaseStatus.pending:
                facts["status"] = {"checkout.session.completed": PurchaseStatus.processing,
                                   "checkout.session.async_payment_failed": PurchaseStatus.failed,
                                   "checkout.session.expired": PurchaseStatus.expired}[event_type].value
            elif not p.paid and event_type == "checkout.session.async_payment_failed":
                facts["status"] = PurchaseStatus.failed.value
        else:
            refunded = _int(obj.get("amount_refunded")) or 0
            # Cumulative: a later event may arrive first, so the larger figure wins.
            if refunded > p.amount_refunded:
                facts["amount_refunded"] = min(refunded, p.amount)
        if facts:
            p = repo.update_purchase(p.id, **facts)
        p = self._settle(tx, repo, p)
        if p.paid and not was_paid:
            tx.events.emit(PURCHASE_COMPLETED, receipt(p), owner_id=p.account_id, subject_id=p.id)
            if self.audit is not None:  # in the transaction that grants the credits
                self.audit.purchase(p.account_id, p.amount, reference=p.id, tx=tx, credits=p.credits,
                                    currency=p.currency, pack=p.pack_id)
        refund_news = p.amount_refunded > was_refunded or (not was_paid and p.amount_refunded > 0)
        if p.paid and refund_news:
            tx.events.emit(PURCHASE_REFUNDED, receipt(p), owner_id=p.account_id, subject_id=p.id)
            if self.audit is not None:
                self.audit.record("credits.refunded", actor=None, target_type="user", target_id=p.account_id,
                                  details={"purchase": p.id, "amount_refunded": p.amount_refunded,
                                           "credits_revoked": p.credits_revoked,
                                           "credits_shortfall": p.credits_shortfall}, tx=tx)
        return EventOutcome.applied, p

    @staticmethod
    def _mismatch(p: Purchase, obj: dict[str, Any], *, session: bool) -> str | None:
        currency = obj.get("currency")
        if isinstance(currency, str) and currency.lower() != p.currency:
            return f"currency {currency!r}, expected {p.currency!r}"
        if session:
            ref = obj.get("client_reference_id")
            if isinstance(ref, str) and ref and ref != p.account_id:
                return "client_reference_id names another account"
            total = _int(obj.get("amount_total"))
            if total is not None and total != p.amount and obj.get("payment_status") == "paid":
                return f"amount_total {total}, expected {p.amount}"
        else:
            amount = _int(obj.get("amount"))
            if amount is not None and amount != p.amount:
                return f"charge amount {amount}, expected {p.amount}"
        return None

    def _settle(self, tx: UnitOfWork, repo: BillingRepository, p: Purchase) -> Purchase:
        """Move what `p`'s facts call for and bring its status and counters up to date."""
        due = settlement(p)
        values: dict[str, Any] = {}
        now = tx.now()
        if due.grant:
            number = p.receipt_number or f"RF-{p.id[:12].upper()}"
            tx.credits.credit(p.account_id, due.grant, LEDGER_PURCHASE,
                              note=f"purchase {number}: {p.credits} credits ({p.pack_id})")
            values.update(credits_granted=p.credits_granted + due.grant, receipt_number=number,
                          paid_at=p.paid_at or now)
        if due.clawback:
            tx.accounts.user(p.account_id, lock=True)  # no job may reserve between this read and the clawback
            balance = max(0, tx.credits.balance(p.account_id))
            take = min(due.clawback, balance)
            if take:
                tx.credits.credit(p.account_id, -take, LEDGER_CLAWBACK,
                                  note=f"refund of purchase {p.receipt_number or p.id}")
            short = due.clawback - take
            if short:
                log.warning("refund of purchase %s: %d credits could not be clawed back (balance %d); recorded as "
                            "a shortfall", p.id, short, balance)
            values.update(credits_revoked=p.credits_revoked + take, credits_shortfall=p.credits_shortfall + short)
        if p.amount_refunded and not p.refunded_at:
            values["refunded_at"] = now
        if values:
            p = repo.update_purchase(p.id, **values)
        status = status_of(p).value
        if status != p.status:
            p = repo.update_purchase(p.id, status=status)
        return p
