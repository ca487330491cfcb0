"""Python client for the reelforge HTTP API: `Client` (blocking) and `AsyncClient` (asyncio).

It depends on the standard library and httpx only, so it can be copied into any project::

    from reelforge.client import Client

    with Client("http://127.0.0.1:8000") as rf:
        rf.login("ada@example.com", "a long password")       # or Client(url, api_key="rf_...")
        job = rf.submit("system.noop", {"echo": 1}).wait(60, on_progress=print)
        asset = rf.upload_file("clip.mp4")                    # single PUT or multipart, sha256 checked
        rf.download(asset.id, "copy.mp4")                     # streamed, sha256 verified

Behaviour every method shares:

- The server is ``base_url``, else ``$REELFORGE_URL``, else http://127.0.0.1:8000.
- Authentication by API key (``api_key=`` or ``$REELFORGE_API_KEY``) or by access token; with a refresh
  token held, an expired access token is refreshed once, transparently (``on_tokens`` sees the new pair).
- 429 and 503 answers are retried after ``Retry-After`` (bounded by ``max_retries`` and ``max_retry_wait``);
  job submits carry an ``Idempotency-Key`` so that a retried submit never makes two jobs.
- Every error answer raises `ApiError` with the problem+json body's ``status``, ``code`` and ``detail``;
  a server that cannot be reached raises `ServerUnreachable`, an exchange that breaks off `ConnectionLost`
  (both `ApiError` with status 0).
- Signed storage URLs are sent without the ``Authorization`` header (they carry their own signature).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import email.utils
import hashlib
import json
import mimetypes
import os
import random
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar
from urllib.parse import quote

import httpx

from reelforge import __version__

__all__ = [
    "ApiError", "ApiKey", "Asset", "AsyncClient", "AsyncJobHandle", "ChecksumMismatch", "Client", "ConnectionLost",
    "CreditEntry",
    "Credits", "Delivery", "Job", "JobError", "JobEvent", "JobHandle", "JobHistory", "JobPage", "JobProgress",
    "Model", "Pipeline", "Progress", "ResumeError", "ServerUnreachable", "SignedRequest", "StreamEvent",
    "TokenPair", "Upload", "UploadFailed", "UploadPart", "User", "WaitTimeout", "Webhook", "WebhookTest",
]

DEFAULT_URL = "http://127.0.0.1:8000"
TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled", "dead"})
CHUNK = 1024 * 1024
# Refresh an access token this long before it expires, so that a request never races its expiry.
REFRESH_MARGIN_S = 30.0

ProgressCallback = Callable[["Progress"], None]
BytesCallback = Callable[[int, int], None]


# --- errors ---------------------------------------------------------------------------------------------
class ApiError(Exception):
    """An error answer (RFC 9457 problem+json), or a request that never got one (status 0)."""

    def __init__(self, status: int, code: str, detail: str, *, title: str | None = None,
                 problem: Mapping[str, Any] | None = None, request_id: str | None = None,
                 retry_after: float | None = None) -> None:
        where = f"HTTP {status}, " if status else ""
        super().__init__(f"{detail} ({where}{code})")
        self.status = status
        self.code = code
        self.detail = detail
        self.title = title or detail
        self.problem: dict[str, Any] = dict(problem or {})
        self.request_id = request_id
        self.retry_after = retry_after

    @property
    def errors(self) -> list[dict[str, Any]]:
        """Per-field validation errors (``field``, ``message``, ``type``), when the server gave them."""
        errs = self.problem.get("errors")
        return [e for e in errs if isinstance(e, dict)] if isinstance(errs, list) else []

    @classmethod
    def from_response(cls, response: httpx.Response) -> ApiError:
        body: Any = None
        with contextlib.suppress(ValueError, UnicodeDecodeError):
            body = response.json()
        status = response.status_code
        rid = response.headers.get("x-request-id")
        retry_after = _retry_after(response)
        if isinstance(body, dict) and isinstance(body.get("code"), str):
            return cls(status, body["code"], str(body.get("detail") or body.get("title") or body["code"]),
                       title=body.get("title"), problem=body, request_id=rid, retry_after=retry_after)
        text = response.text.strip()[:300] if response.content else ""
        return cls(status, f"http_{status}", text or response.reason_phrase or f"HTTP {status}",
                   problem=body if isinstance(body, dict) else {}, request_id=rid, retry_after=retry_after)


class ServerUnreachable(ApiError):
    """No answer at all: connection refused, DNS failure, timeout, connection dropped."""

    def __init__(self, url: str, cause: BaseException) -> None:
        super().__init__(0, "unreachable", f"Cannot reach {url}: {type(cause).__name__}: {cause}".rstrip(": "))
        self.url = url


class ConnectionLost(ApiError):
    """The server was reached but the exchange broke off: a timeout, a reset, a body cut short."""

    def __init__(self, url: str, cause: BaseException) -> None:
        code = "timeout" if isinstance(cause, httpx.TimeoutException) else "connection_lost"
        super().__init__(0, code, f"Connection to {url} failed: {type(cause).__name__}: {cause}".rstrip(": "))
        self.url = url


class ChecksumMismatch(ApiError):
    """A download's bytes do not match the asset's size or sha256; nothing was written at the target."""

    def __init__(self, detail: str, *, expected: str, received: str) -> None:
        super().__init__(0, "checksum_mismatch", detail)
        self.expected = expected
        self.received = received


class UploadFailed(ApiError):
    """An upload stopped part-way; ``upload_id`` can be passed back as ``resume=`` (when journaled)."""

    def __init__(self, upload_id: str, cause: ApiError) -> None:
        super().__init__(cause.status, cause.code, cause.detail, title=cause.title, problem=cause.problem,
                         request_id=cause.request_id, retry_after=cause.retry_after)
        self.upload_id = upload_id


class ResumeError(ValueError):
    """An upload cannot be resumed: no local journal, another file, or the upload is no longer pending."""


class WaitTimeout(TimeoutError):
    """`JobHandle.wait` ran out of time; ``job`` is the last state seen."""

    def __init__(self, job: Job) -> None:
        super().__init__(f"job {job.id} still {job.status} ({job.progress.fraction:.0%})")
        self.job = job


# --- data -------------------------------------------------------------------------------------------------
M = TypeVar("M", bound="_Record")
T = TypeVar("T")


@dataclass
class _Record:
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


def _list_of(cls: type[M]) -> Callable[[Any], list[M]]:
    return lambda v: [cls.from_dict(x) for x in v]


@dataclass
class User(_Record):
    id: str
    email: str
    role: str
    disabled: bool
    credits: int
    created_at: str | None


@dataclass
class TokenPair(_Record):
    access_token: str
    refresh_token: str
    expires_in: int
    token_type: str = "bearer"


@dataclass
class ApiKey(_Record):
    id: str
    name: str
    prefix: str
    created_at: str | None
    last_used_at: str | None
    revoked_at: str | None
    key: str | None = None  # the secret, in the answer to create_api_key only


@dataclass
class JobError(_Record):
    code: str
    message: str | None


@dataclass
class JobProgress(_Record):
    fraction: float = 0.0
    message: str = ""


@dataclass
class Job(_Record):
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
class JobPage(_Record):
    data: list[Job]
    next_cursor: str | None
    _nested: ClassVar[dict[str, Callable[[Any], Any]]] = {"data": _list_of(Job)}


@dataclass
class JobEvent(_Record):
    id: int
    ts: str | None
    type: str
    path: str | None
    attempt: int
    details: dict[str, Any]


@dataclass
class JobHistory(_Record):
    job_id: str
    status: str
    events: list[JobEvent]
    _nested: ClassVar[dict[str, Callable[[Any], Any]]] = {"events": _list_of(JobEvent)}


@dataclass
class Pipeline(_Record):
    kind: str
    version: int
    description: str
    input_schema: dict[str, Any] | None
    steps: list[dict[str, Any]]
    asl: dict[str, Any]


@dataclass
class Model(_Record):
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
class SignedRequest(_Record):
    url: str
    method: str
    headers: dict[str, str]
    expires_at: str | None


@dataclass
class UploadPart(_Record):
    part_number: int
    url: str
    size: int
    method: str = "PUT"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Upload(_Record):
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
        "put": SignedRequest.from_dict, "parts": _list_of(UploadPart)}


@dataclass
class Asset(_Record):
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
class CreditEntry(_Record):
    id: int
    kind: str
    amount: int
    balance_after: int
    job_id: str | None
    note: str
    created_at: str | None


@dataclass
class Credits(_Record):
    balance: int
    ledger: list[CreditEntry]
    _nested: ClassVar[dict[str, Callable[[Any], Any]]] = {"ledger": _list_of(CreditEntry)}


@dataclass
class Webhook(_Record):
    id: str
    url: str
    event_types: list[str]
    description: str
    active: bool
    created_at: str | None
    secret: str | None = None  # in the answer to create_webhook only


@dataclass
class WebhookTest(_Record):
    event_id: str
    status: str


@dataclass
class Delivery(_Record):
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


# --- helpers shared by both clients -------------------------------------------------------------------------
def _seg(value: str) -> str:
    """One path segment: ids never contain '/', and a hostile one must not change the route."""
    return quote(str(value), safe="")


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _clean(params: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None}


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _guess_type(path: Path) -> str:
    return mimetypes.guess_type(path.name)[0] or "application/octet-stream"


def _transport_error(exc: httpx.HTTPError, url: str) -> ApiError:
    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.UnsupportedProtocol)):
        return ServerUnreachable(url, exc)
    return ConnectionLost(url, exc)


def _user_agent() -> str:
    return f"reelforge-client/{__version__} httpx/{httpx.__version__}"


class _SseParser:
    """The text/event-stream format (WHATWG), one line at a time: fields until a blank line; ':' comments."""

    def __init__(self) -> None:
        self.event = "message"
        self.data: list[str] = []
        self.last_id: str | None = None

    def feed(self, line: str) -> StreamEvent | None:
        if not line:
            out = None
            if self.data:
                text = "\n".join(self.data)
                try:
                    payload = json.loads(text)
                except ValueError:
                    payload = {"text": text}
                out = StreamEvent(self.event, payload if isinstance(payload, dict) else {"value": payload},
                                  self.last_id)
            self.event, self.data = "message", []
            return out
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            self.event = value
        elif name == "data":
            self.data.append(value)
        elif name == "id":
            self.last_id = value
        return None


class _Bytes:
    """Counts transferred bytes for an ``on_progress(done, total)`` callback; rewinds on a retried request."""

    def __init__(self, total: int, callback: BytesCallback | None) -> None:
        self.total = total
        self.done = 0
        self.callback = callback

    def add(self, n: int) -> None:
        self.done += n
        if self.callback is not None:
            self.callback(self.done, self.total)

    def rewind(self, to: int) -> None:
        self.done = to


def _file_range(path: Path, offset: int, length: int, counter: _Bytes) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        fh.seek(offset)
        left = length
        while left > 0:
            block = fh.read(min(CHUNK, left))
            if not block:
                raise OSError(f"{path} is shorter than expected (changed during the upload?)")
            left -= len(block)
            counter.add(len(block))
            yield block


class _Journal:
    """A multipart upload's local record (signed URLs + finished parts), so that a later run re-sends only
    what is missing. Lives in the client's ``upload_state_dir``; removed when the upload completes."""

    def __init__(self, directory: Path | None, upload: Upload, path: Path, size: int, sha256: str,
                 parts: dict[int, str] | None = None) -> None:
        self.file = directory / f"{_seg(upload.id)}.json" if directory is not None else None
        self.upload = upload
        self.path = path
        self.size = size
        self.sha256 = sha256
        self.parts: dict[int, str] = dict(parts or {})

    def save(self) -> None:
        if self.file is None:
            return
        self.file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        doc = {"upload": self.upload.raw, "path": str(self.path), "size": self.size, "sha256": self.sha256,
               "parts": {str(n): e for n, e in self.parts.items()}}
        tmp = self.file.with_suffix(f".{uuid.uuid4().hex[:8]}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(doc, fh)
        os.replace(tmp, self.file)

    def remove(self) -> None:
        if self.file is not None:
            self.file.unlink(missing_ok=True)

    @classmethod
    def load(cls, directory: Path | None, upload_id: str, path: Path, size: int, sha256: str) -> _Journal:
        if directory is None:
            raise ResumeError("This client keeps no upload journal (set upload_state_dir) so it cannot resume")
        file = directory / f"{_seg(upload_id)}.json"
        try:
            doc = json.loads(file.read_text())
        except (OSError, ValueError) as exc:
            raise ResumeError(f"No local record of upload {upload_id}; start a new upload") from exc
        if doc.get("size") != size or doc.get("sha256") != sha256:
            raise ResumeError(f"Upload {upload_id} was for other content ({doc.get('path')}); start a new upload")
        return cls(directory, Upload.from_dict(doc["upload"]), path, size, sha256,
                   {int(n): str(e) for n, e in doc.get("parts", {}).items()})

    def pending(self) -> list[UploadPart]:
        return [p for p in self.upload.parts or [] if p.part_number not in self.parts]

    def offset(self, part: UploadPart) -> int:
        return (part.part_number - 1) * int(self.upload.part_size or 0)

    def completed_parts(self) -> list[tuple[int, str]]:
        return sorted(self.parts.items())

    def sent_bytes(self) -> int:
        return sum(p.size for p in self.upload.parts or [] if p.part_number in self.parts)


def _download_target(asset: Asset, path: str | os.PathLike[str] | None) -> Path:
    name = Path(asset.filename).name if asset.filename else asset.id
    if path is None:
        return Path.cwd() / name
    target = Path(path)
    return target / name if target.is_dir() else target


@dataclass
class _Call(Generic[T]):
    """One API request and how to read its answer: defined once, sent by either client."""

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    params: dict[str, Any] | None = None
    json: Any = None
    headers: dict[str, str] | None = None
    auth: bool = True
    # False where a repeated request could act twice (no Idempotency-Key): only 429, which the server
    # answers before doing anything, is retried then.
    repeatable: bool = True


def _one(cls: type[M]) -> Callable[[httpx.Response], M]:
    return lambda r: cls.from_dict(r.json())


def _data(cls: type[M]) -> Callable[[httpx.Response], list[M]]:
    return lambda r: [cls.from_dict(x) for x in r.json()["data"]]


def _nothing(_: httpx.Response) -> None:
    return None


def _json(r: httpx.Response) -> dict[str, Any]:
    out: dict[str, Any] = r.json()
    return out


class _Calls:
    """Every /v1 route as a `_Call` (the one place that knows paths, parameters and answer types)."""

    @staticmethod
    def register(email: str, password: str) -> _Call[User]:
        return _Call("POST", "/v1/auth/register", _one(User), json={"email": email, "password": password},
                     auth=False)

    @staticmethod
    def token(email: str, password: str) -> _Call[TokenPair]:
        return _Call("POST", "/v1/auth/token", _one(TokenPair), json={"email": email, "password": password},
                     auth=False)

    @staticmethod
    def refresh(refresh_token: str) -> _Call[TokenPair]:
        return _Call("POST", "/v1/auth/refresh", _one(TokenPair), json={"refresh_token": refresh_token},
                     auth=False)

    @staticmethod
    def me() -> _Call[User]:
        return _Call("GET", "/v1/auth/me", _one(User))

    @staticmethod
    def create_api_key(name: str) -> _Call[ApiKey]:
        return _Call("POST", "/v1/api-keys", _one(ApiKey), json={"name": name})

    @staticmethod
    def list_api_keys() -> _Call[list[ApiKey]]:
        return _Call("GET", "/v1/api-keys", _data(ApiKey))

    @staticmethod
    def revoke_api_key(key_id: str) -> _Call[ApiKey]:
        return _Call("DELETE", f"/v1/api-keys/{_seg(key_id)}", _one(ApiKey))

    @staticmethod
    def submit(kind: str, input: Mapping[str, Any] | None, callback_url: str | None, priority: int,
               idempotency_key: str | None, wait: float | None) -> _Call[Job]:
        body: dict[str, Any] = {"kind": kind, "input": dict(input or {}), "priority": priority}
        if callback_url is not None:
            body["callback_url"] = callback_url
        # A key on every submit makes the automatic retry of a 429/503 safe: at most one job per call.
        key = idempotency_key or f"client-{uuid.uuid4()}"
        return _Call("POST", "/v1/jobs", _one(Job), json=body, params=_clean({"wait": wait or None}),
                     headers={"Idempotency-Key": key})

    @staticmethod
    def submit_batch(jobs: list[Mapping[str, Any]]) -> _Call[list[Job]]:
        return _Call("POST", "/v1/jobs/batch", _data(Job), json={"jobs": [dict(j) for j in jobs]}, repeatable=False)

    @staticmethod
    def list_jobs(status: str | None, kind: str | None, limit: int, cursor: str | None) -> _Call[JobPage]:
        return _Call("GET", "/v1/jobs", _one(JobPage),
                     params=_clean({"status": status, "kind": kind, "limit": limit, "cursor": cursor}))

    @staticmethod
    def get_job(job_id: str) -> _Call[Job]:
        return _Call("GET", f"/v1/jobs/{_seg(job_id)}", _one(Job))

    @staticmethod
    def cancel_job(job_id: str) -> _Call[Job]:
        return _Call("POST", f"/v1/jobs/{_seg(job_id)}/cancel", _one(Job))

    @staticmethod
    def retry_job(job_id: str) -> _Call[Job]:
        return _Call("POST", f"/v1/jobs/{_seg(job_id)}/retry", _one(Job))

    @staticmethod
    def redrive_job(job_id: str) -> _Call[Job]:
        return _Call("POST", f"/v1/admin/jobs/{_seg(job_id)}/redrive", _one(Job))

    @staticmethod
    def admin_get(what: str, params: dict[str, Any] | None = None) -> _Call[dict[str, Any]]:
        return _Call("GET", f"/v1/admin/{what}", _json, params=params)

    @staticmethod
    def job_history(job_id: str, after: int) -> _Call[JobHistory]:
        return _Call("GET", f"/v1/jobs/{_seg(job_id)}/history", _one(JobHistory), params={"after": after})

    @staticmethod
    def list_pipelines() -> _Call[list[Pipeline]]:
        return _Call("GET", "/v1/pipelines", _data(Pipeline))

    @staticmethod
    def get_pipeline(kind: str) -> _Call[Pipeline]:
        return _Call("GET", f"/v1/pipelines/{_seg(kind)}", _one(Pipeline))

    @staticmethod
    def list_models(task: str | None) -> _Call[list[Model]]:
        return _Call("GET", "/v1/models", _data(Model), params=_clean({"task": task}))

    @staticmethod
    def create_upload(content_type: str, size: int, filename: str | None, sha256: str | None, lifecycle: str,
                      multipart: bool | None) -> _Call[Upload]:
        body = _clean({"content_type": content_type, "size": size, "filename": filename, "sha256": sha256,
                       "lifecycle": lifecycle, "multipart": multipart})
        return _Call("POST", "/v1/uploads", _one(Upload), json=body)

    @staticmethod
    def get_upload(upload_id: str) -> _Call[Upload]:
        return _Call("GET", f"/v1/uploads/{_seg(upload_id)}", _one(Upload))

    @staticmethod
    def complete_upload(upload_id: str, parts: list[tuple[int, str]] | None, sha256: str | None) -> _Call[Asset]:
        body: dict[str, Any] = _clean({"sha256": sha256})
        if parts:
            body["parts"] = [{"part_number": n, "etag": e} for n, e in parts]
        return _Call("POST", f"/v1/uploads/{_seg(upload_id)}/complete", _one(Asset), json=body)

    @staticmethod
    def abort_upload(upload_id: str) -> _Call[Upload]:
        return _Call("POST", f"/v1/uploads/{_seg(upload_id)}/abort", _one(Upload))

    @staticmethod
    def list_assets(limit: int, job_id: str | None) -> _Call[list[Asset]]:
        return _Call("GET", "/v1/assets", _data(Asset), params=_clean({"limit": limit, "job_id": job_id}))

    @staticmethod
    def get_asset(asset_id: str) -> _Call[Asset]:
        return _Call("GET", f"/v1/assets/{_seg(asset_id)}", _one(Asset))

    @staticmethod
    def delete_asset(asset_id: str) -> _Call[None]:
        return _Call("DELETE", f"/v1/assets/{_seg(asset_id)}", _nothing)

    @staticmethod
    def credits(limit: int, before: int | None) -> _Call[Credits]:
        return _Call("GET", "/v1/credits", _one(Credits), params=_clean({"limit": limit, "before": before}))

    @staticmethod
    def grant_credits(account_id: str, amount: int, note: str) -> _Call[CreditEntry]:
        return _Call("POST", "/v1/admin/credits", _one(CreditEntry),
                     json={"account_id": account_id, "amount": amount, "note": note})

    @staticmethod
    def list_users(limit: int, offset: int) -> _Call[list[User]]:
        return _Call("GET", "/v1/admin/users", _data(User), params={"limit": limit, "offset": offset})

    @staticmethod
    def update_user(user_id: str, role: str | None, disabled: bool | None) -> _Call[User]:
        return _Call("PATCH", f"/v1/admin/users/{_seg(user_id)}", _one(User),
                     json=_clean({"role": role, "disabled": disabled}))

    @staticmethod
    def create_webhook(url: str, event_types: list[str] | None, description: str) -> _Call[Webhook]:
        return _Call("POST", "/v1/webhooks", _one(Webhook),
                     json={"url": url, "event_types": list(event_types or []), "description": description})

    @staticmethod
    def list_webhooks() -> _Call[list[Webhook]]:
        return _Call("GET", "/v1/webhooks", _data(Webhook))

    @staticmethod
    def get_webhook(hook_id: str) -> _Call[Webhook]:
        return _Call("GET", f"/v1/webhooks/{_seg(hook_id)}", _one(Webhook))

    @staticmethod
    def delete_webhook(hook_id: str) -> _Call[None]:
        return _Call("DELETE", f"/v1/webhooks/{_seg(hook_id)}", _nothing)

    @staticmethod
    def test_webhook(hook_id: str) -> _Call[WebhookTest]:
        return _Call("POST", f"/v1/webhooks/{_seg(hook_id)}/test", _one(WebhookTest))

    @staticmethod
    def webhook_deliveries(hook_id: str) -> _Call[list[Delivery]]:
        return _Call("GET", f"/v1/webhooks/{_seg(hook_id)}/deliveries", _data(Delivery))

    @staticmethod
    def signing_secret() -> _Call[str]:
        return _Call("GET", "/v1/webhooks/signing-secret", lambda r: str(r.json()["secret"]))

    @staticmethod
    def health() -> _Call[dict[str, Any]]:
        return _Call("GET", "/healthz", _json, auth=False)

    @staticmethod
    def ready() -> _Call[dict[str, Any]]:
        return _Call("GET", "/readyz", _json, auth=False)


class _Base:
    """Credentials, token refresh and retry policy: everything but the I/O."""

    def __init__(self, base_url: str | None, *, api_key: str | None, access_token: str | None,
                 refresh_token: str | None, token_expires_at: float | None, max_retries: int,
                 max_retry_wait: float, on_tokens: Callable[[TokenPair], None] | None,
                 upload_state_dir: str | os.PathLike[str] | None) -> None:
        self.base_url = (base_url or os.environ.get("REELFORGE_URL") or DEFAULT_URL).rstrip("/")
        if api_key is None and access_token is None and refresh_token is None:
            api_key = os.environ.get("REELFORGE_API_KEY") or None
        self.api_key = api_key
        self.access_token = access_token
        self.refresh_token = refresh_token
        self.token_expires_at = token_expires_at
        self.max_retries = max(0, max_retries)
        self.max_retry_wait = max_retry_wait
        self.on_tokens = on_tokens
        self.upload_state_dir = Path(upload_state_dir) if upload_state_dir is not None else None

    # credentials -------------------------------------------------------------------------------------
    def _auth_header(self) -> dict[str, str]:
        token = self.api_key or self.access_token
        return {"Authorization": f"Bearer {token}"} if token else {}

    def _wants_refresh(self) -> bool:
        if self.api_key or not self.refresh_token:
            return False
        if not self.access_token:
            return True
        return self.token_expires_at is not None and time.time() > self.token_expires_at - REFRESH_MARGIN_S

    def _can_refresh_after(self, response: httpx.Response) -> bool:
        return response.status_code == 401 and not self.api_key and bool(self.refresh_token)

    def _set_tokens(self, pair: TokenPair) -> None:
        self.api_key = None
        self.access_token = pair.access_token
        self.refresh_token = pair.refresh_token
        self.token_expires_at = time.time() + float(pair.expires_in or 0)
        if self.on_tokens is not None:
            self.on_tokens(pair)

    # retries -----------------------------------------------------------------------------------------
    def _retry_delay(self, response: httpx.Response, attempt: int, method: str,
                     repeatable: bool = True) -> float | None:
        """Seconds to wait before sending again, or None to raise now."""
        status = response.status_code
        retryable = status == 429 or (repeatable and (
            status == 503 or (status in (502, 504) and method in ("GET", "HEAD"))))
        if not retryable or attempt >= self.max_retries:
            return None
        wait = _retry_after(response)
        if wait is None:
            return min(self.max_retry_wait, 0.5 * 2**attempt) * (0.5 + random.random() / 2)
        if wait > self.max_retry_wait:
            return None  # the server asks for longer than the caller is willing to block: say so now
        return wait + 0.05

    def _transfer_delay(self, attempt: int) -> float:
        return min(self.max_retry_wait, 0.25 * 2**attempt)


# --- blocking client -------------------------------------------------------------------------------------
class Client(_Base):
    """Blocking client. Thread-safe: one instance may serve many threads (token refresh is locked)."""

    def __init__(self, base_url: str | None = None, *, api_key: str | None = None, access_token: str | None = None,
                 refresh_token: str | None = None, token_expires_at: float | None = None, timeout: float = 30.0,
                 max_retries: int = 4, max_retry_wait: float = 60.0,
                 on_tokens: Callable[[TokenPair], None] | None = None,
                 upload_state_dir: str | os.PathLike[str] | None = None,
                 transport: httpx.BaseTransport | None = None) -> None:
        super().__init__(base_url, api_key=api_key, access_token=access_token, refresh_token=refresh_token,
                         token_expires_at=token_expires_at, max_retries=max_retries, max_retry_wait=max_retry_wait,
                         on_tokens=on_tokens, upload_state_dir=upload_state_dir)
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, transport=transport,
                                  headers={"User-Agent": _user_agent()})
        self._lock = threading.Lock()

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # transport ---------------------------------------------------------------------------------------
    def _send(self, method: str, url: str, *, params: Mapping[str, Any] | None = None, json: Any = None,
              headers: Mapping[str, str] | None = None, auth: bool = True, stream: bool = False,
              timeout: httpx.Timeout | float | None = None, repeatable: bool = True) -> httpx.Response:
        attempt = 0
        refreshed = False
        while True:
            if auth and self._wants_refresh():
                self._refresh(self.access_token)
            sent_token = self.access_token
            hdrs = {**(headers or {}), **(self._auth_header() if auth else {})}
            extra: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
            request = self._http.build_request(method, url, params=params, json=json, headers=hdrs, **extra)
            try:
                response = self._http.send(request, stream=stream)
            except httpx.TransportError as exc:
                raise _transport_error(exc, self.base_url) from exc
            if response.status_code < 400:
                return response
            if stream:
                response.read()
                response.close()
            if auth and not refreshed and self._can_refresh_after(response):
                refreshed = True
                self._refresh(sent_token)
                continue
            delay = self._retry_delay(response, attempt, method, repeatable)
            if delay is None:
                raise ApiError.from_response(response)
            attempt += 1
            time.sleep(delay)

    def _do(self, call: _Call[T]) -> T:
        response = self._send(call.method, call.path, params=call.params, json=call.json, headers=call.headers,
                              auth=call.auth, repeatable=call.repeatable)
        return call.parse(response)

    def _refresh(self, stale_access_token: str | None) -> None:
        with self._lock:
            if self.access_token != stale_access_token and self.access_token:
                return  # another thread refreshed while this one waited
            token = self.refresh_token
            if not token:
                return
            self._set_tokens(self._do(_Calls.refresh(token)))

    # auth --------------------------------------------------------------------------------------------
    def register(self, email: str, password: str) -> User:
        """Create an account (no credentials needed); then `login`."""
        return self._do(_Calls.register(email, password))

    def login(self, email: str, password: str) -> TokenPair:
        """Email + password for an access and a refresh token, which this client then uses."""
        pair = self._do(_Calls.token(email, password))
        self._set_tokens(pair)
        return pair

    def refresh(self) -> TokenPair:
        """Trade the refresh token for a new pair now (it also happens on its own when the access token expires)."""
        if not self.refresh_token:
            raise ApiError(0, "no_refresh_token", "This client holds no refresh token")
        pair = self._do(_Calls.refresh(self.refresh_token))
        self._set_tokens(pair)
        return pair

    def me(self) -> User:
        return self._do(_Calls.me())

    def create_api_key(self, name: str = "key") -> ApiKey:
        """A new API key; its secret is in ``.key`` of this answer only."""
        return self._do(_Calls.create_api_key(name))

    def list_api_keys(self) -> list[ApiKey]:
        return self._do(_Calls.list_api_keys())

    def revoke_api_key(self, key_id: str) -> ApiKey:
        return self._do(_Calls.revoke_api_key(key_id))

    # jobs --------------------------------------------------------------------------------------------
    def submit(self, kind: str, input: Mapping[str, Any] | None = None, *, callback_url: str | None = None,
               priority: int = 0, idempotency_key: str | None = None, wait: float | None = None) -> JobHandle:
        """Queue a job; ``.wait()`` on the answer follows it to the end. ``wait=`` lets the server hold the
        answer up to that many seconds (max 60) first."""
        return JobHandle(self, self._do(_Calls.submit(kind, input, callback_url, priority, idempotency_key, wait)))

    def submit_batch(self, jobs: list[Mapping[str, Any]]) -> list[JobHandle]:
        """Queue up to 100 jobs at once, all or none; each item is ``{"kind", "input", ...}`` as for `submit`.
        Not retried after a 503 (the batch route takes no Idempotency-Key)."""
        return [JobHandle(self, j) for j in self._do(_Calls.submit_batch(jobs))]

    def job(self, job_id: str) -> JobHandle:
        """A handle on an existing job (fetches it once)."""
        return JobHandle(self, self.get_job(job_id))

    def list_jobs(self, *, status: str | None = None, kind: str | None = None, limit: int = 50,
                  cursor: str | None = None) -> JobPage:
        return self._do(_Calls.list_jobs(status, kind, limit, cursor))

    def iter_jobs(self, *, status: str | None = None, kind: str | None = None, page_size: int = 100) -> Iterator[Job]:
        """Every job, newest first, following the cursor page by page."""
        cursor: str | None = None
        while True:
            page = self.list_jobs(status=status, kind=kind, limit=page_size, cursor=cursor)
            yield from page.data
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    def get_job(self, job_id: str) -> Job:
        return self._do(_Calls.get_job(job_id))

    def cancel_job(self, job_id: str) -> Job:
        return self._do(_Calls.cancel_job(job_id))

    def retry_job(self, job_id: str) -> Job:
        """A new job with the kind, input and callback of a failed, dead or cancelled one (409 otherwise)."""
        return self._do(_Calls.retry_job(job_id))

    def job_history(self, job_id: str, *, after: int = 0) -> JobHistory:
        return self._do(_Calls.job_history(job_id, after))

    def job_events(self, job_id: str, *, timeout: float = 600.0) -> Iterator[StreamEvent]:
        """Server-sent events until the job ends (the last one is ``end``, carrying the job) or ``timeout``."""
        seconds = min(3600.0, max(1.0, timeout))
        response = self._send("GET", f"/v1/jobs/{_seg(job_id)}/events", params={"timeout": seconds}, stream=True,
                              headers={"Accept": "text/event-stream"},
                              timeout=httpx.Timeout(30.0, read=seconds + 30.0))
        parser = _SseParser()
        try:
            for line in response.iter_lines():
                ev = parser.feed(line)
                if ev is None:
                    continue
                yield ev
                if ev.event == "end":
                    return
        except httpx.TransportError as exc:
            raise _transport_error(exc, self.base_url) from exc
        finally:
            response.close()

    def wait_job(self, job_id: str, timeout: float | None = None, *,
                 on_progress: ProgressCallback | None = None) -> Job:
        return self.job(job_id).wait(timeout, on_progress=on_progress)

    # pipelines and models ----------------------------------------------------------------------------
    def list_pipelines(self) -> list[Pipeline]:
        return self._do(_Calls.list_pipelines())

    def get_pipeline(self, kind: str) -> Pipeline:
        return self._do(_Calls.get_pipeline(kind))

    def list_models(self, task: str | None = None) -> list[Model]:
        return self._do(_Calls.list_models(task))

    # uploads and assets ------------------------------------------------------------------------------
    def create_upload(self, content_type: str, size: int, *, filename: str | None = None, sha256: str | None = None,
                      lifecycle: str = "hot", multipart: bool | None = None) -> Upload:
        return self._do(_Calls.create_upload(content_type, size, filename, sha256, lifecycle, multipart))

    def get_upload(self, upload_id: str) -> Upload:
        return self._do(_Calls.get_upload(upload_id))

    def complete_upload(self, upload_id: str, *, parts: list[tuple[int, str]] | None = None,
                        sha256: str | None = None) -> Asset:
        return self._do(_Calls.complete_upload(upload_id, parts, sha256))

    def abort_upload(self, upload_id: str) -> Upload:
        return self._do(_Calls.abort_upload(upload_id))

    def list_assets(self, *, limit: int = 50, job_id: str | None = None) -> list[Asset]:
        return self._do(_Calls.list_assets(limit, job_id))

    def get_asset(self, asset_id: str) -> Asset:
        """Metadata and a signed download URL."""
        return self._do(_Calls.get_asset(asset_id))

    def delete_asset(self, asset_id: str) -> None:
        self._do(_Calls.delete_asset(asset_id))

    def upload_file(self, path: str | os.PathLike[str], content_type: str | None = None, *, lifecycle: str = "hot",
                    filename: str | None = None, multipart: bool | None = None,
                    on_progress: BytesCallback | None = None, resume: str | None = None) -> Asset:
        """Upload a file through signed URLs and return the asset.

        The server decides single PUT or multipart by size (``multipart=`` forces it). The file is hashed,
        then streamed from disk one part at a time; the server checks size and sha256 before the asset
        exists. ``on_progress(sent, total)`` follows the bytes. With ``upload_state_dir`` set, a failed
        upload raises `UploadFailed` whose ``upload_id`` can be passed as ``resume=`` to send only the
        parts that are missing.
        """
        src = Path(path)
        size = src.stat().st_size
        sha256 = _sha256_file(src)
        if resume:
            current = self.get_upload(resume)
            if current.status == "completed" and current.asset_id:
                done = self.get_asset(current.asset_id)
                if done.sha256 != sha256:
                    raise ResumeError(f"Upload {resume} completed with other content; start a new upload")
                _Journal(self.upload_state_dir, current, src, size, sha256).remove()
                return done
            if current.status != "pending":
                raise ResumeError(f"Upload {resume} is {current.status}; start a new upload")
            journal = _Journal.load(self.upload_state_dir, resume, src, size, sha256)
        else:
            upload = self.create_upload(content_type or _guess_type(src), size, filename=filename or src.name,
                                        sha256=sha256, lifecycle=lifecycle, multipart=multipart)
            journal = _Journal(self.upload_state_dir, upload, src, size, sha256)
            journal.save()
        upload = journal.upload
        counter = _Bytes(size, on_progress)
        try:
            if upload.parts:
                counter.add(journal.sent_bytes())
                for part in journal.pending():
                    response = self._put(part.url, part.method, part.headers, src, journal.offset(part), part.size,
                                         counter)
                    etag = response.headers.get("etag")
                    if not etag:
                        raise ApiError(response.status_code, "missing_etag", "Storage answered a part without an ETag")
                    journal.parts[part.part_number] = etag
                    journal.save()
                asset = self.complete_upload(upload.id, parts=journal.completed_parts(), sha256=sha256)
            elif upload.put is not None:
                self._put(upload.put.url, upload.put.method, upload.put.headers, src, 0, size, counter)
                asset = self.complete_upload(upload.id, sha256=sha256)
            else:
                raise ApiError(0, "no_upload_url", "The server offered no upload URL")
        except ApiError as exc:
            if isinstance(exc, UploadFailed):
                raise
            raise UploadFailed(upload.id, exc) from exc
        except BaseException as exc:
            exc.add_note(f"reelforge upload id: {upload.id}")
            raise
        journal.remove()
        return asset

    def _put(self, url: str, method: str, headers: Mapping[str, str], path: Path, offset: int, length: int,
             counter: _Bytes) -> httpx.Response:
        start = counter.done
        attempt = 0
        while True:
            hdrs = {**headers, "Content-Length": str(length)}
            try:
                response = self._http.request(method, url, content=_file_range(path, offset, length, counter),
                                              headers=hdrs, timeout=httpx.Timeout(60.0, write=300.0))
            except httpx.TransportError as exc:
                if attempt >= self.max_retries:
                    raise _transport_error(exc, url.split("?", 1)[0]) from exc
                response = None
            if response is not None and response.status_code < 400:
                return response
            if response is not None and (response.status_code not in (429, 500, 502, 503, 504)
                                         or attempt >= self.max_retries):
                raise ApiError.from_response(response)
            counter.rewind(start)
            delay = (_retry_after(response) if response is not None else None) or self._transfer_delay(attempt)
            attempt += 1
            time.sleep(min(delay, self.max_retry_wait))

    def download(self, asset_id: str, path: str | os.PathLike[str] | None = None, *,
                 on_progress: BytesCallback | None = None) -> Path:
        """Stream an asset to ``path`` (a file, or a directory to keep its name; default: the current one).

        The bytes go to a temporary file beside the target and replace it only when size and sha256 match
        the asset; otherwise `ChecksumMismatch` is raised and the target is untouched.
        """
        asset = self.get_asset(asset_id)
        if asset.download is None:
            raise ApiError(0, "no_download_url", "The server offered no download URL")
        target = _download_target(asset, path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.part")
        counter = _Bytes(asset.size, on_progress)
        digest = hashlib.sha256()
        try:
            try:
                with self._http.stream(asset.download.method or "GET", asset.download.url,
                                       headers=asset.download.headers) as response:
                    if response.status_code >= 400:
                        response.read()
                        raise ApiError.from_response(response)
                    with open(tmp, "wb") as out:
                        for block in response.iter_bytes(CHUNK):
                            digest.update(block)
                            out.write(block)
                            counter.add(len(block))
            except httpx.TransportError as exc:
                raise _transport_error(exc, asset.download.url.split("?", 1)[0]) from exc
            _check_download(asset, counter.done, digest.hexdigest())
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        return target

    # credits and admin -------------------------------------------------------------------------------
    def credits(self, *, limit: int = 100, before: int | None = None) -> Credits:
        """Balance and ledger, newest first."""
        return self._do(_Calls.credits(limit, before))

    def grant_credits(self, account_id: str, amount: int, note: str = "") -> CreditEntry:
        """Admin: add (or with a negative amount, take) credits."""
        return self._do(_Calls.grant_credits(account_id, amount, note))

    def list_users(self, *, limit: int = 100, offset: int = 0) -> list[User]:
        """Admin: every account."""
        return self._do(_Calls.list_users(limit, offset))

    def update_user(self, user_id: str, *, role: str | None = None, disabled: bool | None = None) -> User:
        """Admin: change a user's role or disable the account."""
        return self._do(_Calls.update_user(user_id, role, disabled))

    def redrive_job(self, job_id: str) -> Job:
        """Admin: put a dead or failed job back in the queue (same id; credits reserved again)."""
        return self._do(_Calls.redrive_job(job_id))

    def admin_queue(self, *, dead_limit: int = 50) -> dict[str, Any]:
        """Admin: queue depth by kind and status, running jobs, recent dead and failed jobs."""
        return self._do(_Calls.admin_get("queue", {"dead_limit": dead_limit}))

    def admin_workers(self) -> list[dict[str, Any]]:
        """Admin: registered workers and the age of their last heartbeat."""
        return list(self._do(_Calls.admin_get("workers"))["data"])

    def admin_system(self) -> dict[str, Any]:
        """Admin: version, models, storage totals, workers, database engine."""
        return self._do(_Calls.admin_get("system"))

    def admin_alarms(self, *, hours: int = 24) -> dict[str, Any]:
        """Admin: alarm rules, alarms firing now, recent alarm events."""
        return self._do(_Calls.admin_get("alarms", {"hours": hours}))

    def admin_stats(self, *, hours: int = 24) -> dict[str, Any]:
        """Admin: jobs and credits per hour, run-time percentiles by kind, queue-depth samples."""
        return self._do(_Calls.admin_get("stats", {"hours": hours}))

    # webhooks ----------------------------------------------------------------------------------------
    def create_webhook(self, url: str, event_types: list[str] | None = None, description: str = "") -> Webhook:
        """Subscribe a URL; the answer's ``.secret`` verifies the signatures (shown once)."""
        return self._do(_Calls.create_webhook(url, event_types, description))

    def list_webhooks(self) -> list[Webhook]:
        return self._do(_Calls.list_webhooks())

    def get_webhook(self, hook_id: str) -> Webhook:
        return self._do(_Calls.get_webhook(hook_id))

    def delete_webhook(self, hook_id: str) -> None:
        self._do(_Calls.delete_webhook(hook_id))

    def test_webhook(self, hook_id: str) -> WebhookTest:
        return self._do(_Calls.test_webhook(hook_id))

    def webhook_deliveries(self, hook_id: str) -> list[Delivery]:
        return self._do(_Calls.webhook_deliveries(hook_id))

    def signing_secret(self) -> str:
        """The secret that signs deliveries to jobs' ``callback_url``."""
        return self._do(_Calls.signing_secret())

    # operations --------------------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        return self._do(_Calls.health())

    def ready(self) -> dict[str, Any]:
        return self._do(_Calls.ready())


def _check_download(asset: Asset, size: int, sha256: str) -> None:
    if size != asset.size:
        raise ChecksumMismatch(f"Downloaded {size} bytes of asset {asset.id}, expected {asset.size}",
                               expected=str(asset.size), received=str(size))
    if sha256 != asset.sha256:
        raise ChecksumMismatch(f"Asset {asset.id} arrived with another sha256 than stored",
                               expected=asset.sha256, received=sha256)


def _progress_of(job_id: str, data: Mapping[str, Any]) -> Progress:
    return Progress(job_id=job_id, status=str(data.get("status", "")), fraction=float(data.get("fraction") or 0.0),
                    message=str(data.get("message") or ""))


class _Reporter:
    """Calls ``on_progress`` once per change of (status, fraction, message)."""

    def __init__(self, callback: ProgressCallback | None) -> None:
        self.callback = callback
        self.last: tuple[str, float, str] | None = None

    def __call__(self, p: Progress) -> None:
        state = (p.status, p.fraction, p.message)
        if self.callback is not None and state != self.last:
            self.last = state
            self.callback(p)

    def job(self, job: Job) -> None:
        self(Progress(job.id, job.status, job.progress.fraction, job.progress.message))


def _stream_fallback(exc: ApiError) -> bool:
    """Whether to poll instead after the event stream failed (not for answers polling would get too)."""
    return exc.status not in (401, 403, 404)


class JobHandle:
    """A submitted job: ``.job`` is the last state seen; ``.wait()`` follows it to the end."""

    def __init__(self, client: Client, job: Job) -> None:
        self.client = client
        self.job = job
        self.id = job.id

    def __repr__(self) -> str:
        return f"JobHandle({self.id!r}, status={self.job.status!r})"

    def refresh(self) -> Job:
        self.job = self.client.get_job(self.id)
        return self.job

    def cancel(self) -> Job:
        self.job = self.client.cancel_job(self.id)
        return self.job

    def retry(self) -> JobHandle:
        return JobHandle(self.client, self.client.retry_job(self.id))

    def history(self, after: int = 0) -> JobHistory:
        return self.client.job_history(self.id, after=after)

    def events(self, timeout: float = 600.0) -> Iterator[StreamEvent]:
        return self.client.job_events(self.id, timeout=timeout)

    def wait(self, timeout: float | None = None, *, on_progress: ProgressCallback | None = None,
             poll_interval: float = 1.0, use_events: bool = True) -> Job:
        """Block until the job ends and return it (whatever its status: check ``.ok``).

        Follows the server-sent events; if the stream cannot be had or breaks, polls instead.
        ``on_progress`` gets a `Progress` on every change. Raises `WaitTimeout` after ``timeout`` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        report = _Reporter(on_progress)
        if self.job.done:
            report.job(self.job)
            return self.job

        def left() -> float:
            return 3600.0 if deadline is None else deadline - time.monotonic()

        if use_events:
            try:
                while left() > 0:
                    opened = time.monotonic()
                    for ev in self.client.job_events(self.id, timeout=left()):
                        if ev.event == "progress":
                            report(_progress_of(self.id, ev.data))
                        elif ev.event == "end":
                            if "id" not in ev.data:
                                raise ApiError(404, "job_not_found", f"Job {self.id} was deleted")
                            self.job = Job.from_dict(ev.data)
                            report.job(self.job)
                            return self.job
                    if time.monotonic() - opened < 5.0:
                        break  # the stream closes early (a proxy?): polling is the steadier way here
            except ApiError as exc:
                if not _stream_fallback(exc):
                    raise
        interval = poll_interval
        while True:
            self.refresh()
            report.job(self.job)
            if self.job.done:
                return self.job
            if left() <= 0:
                raise WaitTimeout(self.job)
            time.sleep(max(0.01, min(interval, left())))
            interval = min(interval * 1.5, 5.0)


# --- asyncio client --------------------------------------------------------------------------------------
class AsyncClient(_Base):
    """The same API for asyncio: every method is a coroutine (``job_events`` an async iterator)."""

    def __init__(self, base_url: str | None = None, *, api_key: str | None = None, access_token: str | None = None,
                 refresh_token: str | None = None, token_expires_at: float | None = None, timeout: float = 30.0,
                 max_retries: int = 4, max_retry_wait: float = 60.0,
                 on_tokens: Callable[[TokenPair], None] | None = None,
                 upload_state_dir: str | os.PathLike[str] | None = None,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        super().__init__(base_url, api_key=api_key, access_token=access_token, refresh_token=refresh_token,
                         token_expires_at=token_expires_at, max_retries=max_retries, max_retry_wait=max_retry_wait,
                         on_tokens=on_tokens, upload_state_dir=upload_state_dir)
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout, transport=transport,
                                       headers={"User-Agent": _user_agent()})
        self._lock = asyncio.Lock()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _send(self, method: str, url: str, *, params: Mapping[str, Any] | None = None, json: Any = None,
                    headers: Mapping[str, str] | None = None, auth: bool = True, stream: bool = False,
                    timeout: httpx.Timeout | float | None = None, repeatable: bool = True) -> httpx.Response:
        attempt = 0
        refreshed = False
        while True:
            if auth and self._wants_refresh():
                await self._refresh(self.access_token)
            sent_token = self.access_token
            hdrs = {**(headers or {}), **(self._auth_header() if auth else {})}
            extra: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
            request = self._http.build_request(method, url, params=params, json=json, headers=hdrs, **extra)
            try:
                response = await self._http.send(request, stream=stream)
            except httpx.TransportError as exc:
                raise _transport_error(exc, self.base_url) from exc
            if response.status_code < 400:
                return response
            if stream:
                await response.aread()
                await response.aclose()
            if auth and not refreshed and self._can_refresh_after(response):
                refreshed = True
                await self._refresh(sent_token)
                continue
            delay = self._retry_delay(response, attempt, method, repeatable)
            if delay is None:
                raise ApiError.from_response(response)
            attempt += 1
            await asyncio.sleep(delay)

    async def _do(self, call: _Call[T]) -> T:
        response = await self._send(call.method, call.path, params=call.params, json=call.json,
                                    headers=call.headers, auth=call.auth, repeatable=call.repeatable)
        return call.parse(response)

    async def _refresh(self, stale_access_token: str | None) -> None:
        async with self._lock:
            if self.access_token != stale_access_token and self.access_token:
                return
            token = self.refresh_token
            if not token:
                return
            self._set_tokens(await self._do(_Calls.refresh(token)))

    # auth --------------------------------------------------------------------------------------------
    async def register(self, email: str, password: str) -> User:
        return await self._do(_Calls.register(email, password))

    async def login(self, email: str, password: str) -> TokenPair:
        pair = await self._do(_Calls.token(email, password))
        self._set_tokens(pair)
        return pair

    async def refresh(self) -> TokenPair:
        if not self.refresh_token:
            raise ApiError(0, "no_refresh_token", "This client holds no refresh token")
        pair = await self._do(_Calls.refresh(self.refresh_token))
        self._set_tokens(pair)
        return pair

    async def me(self) -> User:
        return await self._do(_Calls.me())

    async def create_api_key(self, name: str = "key") -> ApiKey:
        return await self._do(_Calls.create_api_key(name))

    async def list_api_keys(self) -> list[ApiKey]:
        return await self._do(_Calls.list_api_keys())

    async def revoke_api_key(self, key_id: str) -> ApiKey:
        return await self._do(_Calls.revoke_api_key(key_id))

    # jobs --------------------------------------------------------------------------------------------
    async def submit(self, kind: str, input: Mapping[str, Any] | None = None, *, callback_url: str | None = None,
                     priority: int = 0, idempotency_key: str | None = None,
                     wait: float | None = None) -> AsyncJobHandle:
        job = await self._do(_Calls.submit(kind, input, callback_url, priority, idempotency_key, wait))
        return AsyncJobHandle(self, job)

    async def submit_batch(self, jobs: list[Mapping[str, Any]]) -> list[AsyncJobHandle]:
        return [AsyncJobHandle(self, j) for j in await self._do(_Calls.submit_batch(jobs))]

    async def job(self, job_id: str) -> AsyncJobHandle:
        return AsyncJobHandle(self, await self.get_job(job_id))

    async def list_jobs(self, *, status: str | None = None, kind: str | None = None, limit: int = 50,
                        cursor: str | None = None) -> JobPage:
        return await self._do(_Calls.list_jobs(status, kind, limit, cursor))

    async def iter_jobs(self, *, status: str | None = None, kind: str | None = None,
                        page_size: int = 100) -> AsyncIterator[Job]:
        cursor: str | None = None
        while True:
            page = await self.list_jobs(status=status, kind=kind, limit=page_size, cursor=cursor)
            for job in page.data:
                yield job
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    async def get_job(self, job_id: str) -> Job:
        return await self._do(_Calls.get_job(job_id))

    async def cancel_job(self, job_id: str) -> Job:
        return await self._do(_Calls.cancel_job(job_id))

    async def retry_job(self, job_id: str) -> Job:
        return await self._do(_Calls.retry_job(job_id))

    async def job_history(self, job_id: str, *, after: int = 0) -> JobHistory:
        return await self._do(_Calls.job_history(job_id, after))

    async def job_events(self, job_id: str, *, timeout: float = 600.0) -> AsyncIterator[StreamEvent]:
        seconds = min(3600.0, max(1.0, timeout))
        response = await self._send("GET", f"/v1/jobs/{_seg(job_id)}/events", params={"timeout": seconds},
                                    stream=True, headers={"Accept": "text/event-stream"},
                                    timeout=httpx.Timeout(30.0, read=seconds + 30.0))
        parser = _SseParser()
        try:
            async for line in response.aiter_lines():
                ev = parser.feed(line)
                if ev is None:
                    continue
                yield ev
                if ev.event == "end":
                    return
        except httpx.TransportError as exc:
            raise _transport_error(exc, self.base_url) from exc
        finally:
            await response.aclose()

    async def wait_job(self, job_id: str, timeout: float | None = None, *,
                       on_progress: ProgressCallback | None = None) -> Job:
        return await (await self.job(job_id)).wait(timeout, on_progress=on_progress)

    # pipelines and models ----------------------------------------------------------------------------
    async def list_pipelines(self) -> list[Pipeline]:
        return await self._do(_Calls.list_pipelines())

    async def get_pipeline(self, kind: str) -> Pipeline:
        return await self._do(_Calls.get_pipeline(kind))

    async def list_models(self, task: str | None = None) -> list[Model]:
        return await self._do(_Calls.list_models(task))

    # uploads and assets ------------------------------------------------------------------------------
    async def create_upload(self, content_type: str, size: int, *, filename: str | None = None,
                            sha256: str | None = None, lifecycle: str = "hot",
                            multipart: bool | None = None) -> Upload:
        return await self._do(_Calls.create_upload(content_type, size, filename, sha256, lifecycle, multipart))

    async def get_upload(self, upload_id: str) -> Upload:
        return await self._do(_Calls.get_upload(upload_id))

    async def complete_upload(self, upload_id: str, *, parts: list[tuple[int, str]] | None = None,
                              sha256: str | None = None) -> Asset:
        return await self._do(_Calls.complete_upload(upload_id, parts, sha256))

    async def abort_upload(self, upload_id: str) -> Upload:
        return await self._do(_Calls.abort_upload(upload_id))

    async def list_assets(self, *, limit: int = 50, job_id: str | None = None) -> list[Asset]:
        return await self._do(_Calls.list_assets(limit, job_id))

    async def get_asset(self, asset_id: str) -> Asset:
        return await self._do(_Calls.get_asset(asset_id))

    async def delete_asset(self, asset_id: str) -> None:
        await self._do(_Calls.delete_asset(asset_id))

    async def upload_file(self, path: str | os.PathLike[str], content_type: str | None = None, *,
                          lifecycle: str = "hot", filename: str | None = None, multipart: bool | None = None,
                          on_progress: BytesCallback | None = None, resume: str | None = None) -> Asset:
        """See `Client.upload_file`."""
        src = Path(path)
        size = src.stat().st_size
        sha256 = await asyncio.to_thread(_sha256_file, src)
        if resume:
            current = await self.get_upload(resume)
            if current.status == "completed" and current.asset_id:
                done = await self.get_asset(current.asset_id)
                if done.sha256 != sha256:
                    raise ResumeError(f"Upload {resume} completed with other content; start a new upload")
                _Journal(self.upload_state_dir, current, src, size, sha256).remove()
                return done
            if current.status != "pending":
                raise ResumeError(f"Upload {resume} is {current.status}; start a new upload")
            journal = _Journal.load(self.upload_state_dir, resume, src, size, sha256)
        else:
            upload = await self.create_upload(content_type or _guess_type(src), size, filename=filename or src.name,
                                              sha256=sha256, lifecycle=lifecycle, multipart=multipart)
            journal = _Journal(self.upload_state_dir, upload, src, size, sha256)
            journal.save()
        upload = journal.upload
        counter = _Bytes(size, on_progress)
        try:
            if upload.parts:
                counter.add(journal.sent_bytes())
                for part in journal.pending():
                    response = await self._put(part.url, part.method, part.headers, src, journal.offset(part),
                                               part.size, counter)
                    etag = response.headers.get("etag")
                    if not etag:
                        raise ApiError(response.status_code, "missing_etag", "Storage answered a part without an ETag")
                    journal.parts[part.part_number] = etag
                    journal.save()
                asset = await self.complete_upload(upload.id, parts=journal.completed_parts(), sha256=sha256)
            elif upload.put is not None:
                await self._put(upload.put.url, upload.put.method, upload.put.headers, src, 0, size, counter)
                asset = await self.complete_upload(upload.id, sha256=sha256)
            else:
                raise ApiError(0, "no_upload_url", "The server offered no upload URL")
        except ApiError as exc:
            if isinstance(exc, UploadFailed):
                raise
            raise UploadFailed(upload.id, exc) from exc
        except BaseException as exc:
            exc.add_note(f"reelforge upload id: {upload.id}")
            raise
        journal.remove()
        return asset

    async def _put(self, url: str, method: str, headers: Mapping[str, str], path: Path, offset: int, length: int,
                   counter: _Bytes) -> httpx.Response:
        start = counter.done
        attempt = 0
        while True:
            hdrs = {**headers, "Content-Length": str(length)}

            async def body() -> AsyncIterator[bytes]:
                for block in _file_range(path, offset, length, counter):
                    yield block

            try:
                response = await self._http.request(method, url, content=body(), headers=hdrs,
                                                    timeout=httpx.Timeout(60.0, write=300.0))
            except httpx.TransportError as exc:
                if attempt >= self.max_retries:
                    raise _transport_error(exc, url.split("?", 1)[0]) from exc
                response = None
            if response is not None and response.status_code < 400:
                return response
            if response is not None and (response.status_code not in (429, 500, 502, 503, 504)
                                         or attempt >= self.max_retries):
                raise ApiError.from_response(response)
            counter.rewind(start)
            delay = (_retry_after(response) if response is not None else None) or self._transfer_delay(attempt)
            attempt += 1
            await asyncio.sleep(min(delay, self.max_retry_wait))

    async def download(self, asset_id: str, path: str | os.PathLike[str] | None = None, *,
                       on_progress: BytesCallback | None = None) -> Path:
        """See `Client.download`."""
        asset = await self.get_asset(asset_id)
        if asset.download is None:
            raise ApiError(0, "no_download_url", "The server offered no download URL")
        target = _download_target(asset, path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.part")
        counter = _Bytes(asset.size, on_progress)
        digest = hashlib.sha256()
        try:
            try:
                async with self._http.stream(asset.download.method or "GET", asset.download.url,
                                             headers=asset.download.headers) as response:
                    if response.status_code >= 400:
                        await response.aread()
                        raise ApiError.from_response(response)
                    with open(tmp, "wb") as out:
                        async for block in response.aiter_bytes(CHUNK):
                            digest.update(block)
                            out.write(block)
                            counter.add(len(block))
            except httpx.TransportError as exc:
                raise _transport_error(exc, asset.download.url.split("?", 1)[0]) from exc
            _check_download(asset, counter.done, digest.hexdigest())
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        return target

    # credits and admin -------------------------------------------------------------------------------
    async def credits(self, *, limit: int = 100, before: int | None = None) -> Credits:
        return await self._do(_Calls.credits(limit, before))

    async def grant_credits(self, account_id: str, amount: int, note: str = "") -> CreditEntry:
        return await self._do(_Calls.grant_credits(account_id, amount, note))

    async def list_users(self, *, limit: int = 100, offset: int = 0) -> list[User]:
        return await self._do(_Calls.list_users(limit, offset))

    async def update_user(self, user_id: str, *, role: str | None = None, disabled: bool | None = None) -> User:
        return await self._do(_Calls.update_user(user_id, role, disabled))

    async def redrive_job(self, job_id: str) -> Job:
        return await self._do(_Calls.redrive_job(job_id))

    async def admin_queue(self, *, dead_limit: int = 50) -> dict[str, Any]:
        return await self._do(_Calls.admin_get("queue", {"dead_limit": dead_limit}))

    async def admin_workers(self) -> list[dict[str, Any]]:
        return list((await self._do(_Calls.admin_get("workers")))["data"])

    async def admin_system(self) -> dict[str, Any]:
        return await self._do(_Calls.admin_get("system"))

    async def admin_alarms(self, *, hours: int = 24) -> dict[str, Any]:
        return await self._do(_Calls.admin_get("alarms", {"hours": hours}))

    async def admin_stats(self, *, hours: int = 24) -> dict[str, Any]:
        return await self._do(_Calls.admin_get("stats", {"hours": hours}))

    # webhooks ----------------------------------------------------------------------------------------
    async def create_webhook(self, url: str, event_types: list[str] | None = None, description: str = "") -> Webhook:
        return await self._do(_Calls.create_webhook(url, event_types, description))

    async def list_webhooks(self) -> list[Webhook]:
        return await self._do(_Calls.list_webhooks())

    async def get_webhook(self, hook_id: str) -> Webhook:
        return await self._do(_Calls.get_webhook(hook_id))

    async def delete_webhook(self, hook_id: str) -> None:
        await self._do(_Calls.delete_webhook(hook_id))

    async def test_webhook(self, hook_id: str) -> WebhookTest:
        return await self._do(_Calls.test_webhook(hook_id))

    async def webhook_deliveries(self, hook_id: str) -> list[Delivery]:
        return await self._do(_Calls.webhook_deliveries(hook_id))

    async def signing_secret(self) -> str:
        return await self._do(_Calls.signing_secret())

    # operations --------------------------------------------------------------------------------------
    async def health(self) -> dict[str, Any]:
        return await self._do(_Calls.health())

    async def ready(self) -> dict[str, Any]:
        return await self._do(_Calls.ready())


class AsyncJobHandle:
    """`JobHandle` for `AsyncClient`."""

    def __init__(self, client: AsyncClient, job: Job) -> None:
        self.client = client
        self.job = job
        self.id = job.id

    def __repr__(self) -> str:
        return f"AsyncJobHandle({self.id!r}, status={self.job.status!r})"

    async def refresh(self) -> Job:
        self.job = await self.client.get_job(self.id)
        return self.job

    async def cancel(self) -> Job:
        self.job = await self.client.cancel_job(self.id)
        return self.job

    async def retry(self) -> AsyncJobHandle:
        return AsyncJobHandle(self.client, await self.client.retry_job(self.id))

    async def history(self, after: int = 0) -> JobHistory:
        return await self.client.job_history(self.id, after=after)

    def events(self, timeout: float = 600.0) -> AsyncIterator[StreamEvent]:
        return self.client.job_events(self.id, timeout=timeout)

    async def wait(self, timeout: float | None = None, *, on_progress: ProgressCallback | None = None,
                   poll_interval: float = 1.0, use_events: bool = True) -> Job:
        """See `JobHandle.wait`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        report = _Reporter(on_progress)
        if self.job.done:
            report.job(self.job)
            return self.job

        def left() -> float:
            return 3600.0 if deadline is None else deadline - time.monotonic()

        if use_events:
            try:
                while left() > 0:
                    opened = time.monotonic()
                    async for ev in self.client.job_events(self.id, timeout=left()):
                        if ev.event == "progress":
                            report(_progress_of(self.id, ev.data))
                        elif ev.event == "end":
                            if "id" not in ev.data:
                                raise ApiError(404, "job_not_found", f"Job {self.id} was deleted")
                            self.job = Job.from_dict(ev.data)
                            report.job(self.job)
                            return self.job
                    if time.monotonic() - opened < 5.0:
                        break  # the stream closes early (a proxy?): polling is the steadier way here
            except ApiError as exc:
                if not _stream_fallback(exc):
                    raise
        interval = poll_interval
        while True:
            await self.refresh()
            report.job(self.job)
            if self.job.done:
                return self.job
            if left() <= 0:
                raise WaitTimeout(self.job)
            await asyncio.sleep(max(0.01, min(interval, left())))
            interval = min(interval * 1.5, 5.0)
