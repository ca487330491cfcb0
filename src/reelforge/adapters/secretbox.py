"""SecretBox on AES-256-GCM with a key derived from the instance secret (HKDF-SHA256)."""

from __future__ import annotations

import base64
import binascii
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from reelforge import errors

PREFIX = "rfenc1:"
NONCE_BYTES = 12
# The instance secret also signs tokens and URLs: HKDF with a purpose of its own gives this key nothing in
# common with those uses.
_INFO = b"reelforge secret-box v1: secrets at rest"


class AesGcmSecretBox:
    """`rfenc1:` + base64url(12-byte nonce + AES-256-GCM ciphertext and tag)."""

    prefix = PREFIX

    def __init__(self, instance_secret: str) -> None:
        if not instance_secret:
            raise ValueError("instance_secret must not be empty")
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(instance_secret.encode())
        self._aead = AESGCM(key)

    def seal(self, plaintext: str) -> str:
        nonce = os.urandom(NONCE_BYTES)
        blob = nonce + self._aead.encrypt(nonce, plaintext.encode(), PREFIX.encode())
        return PREFIX + base64.urlsafe_b64encode(blob).decode()

    def open(self, sealed: str) -> str:
        if not self.is_sealed(sealed):
            raise errors.SecretUnreadable("Not a sealed secret")
        try:
            blob = base64.urlsafe_b64decode(sealed[len(PREFIX):].encode())
            nonce, ciphertext = blob[:NONCE_BYTES], blob[NONCE_BYTES:]
            return self._aead.decrypt(nonce, ciphertext, PREFIX.encode()).decode()
        except (InvalidTag, binascii.Error, ValueError) as exc:
            raise errors.SecretUnreadable(
                "A stored secret does not decrypt with this instance's secret (was the instance secret changed?)"
            ) from exc

    def is_sealed(self, value: str) -> bool:
        return value.startswith(PREFIX)
