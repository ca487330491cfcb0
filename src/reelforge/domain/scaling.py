"""The scaling policy: how many workers a resource class wants, from its queue figures.

One pure function, shared by `reelforge autoscale` (local worker processes, an Auto Scaling group's desired
capacity) and the cloud deployment, so both scale the same way:

- work waiting or running: ``ceil((ready + running) / jobs_per_worker)`` workers, at least one (scale from zero on
  the first job); one more than now while the oldest ready job has waited past ``max_age_s`` (the queue is not
  keeping up); no scale-in while jobs are still ready (a worker stopped now would hand its work back);
- nothing queued or running: hold the current count until the class has been idle for ``idle_s``, then
  ``min_workers`` (scale to zero with the default minimum);
- always within ``[min_workers, max_workers]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class ClassPolicy:
    min_workers: int = 0
    max_workers: int = 4
    jobs_per_worker: float = 4.0
    max_age_s: float = 60.0
    idle_s: float = 300.0

    def __post_init__(self) -> None:
        if self.min_workers < 0 or self.max_workers < self.min_workers:
            raise ValueError("need 0 <= min_workers <= max_workers")
        if self.jobs_per_worker <= 0:
            raise ValueError("jobs_per_worker must be > 0")


@dataclass(frozen=True)
class Load:
    """A resource class's queue: ready jobs, the oldest one's wait in seconds, running jobs."""

    depth: int = 0
    oldest_age_s: float = 0.0
    running: int = 0

    @property
    def busy(self) -> bool:
        return self.depth > 0 or self.running > 0


@dataclass(frozen=True)
class Decision:
    desired: int
    reason: str


def desired_workers(policy: ClassPolicy, load: Load, current: int, idle_for_s: float) -> Decision:
    """Workers the class should have now. ``idle_for_s``: how long nothing has been queued or running (0 while
    busy)."""
    lo, hi = policy.min_workers, policy.max_workers

    def clamp(n: int) -> int:
        return max(lo, min(hi, n))

    if load.busy:
        need = max(1, math.ceil((load.depth + load.running) / policy.jobs_per_worker))
        reason = f"{load.depth} ready, {load.running} running"
        if policy.max_age_s and load.depth > 0 and load.oldest_age_s > policy.max_age_s and need <= current:
            need = current + 1
            reason += f", oldest waited {load.oldest_age_s:.0f}s > {policy.max_age_s:g}s"
        if load.depth > 0 and need < current:
            need = current  # no scale-in while work is still waiting
            reason += ", no scale-in while jobs wait"
        if current == 0:
            reason = "scale from zero: " + reason
        return Decision(clamp(need), reason)
    if current > lo and idle_for_s >= policy.idle_s:
        return Decision(lo, f"idle for {idle_for_s:.0f}s >= {policy.idle_s:g}s")
    if current > lo:
        return Decision(clamp(current), f"idle for {idle_for_s:.0f}s, holding until {policy.idle_s:g}s")
    return Decision(clamp(current), "idle")
