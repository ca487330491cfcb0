"""`reelforge worker`: claims jobs from the job table, runs their pipelines, keeps leases alive.

Crash safety comes from the database, not from this process: a lease that stops being renewed expires,
another worker takes the job and resumes from its checkpoints; the attempt number fences late writes.
Successes commit on the finisher's thread (runtime/finisher.py); lease reaping, deliveries, the sweeper and
the registered ticks run on the maintenance thread (runtime/maintenance.py).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from reelforge import errors
from reelforge.domain.records import Job
from reelforge.observability import job_id_var
from reelforge.runtime.checkpoints import DbCheckpoints, History
from reelforge.runtime.context import StepContext
from reelforge.runtime.executors import LocalExecutor
from reelforge.runtime.finisher import Finisher
from reelforge.runtime.maintenance import Maintenance
from reelforge.runtime.runner import PipelineFailed, StepRunner
from reelforge.services.jobs import SucceedItem
from reelforge.services.metering import MeteredModels

# How long stop() waits for the applications' start hooks (loading models) to end.
START_HOOK_JOIN_S = 120.0

log = logging.getLogger("reelforge.worker")


class AppUnavailable(errors.ReelforgeError, LookupError):
    """A step asked for an application this worker was not given: a lookup miss that still fails the job
    with a stable code (not retryable: another attempt on the same worker set-up would miss it too)."""

    code, title = "app_unavailable", "Application not available in this worker"


@dataclass
class StepServices:
    """What steps may use: passed to every task as ctx.services."""

    settings: Any
    models: Any
    assets: Any
    objects: Any
    store: Any
    apps: Mapping[str, Any] = field(default_factory=dict)  # application name -> its service object
    media: Any = None  # the media policy (services/media.py)

    def app(self, name: str) -> Any:
        """The service object of the application `name`; AppUnavailable when this worker has none."""
        try:
            return self.apps[name]
        except KeyError:
            known = ", ".join(sorted(self.apps)) or "none"
            raise AppUnavailable(f"the worker was started without the application {name!r} "
                                 f"(registered: {known})", app=name) from None


def _app_calls(container: Any) -> dict[str, Any]:
    """The interactive calls the installed applications register, by name (none from a bare container)."""
    provide = getattr(container, "app_calls", None)
    return dict(provide()) if provide is not None else {}


def _app_services(container: Any) -> dict[str, Any]:
    """Each registered application's service object, by application name (none from a bare container)."""
    provide = getattr(container, "app_services", None)
    return dict(provide()) if provide is not None else {}


class _Running:
    def __init__(self, job: Job) -> None:
        self.job = job
        self.cancel = threading.Event()  # owner cancelled, lease lost, or shutdown release
        self.release = threading.Event()  # shutdown: hand the job back instead of cancelling it
        self.preempted = threading.Event()  # the worker is going away: steps stop with Preempted, job handed back
        self.stale = threading.Event()
        self.done = threading.Event()
        # Seeded from the job: a resumed attempt goes on from where the last one got, never back to 0.
        self.progress: tuple[float, str] | None = (float(job.progress or 0.0), job.progress_message or "") \
            if job.progress else None
        self.progress_written = 0.0
        self.progress_dirty = False  # a report newer than the one written
        self.lock = threading.Lock()
        self.cancel_polled = time.monotonic()  # the claim read the flag

    def unwritten_progress(self) -> tuple[float, str] | None:
        """The latest report when it is newer than the one written, taken as written (a checkpoint carries it)."""
        with self.lock:
            if not self.progress_dirty or self.progress is None:
                return None
            self.progress_dirty = False
            self.progress_written = time.monotonic()
            return self.progress


class Worker:
    def __init__(self, container: Any, *, concurrency: int = 1, worker_id: str | None = None,
                 kinds: list[str] | None = None, maintenance: bool = True) -> None:
        self.c = container
        self.settings = container.settings
        self.concurrency = max(1, concurrency)
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.kinds = kinds
        self.maintenance = maintenance
        self.stopping = threading.Event()
        self.wake = threading.Event()
        make_executor = getattr(container, "step_executor", None)
        self.executor = make_executor(max(4, self.concurrency * 2)) if make_executor is not None \
            else LocalExecutor(max_workers=max(4, self.concurrency * 2))
        # A Spot interruption notice (or SIGTERM with spot.enabled): stop claiming, hand every job back.
        self.preempted = threading.Event()
        notices = getattr(container, "interruption_notices", None)
        self.notices: Any = notices() if notices is not None else None
        self.idle_unload_s = float(getattr(getattr(self.settings, "models", None), "idle_unload_s", 0.0) or 0.0)
        self.unloads: list[dict[str, Any]] = []  # what idle unloads gave back (model, RSS before/after, freed)
        self.running: dict[str, _Running] = {}
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._waker: Any = None
        self.services = StepServices(settings=self.settings, models=MeteredModels(container.models, container.store,
                                                                                  worker_id=self.worker_id),
                                     assets=container.assets,
                                     objects=container.objects, store=container.store,
                                     apps=_app_services(container), media=getattr(container, "media", None))
        self.jobs_done = 0
        self.start_hooks: list[threading.Thread] = []
        # Prefetched jobs: claimed (leased, attempt bumped) but not started; any idle slot takes the next one.
        self.prefetched: deque[Job] = deque()
        configured = getattr(self.settings.jobs, "prefetch", None)
        self.prefetch = max(1, int(configured)) if configured else min(100, 4 * self.concurrency)
        self.prefetch_max_job_s = float(getattr(self.settings.jobs, "prefetch_max_job_s", 1.0))
        self.cancel_poll_s = float(getattr(self.settings.jobs, "cancel_poll_s", 0.25))
        # The database clock minus this machine's, measured at each claim: history events are stamped on the
        # database's clock, like the rows the services write.
        self.clock_offset = 0.0
        self.job_s_avg: float | None = None  # moving average of this worker's job run times (None: none ran yet)
        self.finisher: Finisher | None = None
        self.maintainer = Maintenance(container, self.worker_id, stopping=self.stopping, wake=self.wake)
        # Interactive calls (runtime/calls.py): served only when an application registers one.
        self.call_server: Any = None
        calls = _app_calls(container)
        if calls:
            from reelforge.runtime.calls import CallServer

            # Interactive calls answer while a request waits and keep sessions in this process's memory: they run
            # on threads here whatever executor the job steps use (a Ray hop would cost more than the call).
            call_executor = self.executor if isinstance(self.executor, LocalExecutor) \
                else LocalExecutor(max_workers=max(4, self.concurrency * 2))
            self.call_server = CallServer(calls, call_executor, self.services, self.settings,
                                          on_stopping=lambda: self._heartbeat_worker("stopping"))

    # --- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        if self.c.db.is_postgres:
            from reelforge.adapters.db.notify import JobWaker

            self._waker = JobWaker(self.c.db.url, self.wake)
            self._waker.start()
        if self.call_server is not None:
            self.call_server.start()  # before the first heartbeat, which advertises its URL
        window = float(getattr(self.settings.jobs, "finish_window_s", 0.0))
        if window > 0:
            self.finisher = Finisher(self.c.jobs, window, int(getattr(self.settings.jobs, "finish_batch_max", 64)),
                                     in_flight=lambda: len(self.running))
        self._heartbeat_worker("running")
        for i in range(self.concurrency):
            t = threading.Thread(target=self._slot, name=f"reelforge-slot-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        t = threading.Thread(target=self._heartbeats, name="reelforge-heartbeat", daemon=True)
        t.start()
        self._threads.append(t)
        if self.maintenance:
            self._threads.append(self.maintainer.start())
        if self.notices is not None:
            t = threading.Thread(target=self._watch_notices, name="reelforge-spot", daemon=True)
            t.start()
            self._threads.append(t)
        if self.idle_unload_s > 0:
            t = threading.Thread(target=self._unload_idle_models, name="reelforge-model-idle", daemon=True)
            t.start()
            self._threads.append(t)
        self._start_hooks()
        log.info("worker %s started with %d slot(s)", self.worker_id, self.concurrency)

    def _start_hooks(self) -> None:
        """Each installed application's `on_worker_start` hook, in a thread of its own (see AppManifest)."""
        for manifest in getattr(self.c, "apps", ()) or ():
            hook = getattr(manifest, "on_worker_start", None)
            if hook is None:
                continue

            def run(hook: Any = hook, name: str = manifest.name) -> None:
                try:
                    hook(self.c)
                except Exception:
                    log.exception("the worker start hook of application %s failed", name)

            t = threading.Thread(target=run, name=f"reelforge-start-{manifest.name}", daemon=True)
            t.start()
            self.start_hooks.append(t)

    def stop(self, grace_s: float | None = None) -> None:
        """Stop claiming; let running jobs finish within the grace period, then hand the rest back."""
        grace = self.settings.jobs.shutdown_grace_s if grace_s is None else grace_s
        self.stopping.set()
        self.wake.set()
        if self.call_server is not None:
            # First: the registry forgets its URL, calls in flight end (they are short), the server closes.
            self.call_server.stop(grace_s=min(grace, 10.0))
        self._release_prefetched()  # not started: hand them back at once so other workers can take them
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            with self._lock:
                if not self.running:
                    break
            time.sleep(0.05)
        with self._lock:
            leftovers = list(self.running.values())
        for r in leftovers:
            r.release.set()
            r.cancel.set()
        # Cooperative steps stop within one check; give them a moment, then release from here.
        deadline = time.monotonic() + min(10.0, max(1.0, grace))
        for r in leftovers:
            r.done.wait(max(0.0, deadline - time.monotonic()))
        for r in leftovers:
            if not r.done.is_set():
                try:
                    self.c.jobs.release(r.job.id, r.job.attempt)
                    log.warning("released job %s that did not stop in time", r.job.id)
                except errors.StaleLease:
                    pass
        self._release_prefetched()
        if self.finisher is not None:
            self.finisher.close()
        if self._waker:
            self._waker.stop()
        for t in self._threads:
            # Slots and heartbeats end on their own once stopping is set; never write after stop() returns.
            t.join(timeout=max(1.0, self.settings.jobs.heartbeat_s * 2))
        for t in self.start_hooks:
            # A start hook still loading models (native code, its own threads) must not be cut off by the
            # interpreter's exit: that aborts the process. Loads end on their own; wait for them, within bounds.
            t.join(timeout=START_HOOK_JOIN_S)
        try:
            # Webhook deliveries the maintenance thread handed out record their outcome before stop() returns.
            self.c.events.close()
        except Exception:
            log.exception("could not stop the webhook senders")
        try:
            self._heartbeat_worker("stopped")
        except Exception:
            log.exception("could not record worker stop")
        log.info("worker %s stopped", self.worker_id)

    def run_forever(self) -> None:
        """Block until SIGTERM/SIGINT; then shut down gracefully."""
        stop = threading.Event()

        def handler(signum: int, _frame: Any) -> None:
            log.info("signal %s: finishing in-flight work", signal.Signals(signum).name)
            stop.set()

        def on_term(signum: int, frame: Any) -> None:
            if self.notices is not None:  # on Spot, SIGTERM is the interruption: hand everything back at once
                self.preempt("SIGTERM")
            handler(signum, frame)

        signal.signal(signal.SIGTERM, on_term)
        signal.signal(signal.SIGINT, handler)
        self.start()
        while not stop.wait(0.5) and not self.preempted.is_set():
            pass
        if self.preempted.is_set():
            self.wait_handed_back()
            self.stop(grace_s=0)
        else:
            self.stop()
        # Jobs still in flight were handed back; a step that ignores cancellation must not hold the exit.
        self.executor.shutdown(wait=False)

    # --- preemption (Spot interruptions) -----------------------------------------------------------
    def preempt(self, reason: str = "spot interruption") -> None:
        """Stop claiming, hand back prefetched jobs now, and make every running step stop at its next check
        (ctx.check_cancelled() raises Preempted): finished steps and map items are already checkpointed, and each
        job is released (queued again, not a failure) as soon as its steps have stopped, so another worker
        resumes it without waiting for a lease to expire."""
        if self.preempted.is_set():
            return
        log.warning("worker %s preempted (%s): handing its jobs back", self.worker_id, reason)
        self.preempted.set()
        self.stopping.set()
        self.wake.set()
        self._release_prefetched()
        with self._lock:
            runs = list(self.running.values())
        for r in runs:
            r.preempted.set()
            r.release.set()
            r.cancel.set()

    def wait_handed_back(self, timeout_s: float = 90.0) -> bool:
        """After preempt(): wait until every running job has been handed back (a notice leaves two minutes)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if not self.running:
                    return True
            time.sleep(0.05)
        return False

    def _watch_notices(self) -> None:
        interval = float(self.settings.spot.poll_s)
        while not self.stopping.is_set():
            notice = self.notices.poll()
            if notice is not None:
                self.preempt(f"{notice.action} at {notice.time}" if notice.time else notice.action)
                return
            self.stopping.wait(interval)

    def _unload_idle_models(self) -> None:
        registry = getattr(self.c, "models", None)
        interval = max(0.05, min(self.idle_unload_s / 2, 5.0))
        while not self.stopping.wait(interval):
            try:
                done = registry.unload_idle(self.idle_unload_s) if registry is not None else []
            except Exception:
                log.exception("idle model unload failed")
                continue
            for u in done:
                self.unloads.append(u)
                log.info("unloaded model %s after %.0fs idle: %.1f MiB freed (RSS %.1f -> %.1f MiB)", u["model"],
                         u["idle_s"], u["freed_bytes"] / 2**20, u["rss_before"] / 2**20, u["rss_after"] / 2**20,
                         extra={"model": u["model"], "freed_bytes": u["freed_bytes"]})

    # --- claiming -----------------------------------------------------------------------------
    def _slot(self) -> None:
        poll = self.settings.jobs.poll_interval_s
        while not self.stopping.is_set():
            try:
                job = self._claim()
            except Exception:
                log.exception("claim failed")
                self.stopping.wait(poll)
                continue
            if job is None:
                self.wake.wait(poll)
                self.wake.clear()
                continue
            self.execute(job)

    def _release_prefetched(self) -> None:
        with self._lock:
            held = [(j.id, j.attempt) for j in self.prefetched]
            self.prefetched.clear()
        if not held:
            return
        try:
            n = self.c.jobs.release_many(held)
            log.info("released %d prefetched job(s)", n)
        except Exception:
            log.exception("could not release prefetched jobs; their leases will expire")

    def _claim(self) -> Job | None:
        if self.prefetch > 1:
            return self._claim_prefetch()
        if not self.c.db.is_postgres:
            # SQLite has one writer; an idle poll must not take the write lock (BEGIN IMMEDIATE).
            with self.c.store.tx(write=False) as tx:
                if not tx.jobs.has_ready_job(self.kinds):
                    return None
        with self.c.store.tx() as tx:
            job = tx.jobs.claim_job(self.worker_id, self.settings.jobs.lease_s, self.kinds)
            if job is not None:
                tx.jobs.add_event(job.id, "JobStarted", attempt=job.attempt, details={"worker": self.worker_id})
        if job is not None:
            self._note_clock(job)
        return job

    def _claim_prefetch(self) -> Job | None:
        """The next prefetched job, or claim up to `prefetch` jobs in one transaction and take the first."""
        with self._lock:
            if self.stopping.is_set():
                return None
            if self.prefetched:
                return self.prefetched.popleft()
        if not self.c.db.is_postgres:
            with self.c.store.tx(write=False) as tx:
                if not tx.jobs.has_ready_job(self.kinds):
                    return None
        with self.c.store.tx() as tx:
            jobs = tx.jobs.claim_jobs(self.worker_id, self.settings.jobs.lease_s, self.kinds, self.claim_limit())
            tx.jobs.add_events_bulk([{"job_id": j.id, "type": "JobStarted", "attempt": j.attempt,
                                 "details": {"worker": self.worker_id}} for j in jobs])
        if not jobs:
            return None
        self._note_clock(jobs[0])
        with self._lock:
            self.prefetched.extend(jobs[1:])
            # several slots may have claimed at once: keep the buffer in priority order
            if len(jobs) > 1 and len(self.prefetched) > len(jobs) - 1:
                self.prefetched = deque(sorted(self.prefetched, key=lambda j: (-j.priority, j.run_at, j.created_at)))
        if self.stopping.is_set():
            self._release_prefetched()
        return jobs[0]

    def _note_clock(self, job: Job) -> None:
        if job.heartbeat_at:  # the claim's own reading of the database clock
            self.clock_offset = float(job.heartbeat_at) - time.time()

    def db_time(self) -> float:
        """Now on the database's clock (as measured at the last claim)."""
        return time.time() + self.clock_offset

    def claim_limit(self) -> int:
        """Jobs to claim now: `prefetch` while recent jobs are short, else one (for the slot asking).

        Until a job has run here, one: a worker that starts on a queue of long jobs must not take a batch of
        them for itself.
        """
        avg = self.job_s_avg
        if avg is None or avg >= self.prefetch_max_job_s:
            return 1
        return self.prefetch

    def _ran(self, seconds: float) -> None:
        with self._lock:
            avg = self.job_s_avg
            # An exponential moving average over about the last ten jobs.
            self.job_s_avg = seconds if avg is None else avg + 0.2 * (seconds - avg)

    # --- running one job ------------------------------------------------------------------------
    def execute(self, job: Job) -> None:
        started = time.monotonic()
        handed_off = False  # a success handed to the finisher: the job stays "running" here until it commits
        run = _Running(job)
        with self._lock:
            self.running[job.id] = run
        if self.preempted.is_set():  # claimed just before the notice: hand it back at its first check
            run.preempted.set()
            run.release.set()
            run.cancel.set()
        token = job_id_var.set(job.id)
        # A checkpoint also writes the latest progress report that the 0.5 s spacing held back, so every step's
        # last word is seen, however short the step.
        cp = DbCheckpoints(self.c, job, progress=run.unwritten_progress)
        trace = self.c.tracing.job(job, worker_id=self.worker_id)  # child of the submit request's span
        cp = trace.checkpoints(cp)  # a span per step, from the execution history
        try:
            pipeline = self.c.pipelines.get(job.kind)
            runner = StepRunner(
                self.executor, cp, lambda path: self._context(job, path, run),
                cancelled=lambda: self._cancel_requested(run),
                on_progress=lambda path, f, m: self._progress(run, f, m), clock=self.db_time,
            )
            try:
                output = runner.run(pipeline, job.input)
                outputs = output if isinstance(output, dict) else {"result": output}
                handed_off = self._succeed(job, run, outputs, cp.take_history(), cp.take_pending())
                self.jobs_done += 1
            except errors.JobCancelled:
                if run.release.is_set() and not run.stale.is_set():
                    self.c.jobs.release(job.id, job.attempt, history=cp.take_history(),
                                        checkpoints=cp.take_pending(),
                                        reason="preempted" if run.preempted.is_set() else None)
                elif not run.stale.is_set():
                    self.c.jobs.cancelled(job.id, job.attempt, history=cp.take_history())
            except PipelineFailed as exc:
                # The job's error is what clients see: JobService.fail keeps it to the documented codes (an
                # unknown one becomes the generic code of the original error's status) and scrubs paths.
                cause = exc.__cause__
                if not isinstance(cause, errors.ReelforgeError):
                    log.warning("job %s failed with %s: %s", job.id, exc.code, exc.message)
                self.c.jobs.fail(job.id, job.attempt, exc.code, exc.message, retryable=exc.retryable,
                                 history=cp.take_history(),
                                 status=cause.status if isinstance(cause, errors.ReelforgeError) else None)
            except errors.StaleLease:
                raise
            except errors.ReelforgeError as exc:
                self.c.jobs.fail(job.id, job.attempt, exc.code, exc.message, retryable=exc.retryable,
                                 history=cp.take_history(), status=exc.status)
            except Exception as exc:
                log.exception("job %s crashed", job.id)
                self.c.jobs.fail(job.id, job.attempt, type(exc).__name__, str(exc) or type(exc).__name__,
                                 retryable=True, history=cp.take_history())
        except errors.StaleLease:
            log.warning("job %s attempt %d lost its lease; its writes were refused", job.id, job.attempt)
        except Exception:
            log.exception("could not record the end of job %s; the lease will expire and it will resume", job.id)
        finally:
            self._ran(time.monotonic() - started)
            trace.end()
            if not handed_off:
                self._done(run)
            job_id_var.reset(token)

    def _done(self, run: _Running) -> None:
        run.done.set()
        with self._lock:
            self.running.pop(run.job.id, None)

    def _succeed(self, job: Job, run: _Running, outputs: dict[str, Any], history: History,
                 checkpoints: dict[str, Any]) -> bool:
        """Record a success; True when it was handed to the finisher (which ends the run when it commits)."""
        if self.finisher is None:
            self.c.jobs.succeed(job.id, job.attempt, outputs, history=history, checkpoints=checkpoints)
            return False

        def committed(outcome: Any) -> None:
            # The finisher's thread: the slot that ran the job has gone on to its next one.
            try:
                if isinstance(outcome, errors.StaleLease):
                    log.warning("job %s attempt %d lost its lease; its writes were refused", job.id, job.attempt,
                                extra={"job_id": job.id})
                elif isinstance(outcome, BaseException):
                    log.error("could not record the end of job %s; the lease will expire and it will resume",
                              job.id, exc_info=outcome, extra={"job_id": job.id})
            finally:
                self._done(run)

        self.finisher.submit(SucceedItem(job.id, job.attempt, outputs, history, checkpoints), committed)
        return True

    def _context(self, job: Job, path: str, run: _Running) -> StepContext:
        return StepContext(job_id=job.id, owner_id=job.owner_id, kind=job.kind, attempt=job.attempt, path=path,
                           job_input=job.input, services=self.services,
                           cancelled=lambda: self._cancel_requested(run), preempted=run.preempted.is_set)

    def _cancel_requested(self, run: _Running) -> bool:
        """The job's stop flag, with the owner's cancel read from the database at most every `cancel_poll_s`
        (per job, whichever of its steps asks): a step checking between units of work (a denoising step, a
        batch of frames) then stops within one unit of the cancel instead of at the next heartbeat."""
        if run.cancel.is_set():
            return True
        now = time.monotonic()
        with run.lock:
            if now - run.cancel_polled < self.cancel_poll_s or run.done.is_set():
                return False
            run.cancel_polled = now  # the other steps of the job skip the read while this one makes it
        try:
            with self.c.store.tx(write=False) as tx:
                requested = tx.jobs.cancel_requested(run.job.id, run.job.attempt)
        except Exception:
            log.debug("could not read the cancel flag of job %s", run.job.id, exc_info=True)
            return False
        if requested:
            log.info("job %s: cancel requested; stopping its steps", run.job.id, extra={"job_id": run.job.id})
            run.cancel.set()
        return run.cancel.is_set()

    def _progress(self, run: _Running, fraction: float, message: str) -> None:
        with run.lock:
            current = run.progress[0] if run.progress else 0.0
            # Job progress never goes backwards, whatever order parallel steps report in: a report behind the
            # one shown keeps the fraction and the message that goes with it.
            if run.progress is not None and fraction < current:
                return
            run.progress = (fraction, message[:500])
            run.progress_dirty = True
            due = time.monotonic() - run.progress_written > 0.5 or fraction >= 1.0
        if due:
            self._write_progress(run)

    def _write_progress(self, run: _Running) -> None:
        with run.lock:
            if run.progress is None:
                return
            fraction, message = run.progress
            run.progress_written = time.monotonic()
            run.progress_dirty = False
        try:
            with self.c.store.tx() as tx:
                tx.jobs.fence(run.job.id, run.job.attempt)
                tx.jobs.update_job(run.job.id, progress=fraction, progress_message=message)
        except errors.StaleLease:
            run.stale.set()
            run.cancel.set()
        except Exception:
            log.exception("progress write failed")

    # --- leases -----------------------------------------------------------------------------
    def _heartbeats(self) -> None:
        interval = self.settings.jobs.heartbeat_s
        while not (self.stopping.is_set() and not self.running):
            if self.stopping.is_set():
                time.sleep(min(interval, 0.5))
            else:
                self.stopping.wait(interval)  # woken by stop(): it then renews every 0.5 s until the jobs end
            with self._lock:
                runs = list(self.running.values())
                waiting = list(self.prefetched)
            self._renew(runs, waiting)
            try:
                self._heartbeat_worker("stopping" if self.stopping.is_set() else "running")
            except Exception:
                log.exception("worker heartbeat failed")
            if self.stopping.is_set() and not runs:
                return

    def _renew(self, runs: list[_Running], waiting: list[Job]) -> None:
        """Renew the leases of every running and prefetched job of this worker in one UPDATE."""
        runs = [r for r in runs if not r.done.is_set()]
        held = [(r.job.id, r.job.attempt) for r in runs] + [(j.id, j.attempt) for j in waiting]
        if not held:
            return
        try:
            with self.c.store.tx() as tx:
                alive = tx.jobs.renew_leases(self.worker_id, held, self.settings.jobs.lease_s)
        except Exception:
            log.exception("heartbeat failed for %d job(s)", len(held))
            return
        for run in runs:
            if run.job.id in alive:
                if alive[run.job.id]:
                    run.cancel.set()
                continue
            if run.done.is_set():
                continue  # the job ended between the check above and this heartbeat
            log.warning("job %s: lease lost; stopping its steps", run.job.id, extra={"job_id": run.job.id})
            run.stale.set()
            run.cancel.set()
        drop = {j.id for j in waiting if j.id not in alive or alive[j.id]}
        cancelled: list[Job] = []
        if drop:
            with self._lock:
                cancelled = [j for j in self.prefetched if j.id in drop and alive.get(j.id)]
                self.prefetched = deque(j for j in self.prefetched if j.id not in drop)
        for j in cancelled:  # cancelled by its owner while waiting here: end it without running it
            try:
                self.c.jobs.cancelled(j.id, j.attempt)
            except errors.StaleLease:
                pass

    def _heartbeat_worker(self, status: str) -> None:
        server = self.call_server
        serving = server is not None and server.url and not server.stopping.is_set() and status == "running"
        with self.c.store.tx() as tx:
            tx.ops.worker_heartbeat(self.worker_id, hostname=socket.gethostname(), pid=os.getpid(),
                                    concurrency=self.concurrency, status=status,
                                    call_url=server.url if serving else None)

    # --- periodic work --------------------------------------------------------------------------
    def sweep(self) -> dict[str, int]:
        """Delete expired temporary assets, abandoned uploads and expired job records."""
        return self.maintainer.sweep()
