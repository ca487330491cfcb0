from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Annotated, Any

from anyio import CapacityLimiter, to_thread
from anyio.lowlevel import RunVar
from fastapi import APIRouter, Header, Query, Response
from fastapi.responses import StreamingResponse
from pydantic import ValidationError

from reelforge import errors
from reelforge.adapters.db.store import read_owned_job
from reelforge.api import convert
from reelforge.api.deps import Container, CurrentUser
from reelforge.api.schemas.common import MAX_ID, iso
from reelforge.api.schemas.jobs import (
    JobBatchCreate,
    JobBatchPublic,
    JobCreate,
    JobHistoryPublic,
    JobPublic,
    JobsPublic,
    PipelinePublic,
    PipelinesPublic,
)
from reelforge.domain.types import TERMINAL_STATUSES, JobStatus

router = APIRouter(tags=["jobs"])


@router.post("/jobs", status_code=202, response_model=JobPublic,
             responses={200: {"description": "Finished within ?wait=", "model": JobPublic}})
def submit(body: JobCreate, p: CurrentUser, c: Container, response: Response,
           wait: Annotated[float, Query(ge=0, le=60, description="Seconds to wait for the end (max 60)")] = 0,
           idempotency_key: Annotated[str | None, Header(max_length=255)] = None) -> JobPublic:
    """Queue a job. Same Idempotency-Key + same body returns the same job; another body answers 409."""
    job, created = c.jobs.submit(p, body.kind, body.input, callback_url=body.callback_url, priority=body.priority,
                                 idempotency_key=idempotency_key)
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    if wait:
        job = c.jobs.wait(p, job.id, min(wait, c.settings.jobs.max_wait_s))
        if job.status in TERMINAL_STATUSES:
            response.status_code = 200
    return convert.job(job)


@router.post("/jobs/batch", status_code=202, response_model=JobBatchPublic)
def submit_batch(body: JobBatchCreate, p: CurrentUser, c: Container,
                 idempotency_key: Annotated[str | None, Header(max_length=255)] = None) -> JobBatchPublic:
    """Queue up to 100 jobs in one transaction: all of them or none.

    Every item is a JobCreate; invalid items answer 422 with `details.errors[].index`. Credits are reserved per
    job; if the balance does not cover the whole batch nothing is queued (402). Idempotency-Key is not
    supported here (400): a retried batch would queue new jobs, so retry single jobs with keys instead.
    """
    if idempotency_key is not None:
        raise errors.BadRequest("Idempotency-Key is not supported on /v1/jobs/batch; submit jobs one by one "
                                "to use it", code="idempotency_not_supported")
    items: list[dict[str, Any]] = []
    problems: list[dict[str, Any]] = []
    for i, raw in enumerate(body.jobs):
        try:
            items.append(JobCreate.model_validate(raw).model_dump())
        except ValidationError as exc:
            for e in exc.errors(include_url=False, include_context=False):
                problems.append({"index": i, "field": ".".join(str(x) for x in e["loc"]), "message": e["msg"],
                                 "type": e["type"]})
    if problems:
        first = problems[0]
        raise errors.ValidationFailed(f"jobs[{first['index']}].{first['field']}: {first['message']}",
                                      errors=problems)
    jobs = c.jobs.submit_many(p, items)
    return JobBatchPublic(data=[convert.job(j) for j in jobs])


@router.get("/jobs", response_model=JobsPublic)
def list_jobs(p: CurrentUser, c: Container,
              status: Annotated[JobStatus | None, Query()] = None,
              kind: Annotated[str | None, Query(max_length=64)] = None,
              limit: Annotated[int, Query(ge=1, le=200)] = 50,
              cursor: Annotated[str | None, Query(max_length=200)] = None) -> JobsPublic:
    rows, nxt = c.jobs.list(p, status=status.value if status else None, kind=kind, limit=limit, cursor=cursor)
    return JobsPublic(data=[convert.job(j) for j in rows], next_cursor=nxt)


# Job reads get their own small set of threadpool tokens, per event loop: at most as many reads in flight as the
# database pool keeps connections (more would open and close overflow connections on every burst), and polling
# clients cannot take every thread of the shared pool from the other routes.
_JOB_READ_LIMITER: RunVar[CapacityLimiter] = RunVar("reelforge_job_read_limiter")


def _job_read_limiter(c: Any) -> CapacityLimiter:
    try:
        return _JOB_READ_LIMITER.get()
    except LookupError:
        size = getattr(getattr(c.settings, "database", None), "pool_size", 10)
        limiter = CapacityLimiter(max(1, min(int(size), 16)))
        _JOB_READ_LIMITER.set(limiter)
        return limiter


@router.get("/jobs/{job_id}", response_model=JobPublic)
async def get_job(job_id: str, p: CurrentUser, c: Container) -> JobPublic:
    """The hot polling read: `async def`, so the route and its response validation stay on the event loop, and
    one threadpool hop for one precompiled SELECT on a pooled DB-API cursor (`read_owned_job`) whose WHERE
    clause holds the ownership rule (`owned()` semantics: another user's job, even an admin's view of it, reads
    as missing)."""
    row = await to_thread.run_sync(read_owned_job, c.db, job_id, p.user_id, limiter=_job_read_limiter(c))
    if row is None:
        raise errors.NotFound("Job not found", code="job_not_found")
    return convert.job(row)


@router.post("/jobs/{job_id}/cancel", response_model=JobPublic)
def cancel_job(job_id: str, p: CurrentUser, c: Container) -> JobPublic:
    """Queued jobs end at once; a running one stops within one heartbeat. Credits are refunded."""
    return convert.job(c.jobs.cancel(p, job_id))


@router.get("/jobs/{job_id}/history", response_model=JobHistoryPublic)
def history(job_id: str, p: CurrentUser, c: Container,
            after: Annotated[int, Query(ge=0, le=MAX_ID)] = 0) -> JobHistoryPublic:
    job = c.jobs.get(p, job_id)
    return JobHistoryPublic(job_id=job.id, status=job.status,
                            events=[convert.event(e) for e in c.jobs.history(p, job_id, after=after)])


def _sse(event: str, data: dict[str, Any], event_id: str | None = None) -> str:
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, default=str)}\n\n"


@router.get("/jobs/{job_id}/events", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}}})
def job_events(job_id: str, p: CurrentUser, c: Container,
               timeout: Annotated[float, Query(ge=1, le=3600)] = 600) -> StreamingResponse:
    """Server-sent events: `progress`, `history` and `status` until the job ends (then `end`)."""
    c.jobs.get(p, job_id)  # 404 before the stream starts

    def stream() -> Iterator[str]:
        last: tuple[Any, ...] | None = None
        after = 0
        deadline = time.monotonic() + timeout
        yield "retry: 2000\n\n"
        while time.monotonic() < deadline:
            try:
                job = c.jobs.get(p, job_id)
                events = c.jobs.history(p, job_id, after=after)
            except errors.NotFound:
                yield _sse("end", {"reason": "deleted"})
                return
            for e in events:
                after = e.id
                yield _sse("history", {"type": e.type, "path": e.path, "ts": iso(e.ts), "details": e.details},
                           str(e.id))
            state = (job.status, round(job.progress or 0, 4), job.progress_message)
            if state != last:
                if last is None or state[0] != last[0]:
                    yield _sse("status", {"id": job.id, "status": job.status})
                yield _sse("progress", {"id": job.id, "status": job.status, "fraction": state[1],
                                        "message": state[2]})
                last = state
            if job.status in TERMINAL_STATUSES:
                yield _sse("end", convert.job(job).model_dump(mode="json"))
                return
            time.sleep(0.25)
        yield ": timeout\n\n"

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _pipeline_public(pl: Any) -> PipelinePublic:
    model = getattr(pl, "input_model", None)
    desc = pl.describe()
    return PipelinePublic(kind=pl.kind, version=pl.version, description=pl.description,
                          input_schema=model.model_json_schema() if model is not None else None,
                          steps=desc.get("steps", []), asl=pl.to_asl())


@router.get("/pipelines", response_model=PipelinesPublic, tags=["pipelines"])
def pipelines(p: CurrentUser, c: Container) -> PipelinesPublic:
    return PipelinesPublic(data=[_pipeline_public(pl) for pl in c.pipelines.all()])


@router.get("/pipelines/{kind}", response_model=PipelinePublic, tags=["pipelines"])
def pipeline(kind: str, p: CurrentUser, c: Container) -> PipelinePublic:
    """One pipeline, with its input schema and its Amazon States Language export."""
    return _pipeline_public(c.pipelines.get(kind))
