"""SQL for every use case. Services open a transaction with `Store.tx()` and call these methods on it."""

from __future__ import annotations

import functools
import json
import uuid
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

from sqlalchemy import Integer, and_, case, cast, delete, func, or_, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from reelforge import errors
from reelforge.adapters.db.engine import EPOCH_SQL_PG, EPOCH_SQL_SQLITE, Database, db_epoch
from reelforge.adapters.db.models import (
    Alarm,
    AlarmHistory,
    ApiKey,
    Asset,
    Checkpoint,
    CreditEntry,
    Delivery,
    Job,
    JobEvent,
    ModelInvocation,
    OutboxEvent,
    QueueSample,
    RefreshToken,
    Schedule,
    Upload,
    User,
    Webhook,
    Worker,
)

__all__ = [
    "Alarm",
    "AlarmHistory",
    "ApiKey",
    "Asset",
    "CreditEntry",
    "Delivery",
    "DuplicateKey",
    "Job",
    "JobEvent",
    "ModelInvocation",
    "OutboxEvent",
    "QueueSample",
    "RefreshToken",
    "Store",
    "Tx",
    "Upload",
    "User",
    "Webhook",
    "Worker",
    "new_id",
]

# Job history events the metrics read: step attempts (with duration_s) and a job's terminal transition.
STEP_EVENTS = ("TaskSucceeded", "TaskFailed")
END_EVENTS = ("JobSucceeded", "JobFailed", "JobDead", "JobCancelled")

TERMINAL = ("succeeded", "failed", "cancelled", "dead")


_JSON_COLUMNS = frozenset({"details", "payload", "output", "outputs"})
_ROWS_PER_STATEMENT = 500  # well under SQLite's 32766 bound parameters per statement


@functools.lru_cache(maxsize=512)
def _values_sql(columns: tuple[str, ...], n: int, pg: bool) -> str:
    """`(?, ?), (?, ?)` for n rows (`%s` on PostgreSQL, with a jsonb cast on JSON columns)."""
    if pg:
        one = "(" + ", ".join("CAST(%s AS JSONB)" if c in _JSON_COLUMNS else "%s" for c in columns) + ")"
    else:
        one = "(" + ", ".join("?" for _ in columns) + ")"
    return ", ".join([one] * n)


@functools.lru_cache(maxsize=64)
def _claim_sql(pg: bool, n_kinds: int) -> str:
    """The claim statement (Tx.claim_jobs) for a dialect; parameters: kinds..., limit, worker id, lease seconds."""
    ph = "%s" if pg else "?"
    clock = EPOCH_SQL_PG if pg else EPOCH_SQL_SQLITE
    kinds = f" AND kind IN ({', '.join([ph] * n_kinds)})" if n_kinds else ""
    # PostgreSQL: a MATERIALIZED CTE runs the locking SELECT once (a plain IN (subquery) can be re-scanned by the
    # planner and take more than `limit` rows). SQLite has one writer: the transaction's lock is the lock.
    lock, mat = (" FOR UPDATE SKIP LOCKED", "MATERIALIZED ") if pg else ("", "")
    cols = ", ".join(f"jobs.{c.name}" for c in Job.__table__.c)
    return (f"WITH picked AS {mat}(SELECT id FROM jobs WHERE status = 'queued' AND run_at <= {clock}{kinds} "
            f"ORDER BY priority DESC, run_at, created_at LIMIT {ph}{lock}), clock AS {mat}(SELECT {clock} AS now) "
            f"UPDATE jobs SET status = 'running', attempt = jobs.attempt + 1, worker_id = {ph}, "
            f"lease_expires_at = clock.now + {ph}, heartbeat_at = clock.now, "
            f"started_at = COALESCE(jobs.started_at, clock.now), updated_at = clock.now "
            f"FROM picked, clock WHERE jobs.id = picked.id AND jobs.status = 'queued' RETURNING {cols}")


def new_id() -> str:
    return uuid.uuid4().hex


class DuplicateKey(Exception):
    """A unique constraint refused the insert (idempotency keys, emails)."""


class Store:
    def __init__(self, db: Database) -> None:
        self.db = db

    @contextmanager
    def tx(self, *, write: bool = True) -> Iterator[Tx]:
        try:
            with self.db.tx(write=write) as session:
                yield Tx(session, self.db.is_postgres)
        except IntegrityError as exc:
            raise DuplicateKey(str(exc.orig)) from exc

    def now(self) -> float:
        return self.db.now()


class Tx:
    """One transaction. Returned ORM rows are plain records: read their attributes, never rely on lazy loads."""

    def __init__(self, session: Session, postgres: bool) -> None:
        self.s = session
        self.pg = postgres
        self._now: float | None = None

    def now(self) -> float:
        # one clock reading per transaction (like PostgreSQL's now()), not one round trip per call.
        if self._now is None:
            self._now = float(self.s.execute(db_epoch().select()).scalar_one())
        return self._now

    def flush(self) -> None:
        try:
            self.s.flush()
        except IntegrityError as exc:
            raise DuplicateKey(str(exc.orig)) from exc

    # --- users -------------------------------------------------------------------------------
    def add_user(self, *, email: str, password_hash: str, role: str, webhook_secret: str) -> User:
        now = self.now()
        user = User(id=new_id(), email=email, password_hash=password_hash, role=role, disabled=False,
                    credits=0, webhook_secret=webhook_secret, created_at=now, updated_at=now)
        self.s.add(user)
        self.flush()
        return user

    def user(self, user_id: str, *, lock: bool = False) -> User | None:
        q = select(User).where(User.id == user_id)
        if lock and self.pg:
            q = q.with_for_update()
        return self.s.execute(q).scalar_one_or_none()

    def user_by_email(self, email: str) -> User | None:
        return self.s.execute(select(User).where(User.email == email)).scalar_one_or_none()

    def users(self, *, limit: int = 100, offset: int = 0) -> Sequence[User]:
        return self.s.execute(select(User).order_by(User.created_at).limit(limit).offset(offset)).scalars().all()

    def count_users(self) -> int:
        return int(self.s.execute(select(func.count()).select_from(User)).scalar_one())

    def update_user(self, user: User, **values: Any) -> None:
        for k, v in values.items():
            setattr(user, k, v)
        user.updated_at = self.now()

    # --- api keys and refresh tokens ------------------------------------------------------------
    def add_api_key(self, *, owner_id: str, name: str, prefix: str, key_hash: str) -> ApiKey:
        key = ApiKey(id=new_id(), owner_id=owner_id, name=name, prefix=prefix, key_hash=key_hash,
                     created_at=self.now())
        self.s.add(key)
        self.flush()
        return key

    def api_key_by_prefix(self, prefix: str) -> ApiKey | None:
        return self.s.execute(select(ApiKey).where(ApiKey.prefix == prefix)).scalar_one_or_none()

    def api_keys(self, owner_id: str) -> Sequence[ApiKey]:
        return self.s.execute(
            select(ApiKey).where(ApiKey.owner_id == owner_id).order_by(ApiKey.created_at.desc())
        ).scalars().all()

    def api_key(self, key_id: str) -> ApiKey | None:
        return self.s.get(ApiKey, key_id)

    def touch_api_key(self, key_id: str) -> None:
        self.s.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=db_epoch()))

    def add_refresh(self, *, user_id: str, token_hash: str, ttl_s: float) -> RefreshToken:
        now = self.now()
        tok = RefreshToken(id=new_id(), user_id=user_id, token_hash=token_hash, created_at=now,
                           expires_at=now + ttl_s)
        self.s.add(tok)
        self.flush()
        return tok

    def take_refresh(self, token_hash: str) -> RefreshToken | None:
        """Revoke a live refresh token and return it (rotation); None when unknown, used or expired."""
        now = self.now()
        res = self.s.execute(
            update(RefreshToken)
            .where(RefreshToken.token_hash == token_hash, RefreshToken.revoked_at.is_(None),
                   RefreshToken.expires_at > now)
            .values(revoked_at=now)
        )
        if res.rowcount != 1:  # type: ignore[attr-defined]
            return None
        return self.s.execute(select(RefreshToken).where(RefreshToken.token_hash == token_hash)).scalar_one()

    # --- credits ------------------------------------------------------------------------------
    def credit(self, account_id: str, amount: int, kind: str, *, job_id: str | None = None,
               note: str = "", require_balance: bool = False) -> CreditEntry:
        """Move credits by `amount` (negative spends) and write the ledger line in the same transaction."""
        res = self.s.execute(
            update(User).where(
                User.id == account_id, *( [User.credits + amount >= 0] if require_balance else [] )
            ).values(credits=User.credits + amount).returning(User.credits)
        )
        row = res.first()
        if row is None:
            if require_balance:
                raise errors.PaymentRequired(
                    "Not enough credits for this job", needed=-amount, balance=self.balance(account_id)
                )
            raise errors.NotFound("Account not found")
        entry = CreditEntry(account_id=account_id, job_id=job_id, kind=kind, amount=amount,
                            balance_after=int(row[0]), note=note, created_at=self.now())
        self.s.add(entry)
        self.flush()
        return entry

    def balance(self, account_id: str) -> int:
        return int(self.s.execute(select(User.credits).where(User.id == account_id)).scalar_one_or_none() or 0)

    def ledger(self, account_id: str, *, limit: int = 100, before: int | None = None) -> Sequence[CreditEntry]:
        q = select(CreditEntry).where(CreditEntry.account_id == account_id)
        if before is not None:
            q = q.where(CreditEntry.id < before)
        return self.s.execute(q.order_by(CreditEntry.id.desc()).limit(limit)).scalars().all()

    def job_ledger(self, job_id: str) -> Sequence[CreditEntry]:
        return self.s.execute(
            select(CreditEntry).where(CreditEntry.job_id == job_id).order_by(CreditEntry.id)
        ).scalars().all()

    # --- jobs ---------------------------------------------------------------------------------
    def add_job(self, **values: Any) -> Job:
        now = self.now()
        job = Job(id=new_id(), status="queued", created_at=now, updated_at=now, run_at=now, attempt=0,
                  failures=0, progress=0.0, progress_message="", cancel_requested=False, **values)
        self.s.add(job)
        self.flush()
        return job

    def add_jobs(self, values: Sequence[dict[str, Any]]) -> list[Job]:
        """Several queued jobs, flushed together (one multi-row INSERT)."""
        now = self.now()
        jobs = [Job(id=new_id(), status="queued", created_at=now, updated_at=now, run_at=now, attempt=0,
                    failures=0, progress=0.0, progress_message="", cancel_requested=False, **v) for v in values]
        self.s.add_all(jobs)
        self.flush()
        return jobs

    def job(self, job_id: str, *, owner_id: str | None = None) -> Job | None:
        q = select(Job).where(Job.id == job_id)
        if owner_id is not None:
            q = q.where(Job.owner_id == owner_id)
        return self.s.execute(q).scalar_one_or_none()

    def job_by_idempotency(self, owner_id: str, key: str) -> Job | None:
        return self.s.execute(
            select(Job).where(Job.owner_id == owner_id, Job.idempotency_key == key)
        ).scalar_one_or_none()

    def jobs(self, *, owner_id: str | None, status: str | None = None, kind: str | None = None,
             limit: int = 50, cursor: tuple[float, str] | None = None) -> Sequence[Job]:
        q = select(Job)
        if owner_id is not None:
            q = q.where(Job.owner_id == owner_id)
        if status:
            q = q.where(Job.status == status)
        if kind:
            q = q.where(Job.kind == kind)
        if cursor:
            created, jid = cursor
            q = q.where(or_(Job.created_at < created, and_(Job.created_at == created, Job.id < jid)))
        return self.s.execute(q.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit)).scalars().all()

    def claim_job(self, worker_id: str, lease_s: float, kinds: Sequence[str] | None = None) -> Any | None:
        """Take the most urgent ready job: status queued, run_at due. Bumps the attempt (fencing token)."""
        jobs = self.claim_jobs(worker_id, lease_s, kinds, 1)
        return jobs[0] if jobs else None

    def claim_jobs(self, worker_id: str, lease_s: float, kinds: Sequence[str] | None = None,
                   limit: int = 1) -> list[Any]:
        """Take up to `limit` ready jobs in one statement (prefetch), most urgent first.

        `WITH picked AS (SELECT ... ORDER BY priority DESC, run_at, created_at LIMIT k FOR UPDATE SKIP LOCKED)
        UPDATE jobs ... FROM picked RETURNING`: concurrent claimers never get the same job. Every claimed job's
        attempt is bumped (its fencing token) and its lease starts at one reading of the database clock taken in
        the statement (no separate round trip for it). Returned in claim order (priority, run_at, created_at), as
        records with every column of the job (attribute access like `Job`).
        """
        params: list[Any] = [*(kinds or ()), max(1, int(limit)), worker_id, float(lease_s)]
        res = self.s.connection().exec_driver_sql(_claim_sql(self.pg, len(kinds or ())), tuple(params))
        description = res.cursor.description
        raw = res.fetchall()
        if not raw:
            return []
        shape = _job_rows(self.s.get_bind())
        procs = shape.processors(description)
        jobs = [shape.row(r, procs) for r in raw]
        if self._now is None:
            self._now = float(jobs[0].heartbeat_at)  # this statement's clock reading: the transaction's now()
        jobs.sort(key=lambda j: (-j.priority, j.run_at, j.created_at))
        return jobs

    def renew_leases(self, worker_id: str, held: Sequence[tuple[str, int]], lease_s: float) -> dict[str, bool]:
        """Extend the leases of many held jobs in one UPDATE; returns {job id: cancel_requested} of those still held.

        A (job id, attempt) pair missing from the result lost its lease (another attempt took it, or it ended).
        """
        if not held:
            return {}
        now = self.now()
        ids = [jid for jid, _ in held]
        rows = self.s.execute(
            update(Job).where(Job.id.in_(ids), Job.worker_id == worker_id, Job.status == "running",
                              Job.lease_expires_at >= now)
            .values(lease_expires_at=now + lease_s, heartbeat_at=now)
            .returning(Job.id, Job.attempt, Job.cancel_requested),
        ).all()
        attempts = dict(held)
        return {str(r[0]): bool(r[2]) for r in rows if attempts.get(r[0]) == r[1]}

    def add_events_bulk(self, rows: Sequence[dict[str, Any]]) -> None:
        """Many history rows in one multi-row INSERT.

        Each row: job_id, type, path, attempt, details; ts is this transaction's clock.
        """
        if not rows:
            return
        now = self.now()
        self._insert_many("job_events", ("job_id", "ts", "type", "path", "attempt", "details"),
                          [(r["job_id"], now, r["type"], r.get("path"), r.get("attempt", 0), r.get("details") or {})
                           for r in rows])

    def emit_many(self, events: Sequence[tuple[str, dict[str, Any], str | None, str | None]]) -> None:
        """Many outbox events (type, payload, owner_id, subject_id) in one INSERT, inside the caller's transaction."""
        if not events:
            return
        now = self.now()
        self._insert_many("outbox", ("id", "type", "payload", "owner_id", "subject_id", "created_at"),
                          [(new_id(), t, payload, owner, subject, now) for t, payload, owner, subject in events])

    def put_checkpoints(self, rows: Sequence[tuple[str, str, Any, int]]) -> None:
        """Many checkpoints (job_id, path, output, attempt) in one INSERT ... ON CONFLICT DO UPDATE."""
        if not rows:
            return
        now = self.now()
        self._insert_many("checkpoints", ("job_id", "path", "output", "attempt", "created_at"),
                          [(j, p, out, a, now) for j, p, out, a in rows],
                          suffix=" ON CONFLICT (job_id, path) DO UPDATE SET output = excluded.output, "
                                 "attempt = excluded.attempt")

    # --- set-based writes of the worker's hot path --------------------------------------------------------------
    # The batched finisher and the history/outbox/checkpoint INSERTs run once per job. Built through SQLAlchemy
    # (a multi-row `insert().values([...])`, an UPDATE per job inside its own SAVEPOINT) they cost more worker CPU
    # than everything else a no-op job does; as plain SQL on the session's connection they are one statement
    # each, whatever the batch size (docs/benchmarks.md, "Queue throughput"). JSON values are serialized as the
    # JSON column type does (json.dumps) and cast to jsonb on PostgreSQL.
    def _insert_many(self, table: str, columns: tuple[str, ...], rows: Sequence[tuple[Any, ...]],
                     suffix: str = "") -> None:
        json_at = [i for i, c in enumerate(columns) if c in _JSON_COLUMNS]
        self.s.flush()  # ORM objects added earlier in this transaction go first (foreign keys, order)
        conn = self.s.connection()
        for start in range(0, len(rows), _ROWS_PER_STATEMENT):
            chunk = rows[start:start + _ROWS_PER_STATEMENT]
            params: list[Any] = []
            for row in chunk:
                values = list(row)
                for i in json_at:
                    values[i] = json.dumps(values[i])
                params.extend(values)
            conn.exec_driver_sql(
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
                f"{_values_sql(columns, len(chunk), self.pg)}{suffix}", tuple(params))

    def succeed_jobs(self, items: Sequence[tuple[str, int, Any]], *, ttl_s: float) -> dict[str, SimpleNamespace]:
        """Fenced success of many jobs in one UPDATE: (job id, attempt, outputs) each; records expire after ttl_s.

        The fence is the one `fence()` applies (same attempt, running, lease alive), in the WHERE clause of a
        single `UPDATE jobs ... FROM (VALUES ...)`. Returns the jobs that passed, by id (id, owner_id, kind,
        credits, credits_state, attempt, created_at, plus the new status, outputs and finished_at); a job missing
        from the result lost its lease and nothing of it was written. The statement reads the database clock
        itself when this transaction has not yet (and that reading becomes the transaction's now()).
        """
        if not items:
            return {}
        ph = "%s" if self.pg else "?"
        mat = "MATERIALIZED " if self.pg else ""
        out_expr = "CAST(v.outputs AS JSONB)" if self.pg else "v.outputs"
        done: dict[str, SimpleNamespace] = {}
        outputs = {job_id: out for job_id, _, out in items}
        conn = self.s.connection()
        for start in range(0, len(items), _ROWS_PER_STATEMENT):
            chunk = items[start:start + _ROWS_PER_STATEMENT]
            params: list[Any] = []
            if self._now is None:
                clock = EPOCH_SQL_PG if self.pg else EPOCH_SQL_SQLITE
            else:
                clock = f"CAST({ph} AS DOUBLE PRECISION)" if self.pg else f"CAST({ph} AS REAL)"
                params.append(self._now)
            for job_id, attempt, out in chunk:
                params += [job_id, attempt, json.dumps(out)]
            params.append(float(ttl_s))
            rows = conn.exec_driver_sql(
                f"WITH clock AS {mat}(SELECT {clock} AS now), v(id, attempt, outputs) AS "
                f"(VALUES {_values_sql(('id', 'attempt', 'o'), len(chunk), self.pg)}) "
                f"UPDATE jobs SET status = 'succeeded', finished_at = clock.now, expires_at = clock.now + {ph}, "
                f"lease_expires_at = NULL, heartbeat_at = clock.now, updated_at = clock.now, outputs = {out_expr}, "
                "progress = 1.0, error_code = NULL, error_message = NULL "
                "FROM v, clock WHERE jobs.id = v.id AND jobs.attempt = v.attempt AND jobs.status = 'running' "
                "AND jobs.lease_expires_at >= clock.now "
                "RETURNING jobs.id, jobs.owner_id, jobs.kind, jobs.credits, jobs.credits_state, jobs.attempt, "
                "jobs.created_at, jobs.finished_at", tuple(params)).all()
            for r in rows:
                if self._now is None:
                    self._now = float(r[7])
                done[r[0]] = SimpleNamespace(
                    id=r[0], owner_id=r[1], kind=r[2], credits=int(r[3]), credits_state=r[4], attempt=int(r[5]),
                    created_at=float(r[6]), status="succeeded", outputs=outputs[r[0]], finished_at=float(r[7]),
                    error_code=None, error_message=None)
        return done

    def set_credits_state(self, job_ids: Sequence[str], state: str) -> None:
        if job_ids:
            self.s.execute(update(Job).where(Job.id.in_(list(job_ids))).values(credits_state=state,
                                                                               updated_at=self.now()))

    def has_ready_job(self, kinds: Sequence[str] | None = None) -> bool:
        q = select(Job.id).where(Job.status == "queued", Job.run_at <= db_epoch())
        if kinds:
            q = q.where(Job.kind.in_(list(kinds)))
        return self.s.execute(q.limit(1)).first() is not None

    def expired_leases(self, limit: int = 100) -> Sequence[Job]:
        q = select(Job).where(Job.status == "running", Job.lease_expires_at < db_epoch()).limit(limit)
        if self.pg:
            q = q.with_for_update(skip_locked=True)
        return self.s.execute(q).scalars().all()

    def fence(self, job_id: str, attempt: int, lease_s: float | None = None, **set_values: Any) -> Job:
        """Prove this worker still holds the job (same attempt, running, lease alive) and lock its row.

        Every worker write goes through here first, inside the same transaction, so a stale worker's late
        write is refused (StaleLease) and rolled back with everything else it tried to write.
        """
        now = self.now()
        values: dict[str, Any] = {"heartbeat_at": now, "updated_at": now}
        if lease_s is not None:
            values["lease_expires_at"] = now + lease_s
        values.update(set_values)  # a transition in the fencing UPDATE itself
        # UPDATE ... RETURNING instead of UPDATE, expire_all, SELECT.
        job = self.s.execute(
            update(Job).where(Job.id == job_id, Job.attempt == attempt, Job.status == "running",
                              Job.lease_expires_at >= now).values(**values).returning(Job),
            execution_options={"synchronize_session": False, "populate_existing": True},
        ).scalar_one_or_none()
        if job is None:
            raise errors.StaleLease(f"job {job_id} attempt {attempt} no longer holds its lease")
        return job

    def job_callbacks(self, job_ids: Sequence[str]) -> dict[str, str]:
        rows = self.s.execute(select(Job.id, Job.callback_url).where(Job.id.in_(list(job_ids)),
                                                                   Job.callback_url.is_not(None))).all()
        return {r[0]: str(r[1]) for r in rows}

    def update_job(self, job_id: str, **values: Any) -> None:
        values.setdefault("updated_at", self.now())
        self.s.execute(update(Job).where(Job.id == job_id).values(**values))
        self.s.expire_all()

    def update_job_returning(self, job_id: str, **values: Any) -> Job:
        values.setdefault("updated_at", self.now())
        return self.s.execute(
            update(Job).where(Job.id == job_id).values(**values).returning(Job),
            execution_options={"synchronize_session": False, "populate_existing": True},
        ).scalar_one()

    def set_job_status_if(self, job_id: str, expected: Sequence[str], **values: Any) -> bool:
        values.setdefault("updated_at", self.now())
        res = self.s.execute(update(Job).where(Job.id == job_id, Job.status.in_(list(expected))).values(**values))
        self.s.expire_all()
        return bool(res.rowcount == 1)  # type: ignore[attr-defined]

    def queue_stats(self) -> list[tuple[str, str, int]]:
        rows = self.s.execute(select(Job.kind, Job.status, func.count()).group_by(Job.kind, Job.status)).all()
        return [(r[0], r[1], int(r[2])) for r in rows]

    def oldest_queued_age(self) -> float:
        oldest = self.s.execute(select(func.min(Job.created_at)).where(Job.status == "queued")).scalar_one()
        return max(0.0, self.now() - float(oldest)) if oldest is not None else 0.0

    def expired_jobs(self, limit: int = 500) -> Sequence[Job]:
        return self.s.execute(
            select(Job).where(Job.status.in_(TERMINAL), Job.expires_at.is_not(None),
                              Job.expires_at < db_epoch()).limit(limit)
        ).scalars().all()

    def delete_job(self, job_id: str) -> None:
        self.s.execute(delete(JobEvent).where(JobEvent.job_id == job_id))
        self.s.execute(delete(Checkpoint).where(Checkpoint.job_id == job_id))
        self.s.execute(delete(Job).where(Job.id == job_id))

    # --- history and checkpoints ------------------------------------------------------------
    def add_event(self, job_id: str, type_: str, *, path: str | None = None, attempt: int = 0,
                  details: dict[str, Any] | None = None) -> None:
        self.s.add(JobEvent(job_id=job_id, ts=self.now(), type=type_, path=path, attempt=attempt,
                            details=details or {}))

    def events(self, job_id: str, *, after: int = 0, limit: int = 1000) -> Sequence[JobEvent]:
        return self.s.execute(
            select(JobEvent).where(JobEvent.job_id == job_id, JobEvent.id > after).order_by(JobEvent.id).limit(limit)
        ).scalars().all()

    def checkpoint(self, job_id: str, path: str) -> Checkpoint | None:
        return self.s.get(Checkpoint, (job_id, path))

    def checkpoints(self, job_id: str) -> Sequence[Checkpoint]:
        return self.s.execute(select(Checkpoint).where(Checkpoint.job_id == job_id)).scalars().all()

    def put_checkpoint(self, job_id: str, path: str, output: Any, attempt: int) -> None:
        # one INSERT ... ON CONFLICT DO UPDATE instead of SELECT + INSERT/UPDATE.
        from sqlalchemy.dialects import postgresql, sqlite

        dialect_insert: Any = postgresql.insert if self.pg else sqlite.insert
        self.s.flush()
        stmt = dialect_insert(Checkpoint).values(job_id=job_id, path=path, output=output, attempt=attempt,
                                                 created_at=self.now())
        stmt = stmt.on_conflict_do_update(index_elements=[Checkpoint.job_id, Checkpoint.path],
                                          set_={"output": stmt.excluded.output, "attempt": stmt.excluded.attempt})
        self.s.execute(stmt)

    # --- assets and uploads ---------------------------------------------------------------------
    def add_asset(self, **values: Any) -> Asset:
        values.setdefault("id", new_id())
        asset = Asset(created_at=self.now(), **values)
        self.s.add(asset)
        self.flush()
        return asset

    def asset(self, asset_id: str, *, owner_id: str | None = None) -> Asset | None:
        q = select(Asset).where(Asset.id == asset_id)
        if owner_id is not None:
            q = q.where(Asset.owner_id == owner_id)
        return self.s.execute(q).scalar_one_or_none()

    def assets(self, *, owner_id: str, limit: int = 50, before: float | None = None,
               job_id: str | None = None) -> Sequence[Asset]:
        q = select(Asset).where(Asset.owner_id == owner_id)
        if before is not None:
            q = q.where(Asset.created_at < before)
        if job_id:
            q = q.where(Asset.job_id == job_id)
        return self.s.execute(q.order_by(Asset.created_at.desc()).limit(limit)).scalars().all()

    def expired_assets(self, limit: int = 500) -> Sequence[Asset]:
        return self.s.execute(
            select(Asset).where(Asset.expires_at.is_not(None), Asset.expires_at < db_epoch()).limit(limit)
        ).scalars().all()

    def temporary_assets_of_job(self, job_id: str) -> Sequence[Asset]:
        return self.s.execute(
            select(Asset).where(Asset.job_id == job_id, Asset.lifecycle == "temporary")
        ).scalars().all()

    def delete_asset(self, asset_id: str) -> None:
        self.s.execute(delete(Asset).where(Asset.id == asset_id))

    def storage_used(self, owner_id: str | None = None) -> tuple[int, int]:
        q = select(func.count(), func.coalesce(func.sum(Asset.size), 0))
        if owner_id:
            q = q.where(Asset.owner_id == owner_id)
        n, total = self.s.execute(q).one()
        return int(n), int(total)

    def add_upload(self, **values: Any) -> Upload:
        now = self.now()
        up = Upload(id=new_id(), created_at=now, status="pending", **values)
        self.s.add(up)
        self.flush()
        return up

    def upload(self, upload_id: str, *, owner_id: str | None = None, lock: bool = False) -> Upload | None:
        q = select(Upload).where(Upload.id == upload_id)
        if owner_id is not None:
            q = q.where(Upload.owner_id == owner_id)
        if lock and self.pg:
            q = q.with_for_update()
        return self.s.execute(q).scalar_one_or_none()

    def upload_by_key(self, key: str) -> Upload | None:
        return self.s.execute(select(Upload).where(Upload.key == key)).scalar_one_or_none()

    def expired_uploads(self, limit: int = 500) -> Sequence[Upload]:
        return self.s.execute(
            select(Upload).where(Upload.status == "pending", Upload.expires_at < db_epoch()).limit(limit)
        ).scalars().all()

    # --- webhooks, outbox, deliveries ------------------------------------------------------------
    def add_webhook(self, **values: Any) -> Webhook:
        hook = Webhook(id=new_id(), created_at=self.now(), active=True, **values)
        self.s.add(hook)
        self.flush()
        return hook

    def webhook(self, hook_id: str, *, owner_id: str | None = None) -> Webhook | None:
        q = select(Webhook).where(Webhook.id == hook_id)
        if owner_id is not None:
            q = q.where(Webhook.owner_id == owner_id)
        return self.s.execute(q).scalar_one_or_none()

    def webhooks(self, owner_id: str) -> Sequence[Webhook]:
        return self.s.execute(
            select(Webhook).where(Webhook.owner_id == owner_id).order_by(Webhook.created_at)
        ).scalars().all()

    def delete_webhook(self, hook_id: str) -> None:
        self.s.execute(delete(Webhook).where(Webhook.id == hook_id))

    def emit(self, type_: str, payload: dict[str, Any], *, owner_id: str | None = None,
             subject_id: str | None = None) -> OutboxEvent:
        """Write an event to the outbox inside the caller's transaction."""
        ev = OutboxEvent(id=new_id(), type=type_, owner_id=owner_id, subject_id=subject_id, payload=payload,
                         created_at=self.now())
        self.s.add(ev)
        self.flush()
        return ev

    def undispatched(self, limit: int = 100) -> Sequence[OutboxEvent]:
        q = select(OutboxEvent).where(OutboxEvent.dispatched_at.is_(None)).order_by(OutboxEvent.seq).limit(limit)
        if self.pg:
            q = q.with_for_update(skip_locked=True)
        return self.s.execute(q).scalars().all()

    def events_after(self, seq: int, *, owner_id: str | None = None, limit: int = 100) -> Sequence[OutboxEvent]:
        q = select(OutboxEvent).where(OutboxEvent.seq > seq)
        if owner_id is not None:
            q = q.where(OutboxEvent.owner_id == owner_id)
        return self.s.execute(q.order_by(OutboxEvent.seq).limit(limit)).scalars().all()

    def mark_dispatched(self, seqs: Sequence[int]) -> None:
        if seqs:
            self.s.execute(update(OutboxEvent).where(OutboxEvent.seq.in_(list(seqs))).values(dispatched_at=self.now()))

    def add_delivery(self, **values: Any) -> None:
        now = self.now()
        exists = self.s.execute(
            select(Delivery.id).where(Delivery.event_id == values["event_id"], Delivery.target == values["target"])
        ).first()
        if exists:
            return
        self.s.add(Delivery(id=new_id(), created_at=now, next_attempt_at=now, status="pending", attempts=0,
                            **values))
        self.flush()

    def due_deliveries(self, limit: int = 50) -> Sequence[Delivery]:
        q = select(Delivery).where(Delivery.status == "pending", Delivery.next_attempt_at <= db_epoch())
        q = q.order_by(Delivery.next_attempt_at).limit(limit)
        if self.pg:
            q = q.with_for_update(skip_locked=True)
        return self.s.execute(q).scalars().all()

    def delivery(self, delivery_id: str) -> Delivery | None:
        return self.s.get(Delivery, delivery_id)

    def deliveries(self, *, owner_id: str, webhook_id: str | None = None, limit: int = 50) -> Sequence[Delivery]:
        q = select(Delivery).where(Delivery.owner_id == owner_id)
        if webhook_id:
            q = q.where(Delivery.webhook_id == webhook_id)
        return self.s.execute(q.order_by(Delivery.created_at.desc()).limit(limit)).scalars().all()

    def delivery_stats(self) -> list[tuple[str, int]]:
        rows = self.s.execute(select(Delivery.status, func.count()).group_by(Delivery.status)).all()
        return [(r[0], int(r[1])) for r in rows]

    def notify_jobs(self) -> None:
        """Wake workers waiting on LISTEN (PostgreSQL); SQLite workers poll."""
        if self.pg:
            self.s.execute(text("NOTIFY reelforge_jobs"))

    def outbox_event(self, event_id: str) -> OutboxEvent | None:
        return self.s.execute(select(OutboxEvent).where(OutboxEvent.id == event_id)).scalar_one_or_none()

    # --- schedules and workers -------------------------------------------------------------------
    def try_schedule(self, name: str, interval_s: float, runner: str) -> bool:
        """True for exactly one caller per tick: the row update is the lock."""
        now = self.now()
        if self.s.get(Schedule, name) is None:
            try:
                with self.s.begin_nested():
                    self.s.add(Schedule(name=name, interval_s=interval_s, next_run_at=now))
            except IntegrityError:
                pass
        if self.pg:
            # A worker frozen mid-transaction must not block everybody's maintenance: skip a locked row.
            row = self.s.execute(
                select(Schedule.name).where(Schedule.name == name, Schedule.next_run_at <= now)
                .with_for_update(skip_locked=True)
            ).first()
            if row is None:
                return False
        res = self.s.execute(
            update(Schedule).where(Schedule.name == name, Schedule.next_run_at <= now).values(
                next_run_at=now + interval_s, last_run_at=now, last_runner=runner, interval_s=interval_s
            )
        )
        return bool(res.rowcount == 1)  # type: ignore[attr-defined]

    def worker_heartbeat(self, worker_id: str, *, hostname: str, pid: int, concurrency: int,
                         status: str = "running") -> None:
        now = self.now()
        w = self.s.get(Worker, worker_id)
        if w is None:
            self.s.add(Worker(id=worker_id, hostname=hostname, pid=pid, concurrency=concurrency, status=status,
                              started_at=now, heartbeat_at=now))
        else:
            w.heartbeat_at = now
            w.status = status

    def workers(self) -> Sequence[Worker]:
        return self.s.execute(select(Worker).order_by(Worker.heartbeat_at.desc())).scalars().all()

    # --- observability: metrics read at scrape time, alarms, admin statistics -----------------------
    def _hour(self, col: Any) -> Any:
        """Hour bucket (epoch seconds // 3600) of a time column, the same on both engines."""
        return func.floor(col / 3600) if self.pg else cast(col / 3600, Integer)

    def history_for_metrics(self, after: int, limit: int) -> list[tuple[Any, ...]]:
        """Step attempts and job ends after event id `after`, oldest first:
        (id, ts, type, path, details, kind, created_at, started_at)."""
        rows = self.s.execute(
            select(JobEvent.id, JobEvent.ts, JobEvent.type, JobEvent.path, JobEvent.details, Job.kind,
                   Job.created_at, Job.started_at)
            .join(Job, Job.id == JobEvent.job_id)
            .where(JobEvent.id > after, JobEvent.type.in_(STEP_EVENTS + END_EVENTS))
            .order_by(JobEvent.id).limit(limit)
        ).all()
        return [tuple(r) for r in rows]

    def ledger_for_metrics(self, after: int, limit: int) -> list[tuple[Any, ...]]:
        """Settle and refund lines after ledger id `after`: (id, created_at, kind, amount, job kind, job credits)."""
        rows = self.s.execute(
            select(CreditEntry.id, CreditEntry.created_at, CreditEntry.kind, CreditEntry.amount, Job.kind,
                   Job.credits)
            .outerjoin(Job, Job.id == CreditEntry.job_id)
            .where(CreditEntry.id > after, CreditEntry.kind.in_(["settle", "refund"]))
            .order_by(CreditEntry.id).limit(limit)
        ).all()
        return [tuple(r) for r in rows]

    def invocations_after(self, after: int, limit: int) -> Sequence[ModelInvocation]:
        return self.s.execute(
            select(ModelInvocation).where(ModelInvocation.id > after).order_by(ModelInvocation.id).limit(limit)
        ).scalars().all()

    def delivery_totals(self) -> list[tuple[str, int, int]]:
        """(status, deliveries, attempts) over every delivery."""
        rows = self.s.execute(
            select(Delivery.status, func.count(), func.coalesce(func.sum(Delivery.attempts), 0))
            .group_by(Delivery.status)
        ).all()
        return [(r[0], int(r[1]), int(r[2])) for r in rows]

    def add_model_invocation(self, **values: Any) -> None:
        self.s.add(ModelInvocation(ts=self.now(), **values))

    def model_invocation_counts(self, since: float) -> list[tuple[str, str, int, int]]:
        """Per (task, model) since `since`: (task, model, runs, errors); cancellations count as neither."""
        errors_ = func.sum(case((ModelInvocation.ok.is_(False), 1), else_=0))
        rows = self.s.execute(
            select(ModelInvocation.task, ModelInvocation.model, func.count(), errors_)
            .where(ModelInvocation.ts >= since, or_(ModelInvocation.error.is_(None),
                                                    ModelInvocation.error != "cancelled"))
            .group_by(ModelInvocation.task, ModelInvocation.model)
        ).all()
        return [(r[0], r[1], int(r[2]), int(r[3] or 0)) for r in rows]

    def finished_counts(self, since: float) -> dict[str, int]:
        """Jobs that ended since `since`, by final status."""
        rows = self.s.execute(
            select(Job.status, func.count()).where(Job.finished_at >= since, Job.status.in_(TERMINAL))
            .group_by(Job.status)
        ).all()
        return {r[0]: int(r[1]) for r in rows}

    def queue_now(self) -> dict[str, float]:
        """queued, ready (queued and due), running, and the age of the oldest ready job (seconds due)."""
        now = self.now()
        queued, ready, oldest_run_at = self.s.execute(
            select(func.count(), func.sum(case((Job.run_at <= now, 1), else_=0)),
                   func.min(case((Job.run_at <= now, Job.run_at), else_=None)))
            .where(Job.status == "queued")
        ).one()
        running = self.s.execute(select(func.count()).where(Job.status == "running")).scalar_one()
        return {"queued": int(queued or 0), "ready": int(ready or 0), "running": int(running or 0),
                "oldest_ready_age_s": max(0.0, now - float(oldest_run_at)) if oldest_run_at is not None else 0.0}

    def last_worker_heartbeat(self) -> float | None:
        """The newest heartbeat of a worker that has not stopped."""
        value = self.s.execute(select(func.max(Worker.heartbeat_at)).where(Worker.status != "stopped")).scalar_one()
        return float(value) if value is not None else None

    def admin_ids(self) -> list[str]:
        return list(self.s.execute(
            select(User.id).where(User.role == "admin", User.disabled.is_(False)).order_by(User.created_at)
        ).scalars().all())

    def alarm(self, key: str) -> Alarm | None:
        return self.s.get(Alarm, key)

    def alarms(self, *, state: str | None = None) -> Sequence[Alarm]:
        q = select(Alarm)
        if state:
            q = q.where(Alarm.state == state)
        return self.s.execute(q.order_by(Alarm.changed_at.desc(), Alarm.key)).scalars().all()

    def save_alarm(self, key: str, **values: Any) -> Alarm:
        alarm = self.s.get(Alarm, key)
        if alarm is None:
            alarm = Alarm(key=key, **values)
            self.s.add(alarm)
        else:
            for k, v in values.items():
                setattr(alarm, k, v)
        self.flush()
        return alarm

    def add_alarm_history(self, **values: Any) -> None:
        self.s.add(AlarmHistory(ts=self.now(), **values))

    def alarm_history(self, since: float, limit: int = 100) -> Sequence[AlarmHistory]:
        return self.s.execute(
            select(AlarmHistory).where(AlarmHistory.ts >= since)
            .order_by(AlarmHistory.ts.desc(), AlarmHistory.id.desc()).limit(limit)
        ).scalars().all()

    def add_queue_sample(self, *, queued: int, running: int, oldest_age_s: float) -> None:
        self.s.add(QueueSample(ts=self.now(), queued=queued, running=running, oldest_age_s=oldest_age_s))

    def queue_samples(self, since: float, limit: int = 10_000) -> Sequence[QueueSample]:
        return self.s.execute(
            select(QueueSample).where(QueueSample.ts >= since).order_by(QueueSample.ts).limit(limit)
        ).scalars().all()

    def prune_observability(self, before: float) -> int:
        """Drop queue samples, model invocations and alarm history older than `before`."""
        n = 0
        for model in (QueueSample, ModelInvocation, AlarmHistory):
            res = self.s.execute(delete(model).where(model.ts < before))
            n += int(res.rowcount or 0)  # type: ignore[attr-defined]
        return n

    def running_jobs(self, limit: int = 200) -> list[tuple[Job, float | None]]:
        """Running jobs with the seconds left on each lease (database clock), oldest claim first."""
        now = self.now()
        rows = self.s.execute(
            select(Job).where(Job.status == "running").order_by(Job.started_at, Job.id).limit(limit)
        ).scalars().all()
        return [(j, (j.lease_expires_at - now) if j.lease_expires_at is not None else None) for j in rows]

    def ended_badly(self, limit: int = 50) -> Sequence[Job]:
        """The most recent dead and failed jobs."""
        return self.s.execute(
            select(Job).where(Job.status.in_(["dead", "failed"]))
            .order_by(Job.finished_at.desc(), Job.id).limit(limit)
        ).scalars().all()

    def jobs_per_hour(self, since: float) -> list[tuple[int, str, int]]:
        """(hour bucket, status, count) for jobs that ended since `since`."""
        hour = self._hour(Job.finished_at)
        rows = self.s.execute(
            select(hour, Job.status, func.count()).where(Job.finished_at >= since, Job.status.in_(TERMINAL))
            .group_by(hour, Job.status)
        ).all()
        return [(int(r[0]), r[1], int(r[2])) for r in rows]

    def credits_settled_per_hour(self, since: float) -> list[tuple[int, int]]:
        """(hour bucket, credits) charged by jobs that succeeded (settled) since `since`."""
        hour = self._hour(Job.finished_at)
        rows = self.s.execute(
            select(hour, func.coalesce(func.sum(Job.credits), 0))
            .where(Job.finished_at >= since, Job.credits_state == "settled")
            .group_by(hour)
        ).all()
        return [(int(r[0]), int(r[1])) for r in rows]

    def run_durations(self, since: float, limit: int = 100_000) -> list[tuple[str, float]]:
        """(kind, seconds from first claim to success) of jobs that succeeded since `since`, newest first."""
        rows = self.s.execute(
            select(Job.kind, Job.finished_at - Job.started_at)
            .where(Job.finished_at >= since, Job.status == "succeeded", Job.started_at.is_not(None))
            .order_by(Job.finished_at.desc()).limit(limit)
        ).all()
        return [(r[0], float(r[1] or 0.0)) for r in rows]

    def schedule_pending(self, name: str) -> bool:
        """True while a schedule's next run is still in the future: a read, so callers can skip
        `try_schedule`'s write transaction (on SQLite, the write lock) on every loop."""
        return self.s.execute(
            select(Schedule.name).where(Schedule.name == name, Schedule.next_run_at > db_epoch())
        ).first() is not None


# --- rows outside the ORM ------------------------------------------------------------------------------------------
# Statements run on the connection's DB-API cursor return raw tuples; these turn them into records with attribute
# access like `Job`, through the columns' own result processors (JSON, booleans). Event-loop reads of the routes
# live in adapters/db/reads.py.
class _Rows:
    """Rows of known columns from a DB-API cursor, through the columns' own result processors (JSON, booleans)."""

    def __init__(self, engine: Any, columns: Sequence[Any]) -> None:
        self.dialect = engine.dialect
        self.columns = list(columns)
        self.names = [c.name for c in columns]
        self.procs: list[Any] | None = None  # from the first cursor's description (drivers' type codes)

    def processors(self, description: Sequence[Any]) -> list[Any]:
        if self.procs is None:
            self.procs = [c.type._cached_result_processor(self.dialect, d[1])
                          for c, d in zip(self.columns, description, strict=True)]
        return self.procs

    def row(self, raw: Sequence[Any], procs: list[Any]) -> SimpleNamespace:
        return SimpleNamespace(**{n: (p(v) if p is not None else v) for n, p, v in zip(self.names, procs, raw,
                                                                                        strict=True)})


_job_row_shapes: weakref.WeakKeyDictionary[Any, _Rows] = weakref.WeakKeyDictionary()


def _job_rows(engine: Any) -> _Rows:
    """Whole job rows (every column of `jobs`, in table order) for one engine."""
    shape = _job_row_shapes.get(engine)
    if shape is None:
        shape = _job_row_shapes[engine] = _Rows(engine, list(Job.__table__.c))
    return shape
