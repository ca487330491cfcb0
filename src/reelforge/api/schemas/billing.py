"""Credit purchases: packs, checkout, purchases and their receipts."""

from __future__ import annotations

from pydantic import BaseModel, Field

from reelforge.api.schemas.common import Strict


class PackPublic(BaseModel):
    id: str
    name: str
    credits: int
    price: int = Field(description="In the currency's minor units (cents)")
    currency: str = Field(description="ISO 4217, lower case")


class PacksPublic(BaseModel):
    configured: bool = Field(description="Whether purchases are possible on this server")
    data: list[PackPublic]


class CheckoutCreate(Strict):
    pack: str = Field(min_length=1, max_length=40, description="The id of a pack from GET /v1/billing/packs")


class CheckoutPublic(BaseModel):
    purchase_id: str
    checkout_url: str = Field(description="The payment page: send the browser there")
    session_id: str | None
    status: str


class PurchasePublic(BaseModel):
    id: str
    pack_id: str
    credits: int
    amount: int = Field(description="In the currency's minor units")
    currency: str
    status: str = Field(description="pending, processing, paid, partially_refunded, refunded, failed or expired")
    receipt_number: str | None
    customer_email: str | None
    amount_refunded: int
    credits_granted: int
    credits_revoked: int = Field(description="Credits a refund took back")
    credits_shortfall: int = Field(description="Credits a refund should have taken back but the balance no longer "
                                               "held (spent): owed")
    provider: str
    session_id: str | None
    created_at: str | None
    paid_at: str | None
    refunded_at: str | None


class PurchasesPublic(BaseModel):
    data: list[PurchasePublic]


class WebhookReceived(BaseModel):
    received: bool
    duplicate: bool
    event_id: str
    outcome: str | None = None
    purchase_id: str | None = None
    status: str | None = None
