"""Credit purchases: the records and the rule that turns what the payment provider reported into credits.

A purchase's credits follow two facts only, whatever order the provider's events arrive in and however often:
whether it was paid, and how much of it was refunded. `settlement` says what should have moved given those facts
and what has moved already; the service applies the difference in the transaction that records the event.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class PurchaseStatus(StrEnum):
    pending = "pending"  # Checkout Session created, nothing paid yet
    processing = "processing"  # completed with a payment method that settles later (async_payment_succeeded)
    paid = "paid"
    refunded = "refunded"  # fully refunded (credits clawed back)
    partially_refunded = "partially_refunded"
    failed = "failed"  # the delayed payment failed
    expired = "expired"  # the Checkout Session expired unpaid


class EventOutcome(StrEnum):
    """What recording one provider event did (kept with the event id, which makes each event count once)."""

    applied = "applied"
    ignored = "ignored"  # not about one of our purchases, or a type we do not act on
    mismatch = "mismatch"  # names our purchase but disagrees with it (amount, currency, account): nothing moved


# Ledger kinds of purchases (credit_ledger.kind).
LEDGER_PURCHASE = "purchase"
LEDGER_CLAWBACK = "purchase_refund"

# Platform events (the outbox) for receipts and the CRM.
PURCHASE_COMPLETED = "billing.purchase.completed"
PURCHASE_REFUNDED = "billing.purchase.refunded"
EVENT_TYPES = (PURCHASE_COMPLETED, PURCHASE_REFUNDED)


@dataclass(frozen=True, slots=True)
class Pack:
    id: str
    name: str
    credits: int
    price: int  # minor units
    currency: str


@dataclass(frozen=True, slots=True)
class Purchase:
    id: str
    account_id: str
    pack_id: str
    credits: int
    amount: int  # minor units
    currency: str
    status: str
    provider: str
    session_id: str | None
    payment_intent: str | None
    checkout_url: str | None
    customer_email: str | None
    paid: bool
    amount_refunded: int
    credits_granted: int  # credits this purchase added to the balance
    credits_revoked: int  # credits a refund took back from the balance
    credits_shortfall: int  # credits a refund should have taken back but the balance no longer held (a debt)
    receipt_number: str | None
    created_at: float
    updated_at: float
    paid_at: float | None
    refunded_at: float | None


@dataclass(frozen=True, slots=True)
class Settlement:
    grant: int  # credits to add now
    clawback: int  # credits to take back now (the caller takes what the balance holds; the rest is shortfall)


def refunded_credits(credits: int, amount: int, amount_refunded: int) -> int:
    """The credits a refund of `amount_refunded` of `amount` takes back: in proportion, rounded up, at most all."""
    if amount_refunded <= 0 or amount <= 0:
        return 0
    if amount_refunded >= amount:
        return credits
    return min(credits, -(-credits * amount_refunded // amount))


def settlement(p: Purchase) -> Settlement:
    """What must move for `p` to agree with its facts (`paid`, `amount_refunded`): granted once when paid, then
    clawed back in proportion to what was refunded. Zero and zero once it agrees, so applying it twice is a no-op."""
    grant = p.credits if p.paid and p.credits_granted == 0 else 0
    owed = refunded_credits(p.credits, p.amount, p.amount_refunded) if p.paid else 0
    clawback = max(0, owed - p.credits_revoked - p.credits_shortfall)
    return Settlement(grant=grant, clawback=clawback)


def status_of(p: Purchase) -> PurchaseStatus:
    """The status the facts give, for a purchase that was paid or refunded."""
    if p.amount_refunded >= p.amount and p.amount_refunded > 0:
        return PurchaseStatus.refunded
    if p.amount_refunded > 0:
        return PurchaseStatus.partially_refunded
    if p.paid:
        return PurchaseStatus.paid
    return PurchaseStatus(p.status)


# Currencies whose minor unit is the unit itself (Stripe's list of zero-decimal currencies).
ZERO_DECIMAL = frozenset({"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv",
                          "xaf", "xof", "xpf"})


def major_units(amount: int, currency: str) -> float:
    """An amount in minor units (what Stripe takes) in the currency's major units (500 usd -> 5.0)."""
    return float(amount) if currency.lower() in ZERO_DECIMAL else amount / 100
