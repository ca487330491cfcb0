"""Deliveries in the Standard Webhooks format, verified as a receiver would, with the `standardwebhooks` package;
secret rotation with both signatures during the overlap; the deprecated Reelforge-Signature beside them."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from reelforge.adapters.auth import verify_webhook_signature
from tests.api.test_webhooks import NOOP, assert_problem, subscribe
from tests.conftest import UserHandle, make_settings
from tests.fixtures.hashing import fast_password_hashing  # noqa: F401
from tests.fixtures.receiver import Received, Receiver, running_receiver


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Any:
    return make_settings(tmp_path, db_url, webhooks={"allow_private_targets": True, "retry_base_s": 0.05,
                                                     "retry_max_s": 0.2, "timeout_s": 5})


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    yield from running_receiver()


def deliver_test(container: Any, user: UserHandle, hook_id: str, receiver: Receiver) -> Received:
    before = len(receiver.received())
    assert user.post(f"/v1/webhooks/{hook_id}/test").status_code == 202
    container.events.fan_out()
    container.events.deliver_due()
    return receiver.wait_for(count=before + 1, timeout=10)[-1]


def verifies(secret: str, req: Received) -> bool:
    try:
        Webhook(secret).verify(req.body, req.headers)
        return True
    except WebhookVerificationError:
        return False


def test_deliveries_verify_with_the_standardwebhooks_package(client: Any, container: Any, alice: UserHandle,
                                                              receiver: Receiver) -> None:
    hook = subscribe(alice, receiver.url("/std"))
    secret = hook["secret"]
    assert secret.startswith("whsec_") and len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 32
    req = deliver_test(container, alice, hook["id"], receiver)
    payload = Webhook(secret).verify(req.body, req.headers)
    assert payload["type"] == "webhook.test" and req.headers["webhook-id"] == payload["id"]
    assert abs(int(req.headers["webhook-timestamp"]) - time.time()) < 60
    assert req.headers["webhook-signature"].startswith("v1,") and " " not in req.headers["webhook-signature"]
    # A forged or tampered delivery does not verify.
    other = "whsec_" + base64.b64encode(b"k" * 32).decode()
    assert not verifies(other, req)
    assert not verifies(secret, Received(req.method, req.path, req.headers, req.body + b" ", req.status))
    assert not verifies(secret, Received(req.method, req.path, {**req.headers, "webhook-id": "evt_other"}, req.body,
                                         req.status))
    # The deprecated header is still there, over the same body.
    assert verify_webhook_signature(secret, req.headers["reelforge-signature"], req.body)


def test_callback_deliveries_verify_too(client: Any, container: Any, alice: UserHandle, receiver: Receiver,
                                        worker: Any) -> None:
    secret = alice.get("/v1/webhooks/signing-secret").json()["secret"]
    alice.post("/v1/jobs", json={**NOOP, "callback_url": receiver.url("/cb")}, params={"wait": 20})
    (req,) = receiver.wait_for(lambda r: r.path == "/cb")
    assert Webhook(secret).verify(req.body, req.headers)["type"] == "job.succeeded"


def test_rotation_signs_with_both_secrets_during_the_overlap(client: Any, container: Any, alice: UserHandle,
                                                             bob: UserHandle, receiver: Receiver) -> None:
    hook = subscribe(alice, receiver.url("/rot"))
    old = hook["secret"]
    r = alice.post(f"/v1/webhooks/{hook['id']}/rotate-secret")
    assert r.status_code == 200, r.text
    new = r.json()["secret"]
    assert new != old and new.startswith("whsec_") and r.json()["previous_valid_until"]
    req = deliver_test(container, alice, hook["id"], receiver)
    assert len(req.headers["webhook-signature"].split(" ")) == 2
    assert verifies(new, req) and verifies(old, req)  # a receiver on either secret accepts it
    assert verify_webhook_signature(new, req.headers["reelforge-signature"], req.body)  # deprecated: new only
    # After the overlap only the new secret signs.
    with container.store.tx() as tx:
        tx.events.rotate_webhook_secret(hook["id"], container.events.box.seal(new),
                                        keep_previous_until=time.time() - 1)
    req = deliver_test(container, alice, hook["id"], receiver)
    assert verifies(new, req) and not verifies(old, req)
    assert len(req.headers["webhook-signature"].split(" ")) == 1
    # Another user's subscription, or none: 404; nothing was rotated.
    assert_problem(bob.post(f"/v1/webhooks/{hook['id']}/rotate-secret"), 404, "webhook_not_found")
    assert_problem(alice.post("/v1/webhooks/nope/rotate-secret"), 404, "webhook_not_found")
    assert verifies(new, deliver_test(container, alice, hook["id"], receiver))


def test_account_secret_rotation(client: Any, container: Any, alice: UserHandle, bob: UserHandle,
                                 receiver: Receiver, worker: Any) -> None:
    old = alice.get("/v1/webhooks/signing-secret").json()["secret"]
    bobs = bob.get("/v1/webhooks/signing-secret").json()["secret"]
    r = alice.post("/v1/webhooks/signing-secret/rotate")
    assert r.status_code == 200
    new = r.json()["secret"]
    assert alice.get("/v1/webhooks/signing-secret").json()["secret"] == new
    assert bob.get("/v1/webhooks/signing-secret").json()["secret"] == bobs  # only the caller's
    alice.post("/v1/jobs", json={**NOOP, "callback_url": receiver.url("/cb")}, params={"wait": 20})
    (req,) = receiver.wait_for(lambda r: r.path == "/cb")
    assert verifies(new, req) and verifies(old, req)


@pytest.mark.parametrize("path", ["/v1/webhooks/x/rotate-secret", "/v1/webhooks/signing-secret/rotate"])
def test_rotation_requires_auth(client: Any, path: str) -> None:
    assert_problem(client.post(path), 401, "missing_credentials")


def test_rotation_rejects_a_body(client: Any, alice: UserHandle) -> None:
    r = alice.post("/v1/webhooks/signing-secret/rotate", content=b"\xff", headers={"Content-Type": "text/plain"})
    assert r.status_code in (200, 422)  # no body is read; junk never answers 500


def test_secrets_issued_before_standard_webhooks_still_verify(client: Any, container: Any, alice: UserHandle,
                                                              receiver: Receiver) -> None:
    """Older `whsec_` secrets are URL-safe base64 without padding: the key is the same bytes, so a receiver that
    maps them to standard base64 verifies with the package."""
    import secrets

    hook = subscribe(alice, receiver.url("/legacy"))
    legacy = "whsec_" + secrets.token_urlsafe(32)
    with container.store.tx() as tx:
        tx.events.set_webhook_secret(hook["id"], container.events.box.seal(legacy))
    req = deliver_test(container, alice, hook["id"], receiver)
    body = legacy.removeprefix("whsec_")
    standard = "whsec_" + body.replace("-", "+").replace("_", "/") + "=" * (-len(body) % 4)
    assert verifies(standard, req)
    assert verify_webhook_signature(legacy, req.headers["reelforge-signature"], req.body)


@pytest.fixture
def no_legacy(container: Any) -> None:
    container.settings.webhooks.legacy_signature = False


def test_the_deprecated_header_can_be_turned_off(client: Any, container: Any, alice: UserHandle,
                                                 receiver: Receiver, no_legacy: None) -> None:
    hook = subscribe(alice, receiver.url("/only-std"))
    req = deliver_test(container, alice, hook["id"], receiver)
    assert "reelforge-signature" not in req.headers and verifies(hook["secret"], req)
