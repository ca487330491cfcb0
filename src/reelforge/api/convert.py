"""Rows to public schemas."""

from __future__ import annotations

from typing import Any

from reelforge.api.schemas.auth import ApiKeyPublic, UserPublic
from reelforge.api.schemas.common import iso
from reelforge.api.schemas.jobs import JobEventPublic, JobPublic
from reelforge.api.schemas.misc import CreditEntryPublic, DeliveryPublic, WebhookPublic
from reelforge.api.schemas.storage import AssetPublic, SignedRequestPublic, UploadPart, UploadPublic


def job(j: Any) -> JobPublic:
    return JobPublic.model_validate(job_fields(j))


def job_fields(j: Any) -> dict[str, Any]:
    """A job row as JobPublic's fields, in its field order: `job()` validates it, and the hot read
    (api/hot.py) serializes it as is, so the two give the same bytes."""
    return {
        "id": j.id, "kind": j.kind, "status": j.status, "input": j.input, "outputs": j.outputs,
        "error": {"code": j.error_code, "message": j.error_message} if j.error_code else None,
        "progress": {"fraction": round(j.progress or 0.0, 4), "message": j.progress_message or ""},
        "credits": j.credits, "credits_state": j.credits_state, "attempt": j.attempt,
        "max_attempts": j.max_attempts, "priority": j.priority, "cancel_requested": j.cancel_requested,
        "callback_url": j.callback_url, "idempotency_key": j.idempotency_key, "created_at": iso(j.created_at),
        "started_at": iso(j.started_at), "finished_at": iso(j.finished_at), "expires_at": iso(j.expires_at),
    }


def event(e: Any) -> JobEventPublic:
    return JobEventPublic(id=e.id, ts=iso(e.ts), type=e.type, path=e.path, attempt=e.attempt, details=e.details or {})


def user(u: Any) -> UserPublic:
    return UserPublic(id=u.id, email=u.email, role=u.role, disabled=u.disabled, credits=u.credits,
                      created_at=iso(u.created_at))


def api_key(k: Any) -> ApiKeyPublic:
    return ApiKeyPublic(id=k.id, name=k.name, prefix=k.prefix, created_at=iso(k.created_at),
                        last_used_at=iso(k.last_used_at), revoked_at=iso(k.revoked_at))


def signed(r: Any) -> SignedRequestPublic:
    return SignedRequestPublic(url=r.url, method=r.method, headers=dict(r.headers),
                               expires_at=iso(r.expires_at) if r.expires_at else None)


def asset(a: Any, download: Any | None = None) -> AssetPublic:
    return AssetPublic(id=a.id, content_type=a.content_type, size=a.size, sha256=a.sha256, lifecycle=a.lifecycle,
                       filename=a.filename, job_id=a.job_id, metadata=a.meta or {}, created_at=iso(a.created_at),
                       expires_at=iso(a.expires_at), download=signed(download) if download else None)


def upload(u: Any, ticket: Any | None = None) -> UploadPublic:
    out = UploadPublic(id=u.id, status=u.status, filename=u.filename, content_type=u.content_type,
                       size=u.declared_size, lifecycle=u.lifecycle, multipart=bool(u.multipart_id),
                       part_size=u.part_size, expires_at=iso(u.expires_at), asset_id=u.asset_id)
    if ticket is not None:
        if ticket.put is not None:
            out.put = signed(ticket.put)
        if ticket.parts:
            size = u.declared_size or 0
            parts = []
            for n, req in ticket.parts:
                start = (n - 1) * (u.part_size or 0)
                parts.append(UploadPart(part_number=n, url=req.url, method=req.method, headers=dict(req.headers),
                                        size=max(0, min(u.part_size or 0, size - start))))
            out.parts = parts
    return out


def credit(e: Any) -> CreditEntryPublic:
    return CreditEntryPublic(id=e.id, kind=e.kind, amount=e.amount, balance_after=e.balance_after, job_id=e.job_id,
                             note=e.note, created_at=iso(e.created_at))


def webhook(w: Any) -> WebhookPublic:
    return WebhookPublic(id=w.id, url=w.url, event_types=list(w.event_types or []), description=w.description,
                         active=w.active, created_at=iso(w.created_at))


def delivery(d: Any) -> DeliveryPublic:
    return DeliveryPublic(id=d.id, event_id=d.event_id, webhook_id=d.webhook_id, target=d.target, url=d.url,
                          status=d.status, attempts=d.attempts, last_status_code=d.last_status_code,
                          last_error=d.last_error, created_at=iso(d.created_at), delivered_at=iso(d.delivered_at))
