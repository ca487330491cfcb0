"""What the admin console shows: the queue, workers, the system, statistics; and the figures `/metrics` reads."""

from __future__ import annotations

import math
from typing import Any

from reelforge.config import Settings
from reelforge.ports.repositories import Store


def percentile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in [0, 1]) of an ascending list; 0 for an empty one."""
    if not sorted_values:
        return 0.0
    pos = (len(sorted_values) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def lost_after_s(settings: Settings) -> float:
    """A worker whose last heartbeat is older than this is lost: its jobs' leases have run out (or are about
    to), and it has missed at least three heartbeats. `jobs.worker_lost_after_s` when set."""
    j = settings.jobs
    configured = getattr(j, "worker_lost_after_s", None)
    return float(configured) if configured else max(3 * j.heartbeat_s, j.lease_s)


class StatsService:
    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings

    def queue(self, *, dead_limit: int = 50, running_limit: int = 200) -> dict[str, Any]:
        """Depth by kind and status (queued and running), the oldest queued job's age, running jobs with their
        leases, and the most recent dead or failed jobs."""
        with self.store.tx(write=False) as tx:
            depth = [{"kind": k, "status": s, "count": n} for k, s, n in sorted(tx.alarms.queue_stats())
                     if s in ("queued", "running")]
            oldest = tx.alarms.oldest_queued_age()
            running = [
                {"job_id": j.id, "kind": j.kind, "owner_id": j.owner_id, "worker_id": j.worker_id,
                 "attempt": j.attempt, "lease_expires_in_s": round(left, 3) if left is not None else None,
                 "progress": round(j.progress or 0.0, 4), "progress_message": j.progress_message or "",
                 "started_at": j.started_at}
                for j, left in tx.alarms.running_jobs(running_limit)
            ]
            dead = list(tx.alarms.ended_badly(dead_limit))
        return {"depth": depth, "oldest_queued_age_s": round(oldest, 3), "running": running, "dead": dead}

    @property
    def lost_after_s(self) -> float:
        """See `lost_after_s(settings)`."""
        return lost_after_s(self.settings)

    def _state(self, status: str, age: float) -> str:
        """A registration as it stands now: `lost` once its heartbeat is too old, whatever it last said."""
        if status not in ("stopped", "lost") and age > self.lost_after_s:
            return "lost"
        return status

    def workers(self) -> list[dict[str, Any]]:
        """Every worker that has registered, newest heartbeat first, with the heartbeat's age (database clock).
        `status` is `lost` for one whose heartbeat is older than `lost_after_s` (or that its supervisor saw die),
        and `reported_status` what it last said itself."""
        with self.store.tx(write=False) as tx:
            now = tx.now()
            out = []
            for w in tx.ops.workers():
                age = max(0.0, now - w.heartbeat_at)
                out.append({"id": w.id, "hostname": w.hostname, "pid": w.pid, "concurrency": w.concurrency,
                            "status": self._state(w.status, age), "reported_status": w.status,
                            "started_at": w.started_at, "heartbeat_age_s": round(age, 3)})
            return out

    def worker_health(self) -> dict[str, int]:
        """How many registered workers are live (running or stopping, fresh heartbeat), lost or stopped."""
        counts = {"live": 0, "lost": 0, "stopped": 0, "slots": 0}
        with self.store.tx(write=False) as tx:
            now = tx.now()
            for w in tx.ops.workers():
                state = self._state(w.status, max(0.0, now - w.heartbeat_at))
                if state in ("lost", "stopped"):
                    counts[state] += 1
                else:
                    counts["live"] += 1
                    counts["slots"] += w.concurrency
        return counts

    def system(self) -> dict[str, Any]:
        """Storage totals, worker counts and the database engine."""
        with self.store.tx(write=False) as tx:
            assets, size = tx.assets.storage_used()
        health = self.worker_health()
        return {
            "storage": {"assets": assets, "bytes": size, "backend": self.settings.storage.backend},
            "workers": {"total": health["live"] + health["lost"] + health["stopped"], "live": health["live"],
                        "lost": health["lost"], "slots": health["slots"]},
            "database": self.store.dialect,
        }

    def stats(self, hours: int = 24) -> dict[str, Any]:
        """Per-hour job ends by status and credits charged, duration percentiles by kind, queue-depth samples."""
        with self.store.tx(write=False) as tx:
            now = tx.now()
            first_hour = int(now // 3600) - (hours - 1)
            since = first_hour * 3600.0
            ends = tx.alarms.jobs_per_hour(since)
            credits = tx.alarms.credits_settled_per_hour(since)
            durations = tx.alarms.run_durations(since)
            samples = list(tx.alarms.queue_samples(now - hours * 3600))
        per_hour: dict[int, dict[str, int]] = {
            h: {"succeeded": 0, "failed": 0, "cancelled": 0, "dead": 0} for h in range(first_hour, first_hour + hours)
        }
        for h, status, n in ends:
            if h in per_hour and status in per_hour[h]:
                per_hour[h][status] += n
        spent = dict.fromkeys(per_hour, 0)
        for h, n in credits:
            if h in spent:
                spent[h] += n
        by_kind: dict[str, list[float]] = {}
        for kind, seconds in durations:
            by_kind.setdefault(kind, []).append(max(0.0, seconds))
        duration_by_kind = []
        for kind in sorted(by_kind):
            values = sorted(by_kind[kind])
            duration_by_kind.append({"kind": kind, "count": len(values), "p50_s": round(percentile(values, 0.5), 4),
                                     "p95_s": round(percentile(values, 0.95), 4)})
        return {
            "hours": hours,
            "jobs_per_hour": [{"hour": h * 3600.0, **counts} for h, counts in sorted(per_hour.items())],
            "duration_by_kind": duration_by_kind,
            "queue_depth": [{"ts": s.ts, "depth": s.queued, "running": s.running} for s in samples],
            "credits_used_per_hour": [{"hour": h * 3600.0, "credits": n} for h, n in sorted(spent.items())],
        }

    # --- /metrics --------------------------------------------------------------------------------------
    def read_figures(self, cursors: dict[str, int], limit: int) -> dict[str, Any]:
        """One read transaction for the metrics collector: rows after each cursor, plus current state."""
        with self.store.tx(write=False) as tx:
            now = tx.now()
            history = tx.alarms.history_for_metrics(cursors.get("history", 0), limit)
            ledger = tx.alarms.ledger_for_metrics(cursors.get("ledger", 0), limit)
            invocations = [(i.id, i.ts, i.task, i.model, i.ok, i.error, i.seconds, i.load_s, i.unit, i.units)
                           for i in tx.alarms.invocations_after(cursors.get("invocations", 0), limit)]
            deliveries = tx.alarms.delivery_totals()
            firing: dict[str, int] = {}
            for a in tx.alarms.alarms(state="alarm"):
                firing[a.rule] = firing.get(a.rule, 0) + 1
        return {"now": now, "history": history, "ledger": ledger, "invocations": invocations,
                "deliveries": deliveries, "alarms": sorted(firing.items())}
