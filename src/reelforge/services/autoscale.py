"""`reelforge autoscale`: reads the queue per resource class and sets each class's worker count through a
:class:`~reelforge.ports.scaling.Scaler` (local processes, an Auto Scaling group), by the shared policy
(:func:`reelforge.domain.scaling.desired_workers`)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from reelforge.domain.cloud import RESOURCE_CLASSES
from reelforge.domain.scaling import ClassPolicy, Decision, Load, desired_workers
from reelforge.ports.scaling import Scaler
from reelforge.services.queue_metrics import QueueMetrics

log = logging.getLogger("reelforge.autoscale")


def policies_from(settings: Any) -> dict[str, ClassPolicy]:
    """The policy of each resource class from settings `autoscale.<class>`."""
    out = {}
    for cls in RESOURCE_CLASSES:
        c = getattr(settings.autoscale, cls)
        out[cls] = ClassPolicy(min_workers=c.min_workers, max_workers=c.max_workers,
                               jobs_per_worker=c.jobs_per_worker, max_age_s=c.max_age_s, idle_s=c.idle_s)
    return out


@dataclass
class Step:
    """One pass: per class, the load seen, the count before and the decision."""

    at: float
    loads: dict[str, Load] = field(default_factory=dict)
    before: dict[str, int] = field(default_factory=dict)
    decisions: dict[str, Decision] = field(default_factory=dict)


class Autoscaler:
    def __init__(self, metrics: QueueMetrics, scaler: Scaler, policies: dict[str, ClassPolicy], *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.metrics = metrics
        self.scaler = scaler
        self.policies = policies
        self.clock = clock
        now = clock()
        # A class counts as busy when the autoscaler starts: workers already running get a full idle period.
        self.last_busy: dict[str, float] = dict.fromkeys(policies, now)
        self.stopping = threading.Event()

    def step(self) -> Step:
        figures = self.metrics.figures()
        now = self.clock()
        out = Step(at=now)
        for cls, policy in self.policies.items():
            f = figures.by_class.get(cls)
            load = Load(f.depth, f.oldest_age_s, f.running) if f is not None else Load()
            if load.busy:
                self.last_busy[cls] = now
            current = self.scaler.current(cls)
            decision = desired_workers(policy, load, current, 0.0 if load.busy else now - self.last_busy[cls])
            out.loads[cls], out.before[cls], out.decisions[cls] = load, current, decision
            if decision.desired != current:
                log.info("autoscale %s: %d -> %d workers (%s)", cls, current, decision.desired, decision.reason)
                self.scaler.set_desired(cls, decision.desired)
        return out

    def run(self, interval_s: float) -> None:
        """Step every ``interval_s`` until :meth:`stop`."""
        while not self.stopping.is_set():
            try:
                self.step()
            except Exception:
                log.exception("autoscale pass failed")
            self.stopping.wait(interval_s)

    def stop(self) -> None:
        self.stopping.set()
