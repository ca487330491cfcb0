"""Without Stripe keys (the default) the billing routes work and say so: packs are listed as not purchasable,
checkout and the webhook answer 503 `billing_not_configured`; with a secret key but no webhook secret, the webhook
still answers 503 (it can verify nothing)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.conftest import UserHandle, make_settings


def test_billing_off_by_default(client: Any, alice: UserHandle) -> None:
    packs = alice.get("/v1/billing/packs").json()
    assert packs["configured"] is False and len(packs["data"]) == 3
    r = alice.post("/v1/billing/checkout", json={"pack": "starter"})
    assert r.status_code == 503 and r.json()["code"] == "billing_not_configured"
    assert "REELFORGE_BILLING__STRIPE__SECRET_KEY" in r.json()["detail"]
    r = client.post("/v1/billing/stripe/webhook", content=b"{}", headers={"Stripe-Signature": "t=1,v1=00"})
    assert r.status_code == 503 and r.json()["code"] == "billing_not_configured"
    assert alice.get("/v1/billing/purchases").json() == {"data": []}


def test_webhook_needs_a_webhook_secret(tmp_path: Path, db_url: str) -> None:
    from fastapi.testclient import TestClient

    from reelforge.api.app import create_app
    from reelforge.container import Container

    c = Container(make_settings(tmp_path, db_url, billing={"stripe": {"secret_key": "sk_test_x"}}))
    try:
        with TestClient(create_app(container=c)) as client:
            r = client.post("/v1/billing/stripe/webhook", content=b"{}", headers={"Stripe-Signature": "t=1,v1=00"})
            assert r.status_code == 503 and r.json()["code"] == "billing_not_configured"
            assert "WEBHOOK_SECRETS" in r.json()["detail"]
    finally:
        c.close()


def test_packs_are_configurable(tmp_path: Path, db_url: str) -> None:
    import pytest
    from pydantic import ValidationError

    s = make_settings(tmp_path, db_url, billing={"packs": [{"id": "mega", "credits": 10000, "price": 99900,
                                                            "currency": "eur"}]})
    assert [(p.id, p.credits, p.price, p.currency) for p in s.billing.packs] == [("mega", 10000, 99900, "eur")]
    for bad in [[{"id": "a", "credits": 0, "price": 1}], [{"id": "A B", "credits": 1, "price": 1}],
                [{"id": "a", "credits": 1, "price": 1, "currency": "EURO"}],
                [{"id": "a", "credits": 1, "price": 1}, {"id": "a", "credits": 2, "price": 2}]]:
        with pytest.raises(ValidationError):
            make_settings(tmp_path, db_url, billing={"packs": bad})
