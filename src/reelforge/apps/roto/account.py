"""Rotoscoping's part of an account's export and deletion (the manifest's `account_export` and `account_delete`
hooks; the core calls them from `GET /v1/account/export` and `DELETE /v1/account`).

Export: `sessions` (each with its video's facts and the last propagation's manifest), `objects`, `prompts`, `masks`
(the prompted frames' masks, as COCO RLE) and `spans` (the stored propagation parts, naming their assets). Sessions
are read a page at a time and each session's rows in a transaction of their own, while the files are written.

Deletion: every session of the account with its objects, prompts, masks and spans, and the sessions this process
holds open in its worker cache (other workers' caches drop them when idle: `roto.session_idle_s`). The span and
overlay objects are the account's assets, which the core removes. Idempotent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict
from typing import Any

from reelforge.apps.roto.records import Session
from reelforge.apps.roto.repository import RotoRepo

PAGE = 100


def _sessions(store: Any, owner_id: str) -> Iterator[Session]:
    after: str | None = None
    while True:
        with store.tx(write=False) as tx:
            page = RotoRepo(tx).owned_sessions(owner_id, after=after, limit=PAGE)
        yield from page
        if len(page) < PAGE:
            return
        after = page[-1].id


def _each_session(store: Any, owner_id: str, read: Callable[[RotoRepo, str], list[Any]]) -> Iterator[dict[str, Any]]:
    """The rows `read(repo, session_id)` gives for each of the account's sessions, one session at a time."""
    for s in _sessions(store, owner_id):
        with store.tx(write=False) as tx:
            rows = read(RotoRepo(tx), s.id)
        for r in rows:
            yield asdict(r)


def _session(s: Session) -> dict[str, Any]:
    out = asdict(s)
    out.pop("owner_id")
    return out


def export(c: Any, account_id: str) -> Iterator[tuple[str, Any]]:
    """The account's rotoscoping records, as (file name, rows) pairs (see the module)."""
    store = c.store
    yield "sessions", (_session(s) for s in _sessions(store, account_id))
    yield "objects", _each_session(store, account_id, lambda repo, sid: repo.objects(sid))
    yield "prompts", _each_session(store, account_id, lambda repo, sid: repo.prompts(sid))
    yield "masks", _each_session(store, account_id, lambda repo, sid: repo.masks(sid))
    yield "spans", _each_session(store, account_id, lambda repo, sid: repo.spans(sid))


def delete(c: Any, account_id: str) -> None:
    """Remove the account's rotoscoping rows (see the module); safe to run again."""
    with c.store.tx() as tx:
        ids = RotoRepo(tx).delete_owned(account_id)
    if ids:
        c.app("roto").drop_cached(ids)
