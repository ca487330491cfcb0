"""Persistence contracts: one repository per aggregate, the unit of work that holds them, and the store.

Services open a unit of work with `Store.tx()`: everything done through its repositories commits together
or not at all. Repositories return records (`reelforge.domain.records`), never database rows; a change is
a repository call, never an attribute assignment. Times are epoch seconds on the database clock:
`UnitOfWork.now()` is read once per transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from reelforge.domain.records import (
    AccountDeletion,
    Alarm,
    AlarmHistory,
    ApiKey,
    Asset,
    AuditEntry,
    Checkpoint,
    CreditEntry,
    Delivery,
    ExternalIdentity,
    Job,
    JobEvent,
    LoginThrottle,
    ModelInvocation,
    OutboxEvent,
    QueueSample,
    RefreshToken,
    Upload,
    User,
    Webhook,
    WebhookCircuit,
    Worker,
)
from reelforge.ports.mail import MailRepository


class DuplicateKey(Exception):
    """A unique constraint refused the insert (idempotency keys, emails)."""


class JobRepository(Protocol):
    """Jobs and the queue, their execution history and checkpoints."""

    def add_job(self, **values: Any) -> Job:
        """Insert one queued job (owner_id, kind, input, credits, ...); DuplicateKey on a reused idempotency key."""
        ...

    def add_jobs(self, values: Sequence[dict[str, Any]]) -> list[Job]:
        """Insert several queued jobs at once (one multi-row INSERT)."""
        ...

    def job(self, job_id: str, *, owner_id: str | None = None) -> Job | None:
        """One job (only owner_id's when given)."""
        ...

    def job_by_idempotency(self, owner_id: str, key: str) -> Job | None:
        """The owner's job submitted with this Idempotency-Key."""
        ...

    def free_jobs_since(self, owner_id: str, since: float, limit: int) -> list[float]:
        """Creation times of the owner's jobs that reserved no credits, created after `since`: the oldest `limit`."""
        ...

    def jobs(self, *, owner_id: str | None, status: str | None = None, kind: str | None = None,
             limit: int = 50, cursor: tuple[float, str] | None = None) -> list[Job]:
        """Newest first, after the (created_at, id) cursor; every owner's when owner_id is None."""
        ...

    def job_callbacks(self, job_ids: Sequence[str]) -> dict[str, str]:
        """{job id: callback_url} of those jobs that have one."""
        ...

    def notify_jobs(self) -> None:
        """Wake waiting workers at commit (a no-op where the engine has no notifications)."""
        ...

    def has_ready_job(self, kinds: Sequence[str] | None = None) -> bool:
        """Whether a queued job is due (a cheap read before a claim's write transaction)."""
        ...

    def claim_job(self, worker_id: str, lease_s: float, kinds: Sequence[str] | None = None) -> Job | None:
        """Take the most urgent ready job (priority desc, run_at, age): bump its attempt (the fencing token),
        lease it for lease_s on the database clock; None when nothing is due."""
        ...

    def claim_jobs(self, worker_id: str, lease_s: float, kinds: Sequence[str] | None = None,
                   limit: int = 1) -> list[Job]:
        """Take up to `limit` ready jobs in one statement (prefetch), in claim order; concurrent claimers never
        get the same job."""
        ...

    def renew_leases(self, worker_id: str, held: Sequence[tuple[str, int]], lease_s: float) -> dict[str, bool]:
        """Extend the leases of many (job id, attempt) pairs; returns {job id: cancel_requested} of those still
        held. A pair missing from the result lost its lease."""
        ...

    def fence(self, job_id: str, attempt: int, lease_s: float | None = None, **set_values: Any) -> Job:
        """Prove this attempt still holds the job (running, lease alive) and apply set_values in the same write;
        raises StaleLease otherwise, so a stale worker's writes roll back with the transaction."""
        ...

    def succeed_jobs(self, items: Sequence[tuple[str, int, Any]], *, ttl_s: float) -> dict[str, Job]:
        """Fenced success of many (job id, attempt, outputs) in one statement; records expire after ttl_s.
        Returns the jobs that passed, by id; a job missing from the result lost its lease and wrote nothing."""
        ...

    def set_credits_state(self, job_ids: Sequence[str], state: str) -> None:
        """Set credits_state (reserved, settled, refunded) of several jobs."""
        ...

    def update_job(self, job_id: str, **values: Any) -> None:
        """Set columns of one job (unfenced: callers have fenced or own the transition)."""
        ...

    def update_job_returning(self, job_id: str, **values: Any) -> Job:
        """update_job(), returning the job as written."""
        ...

    def set_job_status_if(self, job_id: str, expected: Sequence[str], **values: Any) -> bool:
        """Apply values only while the job's status is one of `expected`; True when it did."""
        ...

    def expired_leases(self, limit: int = 100) -> list[Job]:
        """Running jobs whose lease ran out on the database clock (locked for this transaction)."""
        ...

    def running_attempts(self) -> list[tuple[str, int]]:
        """(job id, attempt) of every running job."""
        ...

    def expire_leases_of(self, worker_ids: Sequence[str]) -> int:
        """End now the leases of the running jobs held by these (dead) workers; how many."""
        ...

    def cancel_requested(self, job_id: str, attempt: int) -> bool:
        """Whether the owner asked to cancel this attempt of a running job (one indexed read)."""
        ...

    def expired_jobs(self, limit: int = 500) -> list[Job]:
        """Ended jobs past their expiry (TTL)."""
        ...

    def delete_job(self, job_id: str) -> None:
        """Delete a job with its history and checkpoints."""
        ...

    def add_event(self, job_id: str, type_: str, *, path: str | None = None, attempt: int = 0,
                  details: dict[str, Any] | None = None) -> None:
        """Append one history event."""
        ...

    def add_events_bulk(self, rows: Sequence[dict[str, Any]]) -> None:
        """Append many history events (job_id, type, path, attempt, details each) in one INSERT."""
        ...

    def events(self, job_id: str, *, after: int = 0, limit: int = 1000) -> list[JobEvent]:
        """A job's history after event id `after`, oldest first."""
        ...

    def checkpoint(self, job_id: str, path: str) -> Checkpoint | None:
        """One step's checkpointed output."""
        ...

    def checkpoints(self, job_id: str) -> list[Checkpoint]:
        """Every checkpoint of a job."""
        ...

    def put_checkpoint(self, job_id: str, path: str, output: Any, attempt: int) -> None:
        """Write (or overwrite) one step's output."""
        ...

    def put_checkpoints(self, rows: Sequence[tuple[str, str, Any, int]]) -> None:
        """Write many (job_id, path, output, attempt) checkpoints in one statement."""
        ...


class AccountRepository(Protocol):
    """Users, API keys and refresh tokens."""

    def add_user(self, *, email: str, password_hash: str, role: str, webhook_secret: str) -> User:
        """Insert an account with no credits; DuplicateKey when the email is taken."""
        ...

    def user(self, user_id: str, *, lock: bool = False) -> User | None:
        """One account (row-locked for this transaction with lock, where the engine locks rows)."""
        ...

    def user_by_email(self, email: str) -> User | None:
        """The account with this (normalized) email."""
        ...

    def users(self, *, limit: int = 100, offset: int = 0) -> list[User]:
        """Accounts, oldest first."""
        ...

    def update_user(self, user_id: str, **values: Any) -> User | None:
        """Set an account's columns (role, disabled, ...); returns it as written, None when missing."""
        ...

    def admin_ids(self) -> list[str]:
        """Ids of the enabled admin accounts, oldest first."""
        ...

    def add_api_key(self, *, owner_id: str, name: str, prefix: str, key_hash: str,
                    scopes: list[str] | None = None) -> ApiKey:
        """Insert an API key (only its hash is kept), limited to `scopes` (None: full access)."""
        ...

    def api_key_by_prefix(self, prefix: str) -> ApiKey | None:
        """The key with this public prefix."""
        ...

    def api_keys(self, owner_id: str) -> list[ApiKey]:
        """An owner's keys, newest first."""
        ...

    def api_key(self, key_id: str) -> ApiKey | None:
        """One key."""
        ...

    def touch_api_key(self, key_id: str) -> None:
        """Set the key's last use to now."""
        ...

    def revoke_api_key(self, key_id: str) -> ApiKey | None:
        """Revoke a key (kept as it was if already revoked); returns it as written."""
        ...

    def add_refresh(self, *, user_id: str, token_hash: str, ttl_s: float,
                    family_id: str | None = None) -> RefreshToken:
        """Insert a refresh token that expires after ttl_s, in `family_id` (a new family when None)."""
        ...

    def take_refresh(self, token_hash: str) -> RefreshToken | None:
        """Revoke a live refresh token and return it (rotation); None when unknown, used or expired."""
        ...

    def refresh_by_hash(self, token_hash: str) -> RefreshToken | None:
        """The refresh token with this hash, live or not."""
        ...

    def revoke_refresh_family(self, family_id: str) -> int:
        """Revoke every live refresh token of a family; returns how many were live."""
        ...

    def webhook_secrets_without_prefix(self, prefix: str, *, limit: int = 500) -> list[tuple[str, str]]:
        """(user id, callback signing secret) of accounts whose stored secret does not start with `prefix`."""
        ...

    def set_webhook_secret(self, user_id: str, secret: str) -> None:
        """Store an account's callback signing secret (as given: sealed by the caller)."""
        ...

    def rotate_webhook_secret(self, user_id: str, secret: str, *, keep_previous_until: float | None) -> None:
        """Replace an account's callback secret; the replaced one stays until `keep_previous_until`."""
        ...

    def previous_webhook_secret(self, user_id: str) -> tuple[str | None, float | None]:
        """The account's callback secret before its last rotation (sealed) and until when it still signs."""
        ...

    def revoke_user_refresh(self, user_id: str) -> int:
        """Revoke every live refresh token of an account; returns how many were live."""
        ...

    def sessions(self, user_id: str) -> list[tuple[str, float, float, float]]:
        """(family id, started, last refreshed, expires) of the account's signed-in sessions (refresh-token
        families with a live token), most recently active first."""
        ...

    def session_live(self, user_id: str, family_id: str) -> bool:
        """Whether the account's refresh-token family still holds a live token."""
        ...

    def lock_login_throttle(self, key: str) -> LoginThrottle:
        """The throttle row of `key` (created empty when missing), locked until the transaction ends."""
        ...

    def set_login_throttle(self, key: str, *, failures: int, locked_until: float) -> None:
        """Record the failures in a row and the time sign-ins for `key` are refused until."""
        ...

    def clear_login_throttle(self, key: str) -> None:
        """Forget the failures of `key` (a successful sign-in)."""
        ...

    def prune_login_throttles(self, idle_before: float) -> int:
        """Delete throttle rows untouched since `idle_before` that lock nothing any more; returns how many."""
        ...


class CreditRepository(Protocol):
    """Account balances and the ledger."""

    def credit(self, account_id: str, amount: int, kind: str, *, job_id: str | None = None,
               note: str = "", require_balance: bool = False) -> CreditEntry:
        """Move credits by `amount` (negative spends) and write the ledger line in the same transaction.
        With require_balance a move below zero raises PaymentRequired; a missing account raises NotFound."""
        ...

    def balance(self, account_id: str) -> int:
        """An account's credits (0 when missing)."""
        ...

    def ledger(self, account_id: str, *, limit: int = 100, before: int | None = None) -> list[CreditEntry]:
        """An account's ledger, newest first, before ledger id `before`."""
        ...

    def job_ledger(self, job_id: str) -> list[CreditEntry]:
        """The ledger lines of one job, oldest first."""
        ...


class AssetRepository(Protocol):
    """Assets and uploads."""

    def add_asset(self, **values: Any) -> Asset:
        """Register a stored object (id generated unless given)."""
        ...

    def asset(self, asset_id: str, *, owner_id: str | None = None) -> Asset | None:
        """One asset (only owner_id's when given)."""
        ...

    def assets(self, *, owner_id: str, limit: int = 50, before: float | None = None,
               job_id: str | None = None) -> list[Asset]:
        """An owner's assets, newest first (created before `before`, of one job)."""
        ...

    def expired_assets(self, limit: int = 500) -> list[Asset]:
        """Assets past their expiry."""
        ...

    def temporary_assets_of_job(self, job_id: str) -> list[Asset]:
        """A job's temporary assets."""
        ...

    def delete_asset(self, asset_id: str) -> None:
        """Delete an asset's record (its object is the caller's business)."""
        ...

    def storage_used(self, owner_id: str | None = None) -> tuple[int, int]:
        """(assets, bytes) of one owner, or of everyone."""
        ...

    def add_upload(self, **values: Any) -> Upload:
        """Insert a pending upload."""
        ...

    def upload(self, upload_id: str, *, owner_id: str | None = None, lock: bool = False) -> Upload | None:
        """One upload (only owner_id's when given; row-locked with lock, where the engine locks rows)."""
        ...

    def upload_by_key(self, key: str) -> Upload | None:
        """The upload bound to an object key."""
        ...

    def update_upload(self, upload_id: str, *, status_was: str | None = None, **values: Any) -> bool:
        """Set an upload's columns (only while its status is status_was, when given); True when it did."""
        ...

    def expired_uploads(self, limit: int = 500) -> list[Upload]:
        """Pending uploads past their expiry."""
        ...


class EventRepository(Protocol):
    """Webhook subscriptions, the outbox and deliveries."""

    def add_webhook(self, **values: Any) -> Webhook:
        """Insert an active subscription."""
        ...

    def webhook(self, hook_id: str, *, owner_id: str | None = None) -> Webhook | None:
        """One subscription (only owner_id's when given)."""
        ...

    def webhooks(self, owner_id: str) -> list[Webhook]:
        """An owner's subscriptions, oldest first."""
        ...

    def webhook_secrets_without_prefix(self, prefix: str, *, limit: int = 500) -> list[tuple[str, str]]:
        """(webhook id, signing secret) of subscriptions whose stored secret does not start with `prefix`."""
        ...

    def set_webhook_secret(self, hook_id: str, secret: str) -> None:
        """Store a subscription's signing secret (as given: sealed by the caller)."""
        ...

    def rotate_webhook_secret(self, hook_id: str, secret: str, *, keep_previous_until: float | None) -> None:
        """Replace a subscription's secret (sealed by the caller); the replaced one stays as its previous secret
        until `keep_previous_until` (None: dropped at once)."""
        ...

    def count_webhooks(self, owner_id: str) -> int:
        """How many subscriptions an owner holds."""
        ...

    def delete_webhook(self, hook_id: str) -> None:
        """Delete a subscription."""
        ...

    def emit(self, type_: str, payload: dict[str, Any], *, owner_id: str | None = None,
             subject_id: str | None = None) -> OutboxEvent:
        """Write an event to the outbox inside the caller's transaction."""
        ...

    def emit_many(self, events: Sequence[tuple[str, dict[str, Any], str | None, str | None]]) -> None:
        """Many outbox events (type, payload, owner_id, subject_id) in one INSERT."""
        ...

    def undispatched(self, limit: int = 100) -> list[OutboxEvent]:
        """Outbox events not yet fanned out, oldest first (locked for this transaction)."""
        ...

    def events_after(self, seq: int, *, owner_id: str | None = None, limit: int = 100) -> list[OutboxEvent]:
        """Outbox events after sequence number `seq` (one owner's when given)."""
        ...

    def outbox_event(self, event_id: str) -> OutboxEvent | None:
        """One outbox event by its stable id."""
        ...

    def mark_dispatched(self, seqs: Sequence[int]) -> None:
        """Mark outbox events as fanned out."""
        ...

    def add_delivery(self, **values: Any) -> None:
        """A pending delivery of one event to one target; nothing when that pair exists."""
        ...

    def due_by_owner(self, limit: int, per_owner: int) -> list[Delivery]:
        """Due pending deliveries, at most `per_owner` of each owner (its oldest), interleaved by rank (every owner's
        oldest first), leaving out targets whose circuit breaker is open; not locked (see `claim_deliveries`)."""
        ...

    def claim_deliveries(self, delivery_ids: Sequence[str], until: float) -> set[str]:
        """Push the next attempt of those still pending and due to `until`; returns the ids this call claimed (rows
        another transaction holds are skipped), so two workers never send one delivery at once."""
        ...

    def circuits(self, hosts: Sequence[str]) -> dict[str, WebhookCircuit]:
        """The breakers of these targets that have a row (a target without one is closed)."""
        ...

    def all_circuits(self) -> list[WebhookCircuit]:
        """Every target's breaker row."""
        ...

    def claim_probe(self, host: str, until: float, threshold: int) -> bool:
        """Take the one probe of a half-open target (failures at the threshold, cool-down over): holds the breaker
        open until `until` for everybody else; False when it is not half-open or another worker took it."""
        ...

    def target_succeeded(self, host: str) -> None:
        """A 2xx from the target: its breaker closes (consecutive failures back to 0)."""
        ...

    def target_failed(self, host: str, threshold: int, cooldown_s: float) -> int:
        """One more consecutive failure of the target; at `threshold` or more its breaker opens for `cooldown_s`.
        Returns the failures counted so far."""
        ...

    def delivery(self, delivery_id: str) -> Delivery | None:
        """One delivery."""
        ...

    def deliveries(self, *, owner_id: str, webhook_id: str | None = None, limit: int = 50) -> list[Delivery]:
        """An owner's deliveries (of one subscription), newest first."""
        ...

    def update_delivery(self, delivery_id: str, **values: Any) -> None:
        """Set a delivery's columns (status, attempts, next_attempt_at, ...)."""
        ...


class AlarmRepository(Protocol):
    """Alarms, queue samples, model invocations, and the reads behind `/metrics` and the admin statistics."""

    def alarm(self, key: str) -> Alarm | None:
        """One alarm's current state."""
        ...

    def alarms(self, *, state: str | None = None) -> list[Alarm]:
        """Alarms (in one state), most recently changed first."""
        ...

    def save_alarm(self, key: str, **values: Any) -> Alarm:
        """Insert or update an alarm's state."""
        ...

    def add_alarm_history(self, **values: Any) -> None:
        """Append a raised/resolved line."""
        ...

    def alarm_history(self, since: float, limit: int = 100) -> list[AlarmHistory]:
        """Raised/resolved lines since `since`, newest first."""
        ...

    def add_queue_sample(self, *, queued: int, running: int, oldest_age_s: float) -> None:
        """Record the queue depth now."""
        ...

    def queue_samples(self, since: float, limit: int = 10_000) -> list[QueueSample]:
        """Queue-depth samples since `since`, oldest first."""
        ...

    def add_model_invocation(self, **values: Any) -> None:
        """Record one model adapter run."""
        ...

    def invocations_after(self, after: int, limit: int) -> list[ModelInvocation]:
        """Model runs after id `after`, oldest first."""
        ...

    def model_invocation_counts(self, since: float) -> list[tuple[str, str, int, int]]:
        """Per (task, model) since `since`: (task, model, runs, errors); cancellations count as neither."""
        ...

    def prune_observability(self, before: float) -> int:
        """Drop queue samples, model invocations and alarm history older than `before`; returns rows dropped."""
        ...

    def history_for_metrics(self, after: int, limit: int) -> list[tuple[Any, ...]]:
        """Step attempts and job ends after event id `after`, oldest first:
        (id, ts, type, path, details, kind, created_at, started_at)."""
        ...

    def ledger_for_metrics(self, after: int, limit: int) -> list[tuple[Any, ...]]:
        """Settle and refund lines after ledger id `after`: (id, created_at, kind, amount, job kind, job credits)."""
        ...

    def delivery_totals(self) -> list[tuple[str, int, int]]:
        """(status, deliveries, attempts) over every delivery."""
        ...

    def delivery_stats(self) -> list[tuple[str, int]]:
        """(status, deliveries) over every delivery."""
        ...

    def finished_counts(self, since: float) -> dict[str, int]:
        """Jobs that ended since `since`, by final status."""
        ...

    def queue_now(self) -> dict[str, float]:
        """queued, ready (queued and due), running, and the age of the oldest ready job (seconds due)."""
        ...

    def last_worker_heartbeat(self) -> float | None:
        """The newest heartbeat of a worker that has not stopped."""
        ...

    def queue_stats(self) -> list[tuple[str, str, int]]:
        """(kind, status, jobs) over every job."""
        ...

    def queue_by_kind(self) -> list[tuple[str, int, float, int]]:
        """(kind, ready jobs, seconds the oldest ready job has been due, running jobs) for every kind with queued or
        running jobs."""
        ...

    def oldest_queued_age(self) -> float:
        """Seconds since the oldest queued job was submitted (0 when none)."""
        ...

    def running_jobs(self, limit: int = 200) -> list[tuple[Job, float | None]]:
        """Running jobs with the seconds left on each lease (database clock), oldest claim first."""
        ...

    def ended_badly(self, limit: int = 50) -> list[Job]:
        """The most recent dead and failed jobs."""
        ...

    def jobs_per_hour(self, since: float) -> list[tuple[int, str, int]]:
        """(hour bucket, status, count) for jobs that ended since `since`."""
        ...

    def credits_settled_per_hour(self, since: float) -> list[tuple[int, int]]:
        """(hour bucket, credits) charged by jobs that succeeded (settled) since `since`."""
        ...

    def run_durations(self, since: float, limit: int = 100_000) -> list[tuple[str, float]]:
        """(kind, seconds from first claim to success) of jobs that succeeded since `since`, newest first."""
        ...


class OpsRepository(Protocol):
    """Schedules and worker heartbeats."""

    def try_schedule(self, name: str, interval_s: float, runner: str) -> bool:
        """True for exactly one caller per interval across every process: the row update is the lock."""
        ...

    def schedule_pending(self, name: str) -> bool:
        """True while a schedule's next run is still in the future: a read, so callers can skip
        `try_schedule`'s write transaction (on SQLite, the write lock) on every loop."""
        ...

    def worker_heartbeat(self, worker_id: str, *, hostname: str, pid: int, concurrency: int,
                         status: str = "running", call_url: str | None = None) -> None:
        """Register a worker or refresh its heartbeat, status and call server's URL (None: it serves no calls)."""
        ...

    def call_workers(self, fresh_s: float) -> list[Worker]:
        """Workers that answer interactive calls: running, with a call URL, and a heartbeat at most `fresh_s`
        old (database clock); ordered by id."""
        ...

    def mark_workers_lost(self, hostname: str, pid: int) -> list[str]:
        """Mark the registrations of the process `pid` on `hostname` (known dead) lost; their ids."""
        ...

    def workers(self) -> list[Worker]:
        """Every registered worker, newest heartbeat first."""
        ...


class AuditRepository(Protocol):
    """The audit trail: append-only entries, read newest first."""

    def add(self, *, action: str, actor_id: str | None, target_type: str | None, target_id: str | None,
            subject_id: str | None, ip: str | None, request_id: str | None, details: dict[str, Any]) -> AuditEntry:
        """Append one entry (time: the transaction's clock)."""
        ...

    def entries(self, *, actor_id: str | None = None, action: str | None = None, target_id: str | None = None,
                subject_id: str | None = None, since: float | None = None, until: float | None = None,
                before: tuple[float, str] | None = None, limit: int = 50) -> list[AuditEntry]:
        """Entries newest first (ts, id) after the cursor `before`; `action` matches itself and `action.*`."""
        ...

    def anonymize_subject(self, subject_id: str) -> int:
        """Clear the IP address and details of every entry about an account."""
        ...

    def prune(self, before: float) -> int:
        """Delete entries older than `before`."""
        ...


class AccountDataRepository(Protocol):
    """External identities, and an account's data as a whole: its export and its deletion."""

    def identity(self, issuer: str, subject: str) -> ExternalIdentity | None:
        """The identity an issuer's subject maps to."""
        ...

    def add_identity(self, *, issuer: str, subject: str, user_id: str, email: str | None) -> ExternalIdentity:
        """Map an issuer's subject to an account; DuplicateKey when it is mapped already."""
        ...

    def touch_identity(self, identity_id: str) -> None:
        """Note a sign-in of the identity."""
        ...

    def export_rows(self, table: str, owner_id: str, *, after: Any = None, limit: int = 500) -> list[dict[str, Any]]:
        """One page (by id, after `after`) of an account's rows of a core table, without hashes or secrets."""
        ...

    def deletion(self, user_id: str) -> AccountDeletion | None:
        """The account's deletion, if one was requested."""
        ...

    def add_deletion(self, user_id: str) -> AccountDeletion:
        """Record a deletion request; DuplicateKey when one exists."""
        ...

    def pending_deletions(self, limit: int = 20) -> list[AccountDeletion]:
        """Deletions not finished, oldest first."""
        ...

    def deletion_attempted(self, user_id: str, error: str | None) -> None:
        """Count an attempt to finish a deletion, with its error."""
        ...

    def finish_deletion(self, user_id: str) -> None:
        """Mark a deletion done."""
        ...

    def forget_credentials(self, user_id: str) -> None:
        """Delete the account's API keys, refresh tokens and external identities."""
        ...

    def owned_objects(self, owner_id: str, limit: int) -> list[tuple[str, str, str]]:
        """(kind "asset" or "upload", id, object key) of up to `limit` stored objects of the account."""
        ...

    def delete_objects_rows(self, items: Sequence[tuple[str, str]]) -> None:
        """Delete the (kind, id) asset and upload rows."""
        ...

    def delete_records(self, owner_id: str) -> dict[str, int]:
        """Delete the account's jobs (with their history), webhooks, deliveries and events; counts by kind."""
        ...

    def anonymize_ledger(self, account_id: str) -> int:
        """Clear the free text of the account's ledger lines (amounts, kinds, jobs and times stay)."""
        ...


class UnitOfWork(Protocol):
    """One transaction: its repositories and its clock."""

    @property
    def jobs(self) -> JobRepository: ...

    @property
    def accounts(self) -> AccountRepository: ...

    @property
    def credits(self) -> CreditRepository: ...

    @property
    def assets(self) -> AssetRepository: ...

    @property
    def events(self) -> EventRepository: ...

    @property
    def alarms(self) -> AlarmRepository: ...

    @property
    def ops(self) -> OpsRepository: ...

    @property
    def mail(self) -> MailRepository: ...

    @property
    def audit(self) -> AuditRepository: ...

    @property
    def account_data(self) -> AccountDataRepository: ...

    def now(self) -> float:
        """The database clock, read once per transaction."""
        ...


class AsyncReads(Protocol):
    """The reads routes make most, awaited on the event loop (one SELECT each, no transaction). Rows have
    attribute access like the records; `None` when there is no such row."""

    async def job(self, job_id: str) -> Any:
        """A job's public columns."""
        ...

    async def job_events(self, job_id: str, *, after: int = 0, limit: int = 500) -> list[Any]:
        """A job's history events with an id above `after` (the stream cursor), oldest first."""
        ...

    async def asset(self, asset_id: str) -> Any:
        """An asset's columns (its metadata as `meta`)."""
        ...

    async def jobs_page(self, owner_id: str, *, limit: int, status: str | None = None, kind: str | None = None,
                        before: tuple[float, str] | None = None) -> list[Any]:
        """The owner's jobs newest first (created_at, id), at most `limit`, after the cursor `before`."""
        ...

    async def owned_assets(self, owner_id: str, asset_ids: list[str]) -> list[Any]:
        """The owner's assets among these ids (id, key, filename, content_type), in one SELECT."""
        ...

    def owned_assets_now(self, owner_id: str, asset_ids: list[str]) -> list[Any]:
        """`owned_assets` for synchronous callers (a thread of the pool)."""
        ...

    async def all(self, stmt: Any, **params: Any) -> list[Any]:
        """The rows of a SQLAlchemy Core SELECT kept at module level (compiled once per statement; bound
        parameters by name). Applications read their own tables this way."""
        ...

    async def one(self, stmt: Any, **params: Any) -> Any:
        """The first row of such a SELECT, or None."""
        ...


class Store(Protocol):
    """Where records live: opens units of work."""

    @property
    def reads(self) -> AsyncReads:
        """Reads on the event loop."""
        ...

    @property
    def dialect(self) -> str:
        """The database engine's name (sqlite, postgresql)."""
        ...

    def tx(self, *, write: bool = True) -> AbstractContextManager[UnitOfWork]:
        """A transaction: commits when the block ends, rolls back on an exception. A unique constraint that
        refuses a write raises DuplicateKey. Read-only ones (write=False) take no write lock."""
        ...

    def now(self) -> float:
        """The database clock, outside any transaction."""
        ...
