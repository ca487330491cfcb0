from __future__ import annotations

import math
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import ValidationError
from pydantic_core import to_json

from reelforge import errors
from reelforge.api import convert, live
from reelforge.api.deps import Container, CurrentUser, container_of
from reelforge.api.schemas.common import MAX_ID
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
from reelforge.services.results import has_asset_ids

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
        if has_asset_ids(job.outputs):
            return convert.job(job, c.results.urls_now(p.user_id, [job.outputs]))
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
async def list_jobs(p: CurrentUser, request: Request,
                    status: Annotated[JobStatus | None, Query()] = None,
                    kind: Annotated[str | None, Query(max_length=64)] = None,
                    limit: Annotated[int, Query(ge=1, le=200)] = 50,
                    cursor: Annotated[str | None, Query(max_length=200)] = None) -> Response:
    c = container_of(request)
    rows, nxt = await c.jobs.read_page(p, status=status.value if status else None, kind=kind, limit=limit,
                                       cursor=cursor)
    linked = [j.outputs for j in rows if has_asset_ids(j.outputs)]
    urls = await c.results.urls(p.user_id, linked) if linked else None  # one lookup for the whole page
    return convert.respond({"data": [convert.job_fields(j, urls) for j in rows], "next_cursor": nxt})


MAX_WAIT_QUERY_S = 3600.0
# Declared for the OpenAPI document and read from the request in the route: each declared parameter costs
# FastAPI a validation per request on the most polled route, and these two are absent on nearly every request.
_JOB_READ_PARAMETERS = [
    {"name": "wait", "in": "query", "required": False,
     "schema": {"type": "number", "minimum": 0, "maximum": MAX_WAIT_QUERY_S, "default": 0},
     "description": "Long poll: answer as soon as the job's status changes (with If-None-Match: as soon as "
                    "anything in it changes) or after this many seconds (at most the server's jobs.max_wait_s)"},
    {"name": "If-None-Match", "in": "header", "required": False, "schema": {"type": "string"},
     "description": "An ETag of an earlier answer: 304 when the job is still as that answer showed it"},
]


def _wait_param(request: Request) -> float:
    if not request.scope.get("query_string"):  # the common read: no query to parse
        return 0.0
    raw = request.query_params.get("wait")
    if raw is None:
        return 0.0
    try:
        wait = float(raw)
    except ValueError:
        wait = math.nan
    if not 0 <= wait <= MAX_WAIT_QUERY_S:  # also NaN
        raise errors.ValidationFailed(f"wait: must be a number of seconds from 0 to {MAX_WAIT_QUERY_S:g}",
                                      errors=[{"field": "wait", "message": "out of range", "type": "value_error"}])
    return wait


@router.get("/jobs/{job_id}", response_model=JobPublic, openapi_extra={"parameters": _JOB_READ_PARAMETERS},
            responses={304: {"description": "Not modified: the job is still as the If-None-Match ETag names it"}})
async def get_job(job_id: str, p: CurrentUser, request: Request) -> Response:
    """The job, with an ETag; `If-None-Match` with a current ETag answers 304. `?wait=N` is a long poll. Another
    user's job reads as missing (404), also for an admin."""
    c = container_of(request)
    wait = _wait_param(request)
    if_none_match = request.headers.get("if-none-match")
    job = await c.jobs.read(p, job_id)
    period = c.results.period()
    if wait and job.status not in TERMINAL_STATUSES:
        if if_none_match:
            def changed(j: Any) -> bool:
                return not convert.matches(if_none_match, convert.job_etag(j, period))
        else:
            def changed(j: Any) -> bool:
                return bool(j.status != job.status)
        if not changed(job):
            job = await c.jobs.watch(p, job_id, min(wait, c.settings.jobs.max_wait_s), changed,
                                     gone=request.is_disconnected, current=job)
    body = plain = to_json(convert.job_fields(job))
    if has_asset_ids(job.outputs):
        urls = await c.results.urls(p.user_id, [job.outputs], period)
        if urls:
            body = to_json(convert.job_fields(job, urls))
    return convert.tagged(body, convert.job_etag(job, period, plain), if_none_match)


@router.post("/jobs/{job_id}/cancel", response_model=JobPublic)
def cancel_job(job_id: str, p: CurrentUser, c: Container) -> JobPublic:
    """Queued jobs end at once; a running one stops within one heartbeat. Credits are refunded."""
    return convert.job(c.jobs.cancel(p, job_id))


@router.get("/jobs/{job_id}/history", response_model=JobHistoryPublic)
def history(job_id: str, p: CurrentUser, c: Container,
            after: Annotated[int, Query(ge=0, le=MAX_ID)] = 0) -> Response:
    job = c.jobs.get(p, job_id)
    return convert.respond(JobHistoryPublic(job_id=job.id, status=job.status, events=[
        convert.event(e) for e in c.jobs.history(p, job_id, after=after)]))


@router.get("/jobs/{job_id}/events", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}}})
async def job_events(job_id: str, p: CurrentUser, request: Request,
                     timeout: Annotated[float, Query(ge=1, le=3600)] = 600,
                     after: Annotated[int | None, Query(ge=0, le=MAX_ID, description="Resume after this history "
                                                        "event id (as Last-Event-ID)")] = None,
                     last_event_id: Annotated[str | None, Header(max_length=32)] = None) -> StreamingResponse:
    """Server-sent events: `history` (with `id:`), `status` and `progress` until the job ends (then `end`).
    Resumes after `Last-Event-ID` (or `?after=`). The same stream goes over a WebSocket at
    `/v1/jobs/{job_id}/events/ws` (docs/architecture.md, "Live events")."""
    c = container_of(request)
    cursor = after if after is not None else live.cursor(last_event_id, "Last-Event-ID")
    await c.jobs.read(p, job_id)  # 404 before the stream starts

    async def stream() -> AsyncIterator[str]:
        yield "retry: 2000\n\n"
        async for message in live.follow(c, p, job_id, after=cursor, timeout_s=timeout,
                                         ping_s=c.settings.live.ping_s):
            yield live.sse(message)

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
