"""SSRF: webhook and callback targets on loopback, private, link-local or metadata addresses are refused
(at subscription, at submit, and again at send time); redirects are never followed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from reelforge.adapters.events.http import send_signed
from tests.conftest import UserHandle, make_settings, wait_for
from tests.fixtures.hashing import fast_password_hashing  # noqa: F401
from tests.fixtures.receiver import Receiver

PROBLEM = "application/problem+json"

FORBIDDEN = [
    "http://127.0.0.1/hook",
    "http://127.0.0.1:8080/hook",
    "https://10.0.0.1/hook",
    "http://172.16.5.4/hook",
    "http://192.168.1.1/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://100.64.0.1/hook",
    "http://0.0.0.0/hook",
    "http://[::1]/hook",
    "http://[::ffff:127.0.0.1]/hook",
    "http://[fe80::1]/hook",
    "http://[fd00:ec2::254]/latest/meta-data/",
    "http://localhost/hook",
    "http://LOCALHOST./hook",
    "http://api.localhost/hook",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://metadata/computeMetadata/v1/",
    "http://127.1/hook",  # short form of 127.0.0.1
    "http://2130706433/hook",  # 127.0.0.1 as one decimal number
    "http://0x7f000001/hook",  # and in hex
    # IPv6 forms that embed an IPv4 address
    "http://[2002:7f00:1::]/hook",  # 6to4 of 127.0.0.1
    "http://[2002:c0a8:101::1]/hook",  # 6to4 of 192.168.1.1
    "http://[64:ff9b::7f00:1]/hook",  # NAT64 well-known prefix, 127.0.0.1
    "http://[64:ff9b::a9fe:a9fe]/hook",  # NAT64 of the metadata address
    "http://[64:ff9b:1::a00:1]/hook",  # NAT64 local-use prefix
    "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/hook",  # Teredo
    "http://[::127.0.0.1]/hook",  # IPv4-compatible (deprecated form)
    "http://[::ffff:0:a00:1]/hook",  # IPv4-translated
    "http://[::ffff:169.254.169.254]/hook",  # IPv4-mapped metadata address
    "http://[2001:db8::5efe:a00:1]/hook",  # ISATAP interface id carrying 10.0.0.1
]


@pytest.fixture
def allow_private() -> bool:
    return False


@pytest.fixture
def settings(tmp_path: Path, db_url: str, allow_private: bool) -> Any:
    return make_settings(tmp_path, db_url, webhooks={"allow_private_targets": allow_private, "retry_base_s": 0.05,
                                                     "retry_max_s": 0.2, "timeout_s": 3})


def assert_problem(r: Any, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM), r.headers
    body = r.json()
    assert body["status"] == status and body["code"] == code, body
    return body


def test_webhook_targets_refused(client: Any, alice: UserHandle) -> None:
    for url in FORBIDDEN:
        body = assert_problem(alice.post("/v1/webhooks", json={"url": url}), 422, "forbidden_target")
        assert body["field"] == "url", url
    assert alice.get("/v1/webhooks").json()["data"] == []


def test_callback_targets_refused(client: Any, alice: UserHandle) -> None:
    for url in ["http://127.0.0.1:9/cb", "http://169.254.169.254/", "http://[::1]/cb", "http://localhost/cb",
                "http://metadata.google.internal/", "http://10.0.0.1/cb"]:
        r = alice.post("/v1/jobs", json={"kind": "system.noop", "callback_url": url})
        assert_problem(r, 422, "forbidden_target")
    for url, code in [("ftp://example.com/x", "invalid_url"), ("file:///etc/passwd", "invalid_url"),
                      ("http://user:pw@example.com/x", "invalid_url"),
                      ("https://callbacks.acme-payments.invalid/x", "unresolvable_host")]:
        assert_problem(alice.post("/v1/jobs", json={"kind": "system.noop", "callback_url": url}), 422, code)
    assert alice.get("/v1/jobs").json()["data"] == []


def test_unresolvable_host(client: Any, alice: UserHandle) -> None:
    assert_problem(alice.post("/v1/webhooks", json={"url": "https://hooks.acme-payments.invalid/reelforge"}), 422,
                   "unresolvable_host")


def test_send_time_guard() -> None:
    """Checked again when sending: a name that resolved to a public address may point at loopback now."""
    with Receiver() as receiver:
        res = send_signed(receiver.url(), "whsec_x", {"id": "e1", "type": "webhook.test", "data": {}}, timeout_s=2,
                          allow_private=False)
        assert not res.ok and res.status_code is None and "private" in (res.error or "")
        assert receiver.received() == []
        ok = send_signed(receiver.url(), "whsec_x", {"id": "e2", "type": "webhook.test", "data": {}}, timeout_s=2,
                         allow_private=True)
        assert ok.ok and ok.status_code == 200 and len(receiver.received()) == 1


def test_stored_private_target_is_not_called(client: Any, alice: UserHandle, container: Any) -> None:
    """A subscription row that points at loopback (e.g. DNS changed after it was made) delivers nothing."""
    with Receiver() as receiver:
        with container.store.tx() as tx:
            hook = tx.events.add_webhook(owner_id=alice.id, url=receiver.url(), event_types=[], description="",
                                         secret="whsec_test")
            hook_id = hook.id
        assert alice.post(f"/v1/webhooks/{hook_id}/test").status_code == 202
        container.events.fan_out()
        container.events.deliver_due()
        (d,) = alice.get(f"/v1/webhooks/{hook_id}/deliveries").json()["data"]
        assert d["status"] == "pending" and d["attempts"] == 1 and d["last_status_code"] is None
        assert "private" in d["last_error"]
        assert receiver.received() == []


@pytest.mark.parametrize("allow_private", [True])
def test_redirects_are_not_followed(client: Any, alice: UserHandle, worker: Any) -> None:
    with Receiver() as inner, Receiver(status=307) as outer:
        outer.extra_headers["Location"] = inner.url("/stolen")
        hook = alice.post("/v1/webhooks", json={"url": outer.url()}).json()
        assert alice.post(f"/v1/webhooks/{hook['id']}/test").status_code == 202
        outer.wait_for(count=2)  # the first attempt and at least one retry

        def attempts() -> Any:
            data = alice.get(f"/v1/webhooks/{hook['id']}/deliveries").json()["data"]
            return data if data and data[0]["attempts"] >= 2 else None

        (d,) = wait_for(attempts)
        assert d["status"] != "delivered" and d["last_status_code"] == 307
        assert inner.received() == []


@pytest.mark.parametrize("ip", ["2002:7f00:1::", "64:ff9b::808:808", "2001::1", "::8.8.8.8", "2a00:1450::5efe:a00:1"])
def test_embedded_ipv4_forms_are_blocked(ip: str) -> None:
    import ipaddress

    from reelforge.adapters.events.http import _blocked_ip

    # Refused even when the embedded address is public: the range itself reaches a translator or tunnel.
    assert _blocked_ip(ipaddress.ip_address(ip))


@pytest.mark.parametrize("ip", ["2606:4700::1111", "2a00:1450:4001:82b::200e", "::ffff:8.8.8.8",
                                "2001:4860:4860::8888", "2a00:1450::5efe:808:808"])
def test_public_ipv6_is_allowed(ip: str) -> None:
    import ipaddress

    from reelforge.adapters.events.http import _blocked_ip

    assert not _blocked_ip(ipaddress.ip_address(ip))

