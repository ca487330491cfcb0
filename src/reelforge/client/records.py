"""The answer types: one dataclass per response schema, the whole JSON object kept in ``raw``."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled", "dead"})

M = TypeVar("M", bound="Record")


@dataclass
class Record:
    """Base of the answer types: known fields as attributes, the whole JSON object in ``raw``."""

    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False, kw_only=True)
    _nested: ClassVar[dict[str, Callable[[Any], Any]]] = {}

    @classmethod
    def from_dict(cls: type[M], data: Mapping[str, Any]) -> M:
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name == "raw":
                continue
            if f.name in data:
                value = data[f.name]
                conv = cls._nested.get(f.name)
                kwargs[f.name] = conv(value) if conv is not None and value is not None else value
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                kwargs[f.name] = None  # an older server without this field
        return cls(**kwargs, raw=dict(data))

    def to_dict(self) -> dict[str, Any]:
        """The JSON object the server sent."""
        return dict(self.raw)


def list_of(cls: type[M]) -> Callable[[Any], list[M]]:
    """A converter for a list of records, for ``_nested``."""
    return lambda v: [cls.from_dict(x) for x in v]


@dataclass
class User(Record):
    id: str
    email: str
    role: str
    disabled: bool
    credits: int
    created_at: str | None


@dataclass
class Registration(Record):
    """What registering answers: the same whether or not the address has an account (sign in to find out)."""

    status: str
    email: str


@dataclass
class TokenPair(Record):
    access_token: str
    refresh_token: str
    expires_in: int
    token_type: str = "bearer"


@dataclass
class ApiKey(Record):
    id: str
    name: str
    prefix: str
    created_at: str | None
    last_used_at: str | None
    revoked_at: str | None
    key: str | None = None  # the secret, in the answer to create_api_key only


@dataclass
class JobError(Record):
    code: str
    message: str | None


@dataclass
class JobProgress(Record):
    fraction: float = 0.0
    message: str = ""


@dataclass
class Job(Record):
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
    _nested: ClassVar[dict[str, Callable[[Any], Any]]] = {
        "error": JobError.from_dict, "progress": JobProgress.from_dict}

    def __post_init__(self) -> None:
        if self.progress is None:
            self.progress = JobProgress()

    @property
    def done(self) -> bool:
        """In a final state: succeeded, failed, cancelled or dead."""
        return self.status in TERMINAL_STATUSES

    @property
    def ok(self) -> bool:
        return self.status == "succeeded"


@dataclass
class JobPage(Record):
    data: list[Job]
    next_cursor: str | None
    _nested: ClassVar[dict[str, Callable[[Any], Any]]] = {"data": list_of(Job)}


@dataclass
class JobEvent(Record):
    id: int
    ts: str | None  # when it happened
    type: str
    path: str | None
    attempt: int
    details: dict[str, Any]
    recorded_at: str | None = None  # when it was written (the order of the list)


@dataclass
class JobHistory(Record):
    job_id: str
    status: str
    events: list[JobEvent]
    _nested: ClassVar[dict[str, Callable[[Any], Any]]] = {"events": list_of(JobEvent)}


@dataclass
class Pipeline(Record):
    kind: str
    version: int
    description: str
    input_schema: dict[str, Any] | None
    steps: list[dict[str, Any]]
    asl: dict[str, Any]


@dataclass
class Model(Record):
    """A model adapter on the server: whether it can run there, and why not."""

    name: str
    task: str
    description: str
    available: bool
    reason: str | None
    test_model: bool
    source: str | None
    details: dict[str, Any]


@dataclass
class SignedRequest(Record):
    url: str
    method: str
    headers: dict[str, str]
    expires_at: str | None


@dataclass
class UploadPart(Record):
    part_number: int
    url: str
    size: int
    method: str = "PUT"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Upload(Record):
    id: str
    status: str
    filename: str | None
    content_type: str
    size: int | None
    lifecycle: str
    multipart: bool
    part_size: int | None
    expires_at: str | None
    asset_id: str | None
    put: SignedRequest | None = None
    parts: list[UploadPart] | None = None
    _nested: ClassVar[dict[str, Callable[[Any], Any]]] = {
        "put": SignedRequest.from_dict, "parts": list_of(UploadPart)}


@dataclass
class Asset(Record):
    id: str
    content_type: str
    size: int
    sha256: str
    lifecycle: str
    filename: str | None
    job_id: str | None
    metadata: dict[str, Any]
    created_at: str | None
    expires_at: str | None
    download: SignedRequest | None = None
    _nested: ClassVar[dict[str, Callable[[Any], Any]]] = {"download": SignedRequest.from_dict}


@dataclass
class CreditEntry(Record):
    id: int
    kind: str
    amount: int
    balance_after: int
    job_id: str | None
    note: str
    created_at: str | None


@dataclass
class Credits(Record):
    balance: int
    ledger: list[CreditEntry]
    _nested: ClassVar[dict[str, Callable[[Any], Any]]] = {"ledger": list_of(CreditEntry)}


@dataclass
class Webhook(Record):
    id: str
    url: str
    event_types: list[str]
    description: str
    active: bool
    created_at: str | None
    secret: str | None = None  # in the answer to create_webhook only


@dataclass
class WebhookTest(Record):
    event_id: str
    status: str


@dataclass
class Delivery(Record):
    id: str
    event_id: str
    webhook_id: str | None
    target: str
    url: str
    status: str
    attempts: int
    last_status_code: int | None
    last_error: str | None
    created_at: str | None
    delivered_at: str | None


@dataclass(frozen=True)
class Progress:
    """What `JobHandle.wait` reports to ``on_progress``."""

    job_id: str
    status: str
    fraction: float
    message: str


@dataclass(frozen=True)
class StreamEvent:
    """One server-sent event from ``/v1/jobs/{id}/events``: ``progress``, ``status``, ``history`` or ``end``."""

    event: str
    data: dict[str, Any]
    id: str | None = None
