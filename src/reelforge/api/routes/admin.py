"""The admin console's API (queue, redrive, workers, system, alarms, statistics) and a job owner's retry."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from reelforge import __version__
from reelforge.api import convert
from reelforge.api.deps import Admin, Container, CurrentUser
from reelforge.api.schemas.admin import (
    AdminQueuePublic,
    AlarmEventPublic,
    AlarmPublic,
    AlarmRulePublic,
    AlarmsPublic,
    DepthSample,
    EndedJob,
    HourCredits,
    HourJobs,
    KindDuration,
    RunningJob,
    StatsPublic,
    SystemPublic,
    WorkerPublic,
    WorkersPublic,
)
from reelforge.api.schemas.common import iso
from reelforge.api.schemas.jobs import JobError, JobPublic
from reelforge.api.schemas.misc import ModelPublic

router = APIRouter()


def _ended(j: Any) -> EndedJob:
    return EndedJob(job_id=j.id, kind=j.kind, owner_id=j.owner_id, status=j.status,
                    error=JobError(code=j.error_code, message=j.error_message) if j.error_code else None,
                    attempt=j.attempt, failures=j.failures, max_attempts=j.max_attempts, credits=j.credits,
                    created_at=iso(j.created_at), finished_at=iso(j.finished_at))


@router.get("/admin/queue", response_model=AdminQueuePublic, tags=["admin"])
def queue(admin: Admin, c: Container,
          dead_limit: Annotated[int, Query(ge=0, le=500)] = 50) -> AdminQueuePublic:
    """Queue depth by kind and status, the oldest queued job's age, running jobs and recent dead/failed jobs."""
    q = c.stats.queue(dead_limit=dead_limit)
    return AdminQueuePublic(
        depth=q["depth"], oldest_queued_age_s=q["oldest_queued_age_s"],
        running=[RunningJob(**{**r, "started_at": iso(r["started_at"])}) for r in q["running"]],
        dead=[_ended(j) for j in q["dead"]],
    )


@router.post("/admin/jobs/{job_id}/redrive", response_model=JobPublic, tags=["admin"])
def redrive(job_id: str, admin: Admin, c: Container) -> JobPublic:
    """Put a dead or failed job back in the queue: failures reset, credits reserved again (402 if short)."""
    return convert.job(c.recovery.redrive(admin, job_id))


@router.get("/admin/workers", response_model=WorkersPublic, tags=["admin"])
def workers(admin: Admin, c: Container) -> WorkersPublic:
    """Every registered worker with the age of its last heartbeat."""
    return WorkersPublic(data=[WorkerPublic(**{**w, "started_at": iso(w["started_at"])}) for w in c.stats.workers()])


@router.get("/admin/system", response_model=SystemPublic, tags=["admin"])
def system(admin: Admin, c: Container) -> SystemPublic:
    """Version, model adapters (as GET /v1/models), storage totals, worker counts, database engine."""
    info = c.stats.system()
    return SystemPublic(version=__version__,
                        models=[ModelPublic.model_validate(m, from_attributes=True) for m in c.models.list()],
                        **info)


@router.get("/admin/alarms", response_model=AlarmsPublic, tags=["admin"])
def alarms(admin: Admin, c: Container, hours: Annotated[int, Query(ge=1, le=24 * 30)] = 24) -> AlarmsPublic:
    """Alarm rules, alarms firing now, and what was raised or resolved in the last `hours`."""
    o = c.alarms.overview(hours=hours)
    return AlarmsPublic(
        rules=[AlarmRulePublic(**r) for r in o["rules"]],
        active=[AlarmPublic(key=a.key, rule=a.rule, state=a.state, value=a.value, threshold=a.threshold,
                            message=a.message, details=a.details or {}, changed_at=iso(a.changed_at),
                            raised_at=iso(a.raised_at), resolved_at=iso(a.resolved_at),
                            evaluated_at=iso(a.evaluated_at)) for a in o["active"]],
        recent=[AlarmEventPublic(id=e.id, key=e.key, rule=e.rule, event=e.event, value=e.value,
                                 threshold=e.threshold, message=e.message, ts=iso(e.ts)) for e in o["recent"]],
    )


@router.get("/admin/stats", response_model=StatsPublic, tags=["admin"])
def stats(admin: Admin, c: Container, hours: Annotated[int, Query(ge=1, le=24 * 7)] = 24) -> StatsPublic:
    """Per hour: jobs ended by status and credits charged; run-time percentiles by kind; queue-depth samples;
    and each installed application's own sections (named by the application)."""
    s = c.stats.stats(hours)
    extra: dict[str, Any] = {}
    for application in c.apps:
        if application.admin_stats is not None:
            extra.update(application.admin_stats(c))
    return StatsPublic(
        hours=s["hours"],
        jobs_per_hour=[HourJobs(**{**h, "hour": iso(h["hour"])}) for h in s["jobs_per_hour"]],
        duration_by_kind=[KindDuration(**d) for d in s["duration_by_kind"]],
        queue_depth=[DepthSample(ts=iso(q["ts"]), depth=q["depth"], running=q["running"]) for q in s["queue_depth"]],
        credits_used_per_hour=[HourCredits(hour=iso(h["hour"]), credits=h["credits"])
                               for h in s["credits_used_per_hour"]],
        **extra,
    )


@router.post("/jobs/{job_id}/retry", status_code=202, response_model=JobPublic, tags=["jobs"])
def retry(job_id: str, p: CurrentUser, c: Container, response: Response) -> JobPublic:
    """A new job with the same kind, input and callback as this failed, dead or cancelled one (409 otherwise)."""
    job = c.recovery.retry(p, job_id)
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    return convert.job(job)
