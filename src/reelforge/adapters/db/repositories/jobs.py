"""Jobs and the queue: submit, claim, renew, fence, finish; execution history and checkpoints; expiry."""

from __future__ import annotations

import functools
import json
import weakref
from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, delete, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite

from reelforge import errors
from reelforge.adapters.db import models as m
from reelforge.adapters.db.engine import EPOCH_SQL_PG, EPOCH_SQL_SQLITE, db_epoch
from reelforge.adapters.db.repositories.base import (
    ROWS_PER_STATEMENT,
    Repository,
    known_now,
    mark_changed,
    record,
    records,
    set_now,
    values_sql,
)
from reelforge.domain.records import Checkpoint, Job, JobEvent, new_id

TERMINAL = ("succeeded", "failed", "cancelled", "dead")
_JOB_COLUMNS = list(m.Job.__table__.c)


@functools.lru_cache(maxsize=64)
def _claim_sql(pg: bool, n_kinds: int) -> str:
    """The claim statement (claim_jobs) for a dialect; parameters: kinds..., limit, worker id, lease seconds."""
    ph = "%s" if pg else "?"
    clock = EPOCH_SQL_PG if pg else EPOCH_SQL_SQLITE
    kinds = f" AND kind IN ({', '.join([ph] * n_kinds)})" if n_kinds else ""
    # PostgreSQL: a MATERIALIZED CTE runs the locking SELECT once (a plain IN (subquery) can be re-scanned by the
    # planner and take more than `limit` rows). SQLite has one writer: the transaction's lock is the lock.
    lock, mat = (" FOR UPDATE SKIP LOCKED", "MATERIALIZED ") if pg else ("", "")
    cols = ", ".join(f"jobs.{c.name}" for c in _JOB_COLUMNS)
    return (f"WITH picked AS {mat}(SELECT id FROM jobs WHERE status = 'queued' AND run_at <= {clock}{kinds} "
            f"ORDER BY priority DESC, run_at, created_at LIMIT {ph}{lock}), clock AS {mat}(SELECT {clock} AS now) "
            f"UPDATE jobs SET status = 'running', attempt = jobs.attempt + 1, worker_id = {ph}, "
            f"lease_expires_at = clock.now + {ph}, heartbeat_at = clock.now, "
            f"started_at = COALESCE(jobs.started_at, clock.now), updated_at = clock.now "
            f"FROM picked, clock WHERE jobs.id = picked.id AND jobs.status = 'queued' RETURNING {cols}")


_converters: weakref.WeakKeyDictionary[Any, list[tuple[int, Any]]] = weakref.WeakKeyDictionary()


def _job_converters(engine: Any, description: Sequence[Any]) -> list[tuple[int, Any]]:
    """(position, result processor) of the job columns that need one (JSON, booleans) on this engine's driver."""
    conv = _converters.get(engine)
    if conv is None:
        dialect = engine.dialect
        procs = [c.type._cached_result_processor(dialect, d[1]) for c, d in zip(_JOB_COLUMNS, description,
                                                                                  strict=True)]
        conv = _converters[engine] = [(i, p) for i, p in enumerate(procs) if p is not None]
    return conv


_OUTPUTS = [c.name for c in _JOB_COLUMNS].index("outputs")


def _job_records(engine: Any, description: Sequence[Any], raw: Sequence[Sequence[Any]],
                 outputs: dict[str, Any] | None = None) -> list[Job]:
    """Whole `jobs` rows (every column, in table order) from a DB-API cursor as records.

    With `outputs` (job id -> value just written), a job's outputs are those values, not parsed back.
    """
    conv = _job_converters(engine, description)
    if outputs is not None:
        conv = [(i, p) for i, p in conv if i != _OUTPUTS]
    out = []
    for r in raw:
        values = list(r)
        for i, p in conv:
            values[i] = p(values[i])
        if outputs is not None:
            values[_OUTPUTS] = outputs[values[0]]
        out.append(Job(*values))
    return out


class JobRepository(Repository):
    # --- submit and read -------------------------------------------------------------------------
    def _new(self, now: float, values: dict[str, Any]) -> m.Job:
        return m.Job(id=new_id(), status="queued", created_at=now, updated_at=now, run_at=now, attempt=0,
                     failures=0, progress=0.0, progress_message="", cancel_requested=False, **values)

    def add_job(self, **values: Any) -> Job:
        job = self._new(self.now(), values)
        self.s.add(job)
        self.flush()
        return record(Job, job)

    def add_jobs(self, values: Sequence[dict[str, Any]]) -> list[Job]:
        now = self.now()
        jobs = [self._new(now, v) for v in values]
        self.s.add_all(jobs)
        self.flush()
        return records(Job, jobs)

    def job(self, job_id: str, *, owner_id: str | None = None) -> Job | None:
        q = select(m.Job).where(m.Job.id == job_id)
        if owner_id is not None:
            q = q.where(m.Job.owner_id == owner_id)
        row = self.s.execute(q).scalar_one_or_none()
        return record(Job, row) if row is not None else None

    def job_by_idempotency(self, owner_id: str, key: str) -> Job | None:
        row = self.s.execute(
            select(m.Job).where(m.Job.owner_id == owner_id, m.Job.idempotency_key == key)
        ).scalar_one_or_none()
        return record(Job, row) if row is not None else None

    def jobs(self, *, owner_id: str | None, status: str | None = None, kind: str | None = None,
             limit: int = 50, cursor: tuple[float, str] | None = None) -> list[Job]:
        q = select(m.Job)
        if owner_id is not None:
            q = q.where(m.Job.owner_id == owner_id)
        if status:
            q = q.where(m.Job.status == status)
        if kind:
            q = q.where(m.Job.kind == kind)
        if cursor:
            created, jid = cursor
            q = q.where(or_(m.Job.created_at < created, and_(m.Job.created_at == created, m.Job.id < jid)))
        return records(Job, self.s.execute(q.order_by(m.Job.created_at.desc(), m.Job.id.desc()).limit(limit))
                       .scalars().all())

    def free_jobs_since(self, owner_id: str, since: float, limit: int) -> list[float]:
        # Walks ix_jobs_owner_created from `since`; stops after `limit` free jobs, so the cost is bounded by the quota.
        return [float(t) for t in self.s.execute(
            select(m.Job.created_at).where(m.Job.owner_id == owner_id, m.Job.created_at > since, m.Job.credits == 0)
            .order_by(m.Job.created_at).limit(limit)).scalars().all()]

    def job_callbacks(self, job_ids: Sequence[str]) -> dict[str, str]:
        rows = self.s.execute(select(m.Job.id, m.Job.callback_url).where(m.Job.id.in_(list(job_ids)),
                                                                       m.Job.callback_url.is_not(None))).all()
        return {r[0]: str(r[1]) for r in rows}

    def notify_jobs(self) -> None:
        if self.pg:
            self.s.execute(text("NOTIFY reelforge_jobs"))

    # --- the queue -------------------------------------------------------------------------------------
    def has_ready_job(self, kinds: Sequence[str] | None = None) -> bool:
        q = select(m.Job.id).where(m.Job.status == "queued", m.Job.run_at <= db_epoch())
        if kinds:
            q = q.where(m.Job.kind.in_(list(kinds)))
        return self.s.execute(q.limit(1)).first() is not None

    def claim_job(self, worker_id: str, lease_s: float, kinds: Sequence[str] | None = None) -> Job | None:
        jobs = self.claim_jobs(worker_id, lease_s, kinds, 1)
        return jobs[0] if jobs else None

    def claim_jobs(self, worker_id: str, lease_s: float, kinds: Sequence[str] | None = None,
                   limit: int = 1) -> list[Job]:
        """`WITH picked AS (SELECT ... ORDER BY priority DESC, run_at, created_at LIMIT k FOR UPDATE SKIP LOCKED)
        UPDATE jobs ... FROM picked RETURNING`: concurrent claimers never get the same job. The lease starts at one
        reading of the database clock taken in the statement (no separate round trip for it)."""
        params: list[Any] = [*(kinds or ()), max(1, int(limit)), worker_id, float(lease_s)]
        res = self.s.connection().exec_driver_sql(_claim_sql(self.pg, len(kinds or ())), tuple(params))
        description = res.cursor.description
        raw = res.fetchall()
        if not raw:
            return []
        jobs = _job_records(self.s.get_bind(), description, raw)
        mark_changed(self.s, [j.id for j in jobs])
        set_now(self.s, jobs[0].heartbeat_at)  # type: ignore[arg-type]  # this statement's clock reading
        jobs.sort(key=lambda j: (-j.priority, j.run_at, j.created_at))
        return jobs

    def renew_leases(self, worker_id: str, held: Sequence[tuple[str, int]], lease_s: float) -> dict[str, bool]:
        if not held:
            return {}
        now = self.now()
        ids = [jid for jid, _ in held]
        rows = self.s.execute(
            update(m.Job).where(m.Job.id.in_(ids), m.Job.worker_id == worker_id, m.Job.status == "running",
                                m.Job.lease_expires_at >= now)
            .values(lease_expires_at=now + lease_s, heartbeat_at=now)
            .returning(m.Job.id, m.Job.attempt, m.Job.cancel_requested),
        ).all()
        attempts = dict(held)
        return {str(r[0]): bool(r[2]) for r in rows if attempts.get(r[0]) == r[1]}

    def fence(self, job_id: str, attempt: int, lease_s: float | None = None, **set_values: Any) -> Job:
        now = self.now()
        values: dict[str, Any] = {"heartbeat_at": now, "updated_at": now}
        if lease_s is not None:
            values["lease_expires_at"] = now + lease_s
        values.update(set_values)  # a transition in the fencing UPDATE itself
        job = self.s.execute(
            update(m.Job).where(m.Job.id == job_id, m.Job.attempt == attempt, m.Job.status == "running",
                                m.Job.lease_expires_at >= now).values(**values).returning(m.Job),
            execution_options={"synchronize_session": False, "populate_existing": True},
        ).scalar_one_or_none()
        if job is None:
            raise errors.StaleLease(f"job {job_id} attempt {attempt} no longer holds its lease")
        if set_values:
            mark_changed(self.s, job_id)
        return record(Job, job)

    def succeed_jobs(self, items: Sequence[tuple[str, int, Any]], *, ttl_s: float) -> dict[str, Job]:
        """The fence is the one `fence()` applies (same attempt, running, lease alive), in the WHERE clause of a
        single `UPDATE jobs ... FROM (VALUES ...)`. The statement reads the database clock itself when this
        transaction has not yet (and that reading becomes the transaction's now())."""
        if not items:
            return {}
        ph = "%s" if self.pg else "?"
        mat = "MATERIALIZED " if self.pg else ""
        out_expr = "CAST(v.outputs AS JSONB)" if self.pg else "v.outputs"
        cols = ", ".join(f"jobs.{c.name}" for c in _JOB_COLUMNS)
        done: dict[str, Job] = {}
        outputs = {job_id: out for job_id, _, out in items}
        conn = self.s.connection()
        for start in range(0, len(items), ROWS_PER_STATEMENT):
            chunk = items[start:start + ROWS_PER_STATEMENT]
            params: list[Any] = []
            now = known_now(self.s)
            if now is None:
                clock = EPOCH_SQL_PG if self.pg else EPOCH_SQL_SQLITE
            else:
                clock = f"CAST({ph} AS DOUBLE PRECISION)" if self.pg else f"CAST({ph} AS REAL)"
                params.append(now)
            for job_id, attempt, out in chunk:
                params += [job_id, attempt, json.dumps(out)]
            params.append(float(ttl_s))
            res = conn.exec_driver_sql(
                f"WITH clock AS {mat}(SELECT {clock} AS now), v(id, attempt, outputs) AS "
                f"(VALUES {values_sql(('id', 'attempt', 'o'), len(chunk), self.pg)}) "
                f"UPDATE jobs SET status = 'succeeded', finished_at = clock.now, expires_at = clock.now + {ph}, "
                f"lease_expires_at = NULL, heartbeat_at = clock.now, updated_at = clock.now, outputs = {out_expr}, "
                "progress = 1.0, error_code = NULL, error_message = NULL "
                "FROM v, clock WHERE jobs.id = v.id AND jobs.attempt = v.attempt AND jobs.status = 'running' "
                f"AND jobs.lease_expires_at >= clock.now RETURNING {cols}", tuple(params))
            description = res.cursor.description
            raw = res.fetchall()
            if not raw:
                continue
            for job in _job_records(self.s.get_bind(), description, raw, outputs):
                set_now(self.s, job.finished_at)  # type: ignore[arg-type]
                done[job.id] = job
        mark_changed(self.s, done)
        return done

    def set_credits_state(self, job_ids: Sequence[str], state: str) -> None:
        if job_ids:
            self.s.execute(update(m.Job).where(m.Job.id.in_(list(job_ids))).values(credits_state=state,
                                                                                   updated_at=self.now()))

    def update_job(self, job_id: str, **values: Any) -> None:
        values.setdefault("updated_at", self.now())
        self.s.execute(update(m.Job).where(m.Job.id == job_id).values(**values))
        self.s.expire_all()
        mark_changed(self.s, job_id)

    def update_job_returning(self, job_id: str, **values: Any) -> Job:
        values.setdefault("updated_at", self.now())
        mark_changed(self.s, job_id)
        return record(Job, self.s.execute(
            update(m.Job).where(m.Job.id == job_id).values(**values).returning(m.Job),
            execution_options={"synchronize_session": False, "populate_existing": True},
        ).scalar_one())

    def set_job_status_if(self, job_id: str, expected: Sequence[str], **values: Any) -> bool:
        values.setdefault("updated_at", self.now())
        res = self.s.execute(update(m.Job).where(m.Job.id == job_id, m.Job.status.in_(list(expected)))
                             .values(**values))
        self.s.expire_all()
        if res.rowcount == 1:  # type: ignore[attr-defined]
            mark_changed(self.s, job_id)
            return True
        return False

    def expired_leases(self, limit: int = 100) -> list[Job]:
        q = select(m.Job).where(m.Job.status == "running", m.Job.lease_expires_at < db_epoch()).limit(limit)
        if self.pg:
            q = q.with_for_update(skip_locked=True)
        return records(Job, self.s.execute(q).scalars().all())

    def running_attempts(self) -> list[tuple[str, int]]:
        return [(str(r[0]), int(r[1])) for r in self.s.execute(
            select(m.Job.id, m.Job.attempt).where(m.Job.status == "running")).all()]

    def expire_leases_of(self, worker_ids: Sequence[str]) -> int:
        if not worker_ids:
            return 0
        now = self.now()
        res = self.s.execute(update(m.Job).where(m.Job.status == "running", m.Job.worker_id.in_(list(worker_ids)),
                                                 m.Job.lease_expires_at >= now)
                             .values(lease_expires_at=now - 0.001),
                             execution_options={"synchronize_session": False})
        return int(res.rowcount or 0)  # type: ignore[attr-defined]

    def cancel_requested(self, job_id: str, attempt: int) -> bool:
        flag = self.s.execute(select(m.Job.cancel_requested).where(
            m.Job.id == job_id, m.Job.attempt == attempt, m.Job.status == "running")).scalar_one_or_none()
        return bool(flag)

    # --- expiry ------------------------------------------------------------------------------------
    def expired_jobs(self, limit: int = 500) -> list[Job]:
        return records(Job, self.s.execute(
            select(m.Job).where(m.Job.status.in_(TERMINAL), m.Job.expires_at.is_not(None),
                                m.Job.expires_at < db_epoch()).limit(limit)
        ).scalars().all())

    def delete_job(self, job_id: str) -> None:
        self.s.execute(delete(m.JobEvent).where(m.JobEvent.job_id == job_id))
        self.s.execute(delete(m.Checkpoint).where(m.Checkpoint.job_id == job_id))
        self.s.execute(delete(m.Job).where(m.Job.id == job_id))
        mark_changed(self.s, job_id)

    # --- history ---------------------------------------------------------------------------------------
    def add_event(self, job_id: str, type_: str, *, path: str | None = None, attempt: int = 0,
                  details: dict[str, Any] | None = None) -> None:
        self.s.add(m.JobEvent(job_id=job_id, ts=self.now(), type=type_, path=path, attempt=attempt,
                              details=details or {}))
        mark_changed(self.s, job_id)

    def add_events_bulk(self, rows: Sequence[dict[str, Any]]) -> None:
        if not rows:
            return
        now = self.now()
        mark_changed(self.s, {r["job_id"] for r in rows})
        self.insert_many("job_events", ("job_id", "ts", "type", "path", "attempt", "details"),
                         [(r["job_id"], now, r["type"], r.get("path"), r.get("attempt", 0), r.get("details") or {})
                          for r in rows])

    def events(self, job_id: str, *, after: int = 0, limit: int = 1000) -> list[JobEvent]:
        return records(JobEvent, self.s.execute(
            select(m.JobEvent).where(m.JobEvent.job_id == job_id, m.JobEvent.id > after)
            .order_by(m.JobEvent.id).limit(limit)
        ).scalars().all())

    # --- checkpoints -----------------------------------------------------------------------------------
    def checkpoint(self, job_id: str, path: str) -> Checkpoint | None:
        row = self.s.get(m.Checkpoint, (job_id, path))
        return record(Checkpoint, row) if row is not None else None

    def checkpoints(self, job_id: str) -> list[Checkpoint]:
        return records(Checkpoint, self.s.execute(
            select(m.Checkpoint).where(m.Checkpoint.job_id == job_id)).scalars().all())

    def put_checkpoint(self, job_id: str, path: str, output: Any, attempt: int) -> None:
        # one INSERT ... ON CONFLICT DO UPDATE instead of SELECT + INSERT/UPDATE.
        dialect_insert: Any = postgresql.insert if self.pg else sqlite.insert
        self.s.flush()
        stmt = dialect_insert(m.Checkpoint).values(job_id=job_id, path=path, output=output, attempt=attempt,
                                                   created_at=self.now())
        stmt = stmt.on_conflict_do_update(index_elements=[m.Checkpoint.job_id, m.Checkpoint.path],
                                          set_={"output": stmt.excluded.output, "attempt": stmt.excluded.attempt})
        self.s.execute(stmt)

    def put_checkpoints(self, rows: Sequence[tuple[str, str, Any, int]]) -> None:
        if not rows:
            return
        now = self.now()
        self.insert_many("checkpoints", ("job_id", "path", "output", "attempt", "created_at"),
                         [(j, p, out, a, now) for j, p, out, a in rows],
                         suffix=" ON CONFLICT (job_id, path) DO UPDATE SET output = excluded.output, "
                                "attempt = excluded.attempt")


__all__ = ["TERMINAL", "JobRepository"]
