"""Rows to public schemas, and the pre-serialized JSON answers of read routes."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

from pydantic_core import to_json
from starlette.responses import Response

from reelforge.api.schemas.auth import ApiKeyPublic, UserPublic
from reelforge.api.schemas.common import iso
from reelforge.api.schemas.jobs import JobEventPublic, JobPublic
from reelforge.api.schemas.misc import CreditEntryPublic, DeliveryPublic, ModelPublic, WebhookPublic
from reelforge.api.schemas.storage import AssetPublic, SignedRequestPublic, UploadPart, UploadPublic
from reelforge.services.results import has_asset_ids, with_urls


def job(j: Any, urls: dict[str, str] | None = None) -> JobPublic:
    return JobPublic.model_validate(job_fields(j, urls))


def job_fields(j: Any, urls: dict[str, str] | None = None) -> dict[str, Any]:
    """A job row as JobPublic's fields, in its field order: `job()` validates it, and read routes serialize it
    as is (`json()`), which gives the same bytes as JobPublic's own JSON serialization. With `urls` (signed
    result URLs by asset id) the outputs carry a `*asset_url` beside each `*asset_id` (services/results.py)."""
    return {
        "id": j.id, "kind": j.kind, "status": j.status, "input": j.input,
        "outputs": with_urls(j.outputs, urls) if urls else j.outputs,
        "error": {"code": j.error_code, "message": j.error_message} if j.error_code else None,
        "progress": {"fraction": round(j.progress or 0.0, 4), "message": j.progress_message or ""},
        "credits": j.credits, "credits_state": j.credits_state, "attempt": j.attempt,
        "max_attempts": j.max_attempts, "priority": j.priority, "cancel_requested": j.cancel_requested,
        "callback_url": j.callback_url, "idempotency_key": j.idempotency_key, "created_at": iso(j.created_at),
        "started_at": iso(j.started_at), "finished_at": iso(j.finished_at), "expires_at": iso(j.expires_at),
    }


def event_time(e: Any) -> float | None:
    """When a history event happened: the step runner's `at` (its events are buffered and written with the next
    checkpoint, so for a branch or a map item the row can be written long after the step ran), else the row's
    time (events the services write in the transaction that makes them true)."""
    at = (e.details or {}).get("at")
    return float(at) if isinstance(at, int | float) and not isinstance(at, bool) else e.ts


def event_details(e: Any) -> dict[str, Any]:
    """The event's details without the runner's `at`, which the event's `ts` carries."""
    details = e.details or {}
    return {k: v for k, v in details.items() if k != "at"} if "at" in details else dict(details)


def event(e: Any) -> JobEventPublic:
    return JobEventPublic(id=e.id, ts=iso(event_time(e)), recorded_at=iso(e.ts), type=e.type, path=e.path,
                          attempt=e.attempt, details=event_details(e))


def user(u: Any) -> UserPublic:
    return UserPublic(id=u.id, email=u.email, role=u.role, disabled=u.disabled, credits=u.credits,
                      created_at=iso(u.created_at))


def api_key(k: Any) -> ApiKeyPublic:
    return ApiKeyPublic(id=k.id, name=k.name, prefix=k.prefix, scopes=k.scopes, created_at=iso(k.created_at),
                        last_used_at=iso(k.last_used_at), revoked_at=iso(k.revoked_at))


def signed(r: Any) -> SignedRequestPublic:
    return SignedRequestPublic.model_validate(signed_fields(r))


def signed_fields(r: Any) -> dict[str, Any]:
    """SignedRequestPublic's fields, in its field order."""
    return {"url": r.url, "method": r.method, "headers": dict(r.headers),
            "expires_at": iso(r.expires_at) if r.expires_at else None}


def asset(a: Any, download: Any | None = None) -> AssetPublic:
    return AssetPublic.model_validate(asset_fields(a, download))


def asset_fields(a: Any, download: Any | None = None) -> dict[str, Any]:
    """An asset row (and its signed download) as AssetPublic's fields, in its field order."""
    return {"id": a.id, "content_type": a.content_type, "size": a.size, "sha256": a.sha256, "lifecycle": a.lifecycle,
            "filename": a.filename, "job_id": a.job_id, "metadata": a.meta or {}, "created_at": iso(a.created_at),
            "expires_at": iso(a.expires_at), "download": signed_fields(download) if download else None}


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


# An absolute file-system path inside a string: /srv/x, ~/x, C:\x. Not a URL (https://h/p), not a ratio
# ("GFLOP/s", "a / b"), not a relative name ("org/model").
_ABSOLUTE_PATH = re.compile(r"(?<![\w:/.~-])(?:~?/|[A-Za-z]:[\\/])[^\s'\"`,;()<>]+")
HIDDEN_PATH = "<local path>"


def _is_path(value: Any) -> bool:
    return isinstance(value, PurePath) or (isinstance(value, str) and bool(_ABSOLUTE_PATH.fullmatch(value.strip())))


def hide_paths(value: Any) -> Any:
    """`value` without the server's file-system paths: a value that is a path is dropped (from a mapping or a
    list), a path inside a text becomes "<local path>"."""
    if isinstance(value, Mapping):
        return {k: hide_paths(v) for k, v in value.items() if not _is_path(v)}
    if isinstance(value, (list, tuple)):
        return [hide_paths(v) for v in value if not _is_path(v)]
    if isinstance(value, str):
        return _ABSOLUTE_PATH.sub(HIDDEN_PATH, value)
    return value


def model(m: Any, *, admin: bool) -> ModelPublic:
    """A model's listing entry; where its weights live on the server is for admins only."""
    if admin:
        return ModelPublic.model_validate(m, from_attributes=True)
    return ModelPublic(name=m.name, task=m.task, description=hide_paths(m.description), available=m.available,
                       reason=hide_paths(m.reason), test_model=m.test_model,
                       source=None if _is_path(m.source) else hide_paths(m.source), details=hide_paths(m.details))


# --- pre-serialized answers ------------------------------------------------------------------------------------
# A route that returns a Response skips FastAPI's response validation and its second encoding (jsonable dict, then
# json.dumps); routes keep `response_model`, so the OpenAPI document still describes the body. The fields come from
# the functions above, which build exactly the schemas' fields, so validating them again would check nothing.
class JSONBytes(Response):
    """JSON that is already bytes (pydantic-core's serializer, which FastAPI itself uses for response models)."""

    media_type = "application/json"


def respond(content: Any, *, status_code: int = 200, headers: Mapping[str, str] | None = None) -> JSONBytes:
    """A schema instance, or a dict of a schema's fields, serialized once."""
    return JSONBytes(to_json(content), status_code=status_code, headers=headers)


def digest(*parts: bytes | str) -> str:
    """A short hex digest over the given parts."""
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        h.update(part if isinstance(part, bytes) else part.encode())
        h.update(b"\0")
    return h.hexdigest()


def etag_of(*parts: bytes | str) -> str:
    """A strong entity tag over the given parts (the body, or what determines it)."""
    return f'"{digest(*parts)}"'


def job_etag(j: Any, period: int, plain: bytes | None = None) -> str:
    """A job's ETag: over its fields without result URLs, and, when its outputs name assets, the URLs' signing
    period (so a client polling within one period gets 304s, and a fresh URL after it)."""
    body = plain if plain is not None else to_json(job_fields(j))
    return etag_of(body, str(period)) if has_asset_ids(j.outputs) else etag_of(body)


def matches(if_none_match: str | None, etag: str) -> bool:
    """Whether an If-None-Match header value names etag (a list, weak or strong, or *)."""
    if not if_none_match:
        return False
    for tag in if_none_match.split(","):
        tag = tag.strip()
        if tag == "*" or tag.removeprefix("W/") == etag:
            return True
    return False


def tagged(body: bytes, etag: str, if_none_match: str | None,
           headers: Mapping[str, str] | None = None) -> Response:
    """200 with the body and its ETag, or 304 without a body when the client's copy is current."""
    out = {"ETag": etag, "Cache-Control": "private, no-cache", **(headers or {})}
    if matches(if_none_match, etag):
        return Response(status_code=304, headers=out)
    return JSONBytes(body, headers=out)
