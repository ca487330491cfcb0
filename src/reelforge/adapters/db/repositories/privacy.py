"""The audit trail, external identities, and an account's own data (export, deletion)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, delete, or_, select, update

from reelforge.adapters.db import models as m
from reelforge.adapters.db.repositories.base import Repository, record, records
from reelforge.domain.records import AccountDeletion, AuditEntry, ExternalIdentity, new_id

# What an export shows of each core table: never a hash, a sealed secret or a storage key.
_EXPORT: dict[str, tuple[Any, Any, tuple[str, ...]]] = {
    "api_keys": (m.ApiKey, m.ApiKey.owner_id,
                 ("id", "name", "prefix", "scopes", "created_at", "last_used_at", "revoked_at")),
    "credits": (m.CreditEntry, m.CreditEntry.account_id,
                ("id", "job_id", "kind", "amount", "balance_after", "note", "created_at")),
    "jobs": (m.Job, m.Job.owner_id,
             ("id", "kind", "status", "input", "outputs", "error_code", "error_message", "credits", "callback_url",
              "created_at", "started_at", "finished_at")),
    "assets": (m.Asset, m.Asset.owner_id,
               ("id", "content_type", "size", "sha256", "lifecycle", "filename", "job_id", "meta", "created_at",
                "expires_at")),
    "uploads": (m.Upload, m.Upload.owner_id,
                ("id", "content_type", "filename", "declared_size", "status", "asset_id", "created_at")),
    "webhooks": (m.Webhook, m.Webhook.owner_id, ("id", "url", "event_types", "description", "active", "created_at")),
    "identities": (m.ExternalIdentity, m.ExternalIdentity.user_id,
                   ("id", "issuer", "subject", "email", "created_at", "last_seen_at")),
    "audit": (m.AuditEntry, m.AuditEntry.subject_id,
              ("id", "ts", "action", "actor_id", "target_type", "target_id", "ip", "request_id", "details")),
}
EXPORT_TABLES = tuple(_EXPORT)


class AuditRepository(Repository):
    def add(self, *, action: str, actor_id: str | None, target_type: str | None, target_id: str | None,
            subject_id: str | None, ip: str | None, request_id: str | None, details: dict[str, Any]) -> AuditEntry:
        row = m.AuditEntry(id=new_id(), ts=self.now(), action=action, actor_id=actor_id, target_type=target_type,
                           target_id=target_id, subject_id=subject_id, ip=ip, request_id=request_id,
                           details=details)
        self.s.add(row)
        self.flush()
        return record(AuditEntry, row)

    def entries(self, *, actor_id: str | None = None, action: str | None = None, target_id: str | None = None,
                subject_id: str | None = None, since: float | None = None, until: float | None = None,
                before: tuple[float, str] | None = None, limit: int = 50) -> list[AuditEntry]:
        """Newest first (ts, id), after the cursor `before`."""
        t = m.AuditEntry
        q = select(t)
        if actor_id is not None:
            q = q.where(t.actor_id == actor_id)
        if action is not None:
            # "key" matches "key.created" and "key.revoked": a family, or one action exactly.
            q = q.where(or_(t.action == action, t.action.startswith(action + ".", autoescape=True)))
        if target_id is not None:
            q = q.where(t.target_id == target_id)
        if subject_id is not None:
            q = q.where(t.subject_id == subject_id)
        if since is not None:
            q = q.where(t.ts >= since)
        if until is not None:
            q = q.where(t.ts < until)
        if before is not None:
            q = q.where(or_(t.ts < before[0], and_(t.ts == before[0], t.id < before[1])))
        return records(AuditEntry, self.s.execute(q.order_by(t.ts.desc(), t.id.desc()).limit(limit)).scalars().all())

    def anonymize_subject(self, subject_id: str) -> int:
        """Drop the IP address and details of the entries about an account (its deletion keeps only the facts)."""
        res = self.s.execute(update(m.AuditEntry).where(m.AuditEntry.subject_id == subject_id)
                             .values(ip=None, details={}), execution_options={"synchronize_session": False})
        return int(res.rowcount or 0)  # type: ignore[attr-defined]

    def prune(self, before: float) -> int:
        res = self.s.execute(delete(m.AuditEntry).where(m.AuditEntry.ts < before),
                             execution_options={"synchronize_session": False})
        return int(res.rowcount or 0)  # type: ignore[attr-defined]


class AccountDataRepository(Repository):
    # --- external identities -------------------------------------------------------------------------------
    def identity(self, issuer: str, subject: str) -> ExternalIdentity | None:
        row = self.s.execute(select(m.ExternalIdentity).where(m.ExternalIdentity.issuer == issuer,
                                                              m.ExternalIdentity.subject == subject)
                             ).scalar_one_or_none()
        return record(ExternalIdentity, row) if row is not None else None

    def add_identity(self, *, issuer: str, subject: str, user_id: str, email: str | None) -> ExternalIdentity:
        now = self.now()
        row = m.ExternalIdentity(id=new_id(), issuer=issuer, subject=subject, user_id=user_id, email=email,
                                 created_at=now, last_seen_at=now)
        self.s.add(row)
        self.flush()
        return record(ExternalIdentity, row)

    def touch_identity(self, identity_id: str) -> None:
        self.s.execute(update(m.ExternalIdentity).where(m.ExternalIdentity.id == identity_id)
                       .values(last_seen_at=self.now()), execution_options={"synchronize_session": False})

    # --- export ----------------------------------------------------------------------------------------------
    def export_rows(self, table: str, owner_id: str, *, after: Any = None, limit: int = 500) -> list[dict[str, Any]]:
        """One page of an account's rows of a core table (by id, after `after`), as the export shows them."""
        model, owner_col, fields = _EXPORT[table]
        q = select(model).where(owner_col == owner_id)
        if after is not None:
            q = q.where(model.id > after)
        rows = self.s.execute(q.order_by(model.id).limit(limit)).scalars().all()
        return [{f: getattr(r, f) for f in fields} for r in rows]

    # --- deletion --------------------------------------------------------------------------------------------
    def deletion(self, user_id: str) -> AccountDeletion | None:
        row = self.s.get(m.AccountDeletion, user_id, populate_existing=True)
        return record(AccountDeletion, row) if row is not None else None

    def add_deletion(self, user_id: str) -> AccountDeletion:
        row = m.AccountDeletion(user_id=user_id, requested_at=self.now(), finished_at=None, attempts=0)
        self.s.add(row)
        self.flush()
        return record(AccountDeletion, row)

    def pending_deletions(self, limit: int = 20) -> list[AccountDeletion]:
        return records(AccountDeletion, self.s.execute(
            select(m.AccountDeletion).where(m.AccountDeletion.finished_at.is_(None))
            .order_by(m.AccountDeletion.requested_at).limit(limit)).scalars().all())

    def deletion_attempted(self, user_id: str, error: str | None) -> None:
        self.s.execute(update(m.AccountDeletion).where(m.AccountDeletion.user_id == user_id)
                       .values(attempts=m.AccountDeletion.attempts + 1, last_error=error),
                       execution_options={"synchronize_session": False})

    def finish_deletion(self, user_id: str) -> None:
        self.s.execute(update(m.AccountDeletion).where(m.AccountDeletion.user_id == user_id)
                       .values(finished_at=self.now(), last_error=None),
                       execution_options={"synchronize_session": False})

    def forget_credentials(self, user_id: str) -> None:
        """Remove every way to sign in as the account: keys, refresh tokens, external identities."""
        for model, col in ((m.ApiKey, m.ApiKey.owner_id), (m.RefreshToken, m.RefreshToken.user_id),
                           (m.ExternalIdentity, m.ExternalIdentity.user_id)):
            self.s.execute(delete(model).where(col == user_id), execution_options={"synchronize_session": False})

    def owned_objects(self, owner_id: str, limit: int) -> list[tuple[str, str, str]]:
        """(kind, id, object key) of the account's assets and uploads still present."""
        assets = self.s.execute(select(m.Asset.id, m.Asset.key).where(m.Asset.owner_id == owner_id)
                                .order_by(m.Asset.id).limit(limit)).all()
        out = [("asset", str(r[0]), str(r[1])) for r in assets]
        if len(out) < limit:
            uploads = self.s.execute(select(m.Upload.id, m.Upload.key).where(m.Upload.owner_id == owner_id)
                                     .order_by(m.Upload.id).limit(limit - len(out))).all()
            out += [("upload", str(r[0]), str(r[1])) for r in uploads]
        return out

    def delete_objects_rows(self, items: Sequence[tuple[str, str]]) -> None:
        asset_ids = [i for kind, i in items if kind == "asset"]
        upload_ids = [i for kind, i in items if kind == "upload"]
        if asset_ids:
            self.s.execute(delete(m.Asset).where(m.Asset.id.in_(asset_ids)),
                           execution_options={"synchronize_session": False})
        if upload_ids:
            self.s.execute(delete(m.Upload).where(m.Upload.id.in_(upload_ids)),
                           execution_options={"synchronize_session": False})

    def delete_records(self, owner_id: str) -> dict[str, int]:
        """The account's jobs (their history and checkpoints follow), webhooks and pending events."""
        counts: dict[str, int] = {}
        for name, model, col in (("jobs", m.Job, m.Job.owner_id), ("webhooks", m.Webhook, m.Webhook.owner_id),
                                 ("deliveries", m.Delivery, m.Delivery.owner_id),
                                 ("events", m.OutboxEvent, m.OutboxEvent.owner_id)):
            if name == "jobs":
                ids = select(m.Job.id).where(m.Job.owner_id == owner_id).scalar_subquery()
                self.s.execute(delete(m.JobEvent).where(m.JobEvent.job_id.in_(ids)),
                               execution_options={"synchronize_session": False})
                self.s.execute(delete(m.Checkpoint).where(m.Checkpoint.job_id.in_(ids)),
                               execution_options={"synchronize_session": False})
            res = self.s.execute(delete(model).where(col == owner_id), execution_options={"synchronize_session": False})
            counts[name] = int(res.rowcount or 0)  # type: ignore[attr-defined]
        return counts

    def anonymize_ledger(self, account_id: str) -> int:
        """Keep the ledger's amounts, kinds, jobs and times (what accounting must keep); drop its free text."""
        res = self.s.execute(update(m.CreditEntry).where(m.CreditEntry.account_id == account_id).values(note=""),
                             execution_options={"synchronize_session": False})
        return int(res.rowcount or 0)  # type: ignore[attr-defined]
