"""The queue and the alarm rules' values, published to the cloud's metrics service for the scaling policies.

Every interval one process (whichever worker or API process wins the database schedule, as for the alarms)
publishes, in the namespace and under the names of domain/cloud.py:

- QUEUE_DEPTH, QUEUE_AGE and RUNNING per JobKind (every installed kind, zeros included, plus any kind still queued
  that no installed pipeline knows) and per ResourceClass (every class, zeros included: a scaling policy needs a
  value while the queue is idle, or it cannot scale to zero and back);
- ALARM_VALUE per Rule: each enabled rule's value as its latest evaluation observed it (the alarms table: whichever
  process evaluated), skipped while the rule has no value (no jobs ended in the window) or its evaluation is stale.
  A per-model rule publishes each model's value with a Model dimension, and the largest with Rule alone.

A failure to publish is logged and counted (``failures``, ``last_error``) and never breaks the caller's tick; the
next interval publishes fresh figures.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from reelforge.config import Settings
from reelforge.domain.cloud import (
    ALARM_VALUE,
    DIM_KIND,
    DIM_MODEL,
    DIM_RESOURCE,
    DIM_RULE,
    METRIC_NAMESPACE,
    QUEUE_AGE,
    QUEUE_DEPTH,
    RUNNING,
)
from reelforge.ports.metrics import Datum, MetricSink
from reelforge.ports.repositories import Store
from reelforge.services.alarms import RULES
from reelforge.services.queue_metrics import QueueFigure, QueueMetrics

log = logging.getLogger("reelforge.cloud_metrics")

SCHEDULE = "cloud_metrics"


def _queue_datums(dimension: tuple[str, str], figure: QueueFigure,
                  extra: tuple[tuple[str, str], ...]) -> list[Datum]:
    dims = (dimension, *extra)
    return [Datum(QUEUE_DEPTH, float(figure.depth), "Count", dims),
            Datum(QUEUE_AGE, float(figure.oldest_age_s), "Seconds", dims),
            Datum(RUNNING, float(figure.running), "Count", dims)]


class CloudMetricsPublisher:
    def __init__(self, store: Store, settings: Settings, queue: QueueMetrics, sink: MetricSink | None) -> None:
        """``sink`` None: publishing is off (``metrics.cloudwatch.enabled`` false)."""
        self.store = store
        self.settings = settings
        self.queue = queue
        self.sink = sink
        self._lock = threading.Lock()
        self.published = 0  # datums published by this process
        self.requests = 0
        self.failures = 0  # publishes that failed in this process
        self.last_error = ""

    @property
    def namespace(self) -> str:
        return self.settings.metrics.cloudwatch.namespace or METRIC_NAMESPACE

    def tick(self, runner: str) -> bool:
        """Publish when this caller wins the interval (one publisher per interval across all processes); never
        raises. Returns whether it published (or tried to)."""
        cfg = self.settings.metrics.cloudwatch
        if not cfg.enabled or self.sink is None:
            return False
        try:
            with self.store.tx(write=False) as tx:
                if tx.ops.schedule_pending(SCHEDULE):  # the common case: no write transaction at all
                    return False
            with self.store.tx() as tx:
                due = tx.ops.try_schedule(SCHEDULE, cfg.interval_s, runner)
        except Exception:
            log.exception("cloud metrics: could not read the schedule")
            return False
        if due:
            self.publish()
        return due

    def datums(self) -> list[Datum]:
        """Every datum of one publish: the queue per kind and per class, then the alarm rules' values."""
        extra = tuple(sorted(self.settings.metrics.cloudwatch.dimensions.items()))
        figures = self.queue.figures()
        kinds = {p.kind for p in self.queue.registry.all()} | set(figures.by_kind)
        out: list[Datum] = []
        for kind in sorted(kinds):
            out += _queue_datums((DIM_KIND, kind), figures.by_kind.get(kind, QueueFigure()), extra)
        for cls in sorted(figures.by_class):
            out += _queue_datums((DIM_RESOURCE, cls), figures.by_class[cls], extra)
        return out + self._alarm_datums(extra)

    def _alarm_datums(self, extra: tuple[tuple[str, str], ...]) -> list[Datum]:
        alarms = self.settings.alarms
        if not alarms.enabled:
            return []
        # Fresh: from the latest evaluation or the one before (the tick runs about once per alarms.interval_s).
        max_age = 2 * alarms.interval_s + 30
        with self.store.tx(write=False) as tx:
            now = tx.now()
            rows = list(tx.alarms.alarms())
        out: list[Datum] = []
        largest: dict[str, float] = {}
        for alarm in sorted(rows, key=lambda a: a.key):
            rule = alarm.rule
            if (alarm.value is None or rule not in RULES or not getattr(alarms, rule).enabled
                    or alarm.evaluated_at < now - max_age):
                continue
            unit = "Seconds" if RULES[rule][1] == "seconds" else "None"
            value = float(alarm.value)
            if alarm.key == rule:
                out.append(Datum(ALARM_VALUE, value, unit, ((DIM_RULE, rule), *extra)))
                continue
            subject = alarm.key.split(":", 1)[-1][:1024]
            out.append(Datum(ALARM_VALUE, value, unit, ((DIM_RULE, rule), (DIM_MODEL, subject), *extra)))
            largest[rule] = max(value, largest.get(rule, value))
        for rule, value in sorted(largest.items()):
            unit = "Seconds" if RULES[rule][1] == "seconds" else "None"
            out.append(Datum(ALARM_VALUE, value, unit, ((DIM_RULE, rule), *extra)))
        return out

    def publish(self) -> int:
        """Build and publish every datum now; returns how many were published (0 when it failed)."""
        if self.sink is None:
            return 0
        count = 0
        try:
            datums = self.datums()
            count = len(datums)
            requests = self.sink.put(self.namespace, datums, time.time())
        except Exception as exc:
            with self._lock:
                self.failures += 1
                self.last_error = f"{type(exc).__name__}: {exc}"[:500]
                failures = self.failures
            log.warning("cloud metrics: could not publish %d datums (%d failures so far): %s", count, failures,
                        self.last_error, extra={"failures": failures})
            return 0
        with self._lock:
            self.published += count
            self.requests += requests
        return count

    def status(self) -> dict[str, Any]:
        """This process's counts (for logs and diagnostics)."""
        with self._lock:
            return {"enabled": self.sink is not None, "published": self.published, "requests": self.requests,
                    "failures": self.failures, "last_error": self.last_error}
