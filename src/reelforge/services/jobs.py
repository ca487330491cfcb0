"""Submitting, reading, cancelling and finishing jobs. Every transition and its credits move in one transaction."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import hashlib
import json
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, replace
from typing import Any

from pydantic import ValidationError

from reelforge import errors, tracing
from reelforge.config import Settings
from reelforge.domain import scopes as scope_rules
from reelforge.domain.records import Job, JobEvent
from reelforge.domain.types import TERMINAL_STATUSES, CreditKind, JobStatus, Principal, json_depth, retry_delay
from reelforge.ports.repositories import DuplicateKey, Store, UnitOfWork
from reelforge.services.ownership import owned

log = logging.getLogger("reelforge.jobs")


@dataclass
class SucceedItem:
    """One job's success as the worker's batched finisher hands it over."""

    job_id: str
    attempt: int
    outputs: dict[str, Any]
    history: Sequence[tuple[str, str | None, dict[str, Any]]] = ()
    checkpoints: dict[str, Any] | None = None


def job_summary(job: Job) -> dict[str, Any]:
    """The job as events and webhooks carry it."""
    return {
        "id": job.id, "kind": job.kind, "status": job.status, "outputs": job.outputs,
        "error": {"code": job.error_code, "message": job.error_message} if job.error_code else None,
        "credits": job.credits, "attempt": job.attempt, "created_at": job.created_at, "finished_at": job.finished_at,
    }


def pydantic_problem(exc: ValidationError) -> errors.ValidationFailed:
    fields = [
        {"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"], "type": e["type"]}
        for e in exc.errors(include_url=False, include_context=False)
    ]
    first = fields[0] if fields else {"field": "", "message": "invalid"}
    return errors.ValidationFailed(f"{first['field'] or 'input'}: {first['message']}", errors=fields)


class JobService:
    def __init__(self, store: Store, settings: Settings, pipelines: Any,
                 url_guard: Callable[[str], None] | None = None,
                 error_codes: Collection[str] | None = None) -> None:
        self.store = store
        # The documented error codes (the platform's and the installed applications'); a job's error never
        # carries another one.
        self.error_codes = error_codes
        self.settings = settings
        self.pipelines = pipelines
        self.url_guard = url_guard
        self._rng = random.Random()
        # Per-kind checks that need more than the input model (e.g. is the model installed here?).
        self.checks: dict[str, Callable[[dict[str, Any]], None]] = {}
        # Checks that need the caller (is the input asset theirs?); they may note facts for price() in the input.
        self.owner_checks: dict[str, Callable[[Principal, dict[str, Any]], None]] = {}
        # The application each job kind belongs to (kinds of no application are the core's): an API key limited to
        # some applications (domain/scopes.py) submits their kinds and the core's only.
        self.kind_apps: dict[str, str] = {}
        # The process's live-event dispatcher (services/live.py), set by the container: long polls wait on it.
        self.live: Any = None

    # --- submit ------------------------------------------------------------------------------
    def check_depth(self, data: Any) -> None:
        """Refuse job input that nests deeper than `max_json_depth` (422 `input_too_deep`): it is stored and
        served back on every read, and the serializers give up on deep values."""
        limit = self.settings.max_json_depth
        if json_depth(data, limit) > limit:
            raise errors.ValidationFailed(f"input: nests deeper than {limit} levels", code="input_too_deep",
                                          field="input", max_depth=limit)

    def validate_input(self, kind: str, data: dict[str, Any],
                       principal: Principal | None = None) -> tuple[Any, dict[str, Any], int]:
        self.check_depth(data)
        try:
            pipeline = self.pipelines.get(kind)
        except errors.NotFound as exc:
            known = ", ".join(p.kind for p in self.pipelines.all())
            raise errors.ValidationFailed(f"Unknown job kind {kind!r}; known: {known}", code="unknown_kind",
                                          field="kind") from exc
        app = self.kind_apps.get(kind)
        if principal is not None and app is not None and scope_rules.missing(principal.scopes, "POST", app):
            raise errors.Forbidden(f"This API key's scopes do not include app:{app}", code="insufficient_scope",
                                   field="kind", scope=f"app:{app}")
        model = getattr(pipeline, "input_model", None)
        if model is not None:
            try:
                clean = model.model_validate(data).model_dump(mode="json")
            except ValidationError as exc:
                raise pydantic_problem(exc) from exc
        else:
            clean = dict(data)
        check = self.checks.get(kind)
        if check is not None:
            check(clean)
        owner_check = self.owner_checks.get(kind)
        if owner_check is not None and principal is not None:
            owner_check(principal, clean)
        price = int(pipeline.price(clean)) if self.settings.credits.enabled else 0
        return pipeline, clean, max(0, price)

    def submit(self, principal: Principal, kind: str, data: dict[str, Any], *, callback_url: str | None = None,
               priority: int = 0, idempotency_key: str | None = None) -> tuple[Job, bool]:
        """Queue a job: validate, price, reserve credits. Returns (job, created).

        The same Idempotency-Key with the same body returns the first job; with another body, 409.
        """
        pipeline, clean, price = self.validate_input(kind, data, principal)
        if callback_url and self.url_guard:
            self.url_guard(callback_url)
        body_hash = hashlib.sha256(json.dumps(
            {"kind": kind, "input": data, "callback_url": callback_url, "priority": priority},
            sort_keys=True, default=str).encode()).hexdigest()
        if idempotency_key:
            with self.store.tx(write=False) as tx:
                existing = tx.jobs.job_by_idempotency(principal.user_id, idempotency_key)
            if existing is not None:
                return self._same_or_conflict(existing, body_hash), False
        max_attempts = getattr(pipeline, "max_attempts", None) or self.settings.jobs.max_attempts
        try:
            with self.store.tx() as tx:
                if not price:
                    self._free_quota(tx, principal.user_id, 1)
                job = tx.jobs.add_job(
                    owner_id=principal.user_id, kind=kind, pipeline_version=getattr(pipeline, "version", 1),
                    priority=priority, input=clean, input_hash=body_hash, credits=price,
                    credits_state="reserved" if price else "none", max_attempts=max_attempts,
                    idempotency_key=idempotency_key, callback_url=callback_url,
                    trace_context=tracing.current_carrier(),  # the worker's job span continues this trace
                )
                if price:
                    tx.credits.credit(principal.user_id, -price, CreditKind.reserve, job_id=job.id,
                                      note=f"{kind} reserved", require_balance=True)
                tx.jobs.add_event(job.id, "JobQueued", details={"priority": priority, "credits": price})
                self._notify(tx)
        except DuplicateKey:
            if not idempotency_key:
                raise
            with self.store.tx(write=False) as tx:
                existing = tx.jobs.job_by_idempotency(principal.user_id, idempotency_key)
            if existing is None:
                raise
            return self._same_or_conflict(existing, body_hash), False
        return job, True

    MAX_BATCH = 100

    def submit_many(self, principal: Principal, items: Sequence[dict[str, Any]]) -> builtins.list[Job]:
        """Queue several jobs in one transaction: all of them or none (validation, credits).

        Each item: kind, input, callback_url (optional), priority (optional). Validation errors are reported
        with the item's index (`errors[].index`); credits are reserved per job (one ledger line each) and a
        shortfall on any of them refuses the whole batch (402). One NOTIFY for the batch. No idempotency keys:
        a retried batch queues new jobs.
        """
        if not items:
            raise errors.ValidationFailed("jobs: at least one job is required", field="jobs")
        if len(items) > self.MAX_BATCH:
            raise errors.ValidationFailed(f"jobs: at most {self.MAX_BATCH} jobs per batch", field="jobs")
        # Too deep anywhere refuses the whole body as such, before any item is looked at.
        deep = []
        for i, item in enumerate(items):
            try:
                self.check_depth(item.get("input"))
            except errors.ValidationFailed as exc:
                deep.append({"index": i, "code": exc.code, "field": "input", "message": exc.message})
        if deep:
            raise errors.ValidationFailed(f"jobs[{deep[0]['index']}]: {deep[0]['message']}", code="input_too_deep",
                                          max_depth=self.settings.max_json_depth, errors=deep)
        prepared: builtins.list[tuple[Any, str, dict[str, Any], int, str | None, int]] = []
        problems: builtins.list[dict[str, Any]] = []
        for i, item in enumerate(items):
            kind = str(item.get("kind", ""))
            callback_url = item.get("callback_url")
            priority = int(item.get("priority", 0) or 0)
            try:
                pipeline, clean, price = self.validate_input(kind, dict(item.get("input") or {}), principal)
                if callback_url and self.url_guard:
                    self.url_guard(callback_url)
            except errors.ReelforgeError as exc:
                fields = exc.details.get("errors") or [{"field": exc.details.get("field", ""),
                                                        "message": exc.message}]
                code = errors.public_code(exc.code, self.error_codes, status=exc.status)
                for f in fields:
                    problems.append({"index": i, "code": code, **f})
                continue
            prepared.append((pipeline, kind, clean, price, callback_url, priority))
        if problems:
            first = problems[0]
            raise errors.ValidationFailed(
                f"jobs[{first['index']}]: {first.get('field') or 'input'}: {first.get('message')}",
                errors=problems)
        carrier = tracing.current_carrier()
        with self.store.tx() as tx:
            self._free_quota(tx, principal.user_id, sum(1 for p in prepared if not p[3]))
            jobs = tx.jobs.add_jobs([
                {"owner_id": principal.user_id, "kind": kind, "pipeline_version": getattr(pipeline, "version", 1),
                 "priority": priority, "input": clean, "input_hash": self._hash(kind, clean, callback_url, priority),
                 "credits": price, "credits_state": "reserved" if price else "none",
                 "max_attempts": getattr(pipeline, "max_attempts", None) or self.settings.jobs.max_attempts,
                 "idempotency_key": None, "callback_url": callback_url, "trace_context": carrier}
                for pipeline, kind, clean, price, callback_url, priority in prepared
            ])
            total = sum(j.credits for j in jobs)
            reserved = 0
            for job in jobs:
                if job.credits:
                    try:
                        tx.credits.credit(principal.user_id, -job.credits, CreditKind.reserve, job_id=job.id,
                                          note=f"{job.kind} reserved", require_balance=True)
                    except errors.PaymentRequired as exc:  # the whole batch rolls back
                        raise errors.PaymentRequired("Not enough credits for this batch", needed=total,
                                                     balance=tx.credits.balance(principal.user_id) + reserved) from exc
                    reserved += job.credits
            tx.jobs.add_events_bulk([{"job_id": j.id, "type": "JobQueued", "attempt": 0,
                                      "details": {"priority": j.priority, "credits": j.credits}} for j in jobs])
            self._notify(tx)
        return jobs

    def _free_quota(self, tx: Any, owner_id: str, count: int) -> None:
        """Refuse (429 free_jobs_limited) `count` more jobs that reserve no credits when they would take the account
        past `jobs.free_jobs_per_window` in the last `jobs.free_jobs_window_s`.

        Free jobs cost their submitter nothing, yet each one runs, is stored and fans out to every webhook the
        account holds; this is what bounds a flood of them. Counted in the database (all API processes see the same
        figure) on the database clock, under the account's row lock so that concurrent submits count in turn.
        """
        cfg = self.settings.jobs
        quota = cfg.free_jobs_per_window
        if not quota or count <= 0:
            return
        tx.accounts.user(owner_id, lock=True)
        now = tx.now()
        window = cfg.free_jobs_window_s
        times = tx.jobs.free_jobs_since(owner_id, now - window, quota)
        over = len(times) + count - quota
        if over <= 0:
            return
        # When enough of the window's free jobs have aged out for this request to fit.
        wait = times[over - 1] + window - now if over <= len(times) else window
        retry_after = max(1, math.ceil(wait))
        raise errors.RateLimited(
            f"At most {quota} jobs without a credit charge per {window:g} s per account; retry in {retry_after} s",
            code="free_jobs_limited", retry_after=retry_after, limit=quota, window_s=window)

    @staticmethod
    def _hash(kind: str, data: dict[str, Any], callback_url: str | None, priority: int) -> str:
        return hashlib.sha256(json.dumps(
            {"kind": kind, "input": data, "callback_url": callback_url, "priority": priority},
            sort_keys=True, default=str).encode()).hexdigest()

    @staticmethod
    def _same_or_conflict(job: Job, body_hash: str) -> Job:
        if job.input_hash != body_hash:
            raise errors.Conflict("Idempotency-Key was used with a different request body",
                                  code="idempotency_key_reused", job_id=job.id)
        return job

    @staticmethod
    def _notify(tx: UnitOfWork) -> None:
        tx.jobs.notify_jobs()

    # --- read ----------------------------------------------------------------------------------
    def get(self, principal: Principal, job_id: str) -> Job:
        with self.store.tx(write=False) as tx:
            return owned(tx.jobs.job(job_id), principal, "Job")

    def list(self, principal: Principal, *, status: str | None = None, kind: str | None = None, limit: int = 50,
             cursor: str | None = None, all_users: bool = False) -> tuple[builtins.list[Job], str | None]:
        cur: tuple[float, str] | None = None
        if cursor:
            try:
                ts, jid = cursor.split(":", 1)
                cur = (float(ts), jid)
            except ValueError as exc:
                raise errors.ValidationFailed("Malformed cursor", code="invalid_cursor", field="cursor") from exc
        owner = None if (all_users and principal.is_admin) else principal.user_id
        with self.store.tx(write=False) as tx:
            rows = list(tx.jobs.jobs(owner_id=owner, status=status, kind=kind, limit=limit + 1, cursor=cur))
        nxt = None
        if len(rows) > limit:
            rows = rows[:limit]
            nxt = f"{rows[-1].created_at!r}:{rows[-1].id}"
        return rows, nxt

    # --- reads on the event loop (adapters/db/reads.py) ----------------------------------------------------------
    async def read(self, principal: Principal, job_id: str) -> Any:
        """The job's public columns (attribute access like `Job`), the owner's only (`owned()`: another user's
        job, also for an admin, reads as missing), without a threadpool hop."""
        row = await self.store.reads.job(job_id)
        return owned(row, principal, "Job")

    async def read_page(self, principal: Principal, *, status: str | None = None, kind: str | None = None,
                        limit: int = 50, cursor: str | None = None) -> tuple[builtins.list[Any], str | None]:
        """`list()` for the caller's own jobs, read on the event loop: newest first, with the next cursor."""
        before: tuple[float, str] | None = None
        if cursor:
            try:
                ts, jid = cursor.split(":", 1)
                before = (float(ts), jid)
            except ValueError as exc:
                raise errors.ValidationFailed("Malformed cursor", code="invalid_cursor", field="cursor") from exc
        rows = await self.store.reads.jobs_page(principal.user_id, limit=limit + 1, status=status, kind=kind,
                                                before=before)
        nxt = None
        if len(rows) > limit:
            rows = rows[:limit]
            nxt = f"{rows[-1].created_at!r}:{rows[-1].id}"
        return rows, nxt

    async def watch(self, principal: Principal, job_id: str, timeout_s: float, changed: Callable[[Any], bool], *,
                    gone: Callable[[], Awaitable[bool]] | None = None, current: Any = None,
                    first_poll_s: float = 0.05, max_poll_s: float = 1.0) -> Any:
        """Read the job until `changed(job)` holds, it has ended, `timeout_s` passes or `gone()` says the caller
        left; returns the last read (`current`: a read the caller already made). Polls with backoff (first_poll_s
        doubling up to max_poll_s); with the process's live dispatcher (`self.live`) a change notice for the job
        ends a wait early."""
        deadline = time.monotonic() + max(0.0, timeout_s)
        poll = first_poll_s
        live = self.live
        with contextlib.ExitStack() as stack:
            sub = stack.enter_context(live.subscribe(job_id)) if live is not None else None
            job = current if current is not None else await self.read(principal, job_id)
            while not changed(job) and job.status not in TERMINAL_STATUSES:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                if sub is not None:
                    # A notice answers at once; the polls with backoff stay (a long poll is short-lived, and a
                    # change written outside the job repository sends no notice).
                    await sub.wait(min(poll, left))
                else:
                    await asyncio.sleep(min(poll, left))
                poll = min(poll * 2, max_poll_s)
                if gone is not None and await gone():
                    break
                job = await self.read(principal, job_id)
        return job

    async def read_history(self, job: Any, *, after: int = 0, limit: int = 500) -> builtins.list[Any]:
        """History events of a job the caller read through `read()` (which checked its owner), with an id above
        the cursor `after`, oldest first: what live streams send."""
        return list(await self.store.reads.job_events(job.id, after=after, limit=limit))

    def history(self, principal: Principal, job_id: str, *, after: int = 0) -> builtins.list[JobEvent]:
        with self.store.tx(write=False) as tx:
            owned(tx.jobs.job(job_id), principal, "Job")
            return list(tx.jobs.events(job_id, after=after))

    def wait(self, principal: Principal, job_id: str, timeout_s: float, *, poll_s: float = 0.1) -> Job:
        """Block until the job ends or the timeout passes; returns the latest state."""
        deadline = time.monotonic() + timeout_s
        job = self.get(principal, job_id)
        while job.status not in TERMINAL_STATUSES and time.monotonic() < deadline:
            time.sleep(min(poll_s, max(0.0, deadline - time.monotonic())))
            poll_s = min(poll_s * 1.5, 0.5)
            job = self.get(principal, job_id)
        return job

    # --- cancel ------------------------------------------------------------------------------
    def cancel(self, principal: Principal, job_id: str) -> Job:
        """Queued jobs end at once (refunded); running ones are flagged and stop within one heartbeat."""
        with self.store.tx() as tx:
            job = owned(tx.jobs.job(job_id), principal, "Job")
            if job.status == JobStatus.queued:
                if tx.jobs.set_job_status_if(job.id, ["queued"], status="cancelled", finished_at=tx.now(),
                                             expires_at=tx.now() + self.settings.jobs.ttl_s, error_code="cancelled",
                                             error_message="Cancelled by the owner"):
                    job = tx.jobs.job(job.id)  # type: ignore[assignment]
                    job = self._refund(tx, job)
                    tx.jobs.add_event(job.id, "JobCancelled", attempt=job.attempt)
                    tx.events.emit("job.cancelled", job_summary(job), owner_id=job.owner_id, subject_id=job.id)
                    return job
            if job.status == JobStatus.running:
                tx.jobs.update_job(job.id, cancel_requested=True)
                tx.jobs.add_event(job.id, "CancelRequested", attempt=job.attempt)
                return tx.jobs.job(job.id)  # type: ignore[return-value]
            raise errors.Conflict(f"Job already {job.status}", code="job_finished", job_status=job.status)

    # --- worker-side transitions (fenced) ----------------------------------------------------
    def _refund(self, tx: UnitOfWork, job: Job) -> Job:
        """Give a reserved job's credits back; returns the job as it now stands."""
        if job.credits_state == "reserved" and job.credits:
            tx.credits.credit(job.owner_id, job.credits, CreditKind.refund, job_id=job.id,
                              note=f"{job.kind} {job.status}")
            tx.jobs.update_job(job.id, credits_state="refunded")
            return replace(job, credits_state="refunded")
        return job

    def _finish(self, tx: UnitOfWork, job: Job, status: str, **values: Any) -> Job:
        now = tx.now()
        # UPDATE ... RETURNING instead of UPDATE + SELECT.
        return tx.jobs.update_job_returning(job.id, status=status, finished_at=now,
                                            expires_at=now + self.settings.jobs.ttl_s, lease_expires_at=None, **values)

    def _settle(self, tx: UnitOfWork, job: Job, outputs: dict[str, Any]) -> Job:
        """Settle a succeeded job's reservation: its pipeline's final price (`Pipeline.settle`, at most what was
        reserved) is spent, the rest refunded. Answers the job with `credits` the final price."""
        final = job.credits
        try:
            rule = self.pipelines.get(job.kind).settle
        except errors.ReelforgeError:
            rule = None
        if rule is not None:
            try:
                final = max(0, min(job.credits, int(rule(outputs, job.credits))))
            except Exception:
                log.exception("job %s (%s): its final price could not be worked out; the reservation stands",
                              job.id, job.kind)
        if final < job.credits:
            tx.credits.credit(job.owner_id, job.credits - final, CreditKind.refund, job_id=job.id,
                              note=f"{job.kind}: {job.credits - final} of the {job.credits} reserved returned")
        tx.credits.credit(job.owner_id, 0, CreditKind.settle, job_id=job.id, note=f"{job.kind}: {final} spent")
        return replace(job, credits=final)

    def succeed(self, job_id: str, attempt: int, outputs: dict[str, Any],
                history: Sequence[tuple[str, str | None, dict[str, Any]]] = (),
                checkpoints: dict[str, Any] | None = None) -> Job:
        with self.store.tx() as tx:
            now = tx.now()
            # fence and finish in one UPDATE ... RETURNING.
            job = tx.jobs.fence(job_id, attempt, status="succeeded", finished_at=now,
                                expires_at=now + self.settings.jobs.ttl_s, lease_expires_at=None, outputs=outputs,
                                progress=1.0, error_code=None, error_message=None)
            self._flush_history(tx, job_id, attempt, history)
            for path, out in (checkpoints or {}).items():
                tx.jobs.put_checkpoint(job_id, path, out, attempt)
            if job.credits_state == "reserved":
                job = self._settle(tx, job, outputs)
                tx.jobs.update_job(job.id, credits_state="settled", credits=job.credits)
                job = replace(job, credits_state="settled")
            tx.jobs.add_event(job.id, "JobSucceeded", attempt=attempt)
            tx.events.emit("job.succeeded", job_summary(job), owner_id=job.owner_id, subject_id=job.id)
            return job

    def succeed_many(self, items: Sequence[SucceedItem]) -> builtins.list[Job | errors.StaleLease]:
        """Several jobs' successes in one transaction (the worker's batched finisher).

        One fenced UPDATE for all of them (`JobRepository.succeed_jobs`): a job whose lease was lost is not
        matched, gets StaleLease and writes nothing, while the others commit. Credits of the jobs that had some
        reserved are settled; checkpoints, history and outbox events go in one multi-row INSERT each. Returns,
        per item, the finished job or its StaleLease.
        """
        if len({it.job_id for it in items}) != len(items):
            raise ValueError("succeed_many: one job twice in a batch")
        results: builtins.list[Job | errors.StaleLease] = []
        with self.store.tx() as tx:
            won = tx.jobs.succeed_jobs([(it.job_id, it.attempt, it.outputs) for it in items],
                                       ttl_s=self.settings.jobs.ttl_s)
            done: builtins.list[tuple[SucceedItem, Job]] = []
            settled: builtins.list[str] = []
            for item in items:
                job = won.get(item.job_id)
                if job is None:
                    results.append(errors.StaleLease(f"job {item.job_id} attempt {item.attempt} no longer holds "
                                                     "its lease"))
                    continue
                if job.credits_state == "reserved":
                    reserved = job.credits
                    job = replace(self._settle(tx, job, item.outputs), credits_state="settled")
                    if job.credits != reserved:
                        tx.jobs.update_job(job.id, credits=job.credits)
                    settled.append(job.id)
                results.append(job)
                done.append((item, job))
            tx.jobs.set_credits_state(settled, "settled")
            tx.jobs.put_checkpoints([(it.job_id, path, out, it.attempt)
                                     for it, _ in done for path, out in (it.checkpoints or {}).items()])
            rows: builtins.list[dict[str, Any]] = []
            for it, job in done:
                rows.extend({"job_id": job.id, "type": t, "path": p, "attempt": it.attempt, "details": d}
                            for t, p, d in it.history)
                rows.append({"job_id": job.id, "type": "JobSucceeded", "attempt": it.attempt})
            tx.jobs.add_events_bulk(rows)
            tx.events.emit_many([("job.succeeded", job_summary(job), job.owner_id, job.id) for _, job in done])
        return results

    def release_many(self, held: Sequence[tuple[str, int]]) -> int:
        """Hand back claimed jobs that never started (prefetched, on shutdown); no failure is counted."""
        if not held:
            return 0
        released = 0
        with self.store.tx() as tx:
            for job_id, attempt in held:
                try:
                    tx.jobs.fence(job_id, attempt, status="queued", worker_id=None, lease_expires_at=None,
                                  run_at=tx.now())
                except errors.StaleLease:
                    continue
                tx.jobs.add_event(job_id, "JobReleased", attempt=attempt, details={"prefetched": True})
                released += 1
            if released:
                self._notify(tx)
        return released

    def cancelled(self, job_id: str, attempt: int,
                  history: Sequence[tuple[str, str | None, dict[str, Any]]] = ()) -> Job:
        with self.store.tx() as tx:
            job = tx.jobs.fence(job_id, attempt)
            self._flush_history(tx, job_id, attempt, history)
            job = self._finish(tx, job, "cancelled", error_code="cancelled", error_message="Cancelled by the owner")
            job = self._refund(tx, job)
            tx.jobs.add_event(job.id, "JobCancelled", attempt=attempt)
            tx.events.emit("job.cancelled", job_summary(job), owner_id=job.owner_id, subject_id=job.id)
            return job

    def fail(self, job_id: str, attempt: int, code: str, message: str, *, retryable: bool,
             history: Sequence[tuple[str, str | None, dict[str, Any]]] = (), status: int | None = None) -> Job:
        """A failed attempt: retried later with backoff and jitter, or failed/dead with a refund.

        The error is recorded as clients will see it: a documented code (an unknown one becomes the generic code
        of ``status``, else ``internal_error``) and a message without filesystem paths or raw errno values.
        """
        code, message = errors.public_error(code, message, self.error_codes, status=status)
        with self.store.tx() as tx:
            job = tx.jobs.fence(job_id, attempt)
            self._flush_history(tx, job_id, attempt, history)
            return self._failed_attempt(tx, job, code, message[:4000], retryable)

    def _failed_attempt(self, tx: UnitOfWork, job: Job, code: str, message: str, retryable: bool) -> Job:
        failures = job.failures + 1
        if retryable and failures < job.max_attempts:
            delay = retry_delay(failures, self.settings.jobs.retry_base_s, self.settings.jobs.retry_max_s,
                                self._rng.random())
            tx.jobs.update_job(job.id, status="queued", failures=failures, run_at=tx.now() + delay, worker_id=None,
                               lease_expires_at=None, error_code=code, error_message=message, cancel_requested=False)
            tx.jobs.add_event(job.id, "JobRetryScheduled", attempt=job.attempt,
                              details={"error": code, "message": message, "delay_s": round(delay, 3),
                                       "failures": failures})
            return tx.jobs.job(job.id)  # type: ignore[return-value]
        status = "dead" if retryable else "failed"
        job = self._finish(tx, job, status, failures=failures, error_code=code, error_message=message)
        job = self._refund(tx, job)
        tx.jobs.add_event(job.id, "JobDead" if status == "dead" else "JobFailed", attempt=job.attempt,
                          details={"error": code, "message": message, "failures": failures})
        tx.events.emit("job.failed", job_summary(job), owner_id=job.owner_id, subject_id=job.id)
        return job

    def release(self, job_id: str, attempt: int,
                history: Sequence[tuple[str, str | None, dict[str, Any]]] = (),
                checkpoints: dict[str, Any] | None = None, reason: str | None = None) -> None:
        """Give a job back on shutdown without counting a failure; its checkpoints let the next worker go on.
        ``reason`` ("preempted": a Spot interruption) goes into the JobReleased event."""
        with self.store.tx() as tx:
            tx.jobs.fence(job_id, attempt)
            self._flush_history(tx, job_id, attempt, history)
            for path, out in (checkpoints or {}).items():
                tx.jobs.put_checkpoint(job_id, path, out, attempt)
            tx.jobs.update_job(job_id, status="queued", worker_id=None, lease_expires_at=None, run_at=tx.now())
            tx.jobs.add_event(job_id, "JobReleased", attempt=attempt, details={"reason": reason} if reason else None)
            self._notify(tx)

    def running_attempts(self) -> set[tuple[str, int]]:
        """(job id, attempt) of every job running now, on any worker."""
        with self.store.tx(write=False) as tx:
            return set(tx.jobs.running_attempts())

    def worker_died(self, hostname: str, pid: int) -> int:
        """A worker process known dead (its supervisor saw it exit): its registration is marked lost and its
        jobs go back to the queue now, each counting a failed attempt as a lease expiry does, instead of
        waiting out their leases. Returns how many jobs were handed back."""
        with self.store.tx() as tx:
            ids = tx.ops.mark_workers_lost(hostname, pid)
            expired = tx.jobs.expire_leases_of(ids)
        return self.reap_expired_leases() if expired else 0

    def reap_expired_leases(self) -> int:
        """Jobs whose worker stopped heartbeating: each counts as a failed attempt, then resumes or dies."""
        with self.store.tx() as tx:
            jobs = tx.jobs.expired_leases()
            for job in jobs:
                tx.jobs.add_event(job.id, "LeaseExpired", attempt=job.attempt, details={"worker": job.worker_id})
                if job.cancel_requested:
                    job = self._finish(tx, job, "cancelled", error_code="cancelled",
                                       error_message="Cancelled by the owner")
                    job = self._refund(tx, job)
                    tx.jobs.add_event(job.id, "JobCancelled", attempt=job.attempt)
                    tx.events.emit("job.cancelled", job_summary(job), owner_id=job.owner_id, subject_id=job.id)
                    continue
                failures = job.failures + 1
                if failures < job.max_attempts:
                    tx.jobs.update_job(job.id, status="queued", failures=failures, worker_id=None,
                                       lease_expires_at=None, run_at=tx.now(), error_code="lease_expired",
                                       error_message="The worker stopped answering; resuming from the last checkpoint")
                else:
                    self._failed_attempt(tx, job, "lease_expired", "The worker stopped answering", True)
            if jobs:
                self._notify(tx)
            return len(jobs)

    @staticmethod
    def _flush_history(tx: UnitOfWork, job_id: str, attempt: int,
                       history: Sequence[tuple[str, str | None, dict[str, Any]]]) -> None:
        for type_, path, details in history:
            tx.jobs.add_event(job_id, type_, path=path, attempt=attempt, details=details)

    # --- sweeping -------------------------------------------------------------------------------
    def expired_job_ids(self) -> builtins.list[str]:
        with self.store.tx(write=False) as tx:
            return [j.id for j in tx.jobs.expired_jobs()]
