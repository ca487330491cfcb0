"""CRM sync: accounts become contacts and purchases become purchase records, from the outbox.

`CrmSync.handle` is an outbox consumer (`EventService.add_consumer`): every event of `EVENT_TYPES` with an owner
becomes a delivery that a worker hands to it, retried with backoff when the CRM fails, so each fact reaches the
CRM at least once. Every write is an upsert by our own id, so a repeated delivery changes nothing, and a purchase
upserts its contact first, so a purchase that arrives before its account's contact still links to it.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from reelforge.domain.billing import major_units
from reelforge.ports.billing import CrmClient

log = logging.getLogger("reelforge.crm")

CONTACT_EVENTS = ("account.created", "account.verified")
PURCHASE_EVENTS = ("billing.purchase.completed", "billing.purchase.refunded")
EVENT_TYPES = (*CONTACT_EVENTS, *PURCHASE_EVENTS)


def _iso(ts: Any) -> str | None:
    if not isinstance(ts, int | float):
        return None
    return datetime.fromtimestamp(float(ts), UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


class CrmSync:
    def __init__(self, client: CrmClient) -> None:
        self.client = client

    def handle(self, envelope: dict[str, Any]) -> None:
        """Apply one outbox event (its webhook envelope: id, type, created_at, data) to the CRM; raises to have it
        retried."""
        type_ = str(envelope.get("type", ""))
        data = envelope.get("data") or {}
        if not isinstance(data, dict):
            return
        account_id = data.get("account_id") or data.get("user_id")
        email = data.get("email")
        if not isinstance(account_id, str) or not isinstance(email, str) or not email:
            log.info("crm: event %s (%s) names no account and e-mail; skipped", envelope.get("id"), type_)
            return
        contact: dict[str, Any] = {}
        if type_ == "account.verified":
            contact["HasOptedOutOfEmail"] = False
        self.client.upsert_contact(account_id=account_id, email=email, fields=contact)
        if type_ in PURCHASE_EVENTS and isinstance(data.get("purchase_id"), str):
            currency = str(data.get("currency") or "usd")
            amount = major_units(int(data.get("amount") or 0), currency)
            refunded = major_units(int(data.get("amount_refunded") or 0), currency)
            self.client.upsert_purchase(purchase_id=data["purchase_id"], account_id=account_id, fields={
                "Name": str(data.get("receipt_number") or data["purchase_id"])[:80],
                "Pack__c": data.get("pack_id"),
                "Credits__c": data.get("credits"),
                "Amount__c": amount,
                "Currency__c": currency.upper(),
                "Amount_Refunded__c": refunded,
                "Status__c": data.get("status"),
                "Paid_At__c": _iso(data.get("paid_at")),
                "Refunded_At__c": _iso(data.get("refunded_at")),
            })
