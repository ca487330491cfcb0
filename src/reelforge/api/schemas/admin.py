"""The admin console's read models: queue, workers, system, alarms and statistics."""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field

from reelforge.api.schemas.common import Public
from reelforge.api.schemas.jobs import JobError
from reelforge.api.schemas.misc import ModelPublic


class QueueDepth(Public):
    kind: str
    status: str
    count: int


class RunningJob(Public):
    job_id: str
    kind: str
    owner_id: str
    worker_id: str | None
    attempt: int
    lease_expires_in_s: float | None
    progress: float
    progress_message: str
    started_at: str | None


class EndedJob(Public):
    job_id: str
    kind: str
    owner_id: str
    status: str
    error: JobError | None
    attempt: int
    failures: int
    max_attempts: int
    credits: int
    created_at: str | None
    finished_at: str | None


class AdminQueuePublic(Public):
    depth: list[QueueDepth]
    oldest_queued_age_s: float
    running: list[RunningJob]
    dead: list[EndedJob]


class WorkerPublic(Public):
    id: str
    hostname: str
    pid: int
    concurrency: int
    status: str = Field(description="running, stopping, stopped, or lost: no heartbeat for longer than a lease "
                                    "(or seen dead by its supervisor)")
    reported_status: str = Field(description="The status the worker last reported itself")
    heartbeat_age_s: float
    started_at: str | None
    call_url: str | None = Field(default=None, description="Where the worker answers interactive calls; null when "
                                                          "it serves none (or has stopped)")


class WorkersPublic(Public):
    data: list[WorkerPublic]


class StorageSummary(Public):
    assets: int
    bytes: int
    backend: str


class WorkerSummary(Public):
    total: int
    live: int
    lost: int
    slots: int


class SystemPublic(Public):
    version: str
    models: list[ModelPublic]
    storage: StorageSummary
    workers: WorkerSummary
    database: str


class AlarmRulePublic(Public):
    name: str
    description: str
    unit: str
    enabled: bool
    threshold: float
    window_s: float
    min_samples: int


class AlarmPublic(Public):
    key: str
    rule: str
    state: str
    value: float | None
    threshold: float
    message: str
    details: dict[str, Any]
    changed_at: str | None
    raised_at: str | None
    resolved_at: str | None
    evaluated_at: str | None


class AlarmEventPublic(Public):
    id: int
    key: str
    rule: str
    event: str
    value: float | None
    threshold: float
    message: str
    ts: str | None


class AlarmsPublic(Public):
    rules: list[AlarmRulePublic]
    active: list[AlarmPublic]
    recent: list[AlarmEventPublic]


class HourJobs(Public):
    hour: str | None
    succeeded: int
    failed: int
    cancelled: int
    dead: int


class KindDuration(Public):
    kind: str
    count: int
    p50_s: float
    p95_s: float


class DepthSample(Public):
    ts: str | None
    depth: int
    running: int


class HourCredits(Public):
    hour: str | None
    credits: int


class StatsPublic(Public):
    hours: int
    jobs_per_hour: list[HourJobs]
    duration_by_kind: list[KindDuration]
    queue_depth: list[DepthSample]
    credits_used_per_hour: list[HourCredits]
    # Each installed application adds its own sections (for example `videos`) next to the platform's figures.
    model_config = ConfigDict(extra="allow", json_schema_extra={
        "description": "Platform figures, plus one section per installed application that reports statistics"})
