"""The core API's resources as namespaces (``rf.jobs``, ``rf.assets``, ...), each written once for both faces."""

from __future__ import annotations

import builtins
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

from reelforge.client import uploads
from reelforge.client.core import (
    Call,
    Chunks,
    Close,
    Emit,
    Flow,
    Namespace,
    Next,
    R,
    Session,
    Sleep,
    SseParser,
    call,
    clean,
    data,
    document,
    each,
    new_idempotency_key,
    nothing,
    one,
    refresh_call,
    response,
    seg,
    stream,
)
from reelforge.client.errors import ApiError, WaitTimeout, transport_error
from reelforge.client.records import (
    ApiKey,
    Asset,
    CreditEntry,
    Credits,
    Delivery,
    Job,
    JobHistory,
    JobPage,
    Model,
    Pipeline,
    Progress,
    Registration,
    StreamEvent,
    TokenPair,
    Upload,
    User,
    Webhook,
    WebhookTest,
)

if TYPE_CHECKING:
    from typing import Self

C = TypeVar("C", bound=Session)
ProgressCallback = Callable[[Progress], None]
BytesCallback = uploads.BytesCallback


# --- accounts -----------------------------------------------------------------------------------------------
class Auth(Namespace[R]):
    """Accounts and tokens: ``rf.auth``."""

    @call
    def register(self, email: str, password: str) -> Call[Registration]:
        """Ask for an account (no credentials needed); then `login`. The answer is the same when the address
        has an account already (which keeps its password): only `login` tells whether this password works."""
        return Call("POST", "/v1/auth/register", one(Registration), json={"email": email, "password": password},
                    auth=False)

    @call
    def login(self, email: str, password: str) -> Flow[TokenPair]:
        """Email + password for an access and a refresh token, which this client then uses."""
        pair: TokenPair = yield Call("POST", "/v1/auth/token", one(TokenPair),
                                     json={"email": email, "password": password}, auth=False)
        self.client.set_tokens(pair)
        return pair

    @call
    def change_password(self, current_password: str, new_password: str) -> Flow[TokenPair]:
        """Replace your password. Every refresh token of the account stops working; this client takes the new
        pair the answer carries (API keys stay valid)."""
        pair: TokenPair = yield Call("POST", "/v1/auth/password", one(TokenPair),
                                     json={"current_password": current_password, "new_password": new_password})
        self.client.set_tokens(pair)
        return pair

    @call
    def refresh(self) -> Flow[TokenPair]:
        """Trade the refresh token for a new pair now (it also happens on its own when the access token
        expires)."""
        if not self.client.refresh_token:
            raise ApiError(0, "no_refresh_token", "This client holds no refresh token")
        pair: TokenPair = yield refresh_call(self.client.refresh_token)
        self.client.set_tokens(pair)
        return pair

    @call
    def me(self) -> Call[User]:
        return Call("GET", "/v1/auth/me", one(User))


class ApiKeys(Namespace[R]):
    """API keys: ``rf.api_keys``."""

    @call
    def create(self, name: str = "key") -> Call[ApiKey]:
        """A new API key; its secret is in ``.key`` of this answer only."""
        return Call("POST", "/v1/api-keys", one(ApiKey), json={"name": name})

    @call
    def list(self) -> Call[builtins.list[ApiKey]]:
        return Call("GET", "/v1/api-keys", data(ApiKey))

    @call
    def revoke(self, key_id: str) -> Call[ApiKey]:
        return Call("DELETE", f"/v1/api-keys/{seg(key_id)}", one(ApiKey))


# --- jobs ---------------------------------------------------------------------------------------------------
def _progress_of(job_id: str, fields: Mapping[str, Any]) -> Progress:
    return Progress(job_id=job_id, status=str(fields.get("status", "")),
                    fraction=float(fields.get("fraction") or 0.0), message=str(fields.get("message") or ""))


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


def _get_job(job_id: str) -> Call[Job]:
    return Call("GET", f"/v1/jobs/{seg(job_id)}", one(Job))


def _job_events(session: Session, job_id: str, timeout: float) -> Flow[None]:
    """The job's server-sent events as `Emit` steps, until ``end`` or ``timeout``."""
    seconds = min(3600.0, max(1.0, timeout))
    answer: httpx.Response = yield Call("GET", f"/v1/jobs/{seg(job_id)}/events", response,
                                        params={"timeout": seconds}, headers={"Accept": "text/event-stream"},
                                        stream=True, timeout=httpx.Timeout(30.0, read=seconds + 30.0))
    parser = SseParser()
    try:
        lines = yield Chunks(answer, "lines")
        while (line := (yield Next(lines))) is not None:
            ev = parser.feed(line)
            if ev is None:
                continue
            if ev.event == "end":
                yield Close(answer)
                yield Emit(ev)
                return
            yield Emit(ev)
    except httpx.TransportError as exc:
        raise transport_error(exc, session.base_url) from exc
    yield Close(answer)


def handle_for(client: C, job: Job) -> JobHandle[C]:
    """The face's handle type (`JobHandle` or `AsyncJobHandle`) on ``job``."""
    cls: type[JobHandle[C]] = getattr(type(client), "job_handle_class", JobHandle)
    return cls(client, job)


def submit_job(client: C, kind: str, input: Mapping[str, Any] | None = None, *, callback_url: str | None = None,
               priority: int = 0, idempotency_key: str | None = None, wait: float | None = None
               ) -> Flow[JobHandle[C]]:
    """Queue a job and answer its handle (`Jobs.submit`, and applications' own submits)."""
    body: dict[str, Any] = {"kind": kind, "input": dict(input or {}), "priority": priority}
    if callback_url is not None:
        body["callback_url"] = callback_url
    key = idempotency_key or new_idempotency_key()
    job: Job = yield Call("POST", "/v1/jobs", one(Job), json=body, params=clean({"wait": wait or None}),
                          headers={"Idempotency-Key": key})
    return handle_for(client, job)


class JobHandle(Namespace[R]):
    """A submitted job: ``.job`` is the last state seen; ``.wait()`` follows it to the end."""

    def __init__(self, client: R, job: Job) -> None:
        super().__init__(client)
        self.job = job
        self.id = job.id

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.id!r}, status={self.job.status!r})"

    @call
    def refresh(self) -> Flow[Job]:
        self.job = yield _get_job(self.id)
        return self.job

    @call
    def cancel(self) -> Flow[Job]:
        self.job = yield Call("POST", f"/v1/jobs/{seg(self.id)}/cancel", one(Job))
        return self.job

    @call
    def retry(self) -> Flow[JobHandle[R]]:
        """A new job with this one's kind, input and callback (it must be failed, dead or cancelled)."""
        job: Job = yield Call("POST", f"/v1/jobs/{seg(self.id)}/retry", one(Job))
        return handle_for(self.client, job)

    @call
    def history(self, after: int = 0) -> Call[JobHistory]:
        return Call("GET", f"/v1/jobs/{seg(self.id)}/history", one(JobHistory), params={"after": after})

    @stream(StreamEvent)
    def events(self, timeout: float = 600.0) -> Flow[None]:
        return _job_events(self.client, self.id, timeout)

    @call
    def wait(self, timeout: float | None = None, *, on_progress: ProgressCallback | None = None,
             poll_interval: float = 1.0, use_events: bool = True) -> Flow[Job]:
        """Wait until the job ends and return it (whatever its status: check ``.ok``).

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

            def seen(ev: StreamEvent) -> bool:
                if ev.event == "progress":
                    report(_progress_of(self.id, ev.data))
                elif ev.event == "end":
                    if "id" not in ev.data:
                        raise ApiError(404, "job_not_found", f"Job {self.id} was deleted")
                    self.job = Job.from_dict(ev.data)
                    report.job(self.job)
                    return True
                return False

            try:
                while left() > 0:
                    opened = time.monotonic()
                    if (yield from each(_job_events(self.client, self.id, left()), seen)):
                        return self.job
                    if time.monotonic() - opened < 5.0:
                        break  # the stream closes early (a proxy?): polling is the steadier way here
            except ApiError as exc:
                if not _stream_fallback(exc):
                    raise
        interval = poll_interval
        while True:
            self.job = yield _get_job(self.id)
            report.job(self.job)
            if self.job.done:
                return self.job
            if left() <= 0:
                raise WaitTimeout(self.job)
            yield Sleep(max(0.01, min(interval, left())))
            interval = min(interval * 1.5, 5.0)


class Jobs(Namespace[R]):
    """Jobs: ``rf.jobs``."""

    @call
    def submit(self, kind: str, input: Mapping[str, Any] | None = None, *, callback_url: str | None = None,
               priority: int = 0, idempotency_key: str | None = None,
               wait: float | None = None) -> Flow[JobHandle[R]]:
        """Queue a job; ``.wait()`` on the answer follows it to the end. ``wait=`` lets the server hold the
        answer up to that many seconds (max 60) first."""
        return submit_job(self.client, kind, input, callback_url=callback_url, priority=priority,
                          idempotency_key=idempotency_key, wait=wait)

    @call
    def batch(self, jobs: builtins.list[Mapping[str, Any]]) -> Flow[builtins.list[JobHandle[R]]]:
        """Queue up to 100 jobs at once, all or none; each item is ``{"kind", "input", ...}`` as for `submit`.
        Not retried after a 503 (the batch route takes no Idempotency-Key)."""
        done: builtins.list[Job] = yield Call("POST", "/v1/jobs/batch", data(Job),
                                              json={"jobs": [dict(j) for j in jobs]}, repeatable=False)
        return [handle_for(self.client, j) for j in done]

    @call
    def list(self, *, status: str | None = None, kind: str | None = None, limit: int = 50,
             cursor: str | None = None) -> Call[JobPage]:
        """One page of your jobs, newest first."""
        return Call("GET", "/v1/jobs", one(JobPage),
                    params=clean({"status": status, "kind": kind, "limit": limit, "cursor": cursor}))

    @stream(Job)
    def iterate(self, *, status: str | None = None, kind: str | None = None, page_size: int = 100) -> Flow[None]:
        """Every job, newest first, following the cursor page by page."""
        cursor: str | None = None
        while True:
            page: JobPage = yield from Jobs.list.flow(self, status=status, kind=kind, limit=page_size, cursor=cursor)
            for job in page.data:
                yield Emit(job)
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    @call
    def get(self, job_id: str) -> Call[Job]:
        return _get_job(job_id)

    @call
    def handle(self, job_id: str) -> Flow[JobHandle[R]]:
        """A handle on an existing job (fetches it once)."""
        job: Job = yield _get_job(job_id)
        return handle_for(self.client, job)

    @call
    def cancel(self, job_id: str) -> Call[Job]:
        return Call("POST", f"/v1/jobs/{seg(job_id)}/cancel", one(Job))

    @call
    def retry(self, job_id: str) -> Call[Job]:
        """A new job with the kind, input and callback of a failed, dead or cancelled one (409 otherwise)."""
        return Call("POST", f"/v1/jobs/{seg(job_id)}/retry", one(Job))

    @call
    def history(self, job_id: str, *, after: int = 0) -> Call[JobHistory]:
        return Call("GET", f"/v1/jobs/{seg(job_id)}/history", one(JobHistory), params={"after": after})

    @stream(StreamEvent)
    def events(self, job_id: str, *, timeout: float = 600.0) -> Flow[None]:
        """Server-sent events until the job ends (the last one is ``end``, carrying the job) or ``timeout``."""
        return _job_events(self.client, job_id, timeout)

    @call
    def wait(self, job_id: str, timeout: float | None = None, *, on_progress: ProgressCallback | None = None,
             poll_interval: float = 1.0, use_events: bool = True) -> Flow[Job]:
        """Follow a job to its end (see `JobHandle.wait`)."""
        job: Job = yield _get_job(job_id)
        return (yield from JobHandle.wait.flow(handle_for(self.client, job), timeout, on_progress=on_progress,
                                             poll_interval=poll_interval, use_events=use_events))


# --- catalogue ----------------------------------------------------------------------------------------------
class Pipelines(Namespace[R]):
    """The job kinds the server runs: ``rf.pipelines``."""

    @call
    def list(self) -> Call[builtins.list[Pipeline]]:
        return Call("GET", "/v1/pipelines", data(Pipeline))

    @call
    def get(self, kind: str) -> Call[Pipeline]:
        return Call("GET", f"/v1/pipelines/{seg(kind)}", one(Pipeline))


class Models(Namespace[R]):
    """Model adapters on the server: ``rf.models``."""

    @call
    def list(self, task: str | None = None) -> Call[builtins.list[Model]]:
        return Call("GET", "/v1/models", data(Model), params=clean({"task": task}))


# --- files --------------------------------------------------------------------------------------------------
class Uploads(Namespace[R]):
    """Upload records, for callers that send the bytes themselves: ``rf.uploads`` (see `Assets.upload`)."""

    @call
    def create(self, content_type: str, size: int, *, filename: str | None = None, sha256: str | None = None,
               lifecycle: str = "hot", multipart: bool | None = None) -> Call[Upload]:
        return uploads.create_upload(content_type, size, filename, sha256, lifecycle, multipart)

    @call
    def get(self, upload_id: str) -> Call[Upload]:
        return uploads.get_upload(upload_id)

    @call
    def complete(self, upload_id: str, *, parts: builtins.list[tuple[int, str]] | None = None,
                 sha256: str | None = None) -> Call[Asset]:
        return uploads.complete_upload(upload_id, parts, sha256)

    @call
    def abort(self, upload_id: str) -> Call[Upload]:
        return uploads.abort_upload(upload_id)


class Assets(Namespace[R]):
    """Stored files: ``rf.assets``."""

    @call
    def upload(self, path: str | os.PathLike[str], content_type: str | None = None, *, lifecycle: str = "hot",
               filename: str | None = None, multipart: bool | None = None,
               on_progress: BytesCallback | None = None, resume: str | None = None) -> Flow[Asset]:
        """Upload a file through signed URLs and return the asset.

        The server decides single PUT or multipart by size (``multipart=`` forces it). The file is hashed,
        then streamed from disk one part at a time; the server checks size and sha256 before the asset
        exists. ``on_progress(sent, total)`` follows the bytes. With ``upload_state_dir`` set, a failed
        upload raises `UploadFailed` whose ``upload_id`` can be passed as ``resume=`` to send only the
        parts that are missing.
        """
        return uploads.upload_file(self.client, path, content_type, lifecycle=lifecycle, filename=filename,
                                   multipart=multipart, on_progress=on_progress, resume=resume)

    @call
    def download(self, asset_id: str, path: str | os.PathLike[str] | None = None, *,
                 on_progress: BytesCallback | None = None) -> Flow[Path]:
        """Stream an asset to ``path`` (a file, or a directory to keep its name; default: the current one).

        The bytes go to a temporary file beside the target and replace it only when size and sha256 match
        the asset; otherwise `ChecksumMismatch` is raised and the target is untouched.
        """
        return uploads.download(asset_id, path, on_progress)

    @call
    def list(self, *, limit: int = 50, job_id: str | None = None) -> Call[builtins.list[Asset]]:
        return Call("GET", "/v1/assets", data(Asset), params=clean({"limit": limit, "job_id": job_id}))

    @call
    def get(self, asset_id: str) -> Call[Asset]:
        """Metadata and a signed download URL."""
        return uploads.get_asset(asset_id)

    @call
    def delete(self, asset_id: str) -> Call[None]:
        return uploads.delete_asset(asset_id)


# --- account, notifications, operations -----------------------------------------------------------------------
class CreditsNamespace(Namespace[R]):
    """Your credits: ``rf.credits``."""

    @call
    def get(self, *, limit: int = 100, before: int | None = None) -> Call[Credits]:
        """Balance and ledger, newest first."""
        return Call("GET", "/v1/credits", one(Credits), params=clean({"limit": limit, "before": before}))


class Webhooks(Namespace[R]):
    """Webhook subscriptions and their deliveries: ``rf.webhooks``."""

    @call
    def create(self, url: str, event_types: builtins.list[str] | None = None, description: str = "") -> Call[Webhook]:
        """Subscribe a URL; the answer's ``.secret`` verifies the signatures (shown once)."""
        return Call("POST", "/v1/webhooks", one(Webhook),
                    json={"url": url, "event_types": builtins.list(event_types or []), "description": description})

    @call
    def list(self) -> Call[builtins.list[Webhook]]:
        return Call("GET", "/v1/webhooks", data(Webhook))

    @call
    def get(self, hook_id: str) -> Call[Webhook]:
        return Call("GET", f"/v1/webhooks/{seg(hook_id)}", one(Webhook))

    @call
    def delete(self, hook_id: str) -> Call[None]:
        return Call("DELETE", f"/v1/webhooks/{seg(hook_id)}", nothing)

    @call
    def test(self, hook_id: str) -> Call[WebhookTest]:
        return Call("POST", f"/v1/webhooks/{seg(hook_id)}/test", one(WebhookTest))

    @call
    def deliveries(self, hook_id: str) -> Call[builtins.list[Delivery]]:
        return Call("GET", f"/v1/webhooks/{seg(hook_id)}/deliveries", data(Delivery))

    @call
    def signing_secret(self) -> Call[str]:
        """The secret that signs deliveries to jobs' ``callback_url``."""
        return Call("GET", "/v1/webhooks/signing-secret", lambda r: str(r.json()["secret"]))


class Admin(Namespace[R]):
    """Administration (admin accounts only): ``rf.admin``."""

    @call
    def users(self, *, limit: int = 100, offset: int = 0) -> Call[builtins.list[User]]:
        """Every account."""
        return Call("GET", "/v1/admin/users", data(User), params={"limit": limit, "offset": offset})

    @call
    def update_user(self, user_id: str, *, role: str | None = None, disabled: bool | None = None) -> Call[User]:
        """Change a user's role or disable the account."""
        return Call("PATCH", f"/v1/admin/users/{seg(user_id)}", one(User),
                    json=clean({"role": role, "disabled": disabled}))

    @call
    def grant_credits(self, account_id: str, amount: int, note: str = "") -> Call[CreditEntry]:
        """Add (or with a negative amount, take) credits."""
        return Call("POST", "/v1/admin/credits", one(CreditEntry),
                    json={"account_id": account_id, "amount": amount, "note": note})

    @call
    def redrive(self, job_id: str) -> Call[Job]:
        """Put a dead or failed job back in the queue (same id; credits reserved again)."""
        return Call("POST", f"/v1/admin/jobs/{seg(job_id)}/redrive", one(Job))

    @call
    def queue(self, *, dead_limit: int = 50) -> Call[dict[str, Any]]:
        """Queue depth by kind and status, running jobs, recent dead and failed jobs."""
        return Call("GET", "/v1/admin/queue", document, params={"dead_limit": dead_limit})

    @call
    def workers(self) -> Call[builtins.list[dict[str, Any]]]:
        """Registered workers and the age of their last heartbeat."""
        return Call("GET", "/v1/admin/workers", lambda r: builtins.list(r.json()["data"]))

    @call
    def system(self) -> Call[dict[str, Any]]:
        """Version, models, storage totals, workers, database engine."""
        return Call("GET", "/v1/admin/system", document)

    @call
    def alarms(self, *, hours: int = 24) -> Call[dict[str, Any]]:
        """Alarm rules, alarms firing now, recent alarm events."""
        return Call("GET", "/v1/admin/alarms", document, params={"hours": hours})

    @call
    def stats(self, *, hours: int = 24) -> Call[dict[str, Any]]:
        """Jobs and credits per hour, run-time percentiles by kind, queue-depth samples."""
        return Call("GET", "/v1/admin/stats", document, params={"hours": hours})


class System(Namespace[R]):
    """Liveness and readiness (no credentials): ``rf.system``."""

    @call
    def health(self) -> Call[dict[str, Any]]:
        return Call("GET", "/healthz", document, auth=False)

    @call
    def ready(self) -> Call[dict[str, Any]]:
        return Call("GET", "/readyz", document, auth=False)


class Resources(Session):
    """The core namespaces, on either face."""

    def _attach_namespaces(self: Self) -> None:
        self.auth: Auth[Self] = Auth(self)
        self.api_keys: ApiKeys[Self] = ApiKeys(self)
        self.jobs: Jobs[Self] = Jobs(self)
        self.pipelines: Pipelines[Self] = Pipelines(self)
        self.models: Models[Self] = Models(self)
        self.uploads: Uploads[Self] = Uploads(self)
        self.assets: Assets[Self] = Assets(self)
        self.credits: CreditsNamespace[Self] = CreditsNamespace(self)
        self.webhooks: Webhooks[Self] = Webhooks(self)
        self.admin: Admin[Self] = Admin(self)
        self.system: System[Self] = System(self)
