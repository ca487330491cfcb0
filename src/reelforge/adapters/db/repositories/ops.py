"""Operations: schedules (one runner per tick across all workers) and worker heartbeats."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from reelforge.adapters.db import models as m
from reelforge.adapters.db.engine import db_epoch
from reelforge.adapters.db.repositories.base import Repository, records
from reelforge.domain.records import Worker


class OpsRepository(Repository):
    def try_schedule(self, name: str, interval_s: float, runner: str) -> bool:
        now = self.now()
        if self.s.get(m.Schedule, name) is None:
            try:
                with self.s.begin_nested():
                    self.s.add(m.Schedule(name=name, interval_s=interval_s, next_run_at=now))
            except IntegrityError:
                pass
        if self.pg:
            # A worker frozen mid-transaction must not block everybody's maintenance: skip a locked row.
            row = self.s.execute(
                select(m.Schedule.name).where(m.Schedule.name == name, m.Schedule.next_run_at <= now)
                .with_for_update(skip_locked=True)
            ).first()
            if row is None:
                return False
        res = self.s.execute(
            update(m.Schedule).where(m.Schedule.name == name, m.Schedule.next_run_at <= now).values(
                next_run_at=now + interval_s, last_run_at=now, last_runner=runner, interval_s=interval_s
            )
        )
        return bool(res.rowcount == 1)  # type: ignore[attr-defined]

    def schedule_pending(self, name: str) -> bool:
        return self.s.execute(
            select(m.Schedule.name).where(m.Schedule.name == name, m.Schedule.next_run_at > db_epoch())
        ).first() is not None

    def worker_heartbeat(self, worker_id: str, *, hostname: str, pid: int, concurrency: int,
                         status: str = "running", call_url: str | None = None) -> None:
        now = self.now()
        w = self.s.get(m.Worker, worker_id)
        if w is None:
            self.s.add(m.Worker(id=worker_id, hostname=hostname, pid=pid, concurrency=concurrency, status=status,
                                started_at=now, heartbeat_at=now, call_url=call_url))
        else:
            w.heartbeat_at = now
            w.status = status
            w.call_url = call_url

    def call_workers(self, fresh_s: float) -> list[Worker]:
        since = self.now() - fresh_s
        return records(Worker, self.s.execute(
            select(m.Worker).where(m.Worker.status == "running", m.Worker.call_url.is_not(None),
                                   m.Worker.heartbeat_at >= since).order_by(m.Worker.id)).scalars().all())

    def mark_workers_lost(self, hostname: str, pid: int) -> list[str]:
        ids = [str(r) for r in self.s.execute(
            select(m.Worker.id).where(m.Worker.hostname == hostname, m.Worker.pid == pid,
                                      m.Worker.status.in_(["running", "stopping"]))).scalars().all()]
        if ids:
            self.s.execute(update(m.Worker).where(m.Worker.id.in_(ids)).values(status="lost"))
        return ids

    def workers(self) -> list[Worker]:
        return records(Worker, self.s.execute(
            select(m.Worker).order_by(m.Worker.heartbeat_at.desc())).scalars().all())
