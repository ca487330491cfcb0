"""Traces across API -> queue -> worker: the submit request's span is the parent of the job span (through the
trace context stored with the job), which is the parent of the step spans. Read with the SDK's in-memory
exporter. Also: tracing off is a no-op, and JSON log lines carry request, account, job and trace ids."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from tests.conftest import UserHandle, make_settings, wait_for
from tests.fixtures.hashing import fast_password_hashing  # noqa: F401

REMOTE_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
REMOTE_PARENT = "00f067aa0ba902b7"


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Any:
    return make_settings(tmp_path, db_url, extra_pipelines=["tests.integration.obs_pipelines"])


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def app(container: Any, exporter: InMemorySpanExporter) -> Any:
    from reelforge.api.app import create_app
    from reelforge.tracing import Tracing

    container.tracing = Tracing(container.settings, exporter=exporter)
    return create_app(container=container)


def spans_of(exporter: InMemorySpanExporter, trace_id: int) -> dict[str, Any]:
    return {s.name: s for s in exporter.get_finished_spans() if s.context.trace_id == trace_id}


def test_request_job_and_steps_share_one_trace(client: Any, alice: UserHandle, worker: Any,
                                               exporter: InMemorySpanExporter) -> None:
    exporter.clear()
    job = alice.post("/v1/jobs", json={"kind": "test.fan", "input": {}}, params={"wait": 30}).json()
    assert job["status"] == "succeeded"
    wait_for(lambda: any(s.name == "job test.fan" for s in exporter.get_finished_spans()))

    (submit,) = [s for s in exporter.get_finished_spans() if s.name == "POST /v1/jobs"]
    assert submit.kind == SpanKind.SERVER and submit.parent is None
    assert submit.attributes["http.response.status_code"] == 200
    assert submit.attributes["http.route"] == "/v1/jobs"
    spans = spans_of(exporter, submit.context.trace_id)

    job_span = spans["job test.fan"]
    assert job_span.parent is not None and job_span.parent.span_id == submit.context.span_id
    assert job_span.attributes["reelforge.job.id"] == job["id"] and job_span.attributes["reelforge.job.attempt"] == 1
    assert job_span.kind == SpanKind.CONSUMER

    fan = spans["parallel fan"]
    assert fan.parent.span_id == job_span.context.span_id
    for name in ("step fan/branch/a", "step fan/branch/b"):
        step = spans[name]
        assert step.parent.span_id == fan.context.span_id, name
        assert step.attributes["reelforge.step.path"] in ("fan/branch[0]/a", "fan/branch[1]/b")
    done = spans["step done"]
    assert done.parent.span_id == job_span.context.span_id
    assert done.attributes["reelforge.duration_s"] >= 0
    # Every span ended inside the job span.
    for s in (fan, done, spans["step fan/branch/a"]):
        assert job_span.start_time <= s.start_time <= s.end_time <= job_span.end_time

    with worker.c.store.tx(write=False) as tx:
        stored = tx.jobs.job(job["id"]).trace_context
    assert stored["traceparent"].split("-")[1] == f"{submit.context.trace_id:032x}"


def test_failed_step_marks_spans_and_incoming_traceparent_is_continued(
        client: Any, alice: UserHandle, worker: Any, exporter: InMemorySpanExporter) -> None:
    exporter.clear()
    headers = {"traceparent": f"00-{REMOTE_TRACE}-{REMOTE_PARENT}-01"}
    job = alice.post("/v1/jobs", json={"kind": "test.fail", "input": {}}, params={"wait": 30},
                     headers=headers).json()
    assert job["status"] == "failed"
    wait_for(lambda: any(s.name == "job test.fail" for s in exporter.get_finished_spans()))
    spans = spans_of(exporter, int(REMOTE_TRACE, 16))
    submit = spans["POST /v1/jobs"]
    assert submit.parent.span_id == int(REMOTE_PARENT, 16) and submit.parent.is_remote
    job_span = spans["job test.fail"]
    assert job_span.parent.span_id == submit.context.span_id
    assert job_span.status.status_code == StatusCode.ERROR
    boom = spans["step boom"]
    assert boom.parent.span_id == job_span.context.span_id
    assert boom.status.status_code == StatusCode.ERROR and boom.attributes["reelforge.error"] == "boom"
    assert spans["step prepare"].status.status_code == StatusCode.UNSET


def test_request_spans_for_reads(client: Any, alice: UserHandle, exporter: InMemorySpanExporter) -> None:
    job = alice.post("/v1/jobs", json={"kind": "system.noop", "input": {}}).json()
    exporter.clear()
    r = alice.get(f"/v1/jobs/{job['id']}", headers={"X-Request-ID": "trace-me-1"})
    assert r.headers["x-request-id"] == "trace-me-1"
    (span,) = exporter.get_finished_spans()
    assert span.name == "GET /v1/jobs/{job_id}" and span.attributes["reelforge.request_id"] == "trace-me-1"
    assert span.attributes["url.path"] == f"/v1/jobs/{job['id']}"
    assert alice.get("/v1/jobs/0123456789abcdef").status_code == 404
    (_, missing) = exporter.get_finished_spans()
    assert missing.attributes["http.response.status_code"] == 404


def test_tracing_off_is_a_no_op(tmp_path: Path, sqlite_url: str) -> None:
    from fastapi.testclient import TestClient

    from reelforge import tracing
    from reelforge.api.app import create_app
    from reelforge.container import Container

    c = Container(make_settings(tmp_path, sqlite_url))
    try:
        assert c.tracing.enabled is False
        app = create_app(container=c)
        assert not any(m.cls is tracing.TracingMiddleware for m in app.user_middleware)
        assert tracing.current_carrier() is None
        with TestClient(app) as client:
            from tests.conftest import register

            alice = register(client, "quiet@example.com")
            job = alice.post("/v1/jobs", json={"kind": "system.noop", "input": {}}).json()
        with c.store.tx(write=False) as tx:
            assert tx.jobs.job(job["id"]).trace_context is None
        store = object()
        trace = c.tracing.job(type("J", (), {"id": "x", "kind": "k", "attempt": 1})())
        assert trace.checkpoints(store) is store
        trace.end()
    finally:
        c.close()


class _Lines(logging.Handler):
    """Formats each record when it is emitted (in the emitting thread, as a real handler does)."""

    def __init__(self) -> None:
        from reelforge.observability import JsonFormatter

        super().__init__(logging.INFO)
        self.setFormatter(JsonFormatter())
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


def test_json_logs_carry_ids(client: Any, container: Any, alice: UserHandle, worker: Any,
                             exporter: InMemorySpanExporter) -> None:
    root = logging.getLogger()
    handler, level = _Lines(), root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        job = alice.post("/v1/jobs", json={"kind": "test.fan", "input": {}}, params={"wait": 30},
                         headers={"X-Request-ID": "req-logs-1"}).json()
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    assert job["status"] == "succeeded"
    (submit,) = [s for s in exporter.get_finished_spans() if s.name == "POST /v1/jobs"]
    steps = [line for line in handler.lines if line["logger"] == "tests.obs"]
    assert len(steps) == 3
    for line in steps:  # written by step functions in the worker's executor threads
        assert line["job_id"] == job["id"]
        # ... inside the trace of the request that submitted the job, each in its own step span.
        assert line["trace_id"] == f"{submit.context.trace_id:032x}" and len(line["span_id"]) == 16
    assert len({line["span_id"] for line in steps}) == 3
    (post,) = [line for line in handler.lines
               if line["logger"] == "reelforge.access" and line.get("path") == "/v1/jobs"]
    assert post["request_id"] == "req-logs-1" and post["account_id"] == alice.id and post["status"] == 200


def test_otlp_endpoint_from_the_environment(tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """REELFORGE_OTEL__ENDPOINT turns tracing on with the OTLP/HTTP exporter; an unreachable collector
    costs nothing on the request path and does not hold up shutdown."""
    import time

    from fastapi.testclient import TestClient

    from reelforge import tracing
    from reelforge.api.app import create_app
    from reelforge.config import Settings
    from reelforge.container import Container

    monkeypatch.setenv("REELFORGE_OTEL__ENDPOINT", "http://127.0.0.1:9/v1/traces")
    monkeypatch.setenv("REELFORGE_OTEL__TIMEOUT_S", "1")
    monkeypatch.setenv("REELFORGE_OTEL__SERVICE_NAME", "reelforge-test")
    settings = Settings(data_dir=tmp_path / "var", database={"url": sqlite_url})
    assert settings.otel.endpoint == "http://127.0.0.1:9/v1/traces" and settings.otel.timeout_s == 1
    c = Container(settings)
    try:
        assert c.tracing.enabled
        assert c.tracing.provider.resource.attributes["service.name"] == "reelforge-test"
        app = create_app(container=c)
        assert any(m.cls is tracing.TracingMiddleware for m in app.user_middleware)
        with TestClient(app) as client:
            assert client.get("/healthz").status_code == 200
    finally:
        started = time.monotonic()
        c.close()
        assert time.monotonic() - started < 15
