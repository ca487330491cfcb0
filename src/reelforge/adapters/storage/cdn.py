"""CloudFront signed URLs for downloads, where the bucket sits behind a distribution with Origin Access Control.

The deployment's distribution (deploy/aws, the edge stack) trusts one key group and refuses unsigned requests;
the bucket answers only the distribution. With `storage.cdn_url`, `storage.cdn_key_pair_id` and the private key
(`storage.cdn_private_key_file` or `storage.cdn_private_key`), the S3 store hands out CloudFront URLs with a canned
policy (the URL, an expiry) signed RSA-SHA1 as CloudFront requires, instead of S3 presigned URLs. A download that
must come as an attachment of a given name still gets an S3 presigned URL: the distribution's cache policy keys on
the path only, so it cannot carry a per-request Content-Disposition.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from botocore.signers import CloudFrontSigner
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa


class CdnUrlSigner:
    def __init__(self, base_url: str, key_pair_id: str, private_key_pem: bytes) -> None:
        if not base_url.startswith("https://"):
            raise ValueError("storage.cdn_url must be an https:// URL")
        if not key_pair_id:
            raise ValueError("storage.cdn_key_pair_id is required with storage.cdn_url")
        key = serialization.load_pem_private_key(private_key_pem, password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError("the CloudFront signing key must be an RSA private key")
        self._key = key
        self.base_url = base_url.rstrip("/")
        self.key_pair_id = key_pair_id
        self._signer = CloudFrontSigner(key_pair_id, self._rsa_sha1)

    @classmethod
    def from_settings(cls, storage: Any) -> CdnUrlSigner | None:
        if not storage.cdn_url:
            return None
        pem = storage.cdn_private_key.encode() if storage.cdn_private_key else b""
        if not pem and storage.cdn_private_key_file:
            pem = Path(storage.cdn_private_key_file).read_bytes()
        if not pem:
            raise ValueError("storage.cdn_url needs storage.cdn_private_key_file or storage.cdn_private_key")
        return cls(storage.cdn_url, storage.cdn_key_pair_id, pem)

    def _rsa_sha1(self, message: bytes) -> bytes:
        return self._key.sign(message, padding.PKCS1v15(), hashes.SHA1())

    def sign(self, key: str, expires_s: int) -> tuple[str, float]:
        """(signed URL of the object `key`, when it expires)."""
        expires_at = float(int(time.time() + expires_s))
        url = f"{self.base_url}/{quote(key, safe='/')}"
        from datetime import UTC, datetime

        signed = self._signer.generate_presigned_url(url, date_less_than=datetime.fromtimestamp(expires_at, UTC))
        return signed, expires_at
