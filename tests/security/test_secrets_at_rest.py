"""Webhook signing secrets are stored encrypted (AES-GCM under a key derived from the instance secret): the
database holds no usable secret, deliveries are still signed with the secret the owner was shown, and rows an
older version wrote in plain text are encrypted by the next migrate."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from reelforge import errors
from reelforge.adapters.auth import verify_webhook_signature
from reelforge.adapters.secretbox import AesGcmSecretBox
from tests.conftest import UserHandle, make_settings
from tests.fixtures.hashing import fast_password_hashing  # noqa: F401
from tests.fixtures.receiver import Receiver, by_type, running_receiver


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Any:
    return make_settings(tmp_path, db_url, webhooks={"allow_private_targets": True, "timeout_s": 5})


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    yield from running_receiver()


def stored(container: Any, sql: str, **params: Any) -> list[str]:
    """What the database really holds (plain SQL, past every repository)."""
    with container.db.engine.connect() as conn:
        return [str(v) for v in conn.execute(text(sql), params).scalars().all()]


def deliver(container: Any) -> None:
    container.events.fan_out()
    container.events.deliver_due()


def test_secret_box_round_trip_and_refusals() -> None:
    box = AesGcmSecretBox("instance-secret-" + "x" * 40)
    a, b = box.seal("whsec_abc"), box.seal("whsec_abc")
    assert a != b and a.startswith("rfenc1:") and "whsec_abc" not in a  # a fresh nonce every time
    assert box.open(a) == box.open(b) == "whsec_abc"
    assert box.is_sealed(a) and not box.is_sealed("whsec_abc")
    tampered = a[:-2] + ("A" if a[-2] != "A" else "B") + a[-1]
    for bad in [tampered, "rfenc1:", "rfenc1:%%%", "rfenc1:" + "A" * 40, "whsec_abc"]:
        with pytest.raises(errors.SecretUnreadable):
            box.open(bad)
    with pytest.raises(errors.SecretUnreadable):
        AesGcmSecretBox("another-instance-secret-" + "y" * 40).open(a)


def test_stored_secrets_are_encrypted_and_deliveries_verify(client: Any, container: Any, alice: UserHandle,
                                                            receiver: Receiver) -> None:
    hook = alice.post("/v1/webhooks", json={"url": receiver.url("/hook")}).json()
    account_secret = alice.get("/v1/webhooks/signing-secret").json()["secret"]
    assert hook["secret"].startswith("whsec_") and account_secret.startswith("whsec_")

    (column,) = stored(container, "SELECT secret FROM webhooks WHERE id = :id", id=hook["id"])
    (user_column,) = stored(container, "SELECT webhook_secret FROM users WHERE id = :id", id=alice.id)
    for value, secret in [(column, hook["secret"]), (user_column, account_secret)]:
        assert value.startswith("rfenc1:") and secret not in value and secret.removeprefix("whsec_") not in value
    # The same secret whenever asked (the account's) though every sealing is different.
    assert alice.get("/v1/webhooks/signing-secret").json()["secret"] == account_secret

    # A subscription's delivery and a job callback, each signed with the secret its owner was shown.
    alice.post(f"/v1/webhooks/{hook['id']}/test")
    job = alice.post("/v1/jobs", json={"kind": "system.noop", "callback_url": receiver.url("/cb")}).json()
    alice.post(f"/v1/jobs/{job['id']}/cancel")
    deliver(container)
    (test_req,) = receiver.wait_for(by_type("webhook.test"), timeout=5)
    assert verify_webhook_signature(hook["secret"], test_req.headers["reelforge-signature"], test_req.body)
    (cb,) = receiver.wait_for(lambda r: r.path == "/cb", timeout=5)
    assert verify_webhook_signature(account_secret, cb.headers["reelforge-signature"], cb.body)
    assert not verify_webhook_signature(column, test_req.headers["reelforge-signature"], test_req.body)


def test_plain_secrets_of_an_older_version_are_encrypted_by_migrate(client: Any, container: Any,
                                                                   alice: UserHandle, receiver: Receiver) -> None:
    hook = alice.post("/v1/webhooks", json={"url": receiver.url("/hook")}).json()
    # As an older version stored them: in plain text.
    with container.db.engine.begin() as conn:
        conn.execute(text("UPDATE webhooks SET secret = :s WHERE id = :id"), {"s": "whsec_old-hook", "id": hook["id"]})
        conn.execute(text("UPDATE users SET webhook_secret = :s WHERE id = :id"),
                     {"s": "whsec_old-account", "id": alice.id})

    # Until the migrate, plain rows keep working.
    assert alice.get("/v1/webhooks/signing-secret").json()["secret"] == "whsec_old-account"

    container.migrate()
    assert stored(container, "SELECT secret FROM webhooks")[0].startswith("rfenc1:")
    assert all(v.startswith("rfenc1:") for v in stored(container, "SELECT webhook_secret FROM users"))
    assert "whsec_old" not in "".join(stored(container, "SELECT secret FROM webhooks")
                                      + stored(container, "SELECT webhook_secret FROM users"))
    assert container.events.seal_stored_secrets() == 0  # once only

    # The owners' secrets did not change: deliveries verify with the ones they had.
    assert alice.get("/v1/webhooks/signing-secret").json()["secret"] == "whsec_old-account"
    alice.post(f"/v1/webhooks/{hook['id']}/test")
    deliver(container)
    (req,) = receiver.wait_for(by_type("webhook.test"), timeout=5)
    assert verify_webhook_signature("whsec_old-hook", req.headers["reelforge-signature"], req.body)


def test_a_changed_instance_secret_fails_deliveries_clearly(tmp_path: Path, db_url: str, client: Any,
                                                            alice: UserHandle, receiver: Receiver) -> None:
    from reelforge.container import Container

    hook = alice.post("/v1/webhooks", json={"url": receiver.url("/hook")}).json()
    alice.post(f"/v1/webhooks/{hook['id']}/test")
    other = Container(make_settings(tmp_path / "other", db_url, webhooks={"allow_private_targets": True},
                                    auth={"jwt_secret": "a-different-instance-secret-" + "z" * 30}))
    try:
        deliver(other)
        with other.store.tx(write=False) as tx:
            (d,) = tx.events.deliveries(owner_id=alice.id)
        assert d.status == "failed" and "instance secret" in (d.last_error or "")
    finally:
        other.close()
    assert receiver.received() == []
