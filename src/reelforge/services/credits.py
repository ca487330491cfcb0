"""The credits ledger: grants, balance and history. Reserve/settle/refund happen inside job transitions."""

from __future__ import annotations

from typing import Any

from reelforge import errors
from reelforge.domain.records import CreditEntry
from reelforge.domain.types import CreditKind, Principal
from reelforge.ports.repositories import Store


class CreditService:
    def __init__(self, store: Store, audit: Any = None) -> None:
        self.store = store
        self.audit = audit  # services.audit.AuditService, or None

    def balance(self, principal: Principal) -> int:
        with self.store.tx(write=False) as tx:
            return tx.credits.balance(principal.user_id)

    def ledger(self, principal: Principal, *, limit: int = 100, before: int | None = None) -> list[CreditEntry]:
        with self.store.tx(write=False) as tx:
            return list(tx.credits.ledger(principal.user_id, limit=limit, before=before))

    def grant(self, admin: Principal, account_id: str, amount: int, note: str = "") -> CreditEntry:
        """Admins only: add (or, with a negative amount, remove) credits; a balance never goes below zero."""
        if not admin.is_admin:
            raise errors.Forbidden("Admins only", code="admin_only")
        if amount == 0:
            raise errors.ValidationFailed("Amount must not be zero", field="amount")
        with self.store.tx() as tx:
            if tx.accounts.user(account_id) is None:
                raise errors.NotFound("Account not found", code="user_not_found")
            entry = tx.credits.credit(account_id, amount, CreditKind.grant, note=note or f"granted by {admin.email}",
                                      require_balance=amount < 0)
            if self.audit is not None:
                self.audit.record("credits.granted", actor=admin, target_type="user", target_id=account_id,
                                  details={"amount": amount, "balance_after": entry.balance_after}, tx=tx)
            return entry
