"""The worker's periodic work: lease reaping, outbox delivery, the sweeper, alarms and registered ticks.

Every worker runs it; work that must happen once per interval across all workers (sweeper, alarms, ticks)
is scheduled through the database, so the worker that wins the turn does it.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Any

from reelforge.applications import Tick
from reelforge.runtime.scratch import sweep_scratch

log = logging.getLogger("reelforge.worker")

PASS_INTERVAL_S = 0.25


class Maintenance:
    """Runs on its own thread, owned by the worker, until `stopping` is set."""

    def __init__(self, container: Any, worker_id: str, *, stopping: threading.Event,
                 wake: threading.Event) -> None:
        self.c = container
        self.worker_id = worker_id
        self.stopping = stopping
        self.wake = wake  # set when reaping made jobs claimable again, so idle slots look at once
        self._ticks: list[Tick] | None = None
        self._last_reap = 0.0
        self._last_outbox = 0.0
        self._last_scratch = time.monotonic()  # the first sweep of this disk one interval after start

    def start(self) -> threading.Thread:
        t = threading.Thread(target=self.run, name="reelforge-maintenance", daemon=True)
        t.start()
        return t

    def run(self) -> None:
        while not self.stopping.is_set():
            self.run_once()
            self.stopping.wait(PASS_INTERVAL_S)

    def run_once(self) -> None:
        """One pass: the core work, then every registered tick; no failure in one stops another."""
        try:
            self._core(time.monotonic())
        except Exception:
            log.exception("maintenance failed")
        self.publish_metrics()
        self.run_ticks()

    def _core(self, now: float) -> None:
        s = self.c.settings
        if now - self._last_reap >= max(0.5, min(5.0, s.jobs.lease_s / 3)):
            self._last_reap = now
            if self.c.jobs.reap_expired_leases():
                self.wake.set()
        if now - self._last_outbox >= s.outbox_interval_s:
            self._last_outbox = now
            # Hands due deliveries to the webhook senders and goes on; they finish on their own pool.
            self.c.events.dispatch()
            self.c.mail.dispatch(self.worker_id)  # sends due mails on its own thread
        with self.c.store.tx() as tx:
            sweep = tx.ops.try_schedule("sweeper", s.sweep_interval_s, self.worker_id)
        if sweep:
            self.sweep()
        elif now - self._last_scratch >= s.sweep_interval_s:
            # Every worker's own disk, on its own clock (the scheduled sweep above covers it when this one wins).
            self.sweep_scratch()
        self.c.alarms.tick(self.worker_id)  # evaluates only when this worker wins the tick

    def publish_metrics(self) -> None:
        """The cloud metrics tick (services/cloud_metrics.py), apart from the core work so that no failure there
        keeps the scaling policies without figures."""
        cloudwatch = getattr(getattr(self.c.settings, "metrics", None), "cloudwatch", None)
        if cloudwatch is None or not cloudwatch.enabled:
            return
        try:
            self.c.cloud_metrics.tick(self.worker_id)
        except Exception:
            log.exception("cloud metrics tick failed")

    @property
    def ticks(self) -> list[Tick]:
        """The ticks the container registers (none when it has no `ticks()`), read once."""
        if self._ticks is None:
            registered = getattr(self.c, "ticks", None)
            try:
                self._ticks = list(registered()) if registered is not None else []
            except Exception:
                # read once, so this is logged once; the core maintenance goes on without ticks
                log.exception("could not read the registered maintenance ticks")
                self._ticks = []
        return self._ticks

    def run_ticks(self) -> None:
        for tick in self.ticks:
            try:
                tick.run(self.c, self.worker_id)
            except Exception:
                log.exception("maintenance tick %s failed", tick.name, extra={"tick": tick.name})

    def sweep_scratch(self, grace_s: float | None = None) -> int:
        """Remove what crashed steps left on this machine's disk (runtime/scratch.py)."""
        self._last_scratch = time.monotonic()
        s = self.c.settings
        grace = float(getattr(s.jobs, "scratch_grace_s", 900.0)) if grace_s is None else grace_s
        return sweep_scratch(s, self.c.jobs.running_attempts(), grace)

    def sweep(self) -> dict[str, int]:
        """Delete expired temporary assets, abandoned uploads, expired job records, idle login throttles and stale
        scratch files."""
        counts: dict[str, int] = self.c.assets.sweep()
        jobs = 0
        for job_id in self.c.jobs.expired_job_ids():
            self.c.assets.delete_job_temporaries(job_id)
            with self.c.store.tx() as tx:
                tx.jobs.delete_job(job_id)
            jobs += 1
        counts["jobs"] = jobs
        counts["login_throttles"] = self.c.auth.prune_login_throttles()
        counts["link_tokens"] = self.c.mail.prune()
        accounts = getattr(self.c, "accounts", None)
        if accounts is not None:  # deletions the request could not finish, and audit entries past retention
            counts["accounts_deleted"] = accounts.sweep()
            counts["audit_pruned"] = self.c.audit.prune(self.c.settings.accounts.audit_retention_s)
        try:
            counts["temp_files"] = self.sweep_scratch()
        except Exception:
            log.exception("could not sweep the scratch folders")
            counts["temp_files"] = 0
        if any(counts.values()):
            log.info("sweeper removed %s", counts)
        return counts


class AlarmTicker:
    """Alarm evaluation outside the workers (the API process): a thread that offers to run the alarm tick every
    few seconds. The tick's database schedule decides who evaluates, so however many API and worker processes
    offer, the rules are evaluated once per `alarms.interval_s`; with no worker alive they still are."""

    thread_name = "reelforge-alarms"

    def __init__(self, container: Any, runner: str | None = None) -> None:
        self.c = container
        self.runner = runner or f"api:{socket.gethostname()}:{os.getpid()}"
        interval = float(self.interval_s())
        self.period_s = max(0.2, min(interval, 15.0))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def interval_s(self) -> float:
        return float(self.c.settings.alarms.interval_s)

    def tick(self) -> None:
        self.c.alarms.tick(self.runner)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        # The first offer waits one period: a process that starts and stops at once (a test, a CLI call) does
        # not take the tick from the workers.
        while not self._stop.wait(self.period_s):
            try:
                self.tick()
            except Exception:
                log.exception("%s tick failed", self.thread_name)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)


class CloudMetricsTicker(AlarmTicker):
    """The cloud metrics tick in an API process: with the workers scaled to zero, the API is what keeps publishing
    the queue depth that scales them back up. The database schedule still lets one process publish per interval."""

    thread_name = "reelforge-cloud-metrics"

    def interval_s(self) -> float:
        return float(self.c.settings.metrics.cloudwatch.interval_s)

    def tick(self) -> None:
        self.c.cloud_metrics.tick(self.runner)
