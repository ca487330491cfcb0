"""The step runner's checkpoint store on the job tables, one per attempt, fenced by that attempt."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from reelforge.domain.records import Job
from reelforge.runtime.runner import EXECUTION_MARKER

History = list[tuple[str, str | None, dict[str, Any]]]


class DbCheckpoints:
    """The runner's checkpoint store for one attempt of one job, on the job tables, fenced by the attempt."""

    def __init__(self, container: Any, job: Job,
                 progress: Callable[[], tuple[float, str] | None] | None = None) -> None:
        """`progress`: the attempt's progress report not written yet, if any, written with the next checkpoint."""
        self.c = container
        self._progress = progress
        self.job_id = job.id
        self.attempt = job.attempt
        self._lock = threading.Lock()
        self._history: History = []
        self._pending: dict[str, Any] = {}
        if job.attempt <= 1:
            # first attempt: no checkpoint can exist (only fenced attempts write them); skip the read.
            self._cache: dict[str, Any] = {}
        else:
            with container.store.tx(write=False) as tx:
                self._cache = {cp.path: cp.output for cp in tx.jobs.checkpoints(job.id)}

    def get(self, path: str) -> tuple[bool, Any]:
        with self._lock:
            if path in self._cache:
                return True, self._cache[path]
        return False, None

    def put(self, path: str, output: Any) -> None:
        if path == EXECUTION_MARKER:
            # Only tells a resumed run from a fresh one; written with the next real checkpoint, saving a
            # transaction per job. A crash before that makes the resumed run say "started": harmless.
            with self._lock:
                self._cache[path] = output
                self._pending[path] = output
            return
        with self._lock:
            history, self._history = self._history, []
            pending, self._pending = self._pending, {}
        try:
            with self.c.store.tx() as tx:
                tx.jobs.fence(self.job_id, self.attempt, self.c.settings.jobs.lease_s)
                for type_, p, details in history:
                    tx.jobs.add_event(self.job_id, type_, path=p, attempt=self.attempt, details=details)
                for p, out in pending.items():
                    tx.jobs.put_checkpoint(self.job_id, p, out, self.attempt)
                tx.jobs.put_checkpoint(self.job_id, path, output, self.attempt)
                report = self._progress() if self._progress is not None else None
                if report is not None:
                    tx.jobs.update_job(self.job_id, progress=report[0], progress_message=report[1])
        except BaseException:
            with self._lock:
                self._history = history + self._history
                self._pending = {**pending, **self._pending}
            raise
        with self._lock:
            self._cache[path] = output

    def defer(self, path: str, output: Any) -> None:
        """a checkpoint written with the next write of this attempt (next put or final transition)."""
        with self._lock:
            self._pending[path] = output
            self._cache[path] = output

    def take_pending(self) -> dict[str, Any]:
        with self._lock:
            out, self._pending = self._pending, {}
        return out

    def history(self, event: str, path: str | None, **details: Any) -> None:
        # Buffered: written with the next checkpoint or the job's final transition (same fenced transaction).
        with self._lock:
            self._history.append((event, path, details))

    def take_history(self) -> History:
        with self._lock:
            out, self._history = self._history, []
        return out
