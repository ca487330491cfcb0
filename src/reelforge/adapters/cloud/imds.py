"""Spot interruption notices from the EC2 instance metadata service (IMDSv2).

``PUT /latest/api/token`` (header ``X-aws-ec2-metadata-token-ttl-seconds``) gives a session token; then ``GET
/latest/meta-data/spot/instance-action`` with ``X-aws-ec2-metadata-token`` answers 404 while no interruption is
scheduled, and 200 ``{"action": "terminate", "time": "2026-12-06T07:00:00Z"}`` about two minutes before one.
A 401 (the token expired) fetches a new token once.
"""

from __future__ import annotations

import json
import logging
import time

import httpx

from reelforge.ports.interruptions import InterruptionNotice

log = logging.getLogger("reelforge.spot")

TOKEN_PATH = "/latest/api/token"
ACTION_PATH = "/latest/meta-data/spot/instance-action"


class InstanceMetadataNotices:
    def __init__(self, base_url: str, *, timeout_s: float = 2.0, token_ttl_s: int = 21600) -> None:
        self.base_url = base_url.rstrip("/")
        self.token_ttl_s = token_ttl_s
        self.client = httpx.Client(timeout=timeout_s, trust_env=False)
        self._token: str | None = None
        self._token_until = 0.0

    def _get_token(self) -> str:
        if self._token is None or time.monotonic() >= self._token_until:
            r = self.client.put(self.base_url + TOKEN_PATH,
                                headers={"X-aws-ec2-metadata-token-ttl-seconds": str(self.token_ttl_s)})
            r.raise_for_status()
            self._token = r.text.strip()
            self._token_until = time.monotonic() + max(1.0, self.token_ttl_s - 60)
        return self._token

    def poll(self) -> InterruptionNotice | None:
        try:
            for _ in range(2):
                token = self._get_token()
                r = self.client.get(self.base_url + ACTION_PATH, headers={"X-aws-ec2-metadata-token": token})
                if r.status_code == 401:
                    self._token = None  # expired or revoked: one new token
                    continue
                break
            if r.status_code == 404:
                return None
            r.raise_for_status()
            doc = json.loads(r.text)
            return InterruptionNotice(action=str(doc.get("action") or "terminate"), time=str(doc.get("time") or ""))
        except (httpx.HTTPError, ValueError) as exc:
            log.debug("instance metadata not readable: %s", exc)
            return None

    def close(self) -> None:
        self.client.close()
