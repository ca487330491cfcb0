"""The database-fed metrics collector (incremental, lagged), model units, step names and percentiles."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from reelforge.observability import FiguresCollector
from reelforge.services.metering import units_of
from reelforge.services.stats import percentile
from reelforge.tracing import step_name


class FakeSource:
    """Rows as the database would return them after each cursor."""

    def __init__(self) -> None:
        self.now = 100.0
        self.history: list[tuple[Any, ...]] = []
        self.ledger: list[tuple[Any, ...]] = []
        self.invocations: list[tuple[Any, ...]] = []
        self.reads = 0

    def __call__(self, cursors: dict[str, int], limit: int) -> dict[str, Any]:
        self.reads += 1
        return {
            "now": self.now,
            "history": [r for r in self.history if r[0] > cursors["history"]][:limit],
            "ledger": [r for r in self.ledger if r[0] > cursors["ledger"]][:limit],
            "invocations": [r for r in self.invocations if r[0] > cursors["invocations"]][:limit],
            "deliveries": [("delivered", 3, 4), ("pending", 1, 2)],
            "alarms": [("queue_age", 1)],
        }


def samples(collector: FiguresCollector) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    reg = CollectorRegistry()
    reg.register(collector)
    out = {}
    for fam in text_string_to_metric_families(generate_latest(reg).decode()):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def step(i: int, ts: float, path: str, seconds: float, ok: bool = True) -> tuple[Any, ...]:
    return (i, ts, "TaskSucceeded" if ok else "TaskFailed", path, {"duration_s": seconds}, "video.upscale", 0.0, 1.0)


def test_registering_reads_nothing() -> None:
    src = FakeSource()
    CollectorRegistry(auto_describe=True).register(FiguresCollector(src))
    assert src.reads == 0


def test_steps_are_counted_once_and_indexes_dropped() -> None:
    src = FakeSource()
    src.history = [step(1, 10, "chunks/item[0]/encode", 0.2), step(2, 11, "chunks/item[1]/encode", 3.0),
                   step(3, 12, "concat", 1.0, ok=False),
                   (4, 50.0, "JobFailed", None, {}, "video.upscale", 5.0, 10.0)]
    c = FiguresCollector(src, lag_s=0)
    m = samples(c)
    labels = frozenset({"kind": "video.upscale", "step": "chunks/item/encode", "outcome": "succeeded"}.items())
    assert m[("reelforge_step_duration_seconds_count", labels)] == 2
    assert m[("reelforge_step_duration_seconds_sum", labels)] == 3.2
    assert m[("reelforge_step_duration_seconds_bucket", labels | {("le", "0.25")})] == 1
    assert m[("reelforge_step_duration_seconds_bucket", labels | {("le", "5.0")})] == 2
    failed = frozenset({"kind": "video.upscale", "step": "concat", "outcome": "failed"}.items())
    assert m[("reelforge_step_duration_seconds_count", failed)] == 1
    job = frozenset({"kind": "video.upscale", "status": "failed"}.items())
    assert m[("reelforge_job_duration_seconds_sum", job)] == 40.0  # claimed at 10, ended at 50
    assert m[("reelforge_job_latency_seconds_sum", job)] == 45.0  # submitted at 5
    assert m[("reelforge_jobs_finished_total", job)] == 1
    assert m[("reelforge_webhook_delivery_outcomes_total", frozenset({("outcome", "delivered")}))] == 3
    assert m[("reelforge_webhook_delivery_attempts_total", frozenset())] == 6
    assert m[("reelforge_alarms_firing", frozenset({("rule", "queue_age")}))] == 1
    # Nothing new: the same totals.
    assert samples(c)[("reelforge_step_duration_seconds_count", labels)] == 2
    src.history.append(step(5, 60, "chunks/item[7]/encode", 0.1))
    assert samples(c)[("reelforge_step_duration_seconds_count", labels)] == 3


def test_young_rows_wait_for_the_next_scrape() -> None:
    """A row younger than the lag stops the read there, even when later rows are old enough."""
    src = FakeSource()
    src.now = 100.0
    src.history = [step(1, 90, "a", 1), step(2, 99.5, "b", 1), step(3, 95, "c", 1)]
    c = FiguresCollector(src, lag_s=2)
    m = samples(c)
    names = {dict(k[1]).get("step") for k in m if k[0] == "reelforge_step_duration_seconds_count"}
    assert names == {"a"} and c.cursors["history"] == 1
    src.now = 102.0
    m = samples(c)
    names = {dict(k[1]).get("step") for k in m if k[0] == "reelforge_step_duration_seconds_count"}
    assert names == {"a", "b", "c"} and c.cursors["history"] == 3


def test_backlog_is_read_in_batches_up_to_a_cap() -> None:
    src = FakeSource()
    src.history = [step(i, 1.0, "s", 0.1) for i in range(1, 26)]
    c = FiguresCollector(src, lag_s=0, batch=10, max_rows=20)
    samples(c)
    assert c.cursors["history"] == 20 and src.reads == 2
    samples(c)
    assert c.cursors["history"] == 25


def test_models_and_credits() -> None:
    src = FakeSource()
    src.invocations = [(1, 1.0, "image.generate", "sd15", True, None, 2.0, 12.5, "images", 4.0),
                       (2, 1.0, "image.generate", "sd15", False, "RuntimeError", 0.5, None, None, 0.0),
                       (3, 1.0, "image.generate", "sd15", False, "cancelled", 0.1, None, None, 0.0)]
    src.ledger = [(1, 1.0, "settle", 0, "image.generate", 4), (2, 1.0, "refund", 2, "image.generate", 2),
                  (3, 1.0, "settle", 0, None, None)]
    m = samples(FiguresCollector(src, lag_s=0))
    model = {"task": "image.generate", "model": "sd15"}
    for outcome in ("ok", "error", "cancelled"):
        assert m[("reelforge_model_invocations_total", frozenset({**model, "outcome": outcome}.items()))] == 1
    assert m[("reelforge_model_units_total", frozenset({**model, "unit": "images"}.items()))] == 4
    assert m[("reelforge_model_load_seconds_sum", frozenset(model.items()))] == 12.5
    assert m[("reelforge_model_invocation_seconds_count", frozenset(model.items()))] == 3
    assert m[("reelforge_credits_spent_total", frozenset({("kind", "image.generate")}))] == 4
    assert m[("reelforge_credits_refunded_total", frozenset({("kind", "image.generate")}))] == 2
    assert m[("reelforge_credits_spent_total", frozenset({("kind", "unknown")}))] == 0


def test_a_failing_read_keeps_the_totals() -> None:
    src = FakeSource()
    src.history = [step(1, 1.0, "s", 0.1)]
    c = FiguresCollector(src, lag_s=0)
    samples(c)

    def broken(*_a: Any) -> dict[str, Any]:
        raise OSError("database went away")
    c.read = broken
    key = ("reelforge_step_duration_seconds_count",
           frozenset({"kind": "video.upscale", "step": "s", "outcome": "succeeded"}.items()))
    assert samples(c)[key] == 1


@dataclass
class _Result:
    images: list[bytes] | None = None
    frames: Any = None
    audio_s: float | None = None


def test_units_of_results() -> None:
    assert units_of("image.generate", None, _Result(images=[b"a", b"b"])) == ("images", 2.0)
    assert units_of("image.upscale", None, _Result(frames=[1, 2, 3])) == ("frames", 3.0)
    assert units_of("video.segment", None, _Result(frames=48)) == ("frames", 48.0)
    assert units_of("speech.tts", None, _Result(audio_s=2.5)) == ("audio_seconds", 2.5)
    assert units_of("text.generate", None, object()) == (None, 0.0)

    class Declared:
        units = ("tokens", 17)
    assert units_of("text.generate", None, Declared()) == ("tokens", 17.0)


def test_step_names_and_percentiles() -> None:
    assert step_name("chunks/item[12]/encode#3") == "chunks/item/encode"
    assert step_name("analyze/branch[0]/ocr") == "analyze/branch/ocr"
    assert percentile([], 0.5) == 0.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert percentile([float(i) for i in range(101)], 0.95) == 95.0


def test_request_metrics_reuse_their_labelled_children() -> None:
    from reelforge.observability import Metrics

    m = Metrics()
    for _ in range(3):
        m.observe_request("GET", "/v1/jobs/{job_id}", 200, 0.004)
    m.observe_request("GET", "/v1/jobs/{job_id}", 404, 0.02)
    assert len(m._request_children) == 2  # one (counter, histogram) pair per (method, route, status)
    families = {f.name: f for f in text_string_to_metric_families(m.render().decode())}
    counts = {s.labels["status"]: s.value for s in families["reelforge_http_requests"].samples
              if s.name == "reelforge_http_requests_total"}
    assert counts == {"200": 3.0, "404": 1.0}
    hist = [s for s in families["reelforge_http_request_duration_seconds"].samples
            if s.name.endswith("_count")]
    assert [s.value for s in hist] == [4.0]


def test_log_records_skip_what_no_formatter_prints() -> None:
    import json
    import logging

    from reelforge.observability import JsonFormatter, configure_logging

    root = logging.getLogger()
    saved = (root.handlers[:], root.level, logging._srcfile, logging.logThreads,  # type: ignore[attr-defined]
             logging.logProcesses, logging.logMultiprocessing)
    try:
        configure_logging("INFO", json_logs=True)
        record = logging.getLogger("reelforge.test").makeRecord(
            "reelforge.test", logging.INFO, "(unknown file)", 0, "hello %s", ("there",), None)
        assert record.thread is None and record.threadName is None and record.process is None
        assert record.processName is None
        line = json.loads(JsonFormatter().format(record))
        assert line["msg"] == "hello there" and line["level"] == "info" and line["logger"] == "reelforge.test"
        assert logging._srcfile is None  # type: ignore[attr-defined]  # no caller lookup per record
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        (logging._srcfile, logging.logThreads, logging.logProcesses,  # type: ignore[attr-defined]
         logging.logMultiprocessing) = saved[2:]


def test_the_access_line_written_directly_is_the_formatters_line(caplog: Any) -> None:
    """The access log writes its line itself only when the JSON handler is the one place it can go; the line is
    the one `logging` and the JSON formatter would have written, and any other set-up gets a real record."""
    import io
    import json
    import logging

    from reelforge.observability import AccessLog, configure_logging, request_id_var

    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    caplog.handler.setLevel(logging.CRITICAL)
    root.removeHandler(caplog.handler)  # pytest's capture is a second handler: the direct path needs it gone
    try:
        configure_logging("INFO", json_logs=True)
        ours = next(h for h in root.handlers if getattr(h, "_reelforge", False))
        assert isinstance(ours, logging.StreamHandler)
        others = [h for h in root.handlers if h is not ours]
        for h in others:
            root.removeHandler(h)
        stream = io.StringIO()
        ours.setStream(stream)
        logger = logging.getLogger("reelforge.access")
        access = AccessLog(logger)
        token = request_id_var.set("r" * 32)
        try:
            assert access._direct() is ours
            access.write("GET", "/v1/jobs/x", 200, 0.00123, "acct")
            logger.addFilter(lambda record: True)  # a filter on the way: the record must go through logging
            assert access._direct() is None
            access.write("GET", "/v1/jobs/x", 200, 0.00123, "acct")
            logger.filters.clear()
        finally:
            request_id_var.reset(token)
        direct, through = (json.loads(line) for line in stream.getvalue().splitlines())
        assert abs(direct.pop("ts") - through.pop("ts")) < 5
        assert direct == through == {
            "level": "info", "logger": "reelforge.access", "msg": "GET /v1/jobs/x 200 1.2ms", "request_id": "r" * 32,
            "account_id": "acct", "duration_ms": 1.23, "method": "GET", "path": "/v1/jobs/x", "status": 200}
        # Another handler (a test's capture, a file of the operator's): records go through logging.
        extra = logging.StreamHandler(io.StringIO())
        root.addHandler(extra)
        assert access._direct() is None
        access.write("GET", "/v1/jobs/y", 404, 0.001, None)
        assert "/v1/jobs/y 404" in extra.stream.getvalue()
        root.removeHandler(extra)
        for h in others:
            root.addHandler(h)
    finally:
        for h in list(root.handlers):
            if getattr(h, "_reelforge", False):
                root.removeHandler(h)
        for h in saved[0]:
            if h not in root.handlers:
                root.addHandler(h)
        root.setLevel(saved[1])


def test_access_lines_are_written_in_batches_in_order(caplog: Any) -> None:
    """On an event loop the direct lines wait for one write: nothing reaches the stream until the batch is flushed
    (by its timer, a full batch, or a record that goes through logging), and then every line, in order."""
    import asyncio
    import io
    import json
    import logging

    from reelforge.observability import AccessLog, configure_logging

    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    root.removeHandler(caplog.handler)
    try:
        configure_logging("INFO", json_logs=True)
        for h in [h for h in root.handlers if not getattr(h, "_reelforge", False)]:
            root.removeHandler(h)
        ours = next(h for h in root.handlers if getattr(h, "_reelforge", False))
        stream = io.StringIO()
        ours.setStream(stream)  # type: ignore[attr-defined]
        access = AccessLog(logging.getLogger("reelforge.access"))

        async def run() -> None:
            for i in range(3):
                access.write("GET", f"/v1/jobs/{i}", 200, 0.001, None)
            assert stream.getvalue() == ""  # batched: no write yet
            await asyncio.sleep(access.DELAY_S * 3)  # the scheduled flush
            assert [json.loads(x)["path"] for x in stream.getvalue().splitlines()] == [f"/v1/jobs/{i}" for i in range(3)]
            for i in range(access.BATCH):  # a full batch goes out at once
                access.write("GET", f"/v1/b/{i}", 200, 0.001, None)
            assert len(stream.getvalue().splitlines()) == 3 + access.BATCH

        asyncio.run(run())
    finally:
        for h in list(root.handlers):
            if getattr(h, "_reelforge", False):
                root.removeHandler(h)
        for h in saved[0]:
            if h not in root.handlers:
                root.addHandler(h)
        root.setLevel(saved[1])


def test_api_startup_freezes_the_objects_built_so_far(tmp_path: Any) -> None:
    import gc

    from fastapi.testclient import TestClient

    from reelforge.api.app import create_app
    from tests.conftest import make_settings

    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    try:
        with TestClient(create_app(make_settings(tmp_path, f"sqlite:///{tmp_path}/db.sqlite3"))):
            assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
