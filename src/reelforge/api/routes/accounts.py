"""The caller's account as a whole (export, deletion, own audit trail) and the admin's audit trail."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from reelforge import errors
from reelforge.api.deps import Admin, Container, CurrentUser
from reelforge.api.openapi import problems
from reelforge.api.schemas.accounts import AccountDelete, AccountDeletionPublic, AuditEntryPublic, AuditPagePublic
from reelforge.api.schemas.common import iso

router = APIRouter()

Since = Annotated[dt.datetime | None, Query(description="Entries at or after this time (ISO 8601)")]
Until = Annotated[dt.datetime | None, Query(description="Entries before this time (ISO 8601)")]
Cursor = Annotated[str | None, Query(max_length=200)]
Limit = Annotated[int, Query(ge=1, le=500)]
Action = Annotated[str | None, Query(max_length=64, pattern=r"^[a-z_]+(\.[a-z_]+)*$",
                                     description="An action (`key.created`) or a family of them (`key`)")]
Id = Annotated[str | None, Query(max_length=100, pattern=r"^[A-Za-z0-9_.:-]+$")]


def _epoch(value: dt.datetime | None) -> float | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)  # a time without a zone is UTC
    try:
        return value.timestamp()
    except (OverflowError, OSError, ValueError) as exc:
        raise errors.ValidationFailed("Time out of range", code="invalid_time_range") from exc


def _page(page: Any) -> AuditPagePublic:
    return AuditPagePublic(data=[AuditEntryPublic(id=e.id, ts=iso(e.ts), action=e.action, actor_id=e.actor_id,
                                                  target_type=e.target_type, target_id=e.target_id,
                                                  subject_id=e.subject_id, ip=e.ip, request_id=e.request_id,
                                                  details=e.details or {}) for e in page.entries],
                           next_cursor=page.next_cursor)


@router.get("/account/export", tags=["account"], response_class=StreamingResponse,
            responses={200: {"content": {"application/zip": {}}, "description": "A zip of the account's data"}})
def export(p: CurrentUser, c: Container) -> StreamingResponse:
    """Your records (`account.json`, `jobs.json`, `credits.json`, `assets.json`, ... and each application's under
    `apps/`) as JSON, and every stored object under `assets/`, in one zip streamed as it is built."""
    body = c.accounts.export(p)
    return StreamingResponse(body, media_type="application/zip", headers={
        "Content-Disposition": f'attachment; filename="reelforge-export-{p.user_id}.zip"',
        "Cache-Control": "no-store"})


@router.delete("/account", status_code=202, response_model=AccountDeletionPublic, tags=["account"],
               responses=problems(403))
def delete_account(body: AccountDelete, p: CurrentUser, c: Container) -> AccountDeletionPublic:
    """Delete your account. Confirm with your password (or a token issued in the last minutes). Your e-mail
    address, password, sessions and keys are gone when this answers; your objects and records are removed by
    `deadline_at` (usually within a minute). The credit ledger keeps its amounts, anonymized."""
    s = c.accounts.delete(p, password=body.password, token=body.token)
    return AccountDeletionPublic(status=s.status, requested_at=iso(s.requested_at), finished_at=iso(s.finished_at),
                                 deadline_at=iso(s.deadline_at))


@router.get("/account/audit", response_model=AuditPagePublic, tags=["account"])
def my_audit(p: CurrentUser, c: Container, action: Action = None, since: Since = None, until: Until = None,
             cursor: Cursor = None, limit: Limit = 50) -> AuditPagePublic:
    """Your audit trail: sign-ins, failed sign-ins, keys, role and credit changes of your account; newest first."""
    return _page(c.audit.mine(p, action=action, since=_epoch(since), until=_epoch(until), cursor=cursor,
                              limit=limit))


@router.get("/admin/audit", response_model=AuditPagePublic, tags=["admin"])
def admin_audit(admin: Admin, c: Container, actor: Id = None, action: Action = None, target: Id = None,
                since: Since = None, until: Until = None, cursor: Cursor = None, limit: Limit = 50) -> AuditPagePublic:
    """Every account's audit trail, newest first; filter by actor, action (or family), target, time."""
    return _page(c.audit.list(actor_id=actor, action=action, target_id=target, since=_epoch(since),
                              until=_epoch(until), cursor=cursor, limit=limit))
