"""The queue as scaling policies read it: ready jobs, the oldest one's wait and running jobs, per job kind and per
resource class (a kind is `gpu` when any task of its graph asks for a GPU), in services/queue_metrics.py and on
/metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import UserHandle, make_settings

SCRAPE_TOKEN = "prometheus-scrape-token-0123456789"


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Any:
    return make_settings(tmp_path, db_url, extra_pipelines=["tests.fixtures.resource_pipelines"],
                         metrics={"db_lag_s": 0, "scrape_token": SCRAPE_TOKEN})


def test_resource_class_comes_from_every_task(container: Any) -> None:
    assert container.pipelines.get("test.gpu").resource_class == "gpu"
    assert container.pipelines.get("test.cpu").resource_class == "cpu"
    assert container.pipelines.get("system.noop").resource_class == "cpu"


def test_figures_per_kind_and_class(client: Any, alice: UserHandle, container: Any) -> None:
    idle = container.queue_metrics.figures()
    assert idle.by_kind == {}
    assert {c: (f.depth, f.running) for c, f in idle.by_class.items()} == {"cpu": (0, 0), "gpu": (0, 0)}

    for kind in ("test.gpu", "test.gpu", "test.gpu", "test.cpu"):
        assert alice.post("/v1/jobs", json={"kind": kind, "input": {}}).status_code == 202
    with container.store.tx() as tx:  # a worker takes one GPU job
        claimed = tx.jobs.claim_job("w-test", 60.0, kinds=["test.gpu"])
    assert claimed is not None

    figures = container.queue_metrics.figures()
    assert (figures.by_kind["test.gpu"].depth, figures.by_kind["test.gpu"].running) == (2, 1)
    assert (figures.by_kind["test.cpu"].depth, figures.by_kind["test.cpu"].running) == (1, 0)
    assert figures.kind_class == {"test.cpu": "cpu", "test.gpu": "gpu"}
    assert (figures.by_class["gpu"].depth, figures.by_class["gpu"].running) == (2, 1)
    assert (figures.by_class["cpu"].depth, figures.by_class["cpu"].running) == (1, 0)
    assert figures.by_class["gpu"].oldest_age_s >= 0.0


def test_figures_on_metrics(client: Any, alice: UserHandle) -> None:
    for kind in ("test.gpu", "test.cpu", "test.cpu"):
        assert alice.post("/v1/jobs", json={"kind": kind, "input": {}}).status_code == 202
    text = client.get("/metrics", headers={"Authorization": f"Bearer {SCRAPE_TOKEN}"}).text
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for fam in text_string_to_metric_families(text) for s in fam.samples}
    assert samples[("reelforge_queue_ready", (("kind", "test.cpu"), ("resource_class", "cpu")))] == 2
    assert samples[("reelforge_queue_ready", (("kind", "test.gpu"), ("resource_class", "gpu")))] == 1
    assert samples[("reelforge_queue_ready_by_class", (("resource_class", "gpu"),))] == 1
    assert samples[("reelforge_jobs_running_by_class", (("resource_class", "cpu"),))] == 0
    assert ("reelforge_queue_ready_age_by_class_seconds", (("resource_class", "cpu"),)) in samples
