from __future__ import annotations

from typing import Any

from pydantic import Field

from reelforge.api.schemas.common import Public, Strict


class JobCreate(Strict):
    kind: str = Field(min_length=1, max_length=64, examples=["system.noop"])
    input: dict[str, Any] = Field(default_factory=dict)
    callback_url: str | None = Field(default=None, max_length=2048)
    priority: int = Field(default=0, ge=-100, le=100)


class JobBatchCreate(Strict):
    """Up to 100 jobs queued together: all or none."""

    jobs: list[dict[str, Any]] = Field(min_length=1, max_length=100,
                                       description="JobCreate objects; validated one by one, errors carry the index")


class JobError(Public):
    code: str
    message: str | None


class JobProgress(Public):
    fraction: float
    message: str


class JobPublic(Public):
    id: str
    kind: str
    status: str
    input: dict[str, Any]
    outputs: dict[str, Any] | None
    error: JobError | None
    progress: JobProgress
    credits: int
    credits_state: str
    attempt: int
    max_attempts: int
    priority: int
    cancel_requested: bool
    callback_url: str | None
    idempotency_key: str | None
    created_at: str | None
    started_at: str | None
    finished_at: str | None
    expires_at: str | None


class JobsPublic(Public):
    data: list[JobPublic]
    next_cursor: str | None


class JobBatchPublic(Public):
    data: list[JobPublic]


class JobEventPublic(Public):
    id: int
    ts: str | None = Field(description="When it happened (a step's start or end as the worker saw it)")
    recorded_at: str | None = Field(default=None, description="When the event was written; events are listed "
                                                               "in this order")
    type: str
    path: str | None
    attempt: int
    details: dict[str, Any]


class JobHistoryPublic(Public):
    job_id: str
    status: str
    events: list[JobEventPublic]


class PipelinePublic(Public):
    kind: str
    version: int
    description: str
    input_schema: dict[str, Any] | None
    steps: list[dict[str, Any]]
    asl: dict[str, Any]


class PipelinesPublic(Public):
    data: list[PipelinePublic]
