"""Alarms and observability: alarm state and history, queue samples, model invocations, and the reads behind
`/metrics` and the admin statistics."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Integer, and_, case, cast, delete, func, or_, select

from reelforge.adapters.db import models as m
from reelforge.adapters.db.repositories.base import Repository, record, records
from reelforge.adapters.db.repositories.jobs import TERMINAL
from reelforge.domain.records import Alarm, AlarmHistory, Job, ModelInvocation, QueueSample

# Job history events the metrics read: step attempts (with duration_s) and a job's terminal transition.
STEP_EVENTS = ("TaskSucceeded", "TaskFailed")
END_EVENTS = ("JobSucceeded", "JobFailed", "JobDead", "JobCancelled")


class AlarmRepository(Repository):
    # --- alarms ----------------------------------------------------------------------------------
    def alarm(self, key: str) -> Alarm | None:
        row = self.s.get(m.Alarm, key)
        return record(Alarm, row) if row is not None else None

    def alarms(self, *, state: str | None = None) -> list[Alarm]:
        q = select(m.Alarm)
        if state:
            q = q.where(m.Alarm.state == state)
        return records(Alarm, self.s.execute(q.order_by(m.Alarm.changed_at.desc(), m.Alarm.key)).scalars().all())

    def save_alarm(self, key: str, **values: Any) -> Alarm:
        alarm = self.s.get(m.Alarm, key)
        if alarm is None:
            alarm = m.Alarm(key=key, **values)
            self.s.add(alarm)
        else:
            for k, v in values.items():
                setattr(alarm, k, v)
        self.flush()
        return record(Alarm, alarm)

    def add_alarm_history(self, **values: Any) -> None:
        self.s.add(m.AlarmHistory(ts=self.now(), **values))

    def alarm_history(self, since: float, limit: int = 100) -> list[AlarmHistory]:
        return records(AlarmHistory, self.s.execute(
            select(m.AlarmHistory).where(m.AlarmHistory.ts >= since)
            .order_by(m.AlarmHistory.ts.desc(), m.AlarmHistory.id.desc()).limit(limit)
        ).scalars().all())

    # --- samples and model invocations ---------------------------------------------------------------
    def add_queue_sample(self, *, queued: int, running: int, oldest_age_s: float) -> None:
        self.s.add(m.QueueSample(ts=self.now(), queued=queued, running=running, oldest_age_s=oldest_age_s))

    def queue_samples(self, since: float, limit: int = 10_000) -> list[QueueSample]:
        return records(QueueSample, self.s.execute(
            select(m.QueueSample).where(m.QueueSample.ts >= since).order_by(m.QueueSample.ts).limit(limit)
        ).scalars().all())

    def add_model_invocation(self, **values: Any) -> None:
        self.s.add(m.ModelInvocation(ts=self.now(), **values))

    def invocations_after(self, after: int, limit: int) -> list[ModelInvocation]:
        return records(ModelInvocation, self.s.execute(
            select(m.ModelInvocation).where(m.ModelInvocation.id > after).order_by(m.ModelInvocation.id).limit(limit)
        ).scalars().all())

    def model_invocation_counts(self, since: float) -> list[tuple[str, str, int, int]]:
        errors_ = func.sum(case((m.ModelInvocation.ok.is_(False), 1), else_=0))
        rows = self.s.execute(
            select(m.ModelInvocation.task, m.ModelInvocation.model, func.count(), errors_)
            .where(m.ModelInvocation.ts >= since, or_(m.ModelInvocation.error.is_(None),
                                                      m.ModelInvocation.error != "cancelled"))
            .group_by(m.ModelInvocation.task, m.ModelInvocation.model)
        ).all()
        return [(r[0], r[1], int(r[2]), int(r[3] or 0)) for r in rows]

    def prune_observability(self, before: float) -> int:
        n = 0
        for model in (m.QueueSample, m.ModelInvocation, m.AlarmHistory):
            res = self.s.execute(delete(model).where(model.ts < before))
            n += int(res.rowcount or 0)  # type: ignore[attr-defined]
        return n

    # --- reads for /metrics --------------------------------------------------------------------------
    def history_for_metrics(self, after: int, limit: int) -> list[tuple[Any, ...]]:
        rows = self.s.execute(
            select(m.JobEvent.id, m.JobEvent.ts, m.JobEvent.type, m.JobEvent.path, m.JobEvent.details, m.Job.kind,
                   m.Job.created_at, m.Job.started_at)
            .join(m.Job, m.Job.id == m.JobEvent.job_id)
            .where(m.JobEvent.id > after, m.JobEvent.type.in_(STEP_EVENTS + END_EVENTS))
            .order_by(m.JobEvent.id).limit(limit)
        ).all()
        return [tuple(r) for r in rows]

    def ledger_for_metrics(self, after: int, limit: int) -> list[tuple[Any, ...]]:
        rows = self.s.execute(
            select(m.CreditEntry.id, m.CreditEntry.created_at, m.CreditEntry.kind, m.CreditEntry.amount,
                   m.Job.kind, m.Job.credits)
            .outerjoin(m.Job, m.Job.id == m.CreditEntry.job_id)
            .where(m.CreditEntry.id > after, m.CreditEntry.kind.in_(["settle", "refund"]))
            .order_by(m.CreditEntry.id).limit(limit)
        ).all()
        return [tuple(r) for r in rows]

    def delivery_totals(self) -> list[tuple[str, int, int]]:
        rows = self.s.execute(
            select(m.Delivery.status, func.count(), func.coalesce(func.sum(m.Delivery.attempts), 0))
            .group_by(m.Delivery.status)
        ).all()
        return [(r[0], int(r[1]), int(r[2])) for r in rows]

    def delivery_stats(self) -> list[tuple[str, int]]:
        rows = self.s.execute(select(m.Delivery.status, func.count()).group_by(m.Delivery.status)).all()
        return [(r[0], int(r[1])) for r in rows]

    # --- reads for the alarm rules ---------------------------------------------------------------------
    def finished_counts(self, since: float) -> dict[str, int]:
        rows = self.s.execute(
            select(m.Job.status, func.count()).where(m.Job.finished_at >= since, m.Job.status.in_(TERMINAL))
            .group_by(m.Job.status)
        ).all()
        return {r[0]: int(r[1]) for r in rows}

    def queue_now(self) -> dict[str, float]:
        now = self.now()
        queued, ready, oldest_run_at = self.s.execute(
            select(func.count(), func.sum(case((m.Job.run_at <= now, 1), else_=0)),
                   func.min(case((m.Job.run_at <= now, m.Job.run_at), else_=None)))
            .where(m.Job.status == "queued")
        ).one()
        running = self.s.execute(select(func.count()).where(m.Job.status == "running")).scalar_one()
        return {"queued": int(queued or 0), "ready": int(ready or 0), "running": int(running or 0),
                "oldest_ready_age_s": max(0.0, now - float(oldest_run_at)) if oldest_run_at is not None else 0.0}

    def last_worker_heartbeat(self) -> float | None:
        value = self.s.execute(
            select(func.max(m.Worker.heartbeat_at)).where(m.Worker.status != "stopped")).scalar_one()
        return float(value) if value is not None else None

    # --- reads for the admin console ------------------------------------------------------------------
    def queue_stats(self) -> list[tuple[str, str, int]]:
        rows = self.s.execute(select(m.Job.kind, m.Job.status, func.count()).group_by(m.Job.kind, m.Job.status)).all()
        return [(r[0], r[1], int(r[2])) for r in rows]

    def queue_by_kind(self) -> list[tuple[str, int, float, int]]:
        now = self.now()
        due = m.Job.run_at <= now
        rows = self.s.execute(
            select(m.Job.kind,
                   func.sum(case((and_(m.Job.status == "queued", due), 1), else_=0)),
                   func.min(case((and_(m.Job.status == "queued", due), m.Job.run_at), else_=None)),
                   func.sum(case((m.Job.status == "running", 1), else_=0)))
            .where(m.Job.status.in_(("queued", "running"))).group_by(m.Job.kind)
        ).all()
        return [(r[0], int(r[1] or 0), max(0.0, now - float(r[2])) if r[2] is not None else 0.0, int(r[3] or 0))
                for r in rows]

    def oldest_queued_age(self) -> float:
        oldest = self.s.execute(select(func.min(m.Job.created_at)).where(m.Job.status == "queued")).scalar_one()
        return max(0.0, self.now() - float(oldest)) if oldest is not None else 0.0

    def running_jobs(self, limit: int = 200) -> list[tuple[Job, float | None]]:
        now = self.now()
        rows = records(Job, self.s.execute(
            select(m.Job).where(m.Job.status == "running").order_by(m.Job.started_at, m.Job.id).limit(limit)
        ).scalars().all())
        return [(j, (j.lease_expires_at - now) if j.lease_expires_at is not None else None) for j in rows]

    def ended_badly(self, limit: int = 50) -> list[Job]:
        return records(Job, self.s.execute(
            select(m.Job).where(m.Job.status.in_(["dead", "failed"]))
            .order_by(m.Job.finished_at.desc(), m.Job.id).limit(limit)
        ).scalars().all())

    def _hour(self, col: Any) -> Any:
        """Hour bucket (epoch seconds // 3600) of a time column, the same on both engines."""
        return func.floor(col / 3600) if self.pg else cast(col / 3600, Integer)

    def jobs_per_hour(self, since: float) -> list[tuple[int, str, int]]:
        hour = self._hour(m.Job.finished_at)
        rows = self.s.execute(
            select(hour, m.Job.status, func.count()).where(m.Job.finished_at >= since, m.Job.status.in_(TERMINAL))
            .group_by(hour, m.Job.status)
        ).all()
        return [(int(r[0]), r[1], int(r[2])) for r in rows]

    def credits_settled_per_hour(self, since: float) -> list[tuple[int, int]]:
        hour = self._hour(m.Job.finished_at)
        rows = self.s.execute(
            select(hour, func.coalesce(func.sum(m.Job.credits), 0))
            .where(m.Job.finished_at >= since, m.Job.credits_state == "settled")
            .group_by(hour)
        ).all()
        return [(int(r[0]), int(r[1])) for r in rows]

    def run_durations(self, since: float, limit: int = 100_000) -> list[tuple[str, float]]:
        rows = self.s.execute(
            select(m.Job.kind, m.Job.finished_at - m.Job.started_at)
            .where(m.Job.finished_at >= since, m.Job.status == "succeeded", m.Job.started_at.is_not(None))
            .order_by(m.Job.finished_at.desc()).limit(limit)
        ).all()
        return [(r[0], float(r[1] or 0.0)) for r in rows]
