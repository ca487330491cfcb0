"""The records repositories return: plain snapshots of one row each, the same type whatever query read them.

They are frozen: a change goes through a repository method, inside a transaction, never through an attribute.
Field order is the table's column order (the queue builds a claimed `Job` positionally from its row).
Times are epoch seconds read from the database clock.
"""

from __future__ import annotations

import base64
import secrets
import uuid
from dataclasses import dataclass
from typing import Any


def new_id() -> str:
    """A new random id (32 hex digits), for any record."""
    return uuid.uuid4().hex


def new_signing_secret() -> str:
    """A new webhook signing secret (256 random bits) in the Standard Webhooks form, `whsec_` and standard
    base64 of the key's bytes; stored sealed, shown to its owner."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


@dataclass(frozen=True, slots=True)
class User:
    id: str
    email: str
    password_hash: str
    role: str
    disabled: bool
    credits: int
    webhook_secret: str
    created_at: float
    updated_at: float


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    owner_id: str
    name: str
    prefix: str
    key_hash: str
    created_at: float
    last_used_at: float | None
    revoked_at: float | None
    scopes: list[str] | None = None  # None: full access


@dataclass(frozen=True, slots=True)
class RefreshToken:
    id: str
    user_id: str
    token_hash: str
    created_at: float
    expires_at: float
    revoked_at: float | None
    family_id: str


@dataclass(frozen=True, slots=True)
class LoginThrottle:
    key: str
    failures: int
    locked_until: float
    updated_at: float


@dataclass(frozen=True, slots=True)
class CreditEntry:
    id: int
    account_id: str
    job_id: str | None
    kind: str
    amount: int
    balance_after: int
    note: str
    created_at: float


@dataclass(frozen=True, slots=True)
class Job:
    id: str
    owner_id: str
    kind: str
    pipeline_version: int
    status: str
    priority: int
    input: dict[str, Any]
    input_hash: str
    outputs: dict[str, Any] | None
    error_code: str | None
    error_message: str | None
    progress: float
    progress_message: str
    credits: int
    credits_state: str
    attempt: int
    failures: int
    max_attempts: int
    worker_id: str | None
    lease_expires_at: float | None
    heartbeat_at: float | None
    run_at: float
    cancel_requested: bool
    idempotency_key: str | None
    callback_url: str | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    updated_at: float
    expires_at: float | None
    trace_context: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class JobEvent:
    """One line of a job's append-only execution history."""

    id: int
    job_id: str
    ts: float
    type: str
    path: str | None
    attempt: int
    details: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Checkpoint:
    job_id: str
    path: str
    output: Any
    attempt: int
    created_at: float


@dataclass(frozen=True, slots=True)
class Asset:
    id: str
    owner_id: str
    key: str
    content_type: str
    size: int
    sha256: str
    lifecycle: str
    filename: str | None
    job_id: str | None
    meta: dict[str, Any]
    created_at: float
    expires_at: float | None


@dataclass(frozen=True, slots=True)
class Upload:
    id: str
    owner_id: str
    key: str
    content_type: str
    filename: str | None
    max_size: int
    declared_size: int | None
    sha256: str | None
    lifecycle: str
    status: str
    multipart_id: str | None
    part_size: int | None
    parts_count: int | None
    asset_id: str | None
    created_at: float
    expires_at: float


@dataclass(frozen=True, slots=True)
class Webhook:
    id: str
    owner_id: str
    url: str
    secret: str
    event_types: list[Any]
    description: str
    active: bool
    created_at: float
    # The secret a rotation replaced (sealed), still signing deliveries until previous_secret_until.
    previous_secret: str | None = None
    previous_secret_until: float | None = None


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    """A fact written in the transaction that made it true; `id` is the stable id deliveries carry."""

    seq: int
    id: str
    type: str
    owner_id: str | None
    subject_id: str | None
    payload: dict[str, Any]
    created_at: float
    dispatched_at: float | None


@dataclass(frozen=True, slots=True)
class Delivery:
    id: str
    event_id: str
    owner_id: str
    webhook_id: str | None
    target: str
    url: str
    status: str
    attempts: int
    next_attempt_at: float
    last_status_code: int | None
    last_error: str | None
    delivered_at: float | None
    created_at: float
    host: str | None = None


@dataclass(frozen=True, slots=True)
class WebhookCircuit:
    """A webhook target's breaker: open while `open_until` is ahead; half-open (one probe) once it has passed
    with `failures` still at the threshold."""

    host: str
    failures: int
    open_until: float | None
    updated_at: float


@dataclass(frozen=True, slots=True)
class Worker:
    id: str
    hostname: str
    pid: int
    concurrency: int
    status: str
    started_at: float
    heartbeat_at: float
    call_url: str | None = None  # where it answers interactive calls; None: it serves none


@dataclass(frozen=True, slots=True)
class Alarm:
    key: str
    rule: str
    state: str
    value: float | None
    threshold: float
    message: str
    details: dict[str, Any]
    changed_at: float
    raised_at: float | None
    resolved_at: float | None
    evaluated_at: float


@dataclass(frozen=True, slots=True)
class AlarmHistory:
    id: int
    key: str
    rule: str
    event: str
    value: float | None
    threshold: float
    message: str
    ts: float


@dataclass(frozen=True, slots=True)
class QueueSample:
    id: int
    ts: float
    queued: int
    running: int
    oldest_age_s: float


@dataclass(frozen=True, slots=True)
class ModelInvocation:
    id: int
    ts: float
    task: str
    model: str
    job_id: str | None
    worker_id: str | None
    ok: bool
    error: str | None
    seconds: float
    load_s: float | None
    unit: str | None
    units: float


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One line of the audit trail."""

    id: str
    ts: float
    action: str
    actor_id: str | None
    target_type: str | None
    target_id: str | None
    subject_id: str | None
    ip: str | None
    request_id: str | None
    details: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ExternalIdentity:
    id: str
    issuer: str
    subject: str
    user_id: str
    email: str | None
    created_at: float
    last_seen_at: float


@dataclass(frozen=True, slots=True)
class AccountDeletion:
    user_id: str
    requested_at: float
    finished_at: float | None
    attempts: int
    last_error: str | None
