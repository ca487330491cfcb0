"""Statuses, lifecycle classes and small value types shared by every layer."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class JobStatus(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"
    dead = "dead"


TERMINAL_STATUSES = frozenset({JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled, JobStatus.dead})


class Lifecycle(StrEnum):
    hot = "hot"
    infrequent = "infrequent"
    archive = "archive"
    temporary = "temporary"


class Role(StrEnum):
    user = "user"
    admin = "admin"


class CreditKind(StrEnum):
    grant = "grant"
    reserve = "reserve"
    settle = "settle"
    refund = "refund"


JOB_EVENT_TYPES = ("job.succeeded", "job.failed", "job.cancelled")


@dataclass(frozen=True)
class Principal:
    """Who is calling: resolved from a JWT or an API key."""

    user_id: str
    email: str
    role: Role
    via: str = "jwt"
    # An API key's scopes (domain/scopes.py); None: everything the account may do.
    scopes: frozenset[str] | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == Role.admin


# No JSON value a request carries may nest deeper than this, whatever max_json_depth says: well below what the
# serializers re-serve (pydantic's stops near 255 levels) with room for the envelopes around a stored value.
JSON_DEPTH_CEILING = 64


def json_depth(value: object, limit: int) -> int:
    """How deeply a JSON value nests (a scalar 0, `[]` or `{}` 1, `{"a": []}` 2), counted no further than
    `limit + 1`: enough to tell that it is too deep without walking the rest. Iterative: any depth is safe."""
    deepest = 0
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, dict):
            children: object = v.values()
        elif isinstance(v, list | tuple):
            children = v
        else:
            continue
        depth += 1
        if depth > deepest:
            deepest = depth
            if deepest > limit:
                return deepest
        stack.extend((c, depth) for c in children)  # type: ignore[attr-defined]
    return deepest


def login_backoff_s(failures: int, free: int, base_s: float, max_s: float) -> float:
    """How long sign-ins for an address wait after its `failures`-th failure in a row: nothing for the first
    `free - 1`, then base, 2 base, 4 base, ... never more than max_s (an attacker cannot lock the owner out for
    longer than that at a time)."""
    if failures < free:
        return 0.0
    return min(max_s, base_s * 2 ** min(failures - free, 62))


def retry_delay(failures: int, base_s: float, max_s: float, rand: float) -> float:
    """Exponential backoff with full jitter: uniform(0, min(max, base * 2**(n-1))), at least a tenth of it."""
    cap = min(max_s, base_s * (2 ** max(0, failures - 1)))
    return cap * (0.1 + 0.9 * rand)
