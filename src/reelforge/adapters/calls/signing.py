"""The signature of a call from an API process to a worker's call server.

Headers of every call request (`POST /calls/<name>`, JSON body):

- `X-Reelforge-Call-Timestamp`: Unix seconds when it was signed;
- `X-Reelforge-Call-Timeout`: seconds the worker may wait for the call's function (it is signed too, so a
  replay cannot stretch it);
- `X-Reelforge-Call-Signature`: `v1=<hex HMAC-SHA256>` of `"v1\\n<METHOD>\\n<name>\\n<timestamp>\\n<timeout>\\n"`
  followed by the body's bytes.

The key is derived from the instance secret (`auth.jwt_secret`, or the generated `secret-key`) with HKDF-SHA256
and a purpose of its own, so it has nothing in common with the keys that sign tokens, URLs or webhooks. Every
API process and worker of one installation shares that secret. A timestamp further than `calls.max_clock_skew_s`
from the worker's clock is refused, so a captured request is only good for that long.
"""

from __future__ import annotations

import hashlib
import hmac
import time

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

TIMESTAMP = "X-Reelforge-Call-Timestamp"
TIMEOUT = "X-Reelforge-Call-Timeout"
SIGNATURE = "X-Reelforge-Call-Signature"
REQUEST_ID = "X-Request-Id"
PATH = "/calls/"

_INFO = b"reelforge calls v1: API to worker requests"


def call_key(instance_secret: str) -> bytes:
    """The calls' HMAC key from the instance secret."""
    if not instance_secret:
        raise ValueError("instance_secret must not be empty")
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(instance_secret.encode())


def _mac(key: bytes, method: str, name: str, timestamp: str, timeout: str, body: bytes) -> str:
    head = f"v1\n{method.upper()}\n{name}\n{timestamp}\n{timeout}\n".encode()
    return hmac.new(key, head + body, hashlib.sha256).hexdigest()


def sign(key: bytes, name: str, body: bytes, timeout_s: float, *, method: str = "POST",
         now: float | None = None) -> dict[str, str]:
    """The headers that authenticate one call."""
    timestamp = str(int(time.time() if now is None else now))
    timeout = f"{timeout_s:.3f}"
    return {TIMESTAMP: timestamp, TIMEOUT: timeout,
            SIGNATURE: "v1=" + _mac(key, method, name, timestamp, timeout, body)}


def verify(key: bytes, method: str, name: str, body: bytes, timestamp: str | None, timeout: str | None,
           signature: str | None, *, max_skew_s: float, now: float | None = None) -> str | None:
    """None when the headers sign this request and the timestamp is fresh; else why not (for the log)."""
    if not (timestamp and timeout and signature):
        return "unsigned request"
    if not timestamp.isdigit() or len(timestamp) > 12:
        return "malformed timestamp"
    clock = time.time() if now is None else now
    if abs(clock - int(timestamp)) > max_skew_s:
        return "stale timestamp"
    expected = "v1=" + _mac(key, method, name, timestamp, timeout, body)
    if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
        return "bad signature"
    return None
