"""The CRM sync against a local fake Salesforce (tests/fixtures/fake_salesforce.py), driven by the outbox on SQLite
and PostgreSQL: a contact per account (upserted by `Reelforge_Id__c`), a purchase record per purchase, linked to the
contact, retried by the outbox when Salesforce fails, a new token when the old one expires; off by default."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import UserHandle, make_settings, wait_for
from tests.fixtures.fake_salesforce import FakeSalesforce
from tests.fixtures.fake_stripe import FakeStripe


@pytest.fixture(scope="module")
def salesforce() -> Iterator[FakeSalesforce]:
    fake = FakeSalesforce().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def stripe() -> Iterator[FakeStripe]:
    fake = FakeStripe().start()
    yield fake
    fake.stop()


@pytest.fixture
def settings(tmp_path: Path, db_url: str, salesforce: FakeSalesforce, stripe: FakeStripe) -> Any:
    return make_settings(tmp_path, db_url, crm=salesforce.settings(), billing=stripe.settings(),
                         webhooks={"retry_base_s": 0.01, "retry_max_s": 0.05, "max_attempts": 5})


def pump(container: Any) -> None:
    """One pass of a worker's outbox dispatch, waiting for what it sent."""
    container.events.fan_out()
    container.events.deliver_due(wait=True)


def crm_deliveries(container: Any) -> list[Any]:
    from sqlalchemy import select

    from reelforge.adapters.db import models as m

    with container.db.tx(write=False) as s:
        return list(s.execute(select(m.Delivery).where(m.Delivery.target == "consumer:crm")
                              .order_by(m.Delivery.created_at)).scalars().all())


def test_contacts_and_purchases_reach_salesforce(client: Any, container: Any, alice: UserHandle,
                                                 salesforce: FakeSalesforce, stripe: FakeStripe) -> None:
    pump(container)
    contact = salesforce.records["Contact"][alice.id]
    assert contact["Email"] == alice.email and contact["LastName"] == "alice"
    assert contact["Reelforge_Id__c"] == alice.id
    assert [d.status for d in crm_deliveries(container)] == ["delivered"]

    r = alice.post("/v1/billing/checkout", json={"pack": "starter"})
    purchase_id, sid = r.json()["purchase_id"], r.json()["session_id"]
    body, headers = FakeStripe.signed(stripe.complete(sid))
    assert client.post("/v1/billing/stripe/webhook", content=body, headers=headers).status_code == 200
    pump(container)
    record = salesforce.records["Reelforge_Purchase__c"][purchase_id]
    assert record["Contact__r"] == {"Reelforge_Id__c": alice.id}
    assert record["Status__c"] == "paid" and record["Amount__c"] == 5.0 and record["Currency__c"] == "USD"
    assert record["Credits__c"] == 100 and record["Name"].startswith("RF-") and record["Paid_At__c"].endswith("Z")

    body, headers = FakeStripe.signed(stripe.refund(sid))
    assert client.post("/v1/billing/stripe/webhook", content=body, headers=headers).status_code == 200
    pump(container)
    record = salesforce.records["Reelforge_Purchase__c"][purchase_id]
    assert record["Status__c"] == "refunded" and record["Amount_Refunded__c"] == 5.0
    assert all(d.status == "delivered" for d in crm_deliveries(container))
    # Upserts by our ids: the contact and the purchase are one record each however often they were sent.
    assert len([u for u in salesforce.upserts if u[:2] == ("Reelforge_Purchase__c", purchase_id)]) == 2


def test_failures_are_retried_by_the_outbox(client: Any, container: Any, salesforce: FakeSalesforce) -> None:
    from tests.conftest import register

    salesforce.fail_next(2, 503)
    user = register(client, "retry@example.com")
    pump(container)
    (d,) = crm_deliveries(container)
    assert d.status == "pending" and d.attempts == 1 and (d.last_error or "").startswith("CrmError")
    assert "503" in (d.last_error or "")
    assert user.id not in salesforce.records.get("Contact", {})

    def delivered() -> bool:
        pump(container)
        return crm_deliveries(container)[0].status == "delivered"

    wait_for(delivered, timeout=20)
    assert crm_deliveries(container)[0].attempts == 3
    assert salesforce.records["Contact"][user.id]["Email"] == "retry@example.com"


def test_an_expired_token_is_replaced(client: Any, container: Any, salesforce: FakeSalesforce) -> None:
    from tests.conftest import register

    register(client, "first@example.com")
    pump(container)
    before = salesforce.token_requests
    salesforce.expire_tokens()
    user = register(client, "second@example.com")
    pump(container)
    assert salesforce.token_requests == before + 1
    assert crm_deliveries(container)[-1].status == "delivered" and user.id in salesforce.records["Contact"]


def test_off_by_default(tmp_path: Path, db_url: str, salesforce: FakeSalesforce) -> None:
    from reelforge.container import Container

    c = Container(make_settings(tmp_path, db_url))
    try:
        assert c.crm is None and c.events.consumers == {}
        user = c.auth.register("nocrm@example.com", "correct horse battery")
        pump(c)
        assert crm_deliveries(c) == [] and user.id not in salesforce.records.get("Contact", {})
    finally:
        c.close()
