"""An account's own data as a whole: its export (a zip of its records and objects) and its deletion.

Export: `GET /v1/account/export` streams a zip that is built while it is sent (records read a page at a time,
objects copied a chunk at a time), so memory stays bounded whatever the account holds.

Deletion (`DELETE /v1/account`, after re-authentication) happens in two parts:
1. in the request, in one transaction: every credential goes (API keys, refresh tokens, external identities), the
   e-mail address and password hash are replaced, the account is disabled, and the deletion is recorded; then
   as many objects and records as `accounts.delete_inline_objects` allows are removed;
2. the sweeper (every `sweep_interval_s`, on a worker) finishes: each application's data (its
   `account_delete` hook), the stored objects, jobs, webhooks, deliveries and events; the ledger keeps its lines
   (amounts, kinds, jobs, times: what accounting must keep) without their free text, the audit trail keeps its
   entries about the account without IP addresses or details, and the account's row stays as an anonymous
   tombstone they point to. All of it within `accounts.deletion_deadline_s` (docs/architecture.md).
"""

from __future__ import annotations

import io
import json
import logging
import re
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from reelforge import errors
from reelforge.domain.records import AccountDeletion
from reelforge.domain.types import Principal
from reelforge.ports.repositories import DuplicateKey, Store
from reelforge.ports.storage import ObjectStore
from reelforge.services.assets import ext_for

log = logging.getLogger("reelforge.accounts")

EXPORT_TABLES = ("api_keys", "credits", "jobs", "assets", "uploads", "webhooks", "identities", "audit")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
_FLUSH_AT = 64 * 1024


@dataclass(frozen=True)
class DeletionStatus:
    user_id: str
    status: str  # "deleting" or "deleted"
    requested_at: float
    finished_at: float | None
    deadline_at: float


class _Sink(io.RawIOBase):
    """A write-only, unseekable stream that keeps what was written until `take()`: the zip writes into it, the
    response sends what it took (zipfile writes data descriptors when it cannot seek back)."""

    def __init__(self) -> None:
        super().__init__()
        self._chunks: list[bytes] = []
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        data = bytes(b)
        self._chunks.append(data)
        self.size += len(data)
        return len(data)

    def take(self) -> bytes:
        data = b"".join(self._chunks)
        self._chunks.clear()
        self.size = 0
        return data


def _dumps(value: Any) -> str:
    return json.dumps(value, default=str, ensure_ascii=False, separators=(",", ":"))


class AccountService:
    def __init__(self, store: Store, objects: ObjectStore, settings: Any, *, auth: Any, audit: Any,
                 container: Any = None, export_hooks: Mapping[str, Callable[[Any, str], Iterable[tuple[str, Any]]]]
                 | None = None, delete_hooks: Mapping[str, Callable[[Any, str], None]] | None = None) -> None:
        self.store = store
        self.objects = objects
        self.settings = settings
        self.auth = auth
        self.audit = audit
        self.container = container  # what the applications' hooks are given
        self.export_hooks = dict(export_hooks or {})
        self.delete_hooks = dict(delete_hooks or {})

    # --- export ----------------------------------------------------------------------------------------------
    def export(self, principal: Principal) -> Iterator[bytes]:
        """The caller's data as a zip, produced while it is read: `account.json`, one JSON file per kind of record
        (`jobs.json`, `credits.json`, ...), `apps/<application>/<name>.json` from each application's hook, and
        every stored object under `assets/`."""
        with self.store.tx(write=False) as tx:
            user = tx.accounts.user(principal.user_id)
        if user is None:
            raise errors.Unauthorized("Account not found or disabled", code="invalid_token")
        self.audit.record("account.exported", actor=principal, target_type="user", target_id=user.id)
        profile = {"id": user.id, "email": user.email, "role": user.role, "credits": user.credits,
                   "created_at": user.created_at, "exported_at": time.time()}
        return self._zip(user.id, profile)

    def _zip(self, user_id: str, profile: dict[str, Any]) -> Iterator[bytes]:
        sink = _Sink()
        with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("account.json", _dumps(profile))
            for table in EXPORT_TABLES:
                yield from self._json_list(zf, sink, f"{table}.json", self._rows(table, user_id))
            for app, hook in self.export_hooks.items():
                for name, value in hook(self.container, user_id):
                    if not _NAME.match(name):
                        raise ValueError(f"application {app!r}: export name {name!r} is not a plain file name")
                    if isinstance(value, dict | str | int | float | bool) or value is None:
                        zf.writestr(f"apps/{app}/{name}.json", _dumps(value))
                    else:
                        yield from self._json_list(zf, sink, f"apps/{app}/{name}.json", value)
            yield from self._objects(zf, sink, user_id)
        yield sink.take()

    def _rows(self, table: str, user_id: str) -> Iterator[dict[str, Any]]:
        after = None
        page = self.settings.accounts.export_page_rows
        while True:
            with self.store.tx(write=False) as tx:
                rows = tx.account_data.export_rows(table, user_id, after=after, limit=page)
            yield from rows
            if len(rows) < page:
                return
            after = rows[-1]["id"]

    @staticmethod
    def _json_list(zf: zipfile.ZipFile, sink: _Sink, name: str, rows: Iterable[Any]) -> Iterator[bytes]:
        with zf.open(name, "w", force_zip64=True) as w:
            w.write(b"[")
            for i, row in enumerate(rows):
                w.write((",\n" if i else "\n").encode() + _dumps(row).encode())
                if sink.size >= _FLUSH_AT:
                    yield sink.take()
            w.write(b"\n]\n")
        yield sink.take()

    def _objects(self, zf: zipfile.ZipFile, sink: _Sink, user_id: str) -> Iterator[bytes]:
        chunk = self.settings.accounts.export_chunk_bytes
        for asset in self._rows("assets", user_id):
            with self.store.tx(write=False) as tx:
                full = tx.assets.asset(asset["id"], owner_id=user_id)
            if full is None:
                continue  # deleted while the export ran
            try:
                src = self.objects.open(full.key)
            except errors.NotFound:
                log.warning("export: the object of asset %s is missing", full.id)
                continue
            with src, zf.open(f"assets/{full.id}{ext_for(full.filename, full.content_type)}", "w",
                              force_zip64=True) as w:
                while True:
                    data = src.read(chunk)
                    if not data:
                        break
                    w.write(data)
                    if sink.size >= _FLUSH_AT:
                        yield sink.take()
            yield sink.take()

    # --- deletion --------------------------------------------------------------------------------------------
    def delete(self, principal: Principal, *, password: str | None = None, token: str | None = None
               ) -> DeletionStatus:
        """Delete the caller's account (see the module). Asking again while it is being deleted answers its status."""
        self.auth.reauthenticate(principal, password=password, token=token)
        uid = principal.user_id
        try:
            with self.store.tx() as tx:
                if tx.accounts.user(uid, lock=True) is None:
                    raise errors.Unauthorized("Account not found or disabled", code="invalid_token")
                tx.account_data.add_deletion(uid)
                tx.account_data.forget_credentials(uid)
                tx.accounts.update_user(uid, email=f"deleted-{uid}@deleted.invalid", password_hash="",
                                        disabled=True, webhook_secret="")
                self.audit.record("account.deletion_requested", actor=uid, target_type="user", target_id=uid, tx=tx)
        except DuplicateKey:
            pass  # requested already: finish below like the sweeper would
        self.auth.principal_changed(uid)
        try:
            self.finish(uid, max_objects=self.settings.accounts.delete_inline_objects)
        except Exception:
            log.exception("deleting account %s: the sweeper will finish", uid)
        return self.status(uid)

    def status(self, user_id: str) -> DeletionStatus:
        with self.store.tx(write=False) as tx:
            d = tx.account_data.deletion(user_id)
        if d is None:
            raise errors.NotFound("No deletion was requested for this account", code="not_found")
        return self._status(d)

    def _status(self, d: AccountDeletion) -> DeletionStatus:
        return DeletionStatus(user_id=d.user_id, status="deleted" if d.finished_at is not None else "deleting",
                              requested_at=d.requested_at, finished_at=d.finished_at,
                              deadline_at=d.requested_at + self.settings.accounts.deletion_deadline_s)

    def finish(self, user_id: str, *, max_objects: int | None = None) -> bool:
        """Remove what is left of a deleted account; False when `max_objects` objects were removed and more remain
        (the sweeper goes on later). Idempotent: every step may run again."""
        for app, hook in self.delete_hooks.items():
            try:
                hook(self.container, user_id)
            except Exception as exc:
                raise RuntimeError(f"application {app!r} could not delete the account's data") from exc
        removed = 0
        while True:
            limit = 200 if max_objects is None else min(200, max_objects - removed)
            if limit <= 0:
                return False
            with self.store.tx(write=False) as tx:
                items = tx.account_data.owned_objects(user_id, limit)
            if not items:
                break
            for _, _, key in items:
                self.objects.delete(key)  # a missing object is no error
            with self.store.tx() as tx:
                tx.account_data.delete_objects_rows([(kind, i) for kind, i, _ in items])
            removed += len(items)
        with self.store.tx() as tx:
            if tx.account_data.deletion(user_id) is None:
                return True  # not an account being deleted (a direct call): nothing more to do
            tx.account_data.delete_records(user_id)
            tx.account_data.forget_credentials(user_id)
            tx.account_data.anonymize_ledger(user_id)
            self.audit.record("account.deleted", target_type="user", target_id=user_id, tx=tx)
            tx.audit.anonymize_subject(user_id)
            tx.account_data.finish_deletion(user_id)
        return True

    def sweep(self, limit: int = 20) -> int:
        """Finish pending deletions (the sweeper runs it); how many finished."""
        with self.store.tx(write=False) as tx:
            pending = tx.account_data.pending_deletions(limit)
        done = 0
        for d in pending:
            try:
                if self.finish(d.user_id):
                    done += 1
            except Exception as exc:
                log.exception("could not finish deleting account %s", d.user_id)
                with self.store.tx() as tx:
                    tx.account_data.deletion_attempted(d.user_id, str(exc)[:1000])
        return done
