"""The error tree. Each class knows its HTTP status, its stable code and whether a retry may help."""

from __future__ import annotations

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
