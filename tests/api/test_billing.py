"""Buying credits through Stripe Checkout, against a local fake Stripe (tests/fixtures/fake_stripe.py), on SQLite and
PostgreSQL: packs, checkout, the signed webhooks (replays, forged and stale signatures, secret rotation,
out-of-order and concurrent deliveries), refunds that claw credits back, ownership and bad input."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import UserHandle, make_settings
from tests.fixtures.fake_stripe import ROLLED_SECRET, WEBHOOK_SECRET, FakeStripe

PROBLEM = "application/problem+json"
HOOK = "/v1/billing/stripe/webhook"
START = 100  # the starting grant


@pytest.fixture(scope="module")
def stripe() -> Iterator[FakeStripe]:
    fake = FakeStripe().start()
    yield fake
    fake.stop()


@pytest.fixture
def settings(tmp_path: Path, db_url: str, stripe: FakeStripe) -> Any:
    return make_settings(tmp_path, db_url, billing=stripe.settings(),
                         rate_limit={"writes_per_window_ip": 100_000, "writes_per_window_account": 100_000})


def assert_problem(r: Any, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    body = r.json()
    assert body["code"] == code, body
    return body


def balance(user: UserHandle) -> int:
    return int(user.get("/v1/credits").json()["balance"])


def buy(user: UserHandle, pack: str = "starter") -> tuple[str, str]:
    """(purchase id, Checkout Session id) of a new checkout."""
    r = user.post("/v1/billing/checkout", json={"pack": pack})
    assert r.status_code == 201, r.text
    body = r.json()
    return body["purchase_id"], body["session_id"]


def deliver(client: Any, event: dict[str, Any], secrets: tuple[str, ...] = (WEBHOOK_SECRET,),
            timestamp: int | None = None) -> Any:
    body, headers = FakeStripe.signed(event, secrets, timestamp)
    return client.post(HOOK, content=body, headers=headers)


def purchase(user: UserHandle, purchase_id: str) -> dict[str, Any]:
    r = user.get(f"/v1/billing/purchases/{purchase_id}")
    assert r.status_code == 200, r.text
    return dict(r.json())


def outbox(container: Any, owner_id: str, prefix: str = "billing.") -> list[Any]:
    with container.store.tx(write=False) as tx:
        return [e for e in tx.events.events_after(0, owner_id=owner_id, limit=1000) if e.type.startswith(prefix)]


def test_packs(client: Any, alice: UserHandle) -> None:
    body = alice.get("/v1/billing/packs").json()
    assert body["configured"] is True
    assert [p["id"] for p in body["data"]] == ["starter", "creator", "studio"]
    assert body["data"][0] == {"id": "starter", "name": "Starter", "credits": 100, "price": 500, "currency": "usd"}


def test_checkout_then_payment_grants_the_credits(client: Any, container: Any, alice: UserHandle,
                                                  stripe: FakeStripe) -> None:
    r = alice.post("/v1/billing/checkout", json={"pack": "creator"})
    assert r.status_code == 201, r.text
    out = r.json()
    assert out["checkout_url"] == f"{stripe.url}/pay/{out['session_id']}" and out["status"] == "pending"
    # What Stripe received: a form-encoded Checkout Session in payment mode, with the secret key.
    sent = next(q for q in stripe.requests if q["form"]["metadata"]["purchase_id"] == out["purchase_id"])
    assert sent["headers"]["authorization"] == f"Bearer {stripe.secret_key}"
    assert sent["headers"]["content-type"] == "application/x-www-form-urlencoded"
    assert sent["headers"]["idempotency-key"] == f"checkout-{out['purchase_id']}"
    form = sent["form"]
    assert form["mode"] == "payment" and form["client_reference_id"] == alice.id
    assert form["metadata"] == {"purchase_id": out["purchase_id"], "account_id": alice.id, "pack_id": "creator"}
    assert form["payment_intent_data"]["metadata"]["purchase_id"] == out["purchase_id"]
    assert form["line_items"]["0"]["price_data"] == {"currency": "usd", "unit_amount": "2000", "product_data": {
        "name": "Creator", "description": "500 reelforge credits"}}
    assert form["success_url"].startswith("http://testserver/credits?checkout=success&purchase=")
    assert form["success_url"].endswith("session_id={CHECKOUT_SESSION_ID}")
    assert form["customer_email"] == alice.email
    listed = alice.get("/v1/billing/purchases").json()["data"]
    assert [(p["id"], p["status"]) for p in listed] == [(out["purchase_id"], "pending")]
    assert balance(alice) == START

    r = deliver(client, stripe.complete(out["session_id"]))
    assert r.status_code == 200, r.text
    assert r.json()["outcome"] == "applied" and r.json()["status"] == "paid" and r.json()["duplicate"] is False
    assert balance(alice) == START + 500
    p = purchase(alice, out["purchase_id"])
    assert p["status"] == "paid" and p["credits_granted"] == 500 and p["paid_at"]
    assert p["receipt_number"] == f"RF-{out['purchase_id'][:12].upper()}"
    ledger = alice.get("/v1/credits").json()["ledger"]
    assert ledger[0]["kind"] == "purchase" and ledger[0]["amount"] == 500 and ledger[0]["balance_after"] == 600
    events = outbox(container, alice.id)
    assert [e.type for e in events] == ["billing.purchase.completed"]
    assert events[0].payload["receipt_number"] == p["receipt_number"] and events[0].payload["email"] == alice.email
    assert events[0].payload["amount"] == 2000 and events[0].payload["credits"] == 500


def test_replayed_event_counts_once(client: Any, alice: UserHandle, stripe: FakeStripe) -> None:
    pid, sid = buy(alice)
    event = stripe.complete(sid)
    body, headers = FakeStripe.signed(event)
    first = client.post(HOOK, content=body, headers=headers)
    assert first.status_code == 200 and first.json()["duplicate"] is False
    # The same delivery again, and the same event re-signed later (Stripe's retries): nothing more moves.
    again = client.post(HOOK, content=body, headers=headers)
    assert again.status_code == 200 and again.json() == {"received": True, "duplicate": True,
                                                          "event_id": event["id"]}
    assert deliver(client, event).json()["duplicate"] is True
    assert balance(alice) == START + 100
    # A second event saying the same thing (a new id) moves nothing either: the credits follow the facts.
    assert deliver(client, stripe.event("checkout.session.completed", event["data"]["object"])).status_code == 200
    assert balance(alice) == START + 100
    assert purchase(alice, pid)["credits_granted"] == 100


def test_forged_and_malformed_signatures(client: Any, alice: UserHandle, stripe: FakeStripe) -> None:
    _, sid = buy(alice)
    event = stripe.complete(sid)
    body, headers = FakeStripe.signed(event)
    # Signed with a secret we do not hold.
    assert_problem(deliver(client, event, ("whsec_forged",)), 400, "invalid_stripe_signature")
    # The body changed after signing (a bigger amount).
    tampered = body.replace(b'"paid"', b'"paid" ')
    assert_problem(client.post(HOOK, content=tampered, headers=headers), 400, "invalid_stripe_signature")
    # No header, an empty one, no v1, a malformed timestamp, a v0 only.
    t = int(time.time())
    for value in [None, "", f"t={t}", "v1=abc", f"t=abc,v1={'0' * 64}", f"t={t},v0={'0' * 64}", "garbage"]:
        h = {"Content-Type": "application/json"} | ({} if value is None else {"Stripe-Signature": value})
        assert_problem(client.post(HOOK, content=body, headers=h), 400, "invalid_stripe_signature")
    assert balance(alice) == START


def test_stale_timestamp_is_refused(client: Any, alice: UserHandle, stripe: FakeStripe) -> None:
    _, sid = buy(alice)
    event = stripe.complete(sid)
    problem = assert_problem(deliver(client, event, timestamp=int(time.time()) - 301), 400, "stale_stripe_signature")
    assert "300" in problem["detail"]
    assert_problem(deliver(client, event, timestamp=int(time.time()) + 400), 400, "stale_stripe_signature")
    assert balance(alice) == START
    # Within the tolerance it is fine.
    assert deliver(client, event, timestamp=int(time.time()) - 250).status_code == 200
    assert balance(alice) == START + 100


def test_secret_rotation(tmp_path: Path, db_url: str, stripe: FakeStripe) -> None:
    """During a roll Stripe signs with the old and the new secret (two v1); we may hold both, or only the new."""
    from fastapi.testclient import TestClient

    from reelforge.api.app import create_app
    from reelforge.container import Container
    from tests.conftest import register

    settings = make_settings(tmp_path, db_url, billing=stripe.settings(ROLLED_SECRET, WEBHOOK_SECRET))
    c = Container(settings)
    try:
        with TestClient(create_app(container=c)) as client:
            user = register(client, "rotation@example.com")
            for secrets in [(WEBHOOK_SECRET,), (ROLLED_SECRET,), (WEBHOOK_SECRET, ROLLED_SECRET)]:
                _, sid = buy(user)
                assert deliver(client, stripe.complete(sid), secrets).status_code == 200
            assert balance(user) == START + 300
    finally:
        c.close()
    only_new = make_settings(tmp_path / "new", db_url, billing=stripe.settings(ROLLED_SECRET))
    c = Container(only_new)
    try:
        with TestClient(create_app(container=c)) as client:
            user = UserHandle(client, "", "", c.auth.login("rotation@example.com", "correct horse battery")
                              .access_token, "")
            _, sid = buy(user)
            event = stripe.complete(sid)
            assert_problem(deliver(client, event, (WEBHOOK_SECRET,)), 400, "invalid_stripe_signature")
            assert deliver(client, event, (WEBHOOK_SECRET, ROLLED_SECRET)).status_code == 200
            assert balance(user) == START + 400
    finally:
        c.close()


def test_refund_claws_back(client: Any, container: Any, alice: UserHandle, stripe: FakeStripe) -> None:
    pid, sid = buy(alice, "creator")  # 500 credits for 2000
    deliver(client, stripe.complete(sid))
    assert balance(alice) == START + 500
    r = deliver(client, stripe.refund(sid, 500))  # a quarter
    assert r.status_code == 200 and r.json()["status"] == "partially_refunded"
    assert balance(alice) == START + 375
    deliver(client, stripe.refund(sid))  # the rest
    p = purchase(alice, pid)
    assert p["status"] == "refunded" and p["amount_refunded"] == 2000 and p["credits_revoked"] == 500
    assert p["credits_shortfall"] == 0 and p["refunded_at"]
    assert balance(alice) == START
    kinds = [(e["kind"], e["amount"]) for e in alice.get("/v1/credits").json()["ledger"][:3]]
    assert kinds == [("purchase_refund", -375), ("purchase_refund", -125), ("purchase", 500)]
    assert [e.type for e in outbox(container, alice.id)] == [
        "billing.purchase.completed", "billing.purchase.refunded", "billing.purchase.refunded"]


def test_refund_of_spent_credits_records_the_shortfall(client: Any, alice: UserHandle, admin: UserHandle,
                                                       stripe: FakeStripe) -> None:
    pid, sid = buy(alice)  # 100 credits
    deliver(client, stripe.complete(sid))
    # Alice spends 170 of her 200 credits.
    assert admin.post("/v1/admin/credits", json={"account_id": alice.id, "amount": -170}).status_code == 201
    assert balance(alice) == 30
    deliver(client, stripe.refund(sid))
    assert balance(alice) == 0  # never below zero
    p = purchase(alice, pid)
    assert p["status"] == "refunded" and p["credits_revoked"] == 30 and p["credits_shortfall"] == 70
    # The same refund again: the shortfall is not counted twice.
    deliver(client, stripe.refund(sid, 0))
    assert purchase(alice, pid)["credits_shortfall"] == 70 and balance(alice) == 0


def test_refund_before_completion(client: Any, container: Any, alice: UserHandle, stripe: FakeStripe) -> None:
    """Events in any order: the refund arrives first, then the payment; the balance ends where it started."""
    pid, sid = buy(alice)
    completed = stripe.complete(sid)
    refunded = stripe.refund(sid)
    r = deliver(client, refunded)
    assert r.status_code == 200 and r.json()["outcome"] == "applied" and r.json()["status"] == "refunded"
    assert balance(alice) == START
    assert outbox(container, alice.id) == []
    r = deliver(client, completed)
    assert r.status_code == 200 and r.json()["status"] == "refunded"
    assert balance(alice) == START
    p = purchase(alice, pid)
    assert p["credits_granted"] == 100 and p["credits_revoked"] == 100 and p["credits_shortfall"] == 0
    assert [e.type for e in outbox(container, alice.id)] == ["billing.purchase.completed",
                                                             "billing.purchase.refunded"]
    # And every event once more, in the other order: nothing moves.
    for ev in (completed, refunded):
        assert deliver(client, ev).json()["duplicate"] is True
    assert balance(alice) == START


def test_delayed_payment(client: Any, alice: UserHandle, stripe: FakeStripe) -> None:
    _, sid = buy(alice)
    assert deliver(client, stripe.complete(sid, paid=False)).json()["status"] == "processing"
    assert balance(alice) == START
    assert deliver(client, stripe.async_succeeded(sid)).json()["status"] == "paid"
    assert balance(alice) == START + 100
    # Out of order: the success first, the completion (unpaid) after it, changes nothing.
    _, sid2 = buy(alice)
    late = stripe.complete(sid2, paid=False)
    assert deliver(client, stripe.async_succeeded(sid2)).json()["status"] == "paid"
    assert deliver(client, late).json()["status"] == "paid"
    assert balance(alice) == START + 200


def test_events_that_are_not_ours(client: Any, alice: UserHandle, stripe: FakeStripe) -> None:
    pid, sid = buy(alice)
    # A type we do not act on, an event of another integration on the same Stripe account.
    r = deliver(client, stripe.event("customer.created", {"id": "cus_1", "object": "customer"}))
    assert r.status_code == 200 and r.json()["outcome"] == "ignored"
    other = {"id": "cs_test_other", "object": "checkout.session", "payment_status": "paid", "amount_total": 500,
             "currency": "usd", "metadata": {}}
    assert deliver(client, stripe.event("checkout.session.completed", other)).json()["outcome"] == "ignored"
    # Our purchase, but the amount disagrees: nothing is granted.
    obj = dict(stripe.complete(sid)["data"]["object"], amount_total=1)
    assert deliver(client, stripe.event("checkout.session.completed", obj)).json()["outcome"] == "mismatch"
    # Our purchase, but another account named as the customer.
    obj = dict(stripe.complete(sid)["data"]["object"], client_reference_id="someone-else")
    assert deliver(client, stripe.event("checkout.session.completed", obj)).json()["outcome"] == "mismatch"
    assert balance(alice) == START and purchase(alice, pid)["status"] == "pending"


def test_concurrent_duplicate_deliveries(client: Any, container: Any, alice: UserHandle,
                                         stripe: FakeStripe) -> None:
    """Stripe may deliver one event twice at once, and two events about one purchase at once: the balance stays
    right (PostgreSQL's row locks and unique key, SQLite's single writer)."""
    _, sid = buy(alice)
    completed = stripe.complete(sid)
    body, headers = FakeStripe.signed(completed)
    results: list[dict[str, Any]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def hit(payload: bytes, sig: str) -> None:
        try:
            barrier.wait()
            results.append(container.billing.handle_webhook(payload, sig))
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=hit, args=(body, headers["Stripe-Signature"])) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert sorted(r["duplicate"] for r in results) == [False] + [True] * 7
    assert balance(alice) == START + 100
    # Two different events saying "paid", and a refund, all at once.
    pid2, sid2 = buy(alice)
    events = [stripe.complete(sid2), stripe.async_succeeded(sid2), stripe.refund(sid2, 250)]
    signed = [FakeStripe.signed(e) for e in events] * 2
    barrier = threading.Barrier(len(signed))
    results.clear()
    threads = [threading.Thread(target=hit, args=(b, h["Stripe-Signature"])) for b, h in signed]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert sum(not r["duplicate"] for r in results) == 3
    assert balance(alice) == START + 100 + 50
    p = purchase(alice, pid2)
    assert (p["credits_granted"], p["credits_revoked"], p["status"]) == (100, 50, "partially_refunded")
    with container.store.tx(write=False) as tx:
        ledger = [e for e in tx.credits.ledger(alice.id) if e.kind in ("purchase", "purchase_refund")]
    assert sorted(e.amount for e in ledger) == [-50, 100, 100]


def test_ownership(client: Any, alice: UserHandle, bob: UserHandle, stripe: FakeStripe) -> None:
    pid, sid = buy(alice)
    assert_problem(bob.get(f"/v1/billing/purchases/{pid}"), 404, "purchase_not_found")
    assert bob.get("/v1/billing/purchases").json()["data"] == []
    assert_problem(alice.get("/v1/billing/purchases/nope"), 404, "purchase_not_found")
    deliver(client, stripe.complete(sid))
    assert balance(bob) == START and balance(alice) == START + 100


def test_bad_input(client: Any, alice: UserHandle, stripe: FakeStripe) -> None:
    assert_problem(alice.post("/v1/billing/checkout", json={}), 422, "validation_error")
    assert_problem(alice.post("/v1/billing/checkout", json={"pack": "starter", "extra": 1}), 422, "validation_error")
    assert_problem(alice.post("/v1/billing/checkout", json={"pack": 5}), 422, "validation_error")
    assert_problem(alice.post("/v1/billing/checkout", json={"pack": "x" * 41}), 422, "validation_error")
    assert_problem(alice.post("/v1/billing/checkout", json={"pack": "gold"}), 422, "unknown_pack")
    assert_problem(alice.get("/v1/billing/purchases", params={"limit": "0"}), 422, "validation_error")
    assert_problem(client.post("/v1/billing/checkout", json={"pack": "starter"}), 401, "missing_credentials")
    # Correctly signed, but not an event.
    for raw in [b"not json", b"[]", b'{"id": "evt_1"}', b'{"id": "evt_1", "type": "x", "data": {}}']:
        headers = {"Stripe-Signature": f"t={int(time.time())},v1=" + __import__("hmac").new(
            WEBHOOK_SECRET.encode(), f"{int(time.time())}.".encode() + raw, "sha256").hexdigest()}
        assert_problem(client.post(HOOK, content=raw, headers=headers), 400, "invalid_stripe_event")


def test_provider_failure(client: Any, alice: UserHandle, stripe: FakeStripe) -> None:
    stripe.fail_next = 500
    assert_problem(alice.post("/v1/billing/checkout", json={"pack": "starter"}), 502, "payment_provider_error")
    assert [p["status"] for p in alice.get("/v1/billing/purchases").json()["data"]] == ["failed"]


def test_wrong_secret_key(tmp_path: Path, db_url: str, stripe: FakeStripe) -> None:
    from fastapi.testclient import TestClient

    from reelforge.api.app import create_app
    from reelforge.container import Container
    from tests.conftest import register

    billing = stripe.settings()
    billing["stripe"]["secret_key"] = "sk_test_wrong"
    c = Container(make_settings(tmp_path, db_url, billing=billing))
    try:
        with TestClient(create_app(container=c)) as client:
            user = register(client, "wrongkey@example.com")
            problem = assert_problem(user.post("/v1/billing/checkout", json={"pack": "starter"}), 502,
                                     "payment_provider_error")
            assert "401" in problem["detail"] and "sk_test_wrong" not in str(problem)
    finally:
        c.close()


def test_concurrent_deliveries_over_http(tmp_path: Path, db_url: str, stripe: FakeStripe) -> None:
    """The same, through a real server: the fake sends one event eight times at once over HTTP, as Stripe's
    retries racing its first delivery would."""
    import httpx

    from reelforge.container import Container
    from tests.integration.live_server import bind_socket, live_settings, serve

    sock = bind_socket()
    c = Container(live_settings(tmp_path, db_url, sock, billing=stripe.settings()))
    try:
        with serve(c, sock) as url:
            http = httpx.Client(base_url=url, timeout=30)
            http.post("/v1/auth/register", json={"email": "racer@example.com", "password": "correct horse battery"})
            token = http.post("/v1/auth/token", json={"email": "racer@example.com",
                                                      "password": "correct horse battery"}).json()["access_token"]
            auth = {"Authorization": f"Bearer {token}"}
            sid = http.post("/v1/billing/checkout", json={"pack": "studio"}, headers=auth).json()["session_id"]
            event = stripe.complete(sid)
            answers: list[httpx.Response] = []
            barrier = threading.Barrier(8)

            def send() -> None:
                barrier.wait()
                answers.append(stripe.send(url + HOOK, event))

            threads = [threading.Thread(target=send) for _ in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            assert [r.status_code for r in answers] == [200] * 8
            assert sorted(r.json()["duplicate"] for r in answers) == [False] + [True] * 7
            assert http.get("/v1/credits", headers=auth).json()["balance"] == START + 2000
            http.close()
    finally:
        c.close()


def test_a_purchase_is_audited_and_mailed(client: Any, container: Any, alice: UserHandle, stripe: FakeStripe) -> None:
    """The purchase and its refund land in the buyer's audit trail, written with the grant; the receipt is queued
    from the outbox event, once, however often Stripe delivers."""
    pid, sid = buy(alice)
    event = stripe.complete(sid)
    assert deliver(client, event).status_code == 200
    assert deliver(client, event).json()["duplicate"] is True
    deliver(client, stripe.refund(sid))
    trail = alice.get("/v1/account/audit").json()["data"]
    actions = [e["action"] for e in trail]
    assert actions.count("credits.purchased") == 1 and actions.count("credits.refunded") == 1, actions
    bought = next(e for e in trail if e["action"] == "credits.purchased")
    assert bought["target_id"] == alice.id and bought["details"]["reference"] == pid
    container.events.fan_out()
    mails = [m for m in alice.get("/v1/account/mails").json()["data"] if m["kind"] == "receipt"]
    assert len(mails) == 1, mails


def test_webhook_deliveries_are_not_held_to_the_address_write_limit(tmp_path: Path, db_url: str,
                                                                     stripe: FakeStripe) -> None:
    """Stripe sends every event from a few addresses: a busy shop must not have its deliveries refused with 429
    (each is signed and de-duplicated), while other writes from one address still are limited."""
    from fastapi.testclient import TestClient

    from reelforge.api.app import create_app
    from reelforge.container import Container

    c = Container(make_settings(tmp_path, db_url, billing=stripe.settings(),
                                rate_limit={"writes_per_window_ip": 3, "writes_per_window_account": 100_000}))
    try:
        with TestClient(create_app(container=c)) as client:
            answers = [deliver(client, FakeStripe.event("customer.created", {"id": f"cus_{i}"})).status_code
                       for i in range(8)]
            assert answers == [200] * 8
            codes = [client.post("/v1/auth/token", json={"email": "x@example.com", "password": "p"}).status_code
                     for _ in range(5)]
            assert 429 in codes, codes
    finally:
        c.close()
