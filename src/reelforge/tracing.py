"""OpenTelemetry traces across API -> queue -> worker steps; every call is a no-op unless configured.

- The API opens a server span per request (:class:`TracingMiddleware`, honouring an incoming
  ``traceparent``); the submit route's span context is stored with the job (``jobs.trace_context``,
  W3C carrier from :func:`current_carrier`).
- The worker opens a job span as a child of that stored context (:meth:`Tracing.job`) and a span per
  step attempt, Parallel/Map state and Map iteration. Step spans are derived from the runner's execution
  history (the same events the history table records), so the runner needs no tracing code: the
  history stream *is* its instrumentation interface. A step span is the current span while its function
  runs (the executor copies contextvars), so spans a step opens itself nest under it.

Tracing is on when ``settings.otel.endpoint`` is set (OTLP/HTTP, batched) or when a test passes its own
exporter. The provider lives on the :class:`Tracing` object (the container's), never in OpenTelemetry's
global, so two containers in one process (tests) do not share spans. When off, OpenTelemetry is not even
imported and the hot paths pay one attribute check.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from typing import Any

from reelforge import __version__

log = logging.getLogger("reelforge.tracing")

# Step paths carry map indexes and loop counters ("chunks/item[3]/encode#2"); span names must not.
_INDEX = re.compile(r"\[\d+\]|#\d+")


def route_template(scope: Any) -> str | None:
    """The route template a request matched ("/v1/jobs/{job_id}"), or None when none did.

    The `/v1` index leaves the full template in the scope (api/routing.py). Elsewhere FastAPI keeps the router's
    own route in scope["route"], whose path lacks an include prefix; its effective route context carries the full
    template.
    """
    template = scope.get("reelforge.route_template")
    if template is not None:
        return str(template)
    effective = (scope.get("fastapi") or {}).get("effective_route_context")
    return getattr(effective, "path_format", None) or getattr(scope.get("route"), "path", None)


def step_name(path: str) -> str:
    """A path without its item indexes and visit counters: a low-cardinality step name."""
    return _INDEX.sub("", path)


def current_carrier() -> dict[str, str] | None:
    """The W3C trace context of the current span (to store with a job), or None when nothing is traced."""
    if "opentelemetry.trace" not in sys.modules:
        return None
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    if not trace.get_current_span().get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    return carrier or None


def log_ids() -> tuple[str, str] | None:
    """(trace id, span id) in hex of the current span, for log lines; None when nothing is traced."""
    if "opentelemetry.trace" not in sys.modules:
        return None
    from opentelemetry import trace

    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}"


class Tracing:
    """The tracer provider of one container (API or worker process)."""

    def __init__(self, settings: Any, *, exporter: Any | None = None, service_name: str | None = None) -> None:
        otel = settings.otel
        self.enabled = bool(otel.endpoint) or exporter is not None
        self.provider: Any = None
        self.tracer: Any = None
        if not self.enabled:
            return
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

        resource = Resource.create({"service.name": service_name or otel.service_name or "reelforge",
                                    "service.version": __version__})
        self.provider = TracerProvider(resource=resource, sampler=ParentBased(TraceIdRatioBased(otel.sample_ratio)))
        if exporter is not None:
            # Tests read spans at once; a batch processor would hold them back.
            self.provider.add_span_processor(SimpleSpanProcessor(exporter))
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            self.provider.add_span_processor(BatchSpanProcessor(
                OTLPSpanExporter(endpoint=otel.endpoint, headers=dict(otel.headers) or None, timeout=otel.timeout_s)
            ))
        self.tracer = self.provider.get_tracer("reelforge", __version__)

    # --- worker side -------------------------------------------------------------------------------
    def job(self, job: Any, *, worker_id: str = "") -> JobTrace:
        """A job span (child of the context stored at submit), current in the calling thread until end()."""
        if not self.enabled:
            return _NOOP_JOB
        return _JobTrace(self.tracer, job, worker_id)

    def shutdown(self) -> None:
        if self.provider is not None:
            try:
                self.provider.shutdown()
            except Exception:  # exporting must never break a shutdown
                log.warning("trace exporter shutdown failed", exc_info=True)


class JobTrace:
    """No-op job trace: what the worker gets when tracing is off."""

    def checkpoints(self, store: Any) -> Any:
        """Wrap the runner's checkpoint store so that its history events open and close spans."""
        return store

    def end(self) -> None:
        """End the job span (and any span the history left open); detach it from the thread."""


_NOOP_JOB = JobTrace()

# History events that open and close spans: open-event -> (span name prefix, close-events).
_OPENS = {
    "TaskStateEntered": "step",
    "ParallelStateEntered": "parallel",
    "MapStateEntered": "map",
    "MapIterationStarted": "item",
}
_CLOSES = {
    "TaskSucceeded": "ok", "TaskFailed": "error", "TaskAborted": "aborted",
    "ParallelStateExited": "ok", "ParallelStateFailed": "error",
    "MapStateExited": "ok", "MapStateFailed": "error",
    "MapIterationSucceeded": "ok", "MapIterationFailed": "error",
}


class _JobTrace(JobTrace):
    def __init__(self, tracer: Any, job: Any, worker_id: str) -> None:
        from opentelemetry import context, trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self._trace = trace
        self._context = context
        carrier = getattr(job, "trace_context", None) or {}
        parent = TraceContextTextMapPropagator().extract(carrier) if carrier else None
        self.tracer = tracer
        self.job_id = str(job.id)
        self.span = tracer.start_span(
            f"job {job.kind}", context=parent, kind=trace.SpanKind.CONSUMER,
            attributes={"reelforge.job.id": job.id, "reelforge.job.kind": job.kind,
                        "reelforge.job.attempt": int(job.attempt), "reelforge.worker.id": worker_id},
        )
        self._token = context.attach(trace.set_span_in_context(self.span))
        self._lock = threading.Lock()
        # path -> (span, context token or None); one open span per path at a time.
        self._open: dict[str, tuple[Any, Any]] = {}
        self._ended = False

    def checkpoints(self, store: Any) -> Any:
        return _TracedCheckpoints(store, self)

    def on_history(self, event: str, path: str | None, details: dict[str, Any]) -> None:
        trace = self._trace
        try:
            if path is None:
                if event in ("ExecutionStarted", "ExecutionResumed"):
                    self.span.add_event(event, {"reelforge.pipeline.version": int(details.get("version") or 0)})
                elif event == "ExecutionFailed":
                    self.span.set_status(trace.Status(trace.StatusCode.ERROR, str(details.get("error", ""))))
                    self.span.set_attribute("reelforge.error", str(details.get("error", "")))
                elif event == "ExecutionAborted":
                    self.span.set_attribute("reelforge.aborted", True)
                return
            prefix = _OPENS.get(event)
            if prefix is not None:
                attrs: dict[str, Any] = {"reelforge.job.id": self.job_id, "reelforge.step.path": path}
                if "attempt" in details:
                    attrs["reelforge.step.attempt"] = int(details["attempt"])
                # Parent: the span current in this thread (the job, or the enclosing Parallel/Map/item,
                # whose context the runner's branch and item threads copied).
                span = self.tracer.start_span(f"{prefix} {step_name(path)}", attributes=attrs)
                token = self._context.attach(trace.set_span_in_context(span))
                with self._lock:
                    stale = self._open.pop(path, None)
                    self._open[path] = (span, token)
                if stale is not None:
                    stale[0].end()
                return
            outcome = _CLOSES.get(event)
            if outcome is not None:
                with self._lock:
                    entry = self._open.pop(path, None)
                if entry is None:
                    return  # e.g. MapIterationSucceeded for an item skipped from its checkpoint
                span, token = entry
                if outcome == "error":
                    span.set_status(trace.Status(trace.StatusCode.ERROR, str(details.get("error", ""))))
                    span.set_attribute("reelforge.error", str(details.get("error", "")))
                elif outcome == "aborted":
                    span.set_attribute("reelforge.aborted", True)
                if "duration_s" in details:
                    span.set_attribute("reelforge.duration_s", float(details["duration_s"]))
                span.end()
                try:
                    self._context.detach(token)
                except Exception:
                    pass  # closed from another thread than it was opened in: nothing to restore there
            elif event in ("TaskSkipped", "TaskRetryScheduled", "TaskCaught"):
                self._trace.get_current_span().add_event(event, {"reelforge.step.path": path})
        except Exception:  # tracing must never break a job
            log.debug("tracing a history event failed", exc_info=True)

    def end(self) -> None:
        if self._ended:
            return
        self._ended = True
        with self._lock:
            left, self._open = list(self._open.values()), {}
        for span, _token in left:
            # Steps stopped by a cancel, a lost lease or a sibling's failure write no closing event.
            span.set_attribute("reelforge.aborted", True)
            span.end()
        self.span.end()
        try:
            self._context.detach(self._token)
        except Exception:
            pass


class _TracedCheckpoints:
    """The runner's checkpoint store, with its history events mirrored as spans."""

    def __init__(self, inner: Any, trace: _JobTrace) -> None:
        self._inner = inner
        self._trace = trace

    def history(self, event: str, path: str | None, **details: Any) -> None:
        self._trace.on_history(event, path, details)
        self._inner.history(event, path, **details)

    def __getattr__(self, name: str) -> Any:
        # get, put, defer, take_history, ...: whatever the worker's store offers.
        return getattr(self._inner, name)


# --- API side ----------------------------------------------------------------------------------------
class TracingMiddleware:
    """A server span per HTTP request (pure ASGI); continues an incoming W3C `traceparent`."""

    def __init__(self, app: Any, *, tracing: Tracing) -> None:
        from opentelemetry import context, trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.app = app
        self.tracer = tracing.tracer
        self._trace = trace
        self._context = context
        self._propagator = TraceContextTextMapPropagator()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or self.tracer is None:
            await self.app(scope, receive, send)
            return
        trace = self._trace
        carrier = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])
                   if k.lower() in (b"traceparent", b"tracestate")}
        parent = self._propagator.extract(carrier) if carrier else None
        method = scope["method"]
        span = self.tracer.start_span(f"{method}", context=parent, kind=trace.SpanKind.SERVER, attributes={
            "http.request.method": method, "url.path": scope.get("path", ""),
            "reelforge.request_id": (scope.get("state") or {}).get("request_id", ""),
        })
        token = self._context.attach(trace.set_span_in_context(span))
        status = {"code": 500}

        async def send_wrapped(message: Any) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapped)
        except Exception as exc:
            span.record_exception(exc)
            raise
        finally:
            route = route_template(scope)
            if route:
                span.update_name(f"{method} {route}")
                span.set_attribute("http.route", route)
            span.set_attribute("http.response.status_code", status["code"])
            if status["code"] >= 500:
                span.set_status(trace.Status(trace.StatusCode.ERROR))
            span.end()
            self._context.detach(token)
