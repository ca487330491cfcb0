"""Getting failed work going again: an admin redrives a job in place; an owner retries one as a new job."""

from __future__ import annotations

from reelforge import errors, tracing
from reelforge.config import Settings
from reelforge.domain.records import Job
from reelforge.domain.types import CreditKind, Principal
from reelforge.ports.repositories import Store
from reelforge.services.jobs import JobService
from reelforge.services.ownership import owned

REDRIVABLE = ("dead", "failed")
RETRYABLE = ("dead", "failed", "cancelled")


class RecoveryService:
    def __init__(self, store: Store, settings: Settings, jobs: JobService) -> None:
        self.store = store
        self.settings = settings
        self.jobs = jobs

    def redrive(self, admin: Principal, job_id: str) -> Job:
        """Put a dead or failed job back in the queue (the DLQ redrive of the AWS designs).

        Failures reset to zero, so it gets its full `max_attempts` again; its credits are reserved again
        (402 when the owner's balance no longer covers them); checkpoints are kept, so it resumes after
        its last finished step. The attempt number keeps growing: it stays the fencing token.
        """
        if not admin.is_admin:
            raise errors.Forbidden("This needs the admin role", code="admin_only")
        with self.store.tx() as tx:
            job = tx.jobs.job(job_id)
            if job is None:
                raise errors.NotFound("Job not found", code="job_not_found")
            if job.status not in REDRIVABLE:
                raise errors.Conflict(f"Only dead or failed jobs can be redriven; this one is {job.status}",
                                      code="job_not_redrivable", job_status=job.status)
            reserved = 0
            if job.credits and self.settings.credits.enabled:
                tx.credits.credit(job.owner_id, -job.credits, CreditKind.reserve, job_id=job.id,
                                  note=f"{job.kind} reserved (redrive)", require_balance=True)
                reserved = job.credits
            previous = {"status": job.status, "error": job.error_code, "failures": job.failures}
            changed = tx.jobs.set_job_status_if(
                job.id, list(REDRIVABLE), status="queued", failures=0, run_at=tx.now(), worker_id=None,
                lease_expires_at=None, finished_at=None, expires_at=None, error_code=None, error_message=None,
                cancel_requested=False, credits_state="reserved" if reserved else job.credits_state,
                trace_context=tracing.current_carrier() or job.trace_context,
            )
            if not changed:  # raced with another redrive: the reservation above rolls back with this
                raise errors.Conflict("The job changed meanwhile", code="job_not_redrivable")
            tx.jobs.add_event(job.id, "JobRedriven", attempt=job.attempt,
                              details={"by": admin.user_id, "credits": reserved, "previous": previous})
            tx.jobs.notify_jobs()
            fresh = tx.jobs.job(job.id)
            assert fresh is not None
            return fresh

    def retry(self, principal: Principal, job_id: str) -> Job:
        """A new job with the same kind, input, callback and priority as the owner's ended job.

        Only jobs that ended without success (failed, dead, cancelled) can be retried; the new job is
        validated, priced and reserved like any submit.
        """
        with self.store.tx(write=False) as tx:
            job = owned(tx.jobs.job(job_id), principal, "Job")
        if job.status not in RETRYABLE:
            raise errors.Conflict(f"Only failed, dead or cancelled jobs can be retried; this one is {job.status}",
                                  code="job_not_retryable", job_status=job.status)
        new, _ = self.jobs.submit(
            principal, job.kind, dict(job.input or {}), callback_url=job.callback_url, priority=job.priority,
        )
        with self.store.tx() as tx:
            tx.jobs.add_event(new.id, "RetryOf", details={"job_id": job.id})
            tx.jobs.add_event(job.id, "RetriedAs", attempt=job.attempt, details={"job_id": new.id})
        return new
