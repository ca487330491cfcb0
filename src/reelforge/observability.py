"""Structured JSON logs with request/job ids, and Prometheus metrics held per container."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
job_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("job_id", default=None)
account_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("account_id", default=None)

_RESERVED = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": round(record.created, 3), "level": record.levelname.lower(), "logger": record.name,
            "msg": record.getMessage(),
        }
        for name, var in (("request_id", request_id_var), ("job_id", job_id_var), ("account_id", account_id_var)):
            value = getattr(record, name, None) or var.get()
            if value:
                out[name] = value
        for k, v in record.__dict__.items():
            if k not in _RESERVED and k not in out and not k.startswith("_"):
                out[k] = v if isinstance(v, (str, int, float, bool, type(None))) else str(v)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


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
        deliveries = GaugeMetricFamily("reelforge_webhook_deliveries", "Webhook deliveries by status",
                                       labels=["status"])
        for status, n in data.get("deliveries", []):
            deliveries.add_metric([status], n)
        yield deliveries


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("reelforge_http_requests_total", "HTTP requests", ["method", "route", "status"],
                                registry=self.registry)
        self.latency = Histogram("reelforge_http_request_duration_seconds", "HTTP request latency", ["route"],
                                 registry=self.registry,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def add_db_collector(self, read: Callable[[], dict[str, Any]]) -> None:
        self.registry.register(_DbCollector(read))

    def render(self) -> bytes:
        return generate_latest(self.registry)


def now() -> float:
    return time.time()
