"""Rotating the secrets that sign webhook deliveries (a subscription's, and the account's for callback_url)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import Field

from reelforge.api.deps import Container, CurrentUser
from reelforge.api.schemas.common import Public, iso

router = APIRouter(tags=["webhooks"])


class SecretRotated(Public):
    secret: str = Field(description="The new signing secret (`whsec_` + base64, Standard Webhooks); shown once.")
    previous_valid_until: str | None = Field(
        description="Until when deliveries also carry a signature made with the replaced secret (null: none)")


@router.post("/webhooks/{hook_id}/rotate-secret", response_model=SecretRotated)
def rotate_webhook_secret(hook_id: str, p: CurrentUser, c: Container) -> SecretRotated:
    """A new signing secret for this subscription. Until `previous_valid_until` every delivery carries two
    `v1,` signatures in `webhook-signature` (the new secret's and the old one's), so a receiver can switch over
    without losing a delivery; the deprecated `Reelforge-Signature` uses the new secret at once."""
    secret, until = c.events.rotate_webhook_secret(p, hook_id)
    return SecretRotated(secret=secret, previous_valid_until=iso(until))


@router.post("/webhooks/signing-secret/rotate", response_model=SecretRotated)
def rotate_signing_secret(p: CurrentUser, c: Container) -> SecretRotated:
    """A new account secret (it signs deliveries to jobs' `callback_url`), with the same overlap."""
    secret, until = c.events.rotate_signing_secret(p)
    return SecretRotated(secret=secret, previous_valid_until=iso(until))
