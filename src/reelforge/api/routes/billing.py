"""Buying credits (services/billing.py).

| method and path | answer |
| --- | --- |
| `GET /v1/billing/packs` | 200 the packs on sale and whether purchases are configured |
| `POST /v1/billing/checkout {pack}` | 201 a pending purchase and its Checkout URL (503 `billing_not_configured`) |
| `GET /v1/billing/purchases` | 200 the caller's purchases, newest first, with their receipt data |
| `GET /v1/billing/purchases/{purchase_id}` | 200 one of them (another account's is 404 `purchase_not_found`) |
| `POST /v1/billing/stripe/webhook` | 200 Stripe's event applied (or a replay noticed); 400 a bad signature |

The webhook is the one route without a signed-in caller: Stripe authenticates it by signing the raw body.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request

from reelforge.api.deps import Container, CurrentUser
from reelforge.api.openapi import problems
from reelforge.api.schemas.billing import (
    CheckoutCreate,
    CheckoutPublic,
    PackPublic,
    PacksPublic,
    PurchasePublic,
    PurchasesPublic,
    WebhookReceived,
)
from reelforge.api.schemas.common import iso

router = APIRouter(tags=["billing"])


def purchase_public(p: Any) -> PurchasePublic:
    return PurchasePublic(
        id=p.id, pack_id=p.pack_id, credits=p.credits, amount=p.amount, currency=p.currency, status=p.status,
        receipt_number=p.receipt_number, customer_email=p.customer_email, amount_refunded=p.amount_refunded,
        credits_granted=p.credits_granted, credits_revoked=p.credits_revoked, credits_shortfall=p.credits_shortfall,
        provider=p.provider, session_id=p.session_id, created_at=iso(p.created_at), paid_at=iso(p.paid_at),
        refunded_at=iso(p.refunded_at))


@router.get("/billing/packs", response_model=PacksPublic)
def packs(p: CurrentUser, c: Container) -> PacksPublic:
    """The credit packs on sale (`billing.packs`)."""
    return PacksPublic(configured=c.billing.configured,
                       data=[PackPublic(id=k.id, name=k.name, credits=k.credits, price=k.price, currency=k.currency)
                             for k in c.billing.packs()])


@router.post("/billing/checkout", status_code=201, response_model=CheckoutPublic, responses=problems(502, 503))
def checkout(body: CheckoutCreate, p: CurrentUser, c: Container) -> CheckoutPublic:
    """Start buying a pack: a Stripe Checkout Session. Send the browser to `checkout_url`; the credits arrive with
    Stripe's webhook once the payment succeeds."""
    purchase = c.billing.checkout(p, body.pack)
    return CheckoutPublic(purchase_id=purchase.id, checkout_url=purchase.checkout_url or "",
                          session_id=purchase.session_id, status=purchase.status)


@router.get("/billing/purchases", response_model=PurchasesPublic)
def purchases(p: CurrentUser, c: Container, limit: Annotated[int, Query(ge=1, le=200)] = 50) -> PurchasesPublic:
    """Your purchases, newest first, with what a receipt shows."""
    return PurchasesPublic(data=[purchase_public(x) for x in c.billing.purchases(p, limit=limit)])


@router.get("/billing/purchases/{purchase_id}", response_model=PurchasePublic)
def purchase(purchase_id: str, p: CurrentUser, c: Container) -> PurchasePublic:
    """One of your purchases (its receipt)."""
    return purchase_public(c.billing.purchase(p, purchase_id))


@router.post("/billing/stripe/webhook", response_model=WebhookReceived, response_model_exclude_none=True,
             responses=problems(400, 503))
async def stripe_webhook(request: Request, c: Container,
                         stripe_signature: Annotated[str, Header(max_length=4096)] = "") -> WebhookReceived:
    """Stripe's events (`checkout.session.completed`, `checkout.session.async_payment_succeeded`,
    `charge.refunded`, ...), verified by `Stripe-Signature` over the raw body. Each event id counts once."""
    from starlette.concurrency import run_in_threadpool

    payload = await request.body()
    result = await run_in_threadpool(c.billing.handle_webhook, payload, stripe_signature)
    return WebhookReceived(**result)
