"""The audit trail: who did what to whom, from which address, in which request.

`AuditService.record(...)` is what the rest of the platform calls (sign-ins, keys, roles, credits, deletions,
purchases); the IP address and request id default to the current request's (context variables the API sets),
so a service deep in a call does not need them passed down. An entry can be written in the caller's own
transaction (`tx=`), so that it commits with the change it reports, or in one of its own.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from reelforge import errors
from reelforge.domain.cursors import decode_cursor, encode_cursor
from reelforge.domain.records import AuditEntry
from reelforge.domain.types import Principal
from reelforge.observability import client_ip_var, request_id_var
from reelforge.ports.repositories import Store, UnitOfWork

log = logging.getLogger("reelforge.audit")

# The actions the platform records; applications and other parts may record their own ("<area>.<verb>").
ACTIONS = {
    "auth.sign_in": "A sign-in with e-mail and password (or a first sign-in through OIDC)",
    "auth.sign_in_failed": "A failed sign-in (wrong password, unknown address, disabled account)",
    "auth.identity_linked": "An external (OIDC) identity was mapped to an account on its first use",
    "auth.password_changed": "The account's password was changed",
    "key.created": "An API key was created (`scopes`)",
    "key.revoked": "An API key was revoked",
    "user.role_changed": "An admin changed an account's role (`from`, `to`)",
    "user.disabled": "An admin disabled an account",
    "user.enabled": "An admin enabled an account again",
    "credits.granted": "An admin granted or removed credits (`amount`)",
    "credits.purchased": "Credits were bought (`amount`, `reference`)",
    "account.exported": "The account's data was exported",
    "account.deletion_requested": "The account asked to be deleted (personal data removed at once)",
    "account.deleted": "The account's objects and records are all removed",
}
MAX_DETAILS_CHARS = 4000


@dataclass(frozen=True)
class AuditPage:
    entries: list[AuditEntry]
    next_cursor: str | None


class AuditService:
    def __init__(self, store: Store) -> None:
        self.store = store

    def record(self, action: str, *, actor: Principal | str | None = None, target_type: str | None = None,
               target_id: str | None = None, subject_id: str | None = None, details: dict[str, Any] | None = None,
               ip: str | None = None, request_id: str | None = None, tx: UnitOfWork | None = None) -> AuditEntry:
        """Append one entry. `actor`: who acted (a principal or an account id; None for the system or an
        anonymous caller). `subject_id`: the account the entry concerns (defaults to a `user` target, else the
        actor): it is what that account sees in its own trail. `tx`: write in the caller's transaction."""
        actor_id = actor.user_id if isinstance(actor, Principal) else actor
        if subject_id is None:
            subject_id = target_id if target_type == "user" else actor_id
        clean = dict(details or {})
        if len(repr(clean)) > MAX_DETAILS_CHARS:
            clean = {"truncated": True}
        values: dict[str, Any] = {"action": action[:64], "actor_id": actor_id, "target_type": target_type,
                  "target_id": target_id[:100] if target_id else None, "subject_id": subject_id,
                  "ip": (ip or client_ip_var.get() or None), "request_id": request_id or request_id_var.get(),
                  "details": clean}
        if values["ip"]:
            values["ip"] = str(values["ip"])[:64]
        if tx is not None:
            return tx.audit.add(**values)
        with self.store.tx() as own:
            return own.audit.add(**values)

    def purchase(self, account_id: str, amount: int, *, reference: str, tx: UnitOfWork | None = None,
                 **details: Any) -> AuditEntry:
        """The hook for credit purchases: call it in the transaction that grants the bought credits."""
        return self.record("credits.purchased", actor=account_id, target_type="user", target_id=account_id,
                           details={"amount": amount, "reference": reference, **details}, tx=tx)

    def list(self, *, actor_id: str | None = None, action: str | None = None, target_id: str | None = None,
             subject_id: str | None = None, since: float | None = None, until: float | None = None,
             cursor: str | None = None, limit: int = 50) -> AuditPage:
        """Entries newest first; `cursor` continues a previous page."""
        if since is not None and until is not None and since >= until:
            raise errors.ValidationFailed("`since` must be before `until`", code="invalid_time_range", field="since")
        before = decode_cursor(cursor)
        with self.store.tx(write=False) as tx:
            rows = tx.audit.entries(actor_id=actor_id, action=action, target_id=target_id, subject_id=subject_id,
                                    since=since, until=until, before=before, limit=limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        return AuditPage(rows, encode_cursor(rows[-1].ts, rows[-1].id) if more and rows else None)

    def mine(self, principal: Principal, *, action: str | None = None, since: float | None = None,
             until: float | None = None, cursor: str | None = None, limit: int = 50) -> AuditPage:
        """The caller's own trail: what was done by or to their account."""
        return self.list(subject_id=principal.user_id, action=action, since=since, until=until, cursor=cursor,
                         limit=limit)

    def prune(self, retention_s: float) -> int:
        """Delete entries older than `retention_s` (0: keep them all); the sweeper runs it."""
        if retention_s <= 0:
            return 0
        with self.store.tx() as tx:
            return tx.audit.prune(tx.now() - retention_s)
