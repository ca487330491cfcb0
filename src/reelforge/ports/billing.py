"""Contracts of credit purchases: the payment provider (Stripe), the purchases' persistence and the CRM."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from reelforge.domain.billing import Pack, Purchase


@dataclass(frozen=True, slots=True)
class CheckoutSession:
    id: str
    url: str
    payment_intent: str | None = None
    expires_at: float | None = None


class PaymentGateway(Protocol):
    """A hosted checkout: create a payment page for one purchase, and verify the provider's signed events."""

    def create_checkout(self, *, purchase_id: str, account_id: str, email: str, pack: Pack, success_url: str,
                        cancel_url: str) -> CheckoutSession:
        """A new payment page for `pack` whose events name `purchase_id` and `account_id`. Raises the
        provider's refusal or outage as a ReelforgeError (502)."""
        ...

    def verify_event(self, payload: bytes, signature_header: str, *, now: float) -> dict[str, Any]:
        """The event in `payload` when `signature_header` signs exactly these bytes with a configured secret, at a
        time within the tolerance of `now`; raises a 400 ReelforgeError otherwise."""
        ...


class BillingRepository(Protocol):
    """Purchases and the provider events recorded against them, on one open transaction."""

    def add_purchase(self, **values: Any) -> Purchase:
        """Insert a pending purchase (id generated unless given)."""
        ...

    def purchase(self, purchase_id: str, *, lock: bool = False) -> Purchase | None:
        """One purchase (row-locked for this transaction with lock, where the engine locks rows)."""
        ...

    def purchase_by_session(self, session_id: str, *, lock: bool = False) -> Purchase | None:
        """The purchase of a Checkout Session."""
        ...

    def purchase_by_payment_intent(self, payment_intent: str, *, lock: bool = False) -> Purchase | None:
        """The purchase paid by this PaymentIntent."""
        ...

    def purchases(self, account_id: str, *, limit: int = 50, before: float | None = None) -> list[Purchase]:
        """An account's purchases, newest first (created before `before`)."""
        ...

    def update_purchase(self, purchase_id: str, **values: Any) -> Purchase:
        """Set a purchase's columns; returns it as written."""
        ...

    def record_event(self, event_id: str, *, type_: str, purchase_id: str | None, outcome: str,
                     created: float | None) -> None:
        """Record one provider event as handled; DuplicateKey when this event id was recorded before."""
        ...

    def event_seen(self, event_id: str) -> bool:
        """Whether this provider event id has been recorded."""
        ...


class CrmClient(Protocol):
    """A CRM that keeps a contact per account and a record per purchase, both upserted by our ids."""

    def upsert_contact(self, *, account_id: str, email: str, fields: dict[str, Any]) -> str:
        """Create or update the account's contact; returns 'created' or 'updated'."""
        ...

    def upsert_purchase(self, *, purchase_id: str, account_id: str, fields: dict[str, Any]) -> str:
        """Create or update the purchase's record, linked to the account's contact; 'created' or 'updated'."""
        ...
