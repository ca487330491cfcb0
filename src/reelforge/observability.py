"""Structured JSON logs with request/job ids, and Prometheus metrics held per container."""

from __future__ import annotations

import asyncio
import atexit
import bisect
import contextvars
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from pydantic_core import to_json

from reelforge.tracing import log_ids, step_name

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
job_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("job_id", default=None)
account_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("account_id", default=None)
# The calling client's address, for the audit trail (set by the API for each request).
client_ip_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("client_ip", default=None)

_RESERVED = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


_CONTEXT_IDS = (("request_id", request_id_var), ("job_id", job_id_var), ("account_id", account_id_var))


def _add_context(out: dict[str, Any], fields: Mapping[str, Any]) -> None:
    """The request, job and account ids (from `fields`, else the context) and the trace ids, into `out`."""
    for name, var in _CONTEXT_IDS:
        value = fields.get(name) or var.get()
        if value:
            out[name] = value
    ids = log_ids()
    if ids is not None:
        out["trace_id"], out["span_id"] = ids


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the request/job/account ids of the context, the
    trace ids when traced, and every `extra` field. Written for the access log's line per request: the extras
    are found by one set difference (and written in name order), and the object is serialized by pydantic-core."""

    def format(self, record: logging.LogRecord) -> str:
        fields = record.__dict__
        out: dict[str, Any] = {
            "ts": round(record.created, 3), "level": record.levelname.lower(), "logger": record.name,
            "msg": record.getMessage(),
        }
        _add_context(out, fields)
        for k in sorted(fields.keys() - _RESERVED):
            if k not in out and not k.startswith("_"):
                v = fields[k]
                out[k] = v if isinstance(v, (str, int, float, bool, type(None))) else str(v)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exc"] = record.exc_text
        return to_json(out, fallback=str).decode()


class AccessLog:
    """The access log's one line per request, as `logger.info(...)` with these extras would write it.

    When the only place such a record can go is the JSON handler `configure_logging` installs (no handler or
    filter of the caller's own on the way, as in `reelforge api`), the line is built here directly: a LogRecord
    and the generic formatter cost about half the line's time, on every request. Those lines are written in
    batches, one write and flush for up to `BATCH` lines or `DELAY_S` seconds of them (a flush is scheduled on
    the running event loop, and lines are flushed before any record goes the other way and at exit), so a busy
    server makes one system call per batch instead of one per request. With any other logging set-up (another
    handler, a test's capture, plain-text logs) each record goes through `logging` at once.
    """

    MESSAGE = "%s %s %s %.1fms"
    BATCH = 64
    DELAY_S = 0.05

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger
        self._lines: list[str] = []
        self._handler: logging.StreamHandler[Any] | None = None
        self._lock = threading.Lock()
        self._scheduled = False
        atexit.register(self.flush)

    def _direct(self) -> logging.StreamHandler[Any] | None:
        lg = self.logger
        if lg.handlers or lg.filters or not lg.propagate:
            return None
        parent = lg.parent
        while parent is not None and parent.parent is not None:  # up to the root
            if parent.handlers or parent.filters or not parent.propagate:
                return None
            parent = parent.parent
        root = logging.getLogger()
        if len(root.handlers) != 1:
            return None
        h = root.handlers[0]
        if (not getattr(h, "_reelforge", False) or type(h.formatter) is not JsonFormatter or h.filters
                or h.level > logging.INFO or not isinstance(h, logging.StreamHandler)):
            return None
        return h

    def write(self, method: str, path: str, status: int, duration_s: float, account_id: str | None) -> None:
        lg = self.logger
        if not lg.isEnabledFor(logging.INFO):
            return
        extra: dict[str, Any] = {"method": method, "path": path, "status": status,
                                 "duration_ms": round(duration_s * 1000, 2)}
        if account_id is not None:
            extra["account_id"] = account_id
        h = self._direct()
        if h is None:
            if self._lines:
                self.flush()
            lg.info(self.MESSAGE, method, path, status, duration_s * 1000, extra=extra)
            return
        out: dict[str, Any] = {"ts": round(time.time(), 3), "level": "info", "logger": lg.name,
                               "msg": self.MESSAGE % (method, path, status, duration_s * 1000)}
        _add_context(out, extra)
        for k in sorted(extra):
            if k not in out:
                out[k] = extra[k]
        line = to_json(out, fallback=str).decode() + h.terminator
        with self._lock:
            if self._handler is not h and self._lines:
                self._flush_locked()
            self._handler = h
            self._lines.append(line)
            full = len(self._lines) >= self.BATCH
            schedule = not full and not self._scheduled
            if schedule:
                self._scheduled = True
        if full:
            self.flush()
        elif schedule:
            try:
                asyncio.get_running_loop().call_later(self.DELAY_S, self.flush)
            except RuntimeError:  # no event loop in this thread: nothing would come back to flush it
                self.flush()

    def flush(self) -> None:
        """Write the buffered lines now (also run at exit)."""
        with self._lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        self._scheduled = False
        lines, h = self._lines, self._handler
        if not lines or h is None:
            return
        self._lines = []
        try:
            with h.lock:  # type: ignore[union-attr]
                h.stream.write("".join(lines))
                h.flush()
        except Exception:  # a closed or broken stream: let logging report it its own way, never fail a request
            for line in lines:
                self.logger.info(line.rstrip("\n"))


def configure_logging(level: str = "INFO", json_logs: bool = True) -> None:
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_reelforge", False):
            root.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    handler._reelforge = True  # type: ignore[attr-defined]
    plain = logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    handler.setFormatter(JsonFormatter() if json_logs else plain)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Neither formatter prints the caller's file and line, thread or process: skip collecting them on every
    # record (the switches the logging HOWTO's "Optimization" section names). The access log writes a line per
    # request, and these lookups showed in its profile.
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    for noisy in ("uvicorn.access", "httpx", "httpcore", "botocore", "urllib3", "alembic.runtime.migration"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class _DbCollector(Collector):
    """Queue depth and job counts read from the database at scrape time (true across processes)."""

    def __init__(self, read: Callable[[], dict[str, Any]]) -> None:
        self.read = read

    def collect(self) -> Iterable[GaugeMetricFamily]:
        try:
            data = self.read()
        except Exception:  # a scrape must not fail because the database blinked
            return
        jobs = GaugeMetricFamily("reelforge_jobs", "Jobs by kind and status", labels=["kind", "status"])
        for kind, status, n in data.get("jobs", []):
            jobs.add_metric([kind, status], n)
        yield jobs
        depth = GaugeMetricFamily("reelforge_queue_depth", "Queued jobs")
        depth.add_metric([], sum(n for _, s, n in data.get("jobs", []) if s == "queued"))
        yield depth
        age = GaugeMetricFamily("reelforge_queue_oldest_age_seconds", "Age of the oldest queued job")
        age.add_metric([], data.get("oldest_age", 0.0))
        yield age
        queue = data.get("queue")
        if queue is not None:
            # The figures the scaling policies read (services/queue_metrics.py), per job kind and per resource class.
            ready = GaugeMetricFamily("reelforge_queue_ready", "Queued jobs that are due, by kind",
                                      labels=["kind", "resource_class"])
            ready_age = GaugeMetricFamily("reelforge_queue_ready_age_seconds",
                                          "Seconds the oldest due job has waited, by kind",
                                          labels=["kind", "resource_class"])
            running = GaugeMetricFamily("reelforge_jobs_running", "Running jobs, by kind",
                                        labels=["kind", "resource_class"])
            for kind, f in queue.by_kind.items():
                labels = [kind, queue.kind_class.get(kind, "cpu")]
                ready.add_metric(labels, f.depth)
                ready_age.add_metric(labels, f.oldest_age_s)
                running.add_metric(labels, f.running)
            yield ready
            yield ready_age
            yield running
            by_class = GaugeMetricFamily("reelforge_queue_ready_by_class",
                                         "Queued jobs that are due, by resource class", labels=["resource_class"])
            age_by_class = GaugeMetricFamily("reelforge_queue_ready_age_by_class_seconds",
                                             "Seconds the oldest due job has waited, by resource class",
                                             labels=["resource_class"])
            running_by_class = GaugeMetricFamily("reelforge_jobs_running_by_class", "Running jobs, by resource class",
                                                 labels=["resource_class"])
            for cls, f in queue.by_class.items():
                by_class.add_metric([cls], f.depth)
                age_by_class.add_metric([cls], f.oldest_age_s)
                running_by_class.add_metric([cls], f.running)
            yield by_class
            yield age_by_class
            yield running_by_class
        deliveries = GaugeMetricFamily("reelforge_webhook_deliveries", "Webhook deliveries by status",
                                       labels=["status"])
        for status, n in data.get("deliveries", []):
            deliveries.add_metric([status], n)
        yield deliveries


# Step and job durations run from milliseconds (a no-op step) to hours (a long render); model calls likewise.
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200)
LOAD_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)

_END_STATUS = {"JobSucceeded": "succeeded", "JobFailed": "failed", "JobDead": "dead", "JobCancelled": "cancelled"}


class _Hist:
    """Histogram series accumulated in memory: labels -> (per-bucket counts, sum, count)."""

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.series: dict[tuple[str, ...], list[Any]] = {}

    def observe(self, labels: tuple[str, ...], value: float) -> None:
        entry = self.series.setdefault(labels, [[0] * len(self.buckets), 0.0, 0])
        i = bisect.bisect_left(self.buckets, value)
        if i < len(self.buckets):
            entry[0][i] += 1
        entry[1] += value
        entry[2] += 1

    def family(self, name: str, doc: str, labels: list[str]) -> HistogramMetricFamily:
        fam = HistogramMetricFamily(name, doc, labels=labels)
        for key, (counts, total, n) in sorted(self.series.items()):
            cumulative, running = [], 0
            for bound, c in zip(self.buckets, counts, strict=True):
                running += c
                cumulative.append((_fmt(bound), running))
            cumulative.append(("+Inf", n))
            fam.add_metric(list(key), cumulative, total)
        return fam


def _fmt(bound: float) -> str:
    return repr(float(bound))


class FiguresCollector(Collector):
    """Figures that workers produce, read from the database at scrape time (see docs/decisions.md).

    Append-only tables (job history, credit ledger, model invocations) are tailed by id: each scrape
    reads only the rows added since the last one and adds them to counters and histograms held here,
    so every API replica converges on the same cluster-wide totals whatever worker produced them.
    Rows younger than `lag_s` are left for the next scrape: on PostgreSQL ids are handed out before
    commit, and a transaction that commits a smaller id late must not be skipped. Deliveries and alarms
    are read as current state (their rows change in place).
    """

    def __init__(self, read: Callable[[dict[str, int], int], dict[str, Any]], *, lag_s: float = 2.0,
                 max_rows: int = 50_000, batch: int = 5_000) -> None:
        self.read = read
        self.lag_s = lag_s
        self.max_rows = max_rows
        self.batch = batch
        self._lock = threading.Lock()
        self.cursors = {"history": 0, "ledger": 0, "invocations": 0}
        self.steps = _Hist(DURATION_BUCKETS)
        self.job_duration = _Hist(DURATION_BUCKETS)
        self.job_latency = _Hist(DURATION_BUCKETS)
        self.jobs_ended: dict[tuple[str, str], int] = {}
        self.credits_spent: dict[tuple[str], int] = {}
        self.credits_refunded: dict[tuple[str], int] = {}
        self.invocations: dict[tuple[str, str, str], int] = {}
        self.invocation_seconds = _Hist(DURATION_BUCKETS)
        self.units: dict[tuple[str, str, str], float] = {}
        self.loads = _Hist(LOAD_BUCKETS)
        self.deliveries: list[tuple[str, int, int]] = []
        self.alarms: list[tuple[str, int]] = []

    def describe(self) -> Iterable[Metric]:
        # Names only: registering must not touch the database.
        return list(self._families())

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            try:
                self._catch_up()
            except Exception:  # a scrape must not fail because the database blinked; totals stay as they were
                logging.getLogger("reelforge.metrics").debug("reading figures failed", exc_info=True)
            return list(self._families())

    def _catch_up(self) -> None:
        read_rows = 0
        while True:
            data = self.read(dict(self.cursors), self.batch)
            cutoff = float(data["now"]) - self.lag_s
            self.deliveries = list(data.get("deliveries", []))
            self.alarms = list(data.get("alarms", []))
            more = False
            for stream, handle in (("history", self._history), ("ledger", self._ledger),
                                   ("invocations", self._invocation)):
                rows = data.get(stream, [])
                done = 0
                for row in rows:
                    if float(row[1]) > cutoff:
                        break
                    handle(row)
                    self.cursors[stream] = int(row[0])
                    done += 1
                read_rows += done
                if done == len(rows) == self.batch:
                    more = True
            if not more or read_rows >= self.max_rows:
                return

    def _history(self, row: tuple[Any, ...]) -> None:
        _id, ts, type_, path, details, kind, created_at, started_at = row
        if type_ in ("TaskSucceeded", "TaskFailed"):
            duration = (details or {}).get("duration_s")
            if isinstance(duration, int | float):
                outcome = "succeeded" if type_ == "TaskSucceeded" else "failed"
                self.steps.observe((kind, step_name(path or ""), outcome), float(duration))
            return
        status = _END_STATUS.get(type_)
        if status is None:
            return
        key = (kind, status)
        self.jobs_ended[key] = self.jobs_ended.get(key, 0) + 1
        if created_at is not None:
            self.job_latency.observe(key, max(0.0, float(ts) - float(created_at)))
        if started_at is not None:
            self.job_duration.observe(key, max(0.0, float(ts) - float(started_at)))

    def _ledger(self, row: tuple[Any, ...]) -> None:
        _id, _ts, kind, amount, job_kind, job_credits = row
        key = (job_kind or "unknown",)
        if kind == "settle":
            self.credits_spent[key] = self.credits_spent.get(key, 0) + int(job_credits or 0)
        elif kind == "refund":
            self.credits_refunded[key] = self.credits_refunded.get(key, 0) + int(amount or 0)

    def _invocation(self, row: tuple[Any, ...]) -> None:
        _id, _ts, task, model, ok, error, seconds, load_s, unit, units = row
        outcome = "ok" if ok else ("cancelled" if error == "cancelled" else "error")
        key = (task, model, outcome)
        self.invocations[key] = self.invocations.get(key, 0) + 1
        self.invocation_seconds.observe((task, model), float(seconds or 0.0))
        if unit:
            ukey = (task, model, unit)
            self.units[ukey] = self.units.get(ukey, 0.0) + float(units or 0.0)
        if load_s is not None:
            self.loads.observe((task, model), float(load_s))

    def _families(self) -> Iterable[Metric]:
        yield self.steps.family("reelforge_step_duration_seconds", "Duration of step attempts",
                                ["kind", "step", "outcome"])
        yield self.job_duration.family("reelforge_job_duration_seconds", "First claim to end of a job",
                                       ["kind", "status"])
        yield self.job_latency.family("reelforge_job_latency_seconds", "Submit to end of a job (includes queueing)",
                                      ["kind", "status"])
        yield _counter("reelforge_jobs_finished", "Jobs that reached an end status", ["kind", "status"],
                       self.jobs_ended)
        yield _counter("reelforge_credits_spent", "Credits charged by succeeded jobs", ["kind"], self.credits_spent)
        yield _counter("reelforge_credits_refunded", "Credits given back by failed or cancelled jobs", ["kind"],
                       self.credits_refunded)
        yield _counter("reelforge_model_invocations", "Model adapter runs", ["task", "model", "outcome"],
                       self.invocations)
        yield self.invocation_seconds.family("reelforge_model_invocation_seconds", "Model adapter run time",
                                             ["task", "model"])
        yield _counter("reelforge_model_units", "Units processed by model adapters (images, frames, audio seconds)",
                       ["task", "model", "unit"], self.units)
        yield self.loads.family("reelforge_model_load_seconds", "Model adapter load (setup) time", ["task", "model"])
        outcomes = CounterMetricFamily("reelforge_webhook_delivery_outcomes", "Webhook deliveries that ended",
                                       labels=["outcome"])
        attempts = CounterMetricFamily("reelforge_webhook_delivery_attempts", "Webhook delivery attempts (POSTs)")
        done = {status: n for status, n, _ in self.deliveries}
        for outcome in ("delivered", "failed"):
            outcomes.add_metric([outcome], done.get(outcome, 0))
        attempts.add_metric([], sum(a for _, _, a in self.deliveries))
        yield outcomes
        yield attempts
        firing = GaugeMetricFamily("reelforge_alarms_firing", "Alarms in the alarm state", labels=["rule"])
        for rule, n in self.alarms:
            firing.add_metric([rule], n)
        yield firing


def _counter(name: str, doc: str, labels: list[str], values: dict[Any, Any]) -> CounterMetricFamily:
    fam = CounterMetricFamily(name, doc, labels=labels)
    for key, value in sorted(values.items()):
        fam.add_metric(list(key), value)
    return fam


class CloudMetricsCollector(Collector):
    """This process's publishes to the cloud metrics service (services/cloud_metrics.py ``status()``): datums
    published and failed publishes, so a scraper can alarm when the scaling policies stop getting figures."""

    def __init__(self, status: Callable[[], dict[str, Any]]) -> None:
        self.status = status

    def collect(self) -> Iterator[Metric]:
        st = self.status()
        published = CounterMetricFamily("reelforge_cloud_metrics_published",
                                        "Datums this process published to the cloud metrics service")
        published.add_metric([], float(st.get("published", 0)))
        failures = CounterMetricFamily("reelforge_cloud_metrics_failures",
                                       "Publishes to the cloud metrics service that failed in this process")
        failures.add_metric([], float(st.get("failures", 0)))
        yield published
        yield failures


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("reelforge_http_requests_total", "HTTP requests", ["method", "route", "status"],
                                registry=self.registry)
        self.latency = Histogram("reelforge_http_request_duration_seconds", "HTTP request latency", ["route"],
                                 registry=self.registry,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
        # (method, route, status) -> the two labelled children: `labels()` re-validates and hashes the label
        # values on every call, which costs more than the observation itself. Routes are templates and statuses
        # few, so this stays small; it is emptied if it ever grows past a bound.
        self._request_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        children = self._request_children.get(key)
        if children is None:
            if len(self._request_children) > 10_000:
                self._request_children.clear()
            children = self._request_children[key] = (self.requests.labels(method, route, str(status)),
                                                      self.latency.labels(route))
        children[0].inc()
        children[1].observe(seconds)

    def add_db_collector(self, read: Callable[[], dict[str, Any]]) -> None:
        self.registry.register(_DbCollector(read))

    def add_collector(self, collector: Collector) -> None:
        self.registry.register(collector)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def now() -> float:
    return time.time()
