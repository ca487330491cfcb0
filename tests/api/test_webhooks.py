"""/v1/webhooks: subscriptions, signed at-least-once delivery to a real local receiver, retries, callbacks."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reelforge.adapters.auth import verify_webhook_signature
from tests.conftest import UserHandle, make_settings, wait_for
from tests.fixtures.hashing import fast_password_hashing  # noqa: F401
from tests.fixtures.receiver import Receiver, by_type, running_receiver

PROBLEM = "application/problem+json"
NOOP = {"kind": "system.noop", "input": {"echo": "hi"}}


@pytest.fixture
def allow_private() -> bool:
    """Deliveries go to a receiver on 127.0.0.1; tests of the default guard parametrize this to False."""
    return True


@pytest.fixture
def settings(tmp_path: Path, db_url: str, allow_private: bool) -> Any:
    return make_settings(tmp_path, db_url, webhooks={"allow_private_targets": allow_private, "retry_base_s": 0.05,
                                                     "retry_max_s": 0.2, "timeout_s": 5})


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    yield from running_receiver()


def assert_problem(r: Any, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM), r.headers
    body = r.json()
    assert body["status"] == status and body["code"] == code, body
    return body


def subscribe(user: UserHandle, url: str, **over: Any) -> dict[str, Any]:
    r = user.post("/v1/webhooks", json={"url": url, **over})
    assert r.status_code == 201, r.text
    return r.json()


# --- subscriptions -------------------------------------------------------------------------------------
def test_webhook_crud(client: Any, alice: UserHandle, bob: UserHandle, receiver: Receiver) -> None:
    hook = subscribe(alice, receiver.url(), event_types=["job.*"], description="ci")
    assert hook["secret"].startswith("whsec_") and hook["active"] is True
    assert hook["event_types"] == ["job.*"] and hook["description"] == "ci" and hook["url"] == receiver.url()
    listed = alice.get("/v1/webhooks").json()["data"]
    assert [h["id"] for h in listed] == [hook["id"]] and "secret" not in listed[0]
    got = alice.get(f"/v1/webhooks/{hook['id']}").json()
    assert got["id"] == hook["id"] and "secret" not in got
    assert alice.get(f"/v1/webhooks/{hook['id']}/deliveries").json()["data"] == []

    # Another user's subscription is not found, whatever the verb.
    assert bob.get("/v1/webhooks").json()["data"] == []
    for method, path in [("GET", ""), ("DELETE", ""), ("POST", "/test"), ("GET", "/deliveries")]:
        r = client.request(method, f"/v1/webhooks/{hook['id']}{path}", headers=bob.headers)
        assert_problem(r, 404, "webhook_not_found")

    r = alice.delete(f"/v1/webhooks/{hook['id']}")
    assert r.status_code == 204 and r.content == b""
    assert_problem(alice.get(f"/v1/webhooks/{hook['id']}"), 404, "webhook_not_found")
    assert_problem(alice.delete(f"/v1/webhooks/{hook['id']}"), 404, "webhook_not_found")
    assert_problem(alice.post(f"/v1/webhooks/{hook['id']}/test"), 404, "webhook_not_found")
    assert alice.get("/v1/webhooks").json()["data"] == []


def test_webhook_create_validation(client: Any, alice: UserHandle) -> None:
    for body, code in [
        ({"url": "ftp://example.com/hook"}, "invalid_url"),
        ({"url": "javascript:alert(1)"}, "invalid_url"),
        ({"url": "http://user:pw@127.0.0.1/hook"}, "invalid_url"),
        ({"url": "http:///nohost"}, "invalid_url"),
        ({"url": "http://127.0.0.1/hook", "event_types": ["nodots"]}, "invalid_event_type"),
        ({"url": "http://"}, "validation_error"),  # shorter than any real URL
        ({"url": "http://127.0.0.1/hook", "secret": "mine"}, "validation_error"),
        ({"url": "http://127.0.0.1/hook", "event_types": ["job.succeeded"] * 51}, "validation_error"),
    ]:
        assert_problem(alice.post("/v1/webhooks", json=body), 422, code)
    assert alice.get("/v1/webhooks").json()["data"] == []


@pytest.mark.parametrize("allow_private", [False])
def test_unresolvable_host(client: Any, alice: UserHandle) -> None:
    # RFC 6761: .invalid never resolves, so this fails the same way offline and online.
    body = assert_problem(alice.post("/v1/webhooks", json={"url": "https://hooks.acme-payments.invalid/reelforge"}),
                          422, "unresolvable_host")
    assert body["field"] == "url"


def test_webhook_routes_require_auth(client: Any) -> None:
    for method, path in [("POST", "/v1/webhooks"), ("GET", "/v1/webhooks"), ("GET", "/v1/webhooks/signing-secret"),
                         ("GET", "/v1/webhooks/x"), ("DELETE", "/v1/webhooks/x"), ("POST", "/v1/webhooks/x/test"),
                         ("GET", "/v1/webhooks/x/deliveries")]:
        r = client.request(method, path, json={"url": "http://127.0.0.1/h"} if method == "POST" else None)
        assert_problem(r, 401, "missing_credentials")


# --- delivery --------------------------------------------------------------------------------------------
def test_job_succeeded_is_delivered_signed(client: Any, alice: UserHandle, receiver: Receiver, worker: Any) -> None:
    hook = subscribe(alice, receiver.url("/hooks/reelforge"))
    job = alice.post("/v1/jobs", json=NOOP, params={"wait": 20}).json()
    assert job["status"] == "succeeded"

    (req,) = receiver.wait_for(by_type("job.succeeded"))
    assert req.method == "POST" and req.path == "/hooks/reelforge"
    assert req.headers["content-type"] == "application/json"
    assert verify_webhook_signature(hook["secret"], req.headers["reelforge-signature"], req.body)
    assert not verify_webhook_signature("whsec_wrong", req.headers["reelforge-signature"], req.body)
    assert not verify_webhook_signature(hook["secret"], req.headers["reelforge-signature"], req.body + b" ")
    event = req.json()
    assert event["type"] == "job.succeeded" and req.headers["reelforge-event-id"] == event["id"]
    assert event["data"]["id"] == job["id"] and event["data"]["status"] == "succeeded"
    assert event["data"]["outputs"] == {"echo": "hi"}

    deliveries = wait_for(lambda: [d for d in alice.get(f"/v1/webhooks/{hook['id']}/deliveries").json()["data"]
                                   if d["status"] == "delivered"])
    (d,) = deliveries
    assert d["event_id"] == event["id"] and d["webhook_id"] == hook["id"] and d["attempts"] == 1
    assert d["last_status_code"] == 200 and d["delivered_at"] and d["target"] == f"webhook:{hook['id']}"
    # Delivered once: a 200 ends the delivery (no duplicate sends).
    assert len(receiver.received()) == 1


def test_event_type_filter(client: Any, alice: UserHandle, receiver: Receiver, worker: Any) -> None:
    failed_only = subscribe(alice, receiver.url("/failed"), event_types=["job.failed"])
    everything = subscribe(alice, receiver.url("/all"), event_types=["job.*"])
    job_id = alice.post("/v1/jobs", json=NOOP, params={"wait": 20}).json()["id"]
    receiver.wait_for(lambda r: r.path == "/all")
    # The filtered hook's deliveries would have been fanned out in the same pass.
    wait_for(lambda: alice.get(f"/v1/webhooks/{everything['id']}/deliveries").json()["data"])
    assert alice.get(f"/v1/webhooks/{failed_only['id']}/deliveries").json()["data"] == []
    assert [r.json()["data"]["id"] for r in receiver.received()] == [job_id]


def test_callback_url_is_signed_with_account_secret(client: Any, alice: UserHandle, receiver: Receiver,
                                                    worker: Any) -> None:
    secret = alice.get("/v1/webhooks/signing-secret").json()["secret"]
    assert secret.startswith("whsec_")
    job = alice.post("/v1/jobs", json={**NOOP, "callback_url": receiver.url("/cb")}, params={"wait": 20}).json()
    assert job["callback_url"] == receiver.url("/cb")
    (req,) = receiver.wait_for(lambda r: r.path == "/cb")
    assert verify_webhook_signature(secret, req.headers["reelforge-signature"], req.body)
    assert req.json()["data"]["id"] == job["id"] and req.headers["reelforge-event-type"] == "job.succeeded"


def test_cancelled_job_event(client: Any, alice: UserHandle, receiver: Receiver, container: Any) -> None:
    subscribe(alice, receiver.url())
    job_id = alice.post("/v1/jobs", json=NOOP).json()["id"]
    alice.post(f"/v1/jobs/{job_id}/cancel")
    # No worker here: run the dispatcher by hand.
    container.events.fan_out()
    container.events.deliver_due()
    (req,) = receiver.wait_for(by_type("job.cancelled"), timeout=5)
    assert req.json()["data"]["id"] == job_id and req.json()["data"]["status"] == "cancelled"


def test_failing_receiver_is_retried_with_stable_event_id(client: Any, alice: UserHandle, worker: Any) -> None:
    with Receiver(statuses=[500, 503]) as receiver:
        hook = subscribe(alice, receiver.url())
        alice.post("/v1/jobs", json=NOOP)
        reqs = receiver.wait_for(by_type("job.succeeded"), count=3)
        assert [r.status for r in reqs] == [500, 503, 200]
        assert len({r.headers["reelforge-event-id"] for r in reqs}) == 1
        assert all(verify_webhook_signature(hook["secret"], r.headers["reelforge-signature"], r.body) for r in reqs)

        def delivered() -> Any:
            data = alice.get(f"/v1/webhooks/{hook['id']}/deliveries").json()["data"]
            return data if data and data[0]["status"] == "delivered" else None

        (d,) = wait_for(delivered)
        assert d["attempts"] == 3 and d["last_status_code"] == 200 and d["last_error"] is None
        assert len(receiver.received()) == 3  # delivered once it answered 200; never sent again


def test_failing_receiver_shows_pending_attempts(client: Any, alice: UserHandle, container: Any) -> None:
    with Receiver(status=500) as receiver:
        hook = subscribe(alice, receiver.url())
        alice.post(f"/v1/webhooks/{hook['id']}/test")
        container.events.fan_out()
        container.events.deliver_due()
        (d,) = alice.get(f"/v1/webhooks/{hook['id']}/deliveries").json()["data"]
        assert d["status"] == "pending" and d["attempts"] == 1
        assert d["last_status_code"] == 500 and d["last_error"] == "HTTP 500"


def test_test_delivery(client: Any, alice: UserHandle, receiver: Receiver, worker: Any) -> None:
    hook = subscribe(alice, receiver.url(), event_types=["job.failed"])  # test events ignore the filter
    other = subscribe(alice, receiver.url("/other"))
    r = alice.post(f"/v1/webhooks/{hook['id']}/test")
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "queued"
    event_id = r.json()["event_id"]
    (req,) = receiver.wait_for(by_type("webhook.test"))
    assert req.headers["reelforge-event-id"] == event_id and req.path == "/hook"
    assert verify_webhook_signature(hook["secret"], req.headers["reelforge-signature"], req.body)
    body = json.loads(req.body)
    assert body["type"] == "webhook.test" and body["data"]["webhook_id"] == hook["id"]
    wait_for(lambda: alice.get(f"/v1/webhooks/{hook['id']}/deliveries").json()["data"][0]["status"] == "delivered")
    # Only the hook under test receives it.
    assert alice.get(f"/v1/webhooks/{other['id']}/deliveries").json()["data"] == []


def test_deleted_subscription_stops_deliveries(client: Any, alice: UserHandle, receiver: Receiver,
                                               container: Any) -> None:
    hook = subscribe(alice, receiver.url())
    alice.post(f"/v1/webhooks/{hook['id']}/test")
    container.events.fan_out()
    assert alice.delete(f"/v1/webhooks/{hook['id']}").status_code == 204
    container.events.deliver_due()
    assert receiver.received() == []
