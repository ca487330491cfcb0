"""The account's own data (export, deletion) and the audit trail."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from reelforge.api.schemas.common import Public, Strict


class AccountDelete(Strict):
    """Re-authentication for deleting the account: the password, or a token issued in the last few minutes
    (`accounts.reauth_max_age_s`; an access token of this server or of the OIDC issuer, never an API key)."""

    password: str | None = Field(default=None, min_length=1, max_length=1024)
    token: str | None = Field(default=None, min_length=1, max_length=8192)


class AccountDeletionPublic(Public):
    status: str = Field(description="`deleting` while objects and records are being removed, then `deleted`",
                        examples=["deleting"])
    requested_at: str | None
    finished_at: str | None
    deadline_at: str | None = Field(description="Everything is removed by then (`accounts.deletion_deadline_s`)")


class AuditEntryPublic(Public):
    id: str
    ts: str | None
    action: str = Field(examples=["key.created"])
    actor_id: str | None = Field(description="Who acted; null for the system or an anonymous caller")
    target_type: str | None = Field(examples=["api_key"])
    target_id: str | None
    subject_id: str | None = Field(description="The account the entry concerns")
    ip: str | None
    request_id: str | None
    details: dict[str, Any]


class AuditPagePublic(Public):
    data: list[AuditEntryPublic]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next (older) page; null at the end")
