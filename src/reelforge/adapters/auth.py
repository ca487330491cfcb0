"""Password hashing (argon2) and access tokens (JWT, HS256 only)."""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import math
import secrets
import time
import uuid
from importlib import resources
from typing import Any

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from reelforge import errors

# A fixed list: the token's own header never chooses the algorithm ("alg": "none" and key confusion fail).
ALGORITHMS = ["HS256"]

_hasher = PasswordHasher()
_dummy_hash: str | None = None


def _dummy() -> str:
    """Verifying against this keeps a login for an unknown email as slow as a real one (made on first use)."""
    global _dummy_hash
    if _dummy_hash is None:
        _dummy_hash = _hasher.hash("not-a-real-password")
    return _dummy_hash


@functools.cache
def _common_passwords() -> frozenset[str]:
    """The shipped list of common passwords (package data, read once)."""
    text = resources.files("reelforge.adapters").joinpath("data/common-passwords.txt").read_text("utf-8")
    return frozenset(line for line in text.splitlines() if line and not line.startswith("#"))


def is_common_password(password: str) -> bool:
    """Whether a password is on the list of the most common ones (compared lowercased, as the list is)."""
    return password.strip().lower() in _common_passwords()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        # An empty hash (an account that signs in elsewhere, or a deleted one) matches no password.
        return _hasher.verify(password_hash or _dummy(), password) and bool(password_hash)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def issue_access_token(*, secret: str, issuer: str, user_id: str, role: str, ttl_s: int,
                       session_id: str | None = None) -> tuple[str, int]:
    """`session_id`: the sign-in (refresh-token family) the token belongs to, as the `sid` claim."""
    now = int(time.time())
    claims = {"sub": user_id, "role": role, "iat": now, "nbf": now, "exp": now + ttl_s, "iss": issuer,
              "typ": "access", "jti": uuid.uuid4().hex}
    if session_id is not None:
        claims["sid"] = session_id
    return jwt.encode(claims, secret, algorithm="HS256"), ttl_s


def decode_access_token(token: str, *, secret: str, issuer: str, max_ttl_s: float | None = None) -> dict[str, Any]:
    """The claims of a valid access token; 401 `token_expired` or `invalid_token` otherwise.

    `max_ttl_s` bounds `exp - iat`: a token that claims to live longer than any this server issues is refused.
    """
    required = ["exp", "iat", "sub", "iss"]
    try:
        # Shapes first (signature checked, times not yet), so `"exp": true` is malformed rather than expired.
        _check_registered_claims(jwt.decode(token, secret, algorithms=ALGORITHMS, issuer=issuer, options={
            "require": required, "verify_exp": False, "verify_iat": False, "verify_nbf": False}), max_ttl_s)
        claims = jwt.decode(token, secret, algorithms=ALGORITHMS, issuer=issuer, options={"require": required})
    except jwt.ExpiredSignatureError as exc:
        raise errors.Unauthorized("Access token expired", code="token_expired") from exc
    except jwt.PyJWTError as exc:
        raise errors.Unauthorized("Invalid access token", code="invalid_token") from exc
    if claims.get("typ") != "access":
        raise errors.Unauthorized("Not an access token", code="invalid_token")
    return claims


def unverified_claims(token: str) -> dict[str, Any]:
    """The claims of a JWT without checking its signature (for one that was checked already); {} when unreadable."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return {}
    return claims if isinstance(claims, dict) else {}


def _is_number(value: Any) -> bool:
    # bool is an int to Python, and PyJWT also reads a numeric string as a time: RFC 7519 says NumericDate.
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check_registered_claims(claims: dict[str, Any], max_ttl_s: float | None) -> None:
    """PyJWT checks what the times mean but accepts `"exp": "1700000000"` or `true`; the shapes are checked here."""
    bad: list[str] = [name for name in ("exp", "iat", "nbf") if name in claims and not _is_number(claims[name])]
    bad += [name for name in ("sub", "iss", "jti", "typ", "sid")
            if name in claims and not isinstance(claims[name], str)]
    if bad:
        raise errors.Unauthorized(f"Malformed claim {bad[0]!r} in access token", code="invalid_token")
    lifetime = claims["exp"] - claims["iat"]
    if lifetime <= 0 or (max_ttl_s is not None and lifetime > max_ttl_s):
        raise errors.Unauthorized("Access token lifetime out of bounds", code="invalid_token")


def new_secret_token(prefix: str = "", nbytes: int = 32) -> str:
    return prefix + secrets.token_urlsafe(nbytes)


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def constant_time_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def sign_webhook(secret: str, timestamp: int, body: bytes) -> str:
    """`Reelforge-Signature: t=<unix>,v1=<hex hmac-sha256 of "t.body">`."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def standard_webhook_key(secret: str) -> bytes:
    """The HMAC key of a signing secret as Standard Webhooks receivers derive it: the base64 after `whsec_`.

    Secrets issued before reelforge followed Standard Webhooks are URL-safe base64 without padding; their key is
    the same bytes decoded that way (a receiver gets the standard form by mapping `-_` to `+/` and padding). A
    secret that is neither (a configured plain string) signs with its own bytes."""
    body = secret.removeprefix("whsec_")
    try:
        return base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        pass
    try:
        return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError):
        return body.encode()


def sign_standard_webhook(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """One `webhook-signature` entry: `v1,` and the base64 HMAC-SHA256 of `id.timestamp.body`."""
    mac = hmac.new(standard_webhook_key(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def verify_webhook_signature(secret: str, header: str, body: bytes, *, tolerance_s: int = 300,
                             now: float | None = None) -> bool:
    """What a receiver runs: parse the header, check the timestamp window and compare in constant time."""
    try:
        parts = dict(p.split("=", 1) for p in header.split(","))
        ts = int(parts["t"])
    except (ValueError, KeyError):
        return False
    if abs((now or time.time()) - ts) > tolerance_s:
        return False
    expected = sign_webhook(secret, ts, body).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))
