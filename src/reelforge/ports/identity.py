"""External identity: verifying tokens an outside OpenID Connect issuer signed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class ExternalClaims:
    """What a verified external token says about who is calling."""

    issuer: str
    subject: str
    email: str | None
    email_verified: bool
    issued_at: float | None
    token_use: str | None


class TokenVerifier(Protocol):
    """An external issuer's tokens (signature against its published keys, issuer, audience, times)."""

    issuer: str

    def handles(self, token: str) -> bool:
        """Whether the token claims to come from this issuer (read without verifying: it only picks the
        verifier, whose checks then decide)."""
        ...

    def verify(self, token: str) -> ExternalClaims:
        """The claims of a valid token; raises Unauthorized (`invalid_token`, `token_expired`) otherwise, or
        ServiceUnavailable (`oidc_unavailable`) when the issuer's keys cannot be fetched."""
        ...
