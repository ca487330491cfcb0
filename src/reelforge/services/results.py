"""Result URLs: short-lived signed download URLs beside the asset ids in job outputs, so no second call is needed.

Any key of an output named `*asset_id` (at any depth, in dicts and lists) gets a sibling `*asset_url`, and a
list under `*asset_ids` a sibling `*asset_urls` (same order, null where an id is not the owner's asset). Only
the caller's own assets are linked, found in one SELECT per answer; at most `storage.result_urls_max` ids per
answer are looked up (the rest keep their ids only). URLs are signed per period (a third of
`storage.result_url_ttl_s`): within one period the same job gives the same URLs, so its ETag holds, and every
URL served lives at least two thirds of the TTL.

Applications sign the objects of their own lists with `ResultLinks.sign` (and say when they expire with
`expires_at`), after their own read has found what the caller may see: same TTL, same periods, no query here.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from reelforge.ports.repositories import Store
from reelforge.ports.storage import ObjectStore

MAX_DEPTH = 12


def _link_key(key: str) -> str | None:
    if key.endswith("asset_id"):
        return key[:-2] + "url"
    if key.endswith("asset_ids"):
        return key[:-3] + "urls"
    return None


def asset_ids(values: Iterable[Any], limit: int) -> list[str]:
    """The distinct asset ids named in these outputs, in order of appearance, at most `limit`."""
    found: dict[str, None] = {}

    def walk(v: Any, depth: int) -> None:
        if len(found) >= limit or depth > MAX_DEPTH:
            return
        if isinstance(v, dict):
            for k, item in v.items():
                if isinstance(k, str) and k.endswith("asset_id") and isinstance(item, str) and item:
                    found.setdefault(item, None)
                elif isinstance(k, str) and k.endswith("asset_ids") and isinstance(item, list):
                    for x in item:
                        if isinstance(x, str) and x and len(found) < limit:
                            found.setdefault(x, None)
                else:
                    walk(item, depth + 1)
        elif isinstance(v, list):
            for item in v:
                walk(item, depth + 1)

    for value in values:
        walk(value, 0)
    return list(found)[:limit]


def with_urls(value: Any, urls: dict[str, str], depth: int = 0) -> Any:
    """`value` with a `*asset_url` (`*asset_urls`) beside each linked `*asset_id` (`*asset_ids`); keys the
    outputs already have are left as they are."""
    if depth > MAX_DEPTH:
        return value
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, item in value.items():
            link = _link_key(k) if isinstance(k, str) else None
            if link is None:
                out[k] = with_urls(item, urls, depth + 1)
                continue
            out[k] = item
            if link in value:
                continue
            if isinstance(item, str) and item in urls:
                out[link] = urls[item]
            elif isinstance(item, list) and any(isinstance(x, str) and x in urls for x in item):
                out[link] = [urls.get(x) if isinstance(x, str) else None for x in item]
        return out
    if isinstance(value, list):
        return [with_urls(item, urls, depth + 1) for item in value]
    return value


def has_asset_ids(value: Any, depth: int = 0) -> bool:
    """Whether outputs name any asset (cheap test before a lookup)."""
    if depth > MAX_DEPTH:
        return False
    if isinstance(value, dict):
        return any((isinstance(k, str) and _link_key(k) is not None) or has_asset_ids(v, depth + 1)
                   for k, v in value.items())
    if isinstance(value, list):
        return any(has_asset_ids(v, depth + 1) for v in value)
    return False


class ResultLinks:
    """Signs the result URLs of job outputs (and of any JSON naming assets) for the assets' owner."""

    def __init__(self, store: Store, objects: ObjectStore, *, ttl_s: int, max_urls: int) -> None:
        self.store = store
        self.objects = objects
        self.ttl_s = int(ttl_s)
        self.step_s = max(1, self.ttl_s // 3)
        self.max_urls = int(max_urls)

    def period(self, now: float | None = None) -> int:
        """The signing period now: URLs (and the ETags of answers carrying them) change only between periods."""
        return int((time.time() if now is None else now) // self.step_s)

    def expires_at(self, period: int | None = None) -> int:
        """When URLs signed in this period (now by default) expire (epoch seconds)."""
        return (self.period() if period is None else period) * self.step_s + self.ttl_s

    def sign(self, rows: Iterable[Any], period: int | None = None) -> dict[str, str]:
        """Signed download URLs of these stored objects by their `id`: any rows with `id`, `key`, `filename`
        and `content_type` (assets, or the columns of a join naming them) that the caller has already found
        the viewer may see. For lists an application reads with its own query; no query here."""
        expires_at = self.expires_at(period)
        urls: dict[str, str] = {}
        now = int(time.time())
        for row in rows:
            if row.id in urls:
                continue
            req = self.objects.presign_get(row.key, max(1, expires_at - now), filename=row.filename,
                                           content_type=row.content_type)
            urls[row.id] = req.url
        return urls

    async def urls(self, owner_id: str, outputs: Iterable[Any], period: int | None = None) -> dict[str, str]:
        """Signed URLs for the owner's assets named in these outputs (one SELECT), by asset id."""
        ids = asset_ids(outputs, self.max_urls)
        if not ids:
            return {}
        rows = await self.store.reads.owned_assets(owner_id, ids)
        return self.sign(rows, period)

    def urls_now(self, owner_id: str, outputs: Iterable[Any], period: int | None = None) -> dict[str, str]:
        """`urls` for synchronous callers."""
        ids = asset_ids(outputs, self.max_urls)
        if not ids:
            return {}
        rows = self.store.reads.owned_assets_now(owner_id, ids)
        return self.sign(rows, period)
