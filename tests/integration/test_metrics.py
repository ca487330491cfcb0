"""/metrics carries the workers' figures: step and job durations, model runs, units and load time, webhook
delivery outcomes and credits. The API here runs on its own container (as in production, another process):
it shares nothing with the worker's but the database, which is where these figures come from."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import UserHandle, make_settings, wait_for
from tests.fixtures.hashing import fast_password_hashing  # noqa: F401
from tests.fixtures.receiver import Receiver, running_receiver
from tests.integration.obs_pipelines import FAIL_PRICE

NOOP = {"kind": "system.noop", "input": {"echo": 1}}
IMAGE = {"kind": "image.generate", "input": {"prompt": "two dots", "width": 64, "height": 64, "steps": 2,
                                             "seed": 3, "num_images": 2, "model": "tiny-sd"}}
FAIL = {"kind": "test.fail", "input": {}}
SCRAPE_TOKEN = "prometheus-scrape-token-0123456789"  # as Prometheus scrapes: a bearer token, no account


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Any:
    return make_settings(tmp_path, db_url, extra_pipelines=["tests.integration.obs_pipelines"],
                         metrics={"db_lag_s": 0, "scrape_token": SCRAPE_TOKEN},
                         webhooks={"allow_private_targets": True, "retry_base_s": 0.05})


@pytest.fixture
def api_container(settings: Any) -> Iterator[Any]:
    from reelforge.container import Container

    c = Container(settings)
    yield c
    c.close()


@pytest.fixture
def app(api_container: Any) -> Any:
    from reelforge.api.app import create_app

    return create_app(container=api_container)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    yield from running_receiver()


def run_job(user: UserHandle, body: dict[str, Any]) -> dict[str, Any]:
    """Submit and wait for the end (the first tiny-sd run of a process loads torch and diffusers: slow)."""
    job: dict[str, Any] = user.post("/v1/jobs", json=body, params={"wait": 60}).json()
    if job["status"] in ("queued", "running"):
        job = wait_for(lambda: (j := user.get(f"/v1/jobs/{job['id']}").json())["status"] not in
                       ("queued", "running") and j, timeout=180)
    return job


def scrape(client: Any) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    r = client.get("/metrics", headers={"Authorization": f"Bearer {SCRAPE_TOKEN}"})
    assert r.status_code == 200
    out = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(samples: dict[Any, float], name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def test_worker_figures_reach_metrics(client: Any, api_container: Any, container: Any, alice: UserHandle,
                                      receiver: Receiver, worker: Any) -> None:
    assert api_container is not container
    hook = alice.post("/v1/webhooks", json={"url": receiver.url(), "event_types": ["job.*"]})
    assert hook.status_code == 201, hook.text
    for body, status in ((NOOP, "succeeded"), (NOOP, "succeeded"), (IMAGE, "succeeded"), (FAIL, "failed")):
        job = run_job(alice, body)
        assert job["status"] == status, job
    receiver.wait_for(count=4)

    def delivered() -> bool:
        with container.store.tx(write=False) as tx:
            return dict((s, n) for s, n in tx.alarms.delivery_stats()).get("delivered") == 4
    wait_for(delivered)

    m = scrape(client)
    step = "reelforge_step_duration_seconds_count"
    assert value(m, step, kind="system.noop", step="noop", outcome="succeeded") == 2
    assert value(m, step, kind="test.fail", step="prepare", outcome="succeeded") == 1
    assert value(m, step, kind="test.fail", step="boom", outcome="failed") == 1
    for name in ("validate", "generate", "store"):
        assert value(m, step, kind="image.generate", step=name, outcome="succeeded") == 1
    # The generate step took at least as long as the model run inside it.
    gen = value(m, "reelforge_step_duration_seconds_sum", kind="image.generate", step="generate", outcome="succeeded")
    run = value(m, "reelforge_model_invocation_seconds_sum", task="image.generate", model="tiny-sd")
    assert gen is not None and run is not None and 0 < run <= gen
    le_inf = value(m, "reelforge_step_duration_seconds_bucket", kind="system.noop", step="noop",
                   outcome="succeeded", le="+Inf")
    assert le_inf == 2

    job = "reelforge_job_duration_seconds_count"
    assert value(m, job, kind="system.noop", status="succeeded") == 2
    assert value(m, job, kind="image.generate", status="succeeded") == 1
    assert value(m, job, kind="test.fail", status="failed") == 1
    assert value(m, "reelforge_job_latency_seconds_count", kind="system.noop", status="succeeded") == 2
    assert value(m, "reelforge_jobs_finished_total", kind="test.fail", status="failed") == 1

    assert value(m, "reelforge_model_invocations_total", task="image.generate", model="tiny-sd", outcome="ok") == 1
    assert value(m, "reelforge_model_units_total", task="image.generate", model="tiny-sd", unit="images") == 2
    assert value(m, "reelforge_model_load_seconds_count", task="image.generate", model="tiny-sd") == 1
    assert (value(m, "reelforge_model_load_seconds_sum", task="image.generate", model="tiny-sd") or 0) > 0

    assert value(m, "reelforge_webhook_delivery_outcomes_total", outcome="delivered") == 4
    assert value(m, "reelforge_webhook_delivery_outcomes_total", outcome="failed") == 0
    assert value(m, "reelforge_webhook_delivery_attempts_total") == 4

    assert value(m, "reelforge_credits_spent_total", kind="image.generate") == 2
    assert value(m, "reelforge_credits_spent_total", kind="system.noop") is None  # free: no settle line
    assert value(m, "reelforge_credits_refunded_total", kind="test.fail") == FAIL_PRICE

    # Counters are read incrementally: a second scrape adds nothing that was not new.
    again = scrape(client)
    for key in ("reelforge_step_duration_seconds_count", "reelforge_model_units_total",
                "reelforge_credits_spent_total", "reelforge_job_duration_seconds_count"):
        assert {k: v for k, v in again.items() if k[0] == key} == {k: v for k, v in m.items() if k[0] == key}

    # One more job: only it is added.
    run_job(alice, NOOP)
    third = scrape(client)
    assert value(third, step, kind="system.noop", step="noop", outcome="succeeded") == 3


def test_model_errors_are_counted(client: Any, container: Any, alice: UserHandle, worker: Any,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    adapter = container.models.get("image.generate", "tiny-sd")

    def broken(*_a: Any, **_k: Any) -> Any:
        raise RuntimeError("CUDA out of memory (simulated)")
    monkeypatch.setattr(adapter, "run", broken)
    job = run_job(alice, IMAGE)
    assert job["status"] in ("failed", "dead") and job["error"]["code"] == "internal_error"
    m = scrape(client)
    errors = value(m, "reelforge_model_invocations_total", task="image.generate", model="tiny-sd", outcome="error")
    assert errors == job["attempt"] * 1  # one model run per attempt, every one failed
    assert value(m, "reelforge_model_invocations_total", task="image.generate", model="tiny-sd", outcome="ok") is None
