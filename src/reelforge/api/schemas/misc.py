from __future__ import annotations

from typing import Any

from pydantic import Field

from reelforge.api.schemas.common import Public, Strict


class CreditEntryPublic(Public):
    id: int
    kind: str
    amount: int
    balance_after: int
    job_id: str | None
    note: str
    created_at: str | None


class CreditsPublic(Public):
    balance: int
    ledger: list[CreditEntryPublic]


class CreditGrant(Strict):
    account_id: str = Field(min_length=1, max_length=64)
    amount: int = Field(ge=-1_000_000_000, le=1_000_000_000)
    note: str = Field(default="", max_length=500)


class WebhookCreate(Strict):
    url: str = Field(min_length=8, max_length=2048)
    event_types: list[str] = Field(default_factory=list, max_length=50)
    description: str = Field(default="", max_length=500)


class WebhookPublic(Public):
    id: str
    url: str
    event_types: list[str]
    description: str
    active: bool
    created_at: str | None


class WebhookCreated(WebhookPublic):
    secret: str = Field(description="Signs deliveries (Standard Webhooks `whsec_` secret: verifies "
                                    "`webhook-signature`, and the deprecated Reelforge-Signature); shown once.")


class WebhooksPublic(Public):
    data: list[WebhookPublic]


class DeliveryPublic(Public):
    id: str
    event_id: str
    webhook_id: str | None
    target: str
    url: str
    status: str
    attempts: int
    last_status_code: int | None
    last_error: str | None
    created_at: str | None
    delivered_at: str | None


class DeliveriesPublic(Public):
    data: list[DeliveryPublic]


class ModelPublic(Public):
    name: str
    task: str
    description: str
    available: bool
    reason: str | None
    test_model: bool
    source: str | None
    details: dict[str, Any]


class ModelsPublic(Public):
    data: list[ModelPublic]
