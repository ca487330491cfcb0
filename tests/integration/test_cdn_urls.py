"""Downloads through CloudFront: with storage.cdn_* set, the S3 store hands out CloudFront URLs with a canned
policy signed RSA-SHA1 under the configured key pair, which a holder of the public key (CloudFront's key group)
verifies; attachments keep S3 presigned URLs; a half-configured CDN stops the start with a clear message."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from reelforge.adapters.storage import build_object_store
from reelforge.adapters.storage.cdn import CdnUrlSigner
from reelforge.config import Settings

CDN = "https://d111111abcdef8.cloudfront.net"


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def verify(url: str, public: rsa.RSAPublicKey) -> tuple[str, int]:
    """CloudFront's check of a canned-policy URL: rebuild the policy from the URL and its Expires, then verify."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    resource = f"{parts.scheme}://{parts.netloc}{parts.path}"
    expires = int(query["Expires"][0])
    policy = json.dumps({"Statement": [{"Resource": resource, "Condition": {"DateLessThan": {"AWS:EpochTime": expires}}}]},
                        separators=(",", ":"))
    signature = base64.b64decode(query["Signature"][0].replace("-", "+").replace("_", "=").replace("~", "/"))
    public.verify(signature, policy.encode(), padding.PKCS1v15(), hashes.SHA1())
    return query["Key-Pair-Id"][0], expires


def store(tmp_path: Path, key: rsa.RSAPrivateKey, **storage: object) -> object:
    settings = Settings(data_dir=tmp_path, storage={
        "backend": "s3", "s3_bucket": "media", "s3_endpoint_url": "http://127.0.0.1:9", "s3_access_key": "k",
        "s3_secret_key": "s", "cdn_url": CDN, "cdn_key_pair_id": "K2JCJMDEHXQW5F", "cdn_private_key": pem(key),
        **storage})
    return build_object_store(settings)


def test_inline_downloads_are_signed_cloudfront_urls(tmp_path: Path, key: rsa.RSAPrivateKey) -> None:
    s = store(tmp_path, key)
    signed = s.presign_get("outputs/2026/12/a_b.png", 600, content_type="image/png")  # type: ignore[attr-defined]
    assert signed.url.startswith(f"{CDN}/outputs/2026/12/a_b.png?")
    pair, expires = verify(signed.url, key.public_key())
    assert pair == "K2JCJMDEHXQW5F" and abs(expires - (time.time() + 600)) < 5 and signed.expires_at == expires
    # Another key, or a changed path or expiry, fails CloudFront's check.
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(InvalidSignature):
        verify(signed.url, other.public_key())
    with pytest.raises(InvalidSignature):
        verify(signed.url.replace("a_b.png", "c.png"), key.public_key())
    with pytest.raises(InvalidSignature):
        verify(signed.url.replace(f"Expires={expires}", f"Expires={expires + 3600}"), key.public_key())


def test_attachments_keep_s3_presigned_urls(tmp_path: Path, key: rsa.RSAPrivateKey, seaweed: Any) -> None:
    s: Any = store(tmp_path, key, s3_endpoint_url=seaweed.endpoint_url, s3_access_key=seaweed.access_key,
                   s3_secret_key=seaweed.secret_key, s3_addressing_style="path")
    s.put_bytes("outputs/x.mp4", b"film", "video/mp4")
    named = s.presign_get("outputs/x.mp4", 600, filename="film.mp4", content_type="video/mp4")
    assert named.url.startswith(seaweed.endpoint_url) and "response-content-disposition" in named.url
    answer = httpx.get(named.url)
    assert answer.status_code == 200 and answer.content == b"film"
    assert answer.headers["content-disposition"].startswith("attachment")
    unknown = s.presign_get("outputs/x.mp4", 600)  # no type given: not known to be inert, always an attachment
    assert unknown.url.startswith(seaweed.endpoint_url)


def test_key_from_a_file_and_half_configurations(tmp_path: Path, key: rsa.RSAPrivateKey) -> None:
    path = tmp_path / "cdn.pem"
    path.write_text(pem(key))
    s = store(tmp_path, key, cdn_private_key="", cdn_private_key_file=str(path))
    verify(s.presign_get("o/k.png", 60, content_type="image/png").url, key.public_key())  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="cdn_private_key"):
        store(tmp_path, key, cdn_private_key="")
    with pytest.raises(ValueError, match="https"):
        CdnUrlSigner("http://d1.cloudfront.net", "K1", pem(key).encode())
    with pytest.raises(ValueError, match="key_pair_id"):
        store(tmp_path, key, cdn_key_pair_id="")
