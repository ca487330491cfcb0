from __future__ import annotations

import pytest

from reelforge import errors
from reelforge.adapters.auth import sign_webhook, verify_webhook_signature
from reelforge.adapters.events.http import check_target_url
from reelforge.domain.types import retry_delay
from reelforge.services.events import matches


def test_retry_delay_grows_and_is_capped() -> None:
    assert retry_delay(1, 2.0, 300, 1.0) == pytest.approx(2.0)
    assert retry_delay(3, 2.0, 300, 1.0) == pytest.approx(8.0)
    assert retry_delay(20, 2.0, 300, 1.0) == pytest.approx(300)
    # jitter stays within [10 %, 100 %] of the cap
    assert retry_delay(3, 2.0, 300, 0.0) == pytest.approx(0.8)


def test_webhook_signature_roundtrip_and_tamper() -> None:
    body = b'{"id":"e1"}'
    header = sign_webhook("s3cret", 1_700_000_000, body)
    assert header.startswith("t=1700000000,v1=")
    assert verify_webhook_signature("s3cret", header, body, now=1_700_000_010)
    assert not verify_webhook_signature("s3cret", header, body + b" ", now=1_700_000_010)
    assert not verify_webhook_signature("other", header, body, now=1_700_000_010)
    assert not verify_webhook_signature("s3cret", header, body, now=1_700_001_000)  # outside tolerance
    assert not verify_webhook_signature("s3cret", "garbage", body)


@pytest.mark.parametrize("url", [
    "http://127.0.0.1/hook", "http://10.1.2.3/", "http://192.168.1.1/", "http://172.16.0.1/",
    "http://169.254.169.254/latest/meta-data", "http://[::1]/", "http://[fd00:ec2::254]/", "http://100.64.0.1/",
    "http://0.0.0.0/", "http://localhost:8080/", "http://metadata.google.internal/", "http://[::ffff:127.0.0.1]/",
])
def test_private_targets_refused(url: str) -> None:
    with pytest.raises(errors.ValidationFailed) as exc:
        check_target_url(url, allow_private=False)
    assert exc.value.code == "forbidden_target"


@pytest.mark.parametrize("url", ["ftp://example.com/", "http://user:pw@example.com/", "not a url", "http:///x"])
def test_malformed_targets_refused(url: str) -> None:
    with pytest.raises(errors.ValidationFailed) as exc:
        check_target_url(url, allow_private=False)
    assert exc.value.code == "invalid_url"


def test_private_allowed_for_development() -> None:
    check_target_url("http://127.0.0.1:9/hook", allow_private=True)


def test_event_type_patterns() -> None:
    assert matches([], "job.succeeded")
    assert matches(["job.*"], "job.failed")
    assert matches(["job.succeeded"], "job.succeeded")
    assert not matches(["job.succeeded"], "job.failed")
    assert not matches(["video.*"], "job.failed")
