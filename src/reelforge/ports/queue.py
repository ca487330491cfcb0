"""The job queue contract: what a worker needs from the job table, whatever database holds it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol


class JobQueueTx(Protocol):
    """Queue operations inside one transaction (`Store.tx()` yields an object with these methods)."""

    def claim_job(self, worker_id: str, lease_s: float, kinds: Sequence[str] | None = None) -> Any:
        """Take the most urgent ready job (priority desc, run_at, age), bump its attempt, lease it; or None."""
        ...

    def fence(self, job_id: str, attempt: int, lease_s: float | None = None) -> Any:
        """Prove the lease (and optionally renew it); raises StaleLease when this attempt no longer holds it."""
        ...

    def expired_leases(self, limit: int = 100) -> Sequence[Any]:
        """Running jobs whose lease ran out on the database clock."""
        ...

    def notify_jobs(self) -> None:
        """Wake waiting workers (a no-op where the engine has no notifications)."""
        ...
