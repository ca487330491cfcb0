"""Outbound HTTP for webhooks: SSRF guard and a POST signed as Standard Webhooks specifies."""

from __future__ import annotations

import ipaddress
import json
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from reelforge import errors
from reelforge.adapters.auth import sign_standard_webhook, sign_webhook

# Cloud metadata endpoints answer on link-local or special addresses; refused like any private target.
_METADATA_HOSTS = {"metadata.google.internal", "metadata", "instance-data", "instance-data.ec2.internal"}
_EXTRA_BLOCKED = [ipaddress.ip_network("100.64.0.0/10"), ipaddress.ip_network("fd00:ec2::/32"),
                  ipaddress.ip_network("192.0.0.0/24"), ipaddress.ip_network("198.18.0.0/15")]


# IPv6 forms that carry an IPv4 address a gateway or tunnel may forward to (6to4, NAT64 well-known and
# local-use prefixes, Teredo, IPv4-compatible, IPv4-translated): a webhook has no business there, and the
# embedded address could be a private one, so the whole ranges are refused.
_EMBEDDED_IPV4 = [ipaddress.ip_network(n) for n in (
    "2002::/16", "64:ff9b::/96", "64:ff9b:1::/48", "2001::/32", "::/96", "::ffff:0:0:0/96")]


def _blocked_ip(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        elif any(ip in net for net in _EMBEDDED_IPV4):
            return True
        elif (int(ip) >> 32) & 0xFDFFFFFF == 0x00005EFE:
            # ISATAP interface id (::0:5efe:a.b.c.d or ::200:5efe:a.b.c.d) under any prefix: judge its IPv4.
            return _blocked_ip(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_reserved
            or ip.is_unspecified or any(ip in net for net in _EXTRA_BLOCKED))


def check_target_url(url: str, *, allow_private: bool) -> None:
    """Refuse URLs that are not http(s), or whose host is (or resolves to) a private/loopback/metadata address."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise errors.ValidationFailed("Not a valid URL", code="invalid_url", field="url") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise errors.ValidationFailed("Webhook URLs must be http(s) with a host", code="invalid_url", field="url")
    if parts.username or parts.password:
        raise errors.ValidationFailed("Credentials in webhook URLs are not allowed", code="invalid_url", field="url")
    if allow_private:
        return
    host = parts.hostname.lower().rstrip(".")
    if host in _METADATA_HOSTS or host == "localhost" or host.endswith(".localhost"):
        raise errors.ValidationFailed("Webhook target is a private address", code="forbidden_target", field="url")
    try:
        infos = socket.getaddrinfo(host, parts.port or (443 if parts.scheme == "https" else 80),
                                   proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise errors.ValidationFailed(f"Cannot resolve host {host}", code="unresolvable_host", field="url") from exc
    for info in infos:
        ip = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if _blocked_ip(ip):
            raise errors.ValidationFailed(
                "Webhook target resolves to a private, loopback, link-local or metadata address",
                code="forbidden_target", field="url",
            )


def target_host(url: str) -> str:
    """The key of a URL's circuit breaker: lower-case host and port (the scheme's default when none is given).

    The port is part of it: two services on one address are two targets.
    """
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower().rstrip(".")
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return url[:255]
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{port}"[:255]


@dataclass(frozen=True)
class SendResult:
    ok: bool
    status_code: int | None
    error: str | None
    duration_s: float
    # Not sent at all: the target was refused by the SSRF guard at send time (says nothing of its health).
    refused: bool = False

    @property
    def target_unhealthy(self) -> bool:
        """A failure that says the target is down or overloaded (no answer, timeout, 5xx, 408, 429), as opposed
        to one that says no to this request (other 4xx) or was never sent."""
        if self.ok or self.refused:
            return False
        return self.status_code is None or self.status_code >= 500 or self.status_code in (408, 429)


def signed_headers(secret: str, event: dict[str, Any], body: bytes, *, timestamp: int,
                   previous: Sequence[str] = (), legacy: bool = True) -> dict[str, str]:
    """The headers of one delivery: Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`
    with one `v1,` entry per live secret, the current one first) and, while `legacy`, the deprecated
    `Reelforge-Signature` (current secret only)."""
    msg_id = str(event["id"])
    signatures = [sign_standard_webhook(s, msg_id, timestamp, body) for s in (secret, *previous) if s]
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "reelforge-webhooks/1",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(dict.fromkeys(signatures)),
        "Reelforge-Event-Id": msg_id,
        "Reelforge-Event-Type": str(event["type"]),
    }
    if legacy:
        headers["Reelforge-Signature"] = sign_webhook(secret, timestamp, body)
    return headers


def send_signed(url: str, secret: str, event: dict[str, Any], *, timeout_s: float, allow_private: bool,
                previous: Sequence[str] = (), legacy: bool = True) -> SendResult:
    """POST the event JSON signed as Standard Webhooks specifies (and with the deprecated `Reelforge-Signature`
    while `legacy`); `previous` are secrets a rotation replaced that still sign. No redirects are followed (a
    redirect is a failure)."""
    body = json.dumps(event, separators=(",", ":"), sort_keys=True).encode()
    headers = signed_headers(secret, event, body, timestamp=int(time.time()), previous=previous, legacy=legacy)
    t0 = time.monotonic()
    try:
        # Checked again at send time: DNS may have changed since the subscription was made.
        check_target_url(url, allow_private=allow_private)
        with httpx.Client(timeout=timeout_s, follow_redirects=False) as client:
            resp = client.post(url, content=body, headers=headers)
        ok = 200 <= resp.status_code < 300
        return SendResult(ok, resp.status_code, None if ok else f"HTTP {resp.status_code}", time.monotonic() - t0)
    except errors.ValidationFailed as exc:
        return SendResult(False, None, exc.message, time.monotonic() - t0, refused=True)
    except httpx.HTTPError as exc:
        return SendResult(False, None, f"{type(exc).__name__}: {exc}"[:900], time.monotonic() - t0)
