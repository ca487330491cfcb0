"""What the client raises: `ApiError` (with the problem+json body) and its kinds, and the local failures."""

from __future__ import annotations

import contextlib
import email.utils
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from reelforge.client.records import Job


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
        retry_after = retry_after_of(response)
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


def retry_after_of(response: httpx.Response) -> float | None:
    """The ``Retry-After`` header in seconds (either form), or None."""
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


def transport_error(exc: httpx.HTTPError, url: str) -> ApiError:
    """An httpx failure as the client's error: unreachable before any answer, lost after."""
    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.UnsupportedProtocol)):
        return ServerUnreachable(url, exc)
    return ConnectionLost(url, exc)
