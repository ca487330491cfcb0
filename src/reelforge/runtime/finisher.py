"""Batched, fenced success commits, made off the slot that ran the job."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from reelforge.services.jobs import SucceedItem

log = logging.getLogger("reelforge.worker")


class Finisher:
    """Batches job successes: those arriving within `window_s` of each other commit in one transaction.

    Each job is still fenced on its own attempt (JobService.succeed_many, one fenced UPDATE). `submit` hands a
    success over and returns at once (the worker's slot goes on to its next job while the batch commits; the
    callback reports the outcome: the finished job, its StaleLease, or the error that failed the batch).
    """

    def __init__(self, jobs: Any, window_s: float, max_batch: int,
                 in_flight: Callable[[], int] | None = None) -> None:
        self.jobs = jobs
        self.window_s = window_s
        self.max_batch = max(1, max_batch)
        # how many jobs could still join (running in this worker): stop waiting once all of them are here
        self.in_flight = in_flight
        self._queue: deque[tuple[SucceedItem, Callable[[Any], None]]] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="reelforge-finisher", daemon=True)
        self._thread.start()

    def submit(self, item: SucceedItem, done: Callable[[Any], None]) -> None:
        """Queue a success; `done` gets the finished job, its StaleLease, or the exception that failed the batch.

        After close() the success commits here, in the calling thread, before this returns.
        """
        with self._cond:
            closed = self._closed
            if not closed:
                self._queue.append((item, done))
                self._cond.notify()
        if closed:
            try:
                out: Any = self.jobs.succeed_many([item])[0]
            except BaseException as exc:
                out = exc
            done(out)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout=5.0)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue and self._closed:
                    return
            # let the successes of jobs ending at about the same time join this batch
            deadline = time.monotonic() + self.window_s
            with self._cond:
                while len(self._queue) < self.max_batch and not self._closed:
                    if self.in_flight is not None and len(self._queue) >= self.in_flight():
                        break
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                batch = [self._queue.popleft() for _ in range(min(self.max_batch, len(self._queue)))]
            try:
                results: list[Any] = list(self.jobs.succeed_many([item for item, _ in batch]))
            except BaseException as exc:  # the whole transaction failed: every job in it is unrecorded
                results = [exc] * len(batch)
            for (_, done), res in zip(batch, results, strict=True):
                try:
                    done(res)
                except Exception:
                    log.exception("finisher callback failed")
