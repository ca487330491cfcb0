"""Encryption of small secrets kept in the database (webhook signing secrets)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class SecretBox(Protocol):
    """Authenticated encryption under one key of this instance: a changed or foreign value does not open."""

    # Every sealed value starts with this (and no plain one does), so stored plain values can be found.
    prefix: str

    def seal(self, plaintext: str) -> str:
        """The text to store for `plaintext` (a fresh nonce each time)."""
        ...

    def open(self, sealed: str) -> str:
        """The plaintext of a sealed value; raises errors.SecretUnreadable when it does not decrypt."""
        ...

    def is_sealed(self, value: str) -> bool:
        """Whether `value` is sealed (else it is a plain value from before encryption at rest)."""
        ...
