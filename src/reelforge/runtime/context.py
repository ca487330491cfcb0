"""What a step function sees of the world: ``fn(ctx: StepContext, data)``."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from reelforge.domain.pipeline import Resources
from reelforge.errors import JobCancelled

ProgressCallback = Callable[[str, float, str], None]
"""``on_progress(path, fraction, message)``."""

_log = logging.getLogger("reelforge.step")


def _never() -> bool:
    return False


class Preempted(JobCancelled):
    """The worker is going away (a Spot interruption notice, or SIGTERM with `spot.enabled`): the step stops at
    its next check and the job is handed back with its checkpoints, not cancelled and not counted as a failure."""

    code, title = "preempted", "Worker preempted"


class StepContext:
    """Given to every task function: identity of the job and step, progress, cancellation, logging.

    The job worker builds one per step execution (``make_context(path)`` on :class:`StepRunner`); the
    runner then calls :meth:`bind_runner` to attach the retry attempt and its own stop signal (set on a
    step timeout, on cancellation or when a sibling branch/item failed), so that cooperative steps
    that call :meth:`check_cancelled` or :meth:`sleep` stop promptly.
    """

    def __init__(
        self,
        *,
        job_id: str,
        owner_id: str,
        kind: str,
        attempt: int,
        path: str,
        job_input: Any,
        services: Any = None,
        on_progress: ProgressCallback | None = None,
        cancelled: Callable[[], bool] | None = None,
        logger: logging.Logger | None = None,
        poll_s: float = 0.2,
        preempted: Callable[[], bool] | None = None,
    ) -> None:
        self.job_id = job_id
        self.owner_id = owner_id
        self.kind = kind
        self.attempt = attempt  # the job's attempt (lease fencing number), set by the worker
        self.step_attempt = 1  # 1 = first try of this step in this execution; set by the runner
        self.path = path
        self.job_input = job_input
        self.services = services
        self._on_progress = on_progress
        self._cancelled = cancelled or _never
        self._preempted = preempted or _never
        self._stop_requested: Callable[[], bool] = _never
        self._wake = threading.Event()
        self._poll_s = poll_s
        # What the step declares (cpu, gpu, memory_mb); set by the runner. Steps that decode media check the
        # decode's memory against `memory_mb` before they start (domain/media.py, check_decode_memory).
        self.resources: Resources | None = None
        self.log = logging.LoggerAdapter(logger or _log, {"job_id": job_id, "path": path})

    def bind_runner(
        self,
        *,
        step_attempt: int,
        stop_requested: Callable[[], bool],
        wake: threading.Event,
        on_progress: ProgressCallback | None = None,
        resources: Resources | None = None,
    ) -> None:
        """Called by the runner before the step starts; step code never calls this."""
        self.step_attempt = step_attempt
        self.resources = resources
        self._stop_requested = stop_requested
        self._wake = wake
        if self._on_progress is None:
            self._on_progress = on_progress

    def scratch(self, label: str) -> AbstractContextManager[Path]:
        """A private folder on the worker's disk for this attempt of the job (``with ctx.scratch("chunk") as
        tmp:``), removed when the block ends; one that a crash leaves is swept later (runtime/scratch.py)."""
        from reelforge.runtime.scratch import job_scratch

        return job_scratch(self.services.settings, self.job_id, self.attempt, label)

    @property
    def memory_mb(self) -> int:
        """The memory the running step declares (0 when unknown: no limit to check against)."""
        return int(self.resources.memory_mb) if self.resources is not None else 0

    def progress(self, fraction: float, message: str = "") -> None:
        """Report progress of this step, ``fraction`` in [0, 1] (clamped)."""
        if self._on_progress is not None:
            self._on_progress(self.path, min(1.0, max(0.0, float(fraction))), message)

    def stopping(self) -> bool:
        """Whether the step should stop now (job cancelled, step timed out or a sibling failed).

        Cheap enough to call between units of work (a denoising step, a tile, a batch of frames) and to hand
        to a model adapter as its ``cancelled`` probe: the worker reads the job's cancel flag from the
        database at most every ``jobs.cancel_poll_s`` per job, and answers from memory in between.
        """
        return self._wake.is_set() or self._stop_requested() or self._cancelled()

    def preempted(self) -> bool:
        """Whether the stop is a preemption (the worker hands the job back) rather than a cancel."""
        return self._preempted()

    def check_cancelled(self) -> None:
        """Raise :class:`JobCancelled` when the step should stop; call it between units of work, so that a
        cancel stops a long model call within one unit."""
        if self.stopping():
            if self._preempted():
                raise Preempted(f"step {self.path} stopped: the worker is preempted")
            raise JobCancelled(f"step {self.path} stopped")

    def sleep(self, seconds: float) -> None:
        """Sleep, waking early and raising :class:`JobCancelled` if the step has to stop."""
        deadline = time.monotonic() + max(0.0, seconds)
        while True:
            self.check_cancelled()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            # The runner's own stop signal wakes us at once; the job's cancel flag is polled.
            self._wake.wait(min(remaining, self._poll_s))
