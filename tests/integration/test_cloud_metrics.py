"""The queue per job kind and resource class, and the alarm rules' values, published with CloudWatch
PutMetricData to a server that speaks its protocol (moto's ThreadedMotoServer), read back with list_metrics and
get_metric_statistics as a scaling policy would read them."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

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
from tests.conftest import UserHandle, make_settings, wait_for
from tests.fixtures.moto_server import MotoServer, aws_credentials, moto_server  # noqa: F401

# The publisher takes boto3's default credential chain, as it does on AWS (a task or instance role).
pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("aws_credentials")]
DEPLOYMENT = ("Deployment", "test")


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture
def namespace() -> str:
    return f"Reelforge-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def settings(tmp_path: Path, db_url: str, moto_server: MotoServer, namespace: str) -> Any:  # noqa: F811
    return make_settings(tmp_path, db_url, extra_pipelines=["tests.fixtures.resource_pipelines"],
                         metrics={"cloudwatch": {"enabled": True, "endpoint_url": moto_server.endpoint_url,
                                                 "namespace": namespace, "interval_s": 3600,
                                                 "dimensions": dict([DEPLOYMENT])}})


def statistic(cw: Any, namespace: str, name: str, *dims: tuple[str, str]) -> float | None:
    now = datetime.now(UTC)
    points = cw.get_metric_statistics(
        Namespace=namespace, MetricName=name, Dimensions=[{"Name": n, "Value": v} for n, v in (*dims, DEPLOYMENT)],
        StartTime=now - timedelta(minutes=10), EndTime=now + timedelta(minutes=10), Period=60,
        Statistics=["Maximum"])["Datapoints"]
    return max(p["Maximum"] for p in points) if points else None


def test_publishes_queue_and_alarm_values(client: Any, alice: UserHandle, container: Any, namespace: str,
                                          moto_server: MotoServer) -> None:  # noqa: F811
    for kind in ("test.gpu", "test.gpu", "test.gpu", "test.cpu"):
        assert alice.post("/v1/jobs", json={"kind": kind, "input": {}}).status_code == 202
    with container.store.tx() as tx:
        assert tx.jobs.claim_job("w-test", 60.0, kinds=["test.gpu"]) is not None
    container.alarms.evaluate()  # the queue_age rule observes the oldest due job
    with container.store.tx() as tx:  # two models' error rates, as an evaluation of their runs leaves them
        for model, rate in (("image.generate/tiny-sd", 0.25), ("image.upscale/lanczos", 0.5)):
            tx.alarms.save_alarm(f"model_error_rate:{model}", rule="model_error_rate", state="ok", value=rate,
                                 threshold=0.1, message="", details={}, evaluated_at=tx.now(), changed_at=tx.now())

    publisher = container.cloud_metrics
    assert publisher.tick("runner-a") is True
    assert publisher.tick("runner-b") is False  # one publisher per interval
    assert publisher.status()["failures"] == 0 and publisher.published > 0

    cw = moto_server.client("cloudwatch")
    listed = {(m["MetricName"], tuple(sorted((d["Name"], d["Value"]) for d in m["Dimensions"])))
              for page in cw.get_paginator("list_metrics").paginate(Namespace=namespace) for m in page["Metrics"]}
    for name in (QUEUE_DEPTH, QUEUE_AGE, RUNNING):
        for dim in ((DIM_KIND, "test.gpu"), (DIM_KIND, "test.cpu"), (DIM_KIND, "system.noop"),
                    (DIM_RESOURCE, "cpu"), (DIM_RESOURCE, "gpu")):
            assert (name, tuple(sorted((dim, DEPLOYMENT)))) in listed, (name, dim)
    assert statistic(cw, namespace, QUEUE_DEPTH, (DIM_KIND, "test.gpu")) == 2
    assert statistic(cw, namespace, RUNNING, (DIM_KIND, "test.gpu")) == 1
    assert statistic(cw, namespace, QUEUE_DEPTH, (DIM_KIND, "test.cpu")) == 1
    assert statistic(cw, namespace, QUEUE_DEPTH, (DIM_KIND, "system.noop")) == 0  # idle kinds publish zeros
    assert statistic(cw, namespace, QUEUE_DEPTH, (DIM_RESOURCE, "gpu")) == 2
    assert statistic(cw, namespace, RUNNING, (DIM_RESOURCE, "gpu")) == 1
    assert statistic(cw, namespace, QUEUE_DEPTH, (DIM_RESOURCE, "cpu")) == 1
    assert statistic(cw, namespace, QUEUE_AGE, (DIM_RESOURCE, "gpu")) >= 0  # type: ignore[operator]

    queue_age = statistic(cw, namespace, ALARM_VALUE, (DIM_RULE, "queue_age"))
    assert queue_age is not None and queue_age >= 0
    assert statistic(cw, namespace, ALARM_VALUE, (DIM_RULE, "model_error_rate"),
                     (DIM_MODEL, "image.generate/tiny-sd")) == 0.25
    assert statistic(cw, namespace, ALARM_VALUE, (DIM_RULE, "model_error_rate")) == 0.5  # the largest
    # No job ended and no worker ever reported: those rules have no value, so nothing is published for them.
    assert statistic(cw, namespace, ALARM_VALUE, (DIM_RULE, "job_failure_rate")) is None
    assert statistic(cw, namespace, ALARM_VALUE, (DIM_RULE, "worker_heartbeat")) is None


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_an_api_process_publishes_without_workers(tmp_path: Path, db_url: str, moto_server: MotoServer,  # noqa: F811
                                                  namespace: str) -> None:
    from fastapi.testclient import TestClient

    from reelforge.api.app import create_app
    from reelforge.container import Container

    settings = make_settings(tmp_path, db_url, metrics={"cloudwatch": {
        "enabled": True, "endpoint_url": moto_server.endpoint_url, "namespace": namespace, "interval_s": 1,
        "dimensions": dict([DEPLOYMENT])}})
    c = Container(settings)
    try:
        with TestClient(create_app(container=c)):
            wait_for(lambda: c.cloud_metrics.published > 0, timeout=20)
        cw = moto_server.client("cloudwatch")
        assert statistic(cw, namespace, QUEUE_DEPTH, (DIM_RESOURCE, "gpu")) == 0
    finally:
        c.close()


@pytest.mark.parametrize("dimensions", [{"JobKind": "x"}, {"": "x"}, {"Deployment": ""},
                                        {f"D{i}": "x" for i in range(9)}])
def test_extra_dimensions_are_checked(tmp_path: Path, dimensions: dict[str, str]) -> None:
    from pydantic import ValidationError

    from reelforge.config import Settings

    with pytest.raises(ValidationError, match=r"metrics\.cloudwatch\.dimensions"):
        Settings(data_dir=tmp_path, metrics={"cloudwatch": {"dimensions": dimensions}})


def test_off_by_default(tmp_path: Path) -> None:
    from reelforge.config import Settings
    from reelforge.container import Container
    from reelforge.runtime.maintenance import Maintenance

    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}")
    assert Settings(data_dir=tmp_path).metrics.cloudwatch.enabled is False
    c = Container(settings)
    try:
        Maintenance(c, "w-1", stopping=threading.Event(), wake=threading.Event()).publish_metrics()
        assert "cloud_metrics" not in c.__dict__  # nothing built, nothing scheduled
        assert c.cloud_metrics.sink is None and c.cloud_metrics.tick("w-1") is False
        assert c.cloud_metrics.namespace == METRIC_NAMESPACE
    finally:
        c.close()


def test_a_down_endpoint_does_not_break_the_tick(tmp_path: Path, db_url: str) -> None:
    from reelforge.container import Container
    from reelforge.runtime.maintenance import Maintenance

    settings = make_settings(tmp_path, db_url, metrics={"cloudwatch": {
        "enabled": True, "endpoint_url": closed_port_url(), "interval_s": 3600, "timeout_s": 2}})
    c = Container(settings)
    c.migrate()
    try:
        seen: list[str] = []
        c.ticks = lambda: [__import__("reelforge.applications", fromlist=["Tick"]).Tick(
            "test.after", lambda container, wid: seen.append(wid))]
        started = time.monotonic()
        Maintenance(c, "w-1", stopping=threading.Event(), wake=threading.Event()).run_once()
        assert time.monotonic() - started < 20
        status = c.cloud_metrics.status()
        assert status["failures"] == 1 and status["published"] == 0 and "Connect" in status["last_error"]
        assert b"reelforge_cloud_metrics_failures_total 1.0" in c.metrics.render()  # counted on /metrics
        assert seen == ["w-1"]  # the registered ticks ran after it
        assert c.cloud_metrics.tick("w-1") is False  # the interval was taken: no retry storm
    finally:
        c.close()


def test_put_is_chunked_at_the_api_limit(moto_server: MotoServer, namespace: str) -> None:  # noqa: F811
    from reelforge.adapters.metrics.cloudwatch import CloudWatchSink
    from reelforge.ports.metrics import Datum

    sink = CloudWatchSink("us-east-1", moto_server.endpoint_url)
    sizes: list[int] = []
    sink.client.meta.events.register("provide-client-params.cloudwatch.PutMetricData",
                                     lambda params, **_: sizes.append(len(params["MetricData"])))
    datums = [Datum(QUEUE_DEPTH, float(i), "Count", ((DIM_KIND, f"k{i}"),)) for i in range(2001)]
    assert sink.put(namespace, datums, time.time()) == 3
    assert sizes == [1000, 1000, 1]
    cw = moto_server.client("cloudwatch")
    count = sum(len(page["Metrics"]) for page in cw.get_paginator("list_metrics").paginate(Namespace=namespace))
    assert count == 2001
