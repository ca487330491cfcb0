"""Stripe: Checkout Sessions over its form-encoded REST API, and the verification of its signed webhooks.

No SDK: two requests' worth of protocol. Requests are `application/x-www-form-urlencoded` with nested keys
(`line_items[0][price_data][currency]=usd`), authenticated by the secret key as a bearer token, and carry an
`Idempotency-Key` (the purchase id), so a retried create returns the same session.

A webhook's `Stripe-Signature` header is `t=<unix time>,v1=<hex>[,v1=<hex>...][,v0=...]`: each `v1` is the
HMAC-SHA256 of `<t>.<raw body>` under an endpoint secret (`whsec_...`, used whole as the key). While a secret is
rolled Stripe signs with the old and the new one (two `v1`), and we may hold several secrets: any pair that
matches will do. The timestamp must lie within the tolerance of now, which makes a captured delivery useless
once it is old; within the tolerance a replay is caught by the event id (services/billing.py).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

import httpx

from reelforge import errors
from reelforge.domain.billing import Pack
from reelforge.ports.billing import CheckoutSession


class PaymentProviderError(errors.ReelforgeError):
    status, code, title, retryable = 502, "payment_provider_error", "The payment provider refused or failed", True


class InvalidStripeSignature(errors.BadRequest):
    code, title = "invalid_stripe_signature", "The Stripe-Signature header does not sign this body"


class StaleStripeSignature(errors.BadRequest):
    code, title = "stale_stripe_signature", "The signed timestamp is outside the tolerance"


class InvalidStripeEvent(errors.BadRequest):
    code, title = "invalid_stripe_event", "The webhook body is not a Stripe event"


def form_pairs(value: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Stripe's form encoding of nested values: dicts as `a[b]`, lists as `a[0]`, booleans as true/false."""
    if isinstance(value, dict):
        out: list[tuple[str, str]] = []
        for k, v in value.items():
            out += form_pairs(v, f"{prefix}[{k}]" if prefix else str(k))
        return out
    if isinstance(value, list | tuple):
        out = []
        for i, v in enumerate(value):
            out += form_pairs(v, f"{prefix}[{i}]")
        return out
    if value is None:
        return []
    if isinstance(value, bool):
        return [(prefix, "true" if value else "false")]
    return [(prefix, str(value))]


def sign(payload: bytes, secret: str, timestamp: int) -> str:
    """The hex `v1` signature of `payload` at `timestamp` (what Stripe sends; tests and tools sign with it)."""
    signed = str(timestamp).encode() + b"." + payload
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def parse_signature_header(header: str) -> tuple[int, list[str]]:
    """(timestamp, v1 signatures) of a `Stripe-Signature` header; InvalidStripeSignature when malformed."""
    timestamp: int | None = None
    v1: list[str] = []
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            if not value.isdigit() or len(value) > 12:
                raise InvalidStripeSignature("The Stripe-Signature timestamp is malformed")
            timestamp = int(value)
        elif key == "v1" and value:
            v1.append(value.strip().lower())
    if timestamp is None or not v1:
        raise InvalidStripeSignature("The Stripe-Signature header needs a timestamp (t=) and a v1 signature")
    return timestamp, v1[:16]


def verify_signature(payload: bytes, header: str, secrets: Sequence[str], *, now: float, tolerance_s: float) -> int:
    """The signed timestamp when one of `secrets` made one of the header's v1 signatures over `payload` and the
    timestamp is within `tolerance_s` of `now`. The signature is checked first, as Stripe's libraries do."""
    timestamp, signatures = parse_signature_header(header)
    expected = [sign(payload, s, timestamp) for s in secrets if s]
    if not any(hmac.compare_digest(e, got) for e in expected for got in signatures):
        raise InvalidStripeSignature("No signature in Stripe-Signature matches this body")
    if abs(now - timestamp) > tolerance_s:
        raise StaleStripeSignature(f"The signed timestamp is more than {int(tolerance_s)} s from now",
                                   tolerance_s=int(tolerance_s))
    return timestamp


class StripeGateway:
    """The `PaymentGateway` port on Stripe's API (`api_base`, Stripe's by default; a local fake in tests)."""

    def __init__(self, secret_key: str, webhook_secrets: Sequence[str], *, api_base: str = "https://api.stripe.com",
                 timeout_s: float = 20.0, tolerance_s: float = 300.0) -> None:
        self.secret_key = secret_key
        self.webhook_secrets = tuple(s for s in webhook_secrets if s)
        self.api_base = api_base.rstrip("/")
        self.timeout_s = timeout_s
        self.tolerance_s = tolerance_s

    def create_checkout(self, *, purchase_id: str, account_id: str, email: str, pack: Pack, success_url: str,
                        cancel_url: str) -> CheckoutSession:
        metadata = {"purchase_id": purchase_id, "account_id": account_id, "pack_id": pack.id}
        params = {
            "mode": "payment",
            "success_url": success_url,
            "cancel_url": cancel_url,
            "client_reference_id": account_id,
            "customer_email": email or None,
            "line_items": [{"quantity": 1, "price_data": {
                "currency": pack.currency, "unit_amount": pack.price,
                "product_data": {"name": pack.name or f"{pack.credits} credits",
                                 "description": f"{pack.credits} reelforge credits"}}}],
            "metadata": metadata,
            # Copied to the PaymentIntent and its charge, so a refund names the purchase even when it comes first.
            "payment_intent_data": {"metadata": metadata},
        }
        body = urlencode(form_pairs(params))
        try:
            r = httpx.post(f"{self.api_base}/v1/checkout/sessions", content=body, timeout=self.timeout_s,
                           headers={"Authorization": f"Bearer {self.secret_key}",
                                    "Content-Type": "application/x-www-form-urlencoded",
                                    "Idempotency-Key": f"checkout-{purchase_id}"})
        except httpx.HTTPError as exc:
            raise PaymentProviderError(f"Stripe could not be reached: {type(exc).__name__}") from exc
        try:
            doc = r.json()
        except ValueError:
            doc = {}
        if r.status_code != 200 or not isinstance(doc, dict) or not doc.get("id") or not doc.get("url"):
            err = doc.get("error") if isinstance(doc, dict) else None
            message = err.get("message") if isinstance(err, dict) else None
            raise PaymentProviderError(f"Stripe refused the Checkout Session ({r.status_code})"
                                       + (f": {str(message)[:300]}" if message else ""),
                                       provider_status=r.status_code)
        expires = doc.get("expires_at")
        return CheckoutSession(id=str(doc["id"]), url=str(doc["url"]),
                               payment_intent=doc.get("payment_intent") if isinstance(doc.get("payment_intent"), str)
                               else None,
                               expires_at=float(expires) if isinstance(expires, int | float) else None)

    def verify_event(self, payload: bytes, signature_header: str, *, now: float) -> dict[str, Any]:
        verify_signature(payload, signature_header, self.webhook_secrets, now=now, tolerance_s=self.tolerance_s)
        try:
            event = json.loads(payload)
        except ValueError as exc:
            raise InvalidStripeEvent("The webhook body is not JSON") from exc
        if (not isinstance(event, dict) or not isinstance(event.get("id"), str) or not event["id"]
                or len(event["id"]) > 255 or not isinstance(event.get("type"), str)
                or not isinstance(event.get("data"), dict) or not isinstance(event["data"].get("object"), dict)):
            raise InvalidStripeEvent("The webhook body is not a Stripe event (id, type, data.object)")
        return event
