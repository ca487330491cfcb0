"""The error tree. Each class knows its HTTP status, its stable code and whether a retry may help."""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Any


class ReelforgeError(Exception):
    status: int = 500
    code: str = "internal_error"
    title: str = "Internal error"
    retryable: bool = False

    def __init__(self, message: str | None = None, *, code: str | None = None, **details: Any) -> None:
        super().__init__(message or self.title)
        self.message = message or self.title
        if code:
            self.code = code
        self.details: dict[str, Any] = details

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, **({"details": self.details} if self.details else {})}


class ValidationFailed(ReelforgeError):
    status, code, title = 422, "validation_error", "Invalid input"


class BadRequest(ReelforgeError):
    status, code, title = 400, "bad_request", "Bad request"


class Unauthorized(ReelforgeError):
    status, code, title = 401, "unauthorized", "Authentication required"


class Forbidden(ReelforgeError):
    status, code, title = 403, "forbidden", "Not allowed"


class NotFound(ReelforgeError):
    status, code, title = 404, "not_found", "Not found"


class Conflict(ReelforgeError):
    status, code, title = 409, "conflict", "Conflict"


class PaymentRequired(ReelforgeError):
    status, code, title = 402, "insufficient_credits", "Not enough credits"


class PayloadTooLarge(ReelforgeError):
    status, code, title = 413, "payload_too_large", "Payload too large"


class RateLimited(ReelforgeError):
    status, code, title = 429, "rate_limited", "Too many requests"

    def __init__(self, message: str | None = None, *, retry_after: int = 1, **details: Any) -> None:
        super().__init__(message, retry_after=retry_after, **details)
        self.retry_after = retry_after


class Gone(ReelforgeError):
    status, code, title = 410, "expired", "Expired"


class SecretUnreadable(ReelforgeError):
    """A secret stored encrypted does not decrypt with this instance's key (the instance secret changed)."""

    status, code, title = 500, "secret_unreadable", "Stored secret cannot be decrypted"


class ServiceUnavailable(ReelforgeError):
    status, code, title, retryable = 503, "unavailable", "Service unavailable", True


class StorageError(ReelforgeError):
    status, code, title, retryable = 503, "storage_error", "Object storage error", True


class ObjectNotFound(NotFound):
    code, title = "object_not_found", "Object not found"


class ChecksumMismatch(ReelforgeError):
    status, code, title = 422, "checksum_mismatch", "Checksum does not match"


class InvalidKey(ReelforgeError):
    status, code, title = 400, "invalid_key", "Invalid object key"


class ModelUnavailable(ReelforgeError):
    status, code, title = 422, "model_unavailable", "Model cannot run here"


class TransientError(ReelforgeError):
    """A failure that may pass on its own: the job is retried with backoff."""

    status, code, title, retryable = 503, "transient_error", "Temporary failure", True


class StaleLease(ReelforgeError):
    """A worker whose lease was lost tried to write (fencing)."""

    status, code, title = 409, "stale_lease", "Lease lost"


class JobCancelled(ReelforgeError):
    status, code, title = 409, "cancelled", "Job cancelled"


class StepTimeout(ReelforgeError):
    status, code, title, retryable = 504, "States.Timeout", "Step timed out", True


class MemoryLimitExceeded(ReelforgeError):
    """A step would need more memory than it declares (decoded frames x buffers over `Resources.memory_mb`)."""

    status, code, title = 422, "memory_limit_exceeded", "The input needs more memory than the step may use"


# --- the documented list of error codes ------------------------------------------------------------------------
# Every `code` an API problem or a job error may carry is in this list (the platform's) or in an installed
# application's `AppManifest.error_codes`; docs/errors.md documents the same set (a test keeps them equal).
CODES: dict[str, str] = {
    "free_jobs_limited": "Too many jobs without a credit charge from this account in the window; see Retry-After",
    "input_too_deep": "A JSON value nests deeper than allowed (`max_depth`)",
    "login_throttled": "Too many failed sign-ins for this e-mail address in a row; see Retry-After",
    "part_too_large": "A multipart part body is over the size its URL was signed for (`limit`); nothing was kept",
    "password_too_common": "The password is one of the most common ones; choose another",
    "secret_unreadable": "A stored signing secret does not decrypt with this instance's secret",
    "webhook_limit_reached": "The account holds the most webhook subscriptions allowed (`limit`)",
    "wrong_password": "The current password is wrong",
    # accounts: OIDC sign-in, API key scopes, audit, export and deletion
    "oidc_unavailable": "The OIDC issuer's keys cannot be fetched (and none are cached); retry later",
    "identity_not_linked": "The external identity maps to no account and oidc.create_accounts is off",
    "invalid_scope": "An API key scope is unknown, or names an application that is not installed",
    "scope_escalation": "A limited API key tried to make a key with more scopes than its own",
    "insufficient_scope": "The API key's scopes do not allow this call (`scope` names the missing one)",
    "reauthentication_required": "Confirm with the password, or a token issued in the last few minutes",
    "invalid_time_range": "`since` is not before `until`, or a time is out of range",
    # requests and accounts
    "bad_request": "The request is malformed",
    "validation_error": "A field of the request or of the job input is invalid",
    "unauthorized": "Authentication required",
    "missing_credentials": "No bearer token or API key was sent",
    "invalid_credentials": "Wrong email or password",
    "invalid_token": "The access token is invalid, or its account is gone or disabled",
    "token_expired": "The access token has expired",
    "invalid_refresh_token": "The refresh token is invalid or expired",
    "invalid_api_key": "The API key is malformed or revoked",
    "account_disabled": "The account is disabled",
    "forbidden": "Not allowed",
    "admin_only": "This needs the admin role",
    "registration_closed": "Registration is closed on this server",
    "email_taken": "An account with this email exists",
    "invalid_email": "Not a valid email address",
    "weak_password": "The password is too short or too long",
    "user_not_found": "No such account",
    "api_key_not_found": "No such API key",
    "not_found": "No such resource",
    "method_not_allowed": "The route does not take this method",
    "not_acceptable": "The answer cannot be given in the accepted type",
    "unsupported_media_type": "The request body's type is not accepted",
    "http_error": "Another HTTP-level refusal",
    "conflict": "The request conflicts with the resource's state",
    "payload_too_large": "The request body is too large",
    "rate_limited": "Too many requests (writes or reads, per address or per account); retry after `Retry-After` "
                    "seconds",
    "expired": "The resource has expired",
    "invalid_url": "The URL is malformed or not allowed",
    "internal_error": "Something went wrong on the server's side (it was logged)",
    "unavailable": "The service is unavailable for now; retry later",
    "not_ready": "The server is not ready yet",
    # jobs and pipelines
    "unknown_kind": "No pipeline for this job kind",
    "job_not_found": "No such job",
    "job_finished": "The job has already ended",
    "job_not_redrivable": "Only dead or failed jobs can be redriven",
    "job_not_retryable": "Only failed, dead or cancelled jobs can be retried",
    "idempotency_key_reused": "The Idempotency-Key was used for a different request",
    "idempotency_not_supported": "This route takes no Idempotency-Key",
    "invalid_cursor": "The pagination cursor is malformed",
    "insufficient_credits": "Not enough credits for this job",
    "cancelled": "The job was cancelled",
    "preempted": "The worker was preempted (a Spot interruption): the job was handed back and resumes elsewhere",
    "lease_expired": "The worker running the job stopped answering",
    "stale_lease": "A worker that lost the job's lease tried to write",
    "transient_error": "A temporary failure; the job is retried",
    "pipeline_failed": "The pipeline failed",
    "resources_unavailable": "A step needs more than any worker provides",
    "app_unavailable": "A step needs an application this worker was not given",
    "memory_limit_exceeded": "The input would need more memory than the step declares",
    "States.Timeout": "A step ran past its timeout",
    "States.TaskFailed": "A step failed",
    "States.Runtime": "A step produced output that cannot be stored (a bug)",
    "States.NoChoiceMatched": "No branch of a Choice state matched",
    "States.ResultPathMatchFailure": "A step's result could not be placed in its input",
    # storage
    "upload_not_found": "No such upload",
    "upload_not_pending": "The upload is already completed or aborted",
    "upload_expired": "The upload expired; start a new one",
    "upload_missing": "Nothing was uploaded yet",
    "upload_closed": "The upload is closed; its bytes are final",
    "upload_too_large": "The upload is larger than allowed",
    "asset_not_found": "No such asset",
    "object_not_found": "No such stored object",
    "invalid_key": "Invalid object key",
    "key_conflict": "An object with this key exists",
    "invalid_content_type": "Not a valid content type",
    "content_type_mismatch": "The upload's Content-Type differs from the one signed",
    "invalid_size": "The size is not valid",
    "size_mismatch": "The uploaded size differs from the declared size",
    "invalid_checksum": "A sha256 must be 64 hex digits",
    "checksum_mismatch": "The uploaded bytes do not match the sha256 given",
    "invalid_lifecycle": "Unknown lifecycle class",
    "lifecycle_unsupported": "This object store has no bucket lifecycle rules (the local disk)",
    "invalid_metadata": "Object metadata is not valid",
    "parts_required": "A multipart upload needs its parts to complete",
    "invalid_part": "A part is missing or its ETag does not match",
    "invalid_part_number": "Part numbers go from 1 to 10000",
    "invalid_part_order": "Parts must be listed in ascending order",
    "part_too_small": "Every part but the last must be at least 5 MiB",
    "invalid_signature": "The signed URL is not valid for this operation",
    "url_expired": "The signed URL has expired",
    "storage_error": "The object store failed; retried",
    # e-mail links and sessions (services/mail.py, services/auth.py)
    "invalid_mail_token": ("The link's token (verification or password reset) is unknown, forged, already used, "
                           "or for an address the account no longer has"),
    "mail_token_expired": "The link's token has expired; ask for a new link",
    "already_verified": "The account's e-mail address is verified already",
    "mail_throttled": "A mail of this kind was sent to the account a moment ago; see Retry-After",
    "session_not_found": "No such session of the caller",
    "session_revoked": "The access token's session was signed out (sign-out, password change or reset)",
    # webhooks
    "webhook_not_found": "No such webhook",
    "forbidden_target": "Webhook targets on private, loopback or metadata addresses are refused",
    "unresolvable_host": "The webhook target's host does not resolve",
    "invalid_event_type": "Unknown event type",
    # credit purchases and the CRM (services/billing.py, services/crm.py)
    "billing_not_configured": "Credit purchases are not configured on this server (no Stripe keys)",
    "unknown_pack": "No credit pack with this id; see GET /v1/billing/packs",
    "purchase_not_found": "No such purchase",
    "payment_provider_error": "The payment provider (Stripe) refused the request or could not be reached",
    "invalid_stripe_signature": "The Stripe-Signature header is missing, malformed or does not sign the body",
    "stale_stripe_signature": "The Stripe-Signature timestamp is outside the tolerance (`tolerance_s`)",
    "invalid_stripe_event": "A correctly signed webhook body that is not a Stripe event",
    "crm_error": "The CRM (Salesforce) refused an upsert or could not be reached; the outbox retries it",
    # interactive calls (services/calls.py, runtime/calls.py)
    "unknown_call": "No installed application offers a call of this name",
    "workers_unavailable": "No live worker answers calls right now; retry shortly",
    "call_timeout": "The worker gave no answer within the call's timeout",
    "invalid_call_signature": "A worker refused a call that is not signed by this installation (or is too old)",
    "worker_stopping": "The worker is shutting down; another worker takes the call",
    # models and vectors
    "model_unavailable": "The model cannot run on this server",
    "model_not_found": "No such model",
    "model_exists": "A model with this name exists",
    "vectors_unavailable": "The vector index is unavailable",
    "invalid_vector": "A vector, key or namespace is not valid",
    # media (uploads, probes, decoding)
    "not_a_video": "The file is not a video the platform can read",
    "not_an_image": "The file is not an image the platform can read",
    "invalid_media": "The file cannot be read as media",
    "unsupported_format": "The file's container format is not accepted (playlists, concat lists, ...)",
    "unsupported_codec": "The codec is not accepted or cannot be decoded here",
    "unsupported_stream": "A stream cannot go into the chosen container",
    "video_too_large": "The video is larger than allowed (width, height, pixels, or bytes)",
    "video_too_long": "The video lasts longer than allowed",
    "frame_rate_too_high": "The video's frame rate is above the limit",
    "image_too_large": "The image is larger than allowed (checked from its header, before decoding)",
    "media_truncated": "The file holds less than its container claims (cut short)",
    "active_content": "The file carries markup or script (HTML, SVG, JavaScript)",
    "polyglot_file": "The file is also another kind of file (an appended archive)",
    "corrupt_video": "The video stopped decoding part-way",
    "frame_count_mismatch": "Fewer frames were decoded than the container holds",
    "frame_fn_invalid": "A frame transform returned unusable frames (a bug)",
    "media_error": "Media processing failed",
    "ffmpeg_failed": "An FFmpeg command failed",
    "ffmpeg_not_found": "No FFmpeg binary on this server",
    "bad_chunk": "A processed chunk does not match the others",
    "no_chunks": "Nothing to join",
    "invalid_batch_size": "The batch size must be at least 1",
    "invalid_chunk_seconds": "Chunk length must be positive",
    "invalid_container": "Unknown output container",
    "invalid_interpolation": "Unknown interpolation",
}

# Codes a refusal without a code of its own falls back to, by HTTP status.
_BY_STATUS = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
              409: "conflict", 410: "expired", 413: "payload_too_large", 415: "unsupported_media_type",
              422: "validation_error", 429: "rate_limited", 503: "unavailable", 504: "States.Timeout"}
# Exceptions from libraries that reach a job's end unwrapped, by class name.
_BY_EXCEPTION = {"InvalidDataError": "invalid_media", "MemoryError": "memory_limit_exceeded"}


def public_code(code: str, known: Collection[str] | None = None, *, status: int | None = None) -> str:
    """``code`` when it is documented; else the documented code for the exception class or the HTTP status, and
    ``internal_error`` as the last resort. ``known`` defaults to the platform's list."""
    allowed = CODES if known is None else known
    if code in allowed:
        return code
    if code in _BY_EXCEPTION:
        return _BY_EXCEPTION[code]
    return _BY_STATUS.get(status or 500, "internal_error")


_ERRNO = re.compile(r"\[Errno -?\d+\]\s*")
_FILE_URL = re.compile(r"file:/{1,3}[^\s'\"<>]*", re.IGNORECASE)
_WINDOWS_PATH = re.compile(r"(?<![\w])[A-Za-z]:\\[^\s'\"<>]*")
# Absolute (/a/b...) and relative (a/b/c...) paths of at least two separators; API routes (/v1/...) and URLs
# (whose paths follow a host) are left alone.
_SEP = r"[^\s'\"<>/:,;()\[\]{}|`]"
_ABSOLUTE = re.compile(rf"(?<![\w.~:/-])~?/(?!v1/)(?:{_SEP}+/)+{_SEP}*")
_RELATIVE = re.compile(r"(?<![\w.~:/-])(?=[\w./-]*[A-Za-z])(?:[\w.-]+/){2,}[\w.-]*(?![\w/])")


def _last_part(m: re.Match[str]) -> str:
    name = m.group(0).rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1]
    return name or "a file"


def scrub(text: str) -> str:
    """A message fit for clients: no filesystem path (a file keeps only its name) and no raw errno."""
    if not text:
        return text
    text = _ERRNO.sub("", text)
    text = _FILE_URL.sub(_last_part, text)
    text = _WINDOWS_PATH.sub(_last_part, text)
    text = _ABSOLUTE.sub(_last_part, text)
    return _RELATIVE.sub(_last_part, text)


def has_path(text: str) -> bool:
    """Whether ``text`` still shows a filesystem path (what :func:`scrub` removes)."""
    return any(p.search(text) for p in (_FILE_URL, _WINDOWS_PATH, _ABSOLUTE, _RELATIVE))


def scrub_value(value: Any) -> Any:
    """:func:`scrub` applied to every string of a JSON-like value (problem details)."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {k: scrub_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub_value(v) for v in value]
    return value


def public_error(code: str, message: str, known: Collection[str] | None = None, *,
                 status: int | None = None) -> tuple[str, str]:
    """The (code, message) a job error or an API problem may show: a documented code, a message without paths."""
    return public_code(code, known, status=status), scrub(message)
