"""The Ray executor on a local Ray cluster (one per module: it takes ~7 s and ~0.6 GB to start).

Steps run as Ray tasks with the resources they declare, map items fan out as separate tasks, the model of a real
pipeline (video upscale with Real-ESRGAN) lives in one actor that keeps its weights between chunks and jobs, and a
Ray worker process killed mid-step is handled by the platform's own retries and checkpoints.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import UserHandle, make_settings, register, wait_for

pytestmark = pytest.mark.timeout(300)

RAY = {"num_cpus": 2, "num_gpus": 1, "signal_interval_s": 0.1}


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    if os.environ.get("CI") != "true":
        pytest.importorskip("ray", reason="the ray extra is not installed")
    import ray

    from reelforge.runtime.ray_executor import ray_init

    s = make_settings(tmp_path_factory.mktemp("ray"), "sqlite:///unused.db", worker={"executor": "ray", "ray": RAY})
    ray_init(s)
    yield ray
    ray.shutdown()


@dataclass
class Env:
    container: Any
    worker: Any
    client: Any


@contextmanager
def ray_env(tmp_path: Path, db_url: str, **over: Any) -> Iterator[Env]:
    from fastapi.testclient import TestClient

    from reelforge.api.app import create_app
    from reelforge.container import Container
    from reelforge.runtime.worker import Worker

    settings = make_settings(tmp_path, db_url, worker={"executor": "ray", "ray": RAY},
                             extra_pipelines=["tests.fixtures.ray_pipelines"], **over)
    c = Container(settings)
    w = Worker(c, concurrency=1)
    w.start()
    try:
        with TestClient(create_app(container=c)) as client:
            yield Env(c, w, client)
    finally:
        w.stop(grace_s=5)
        w.executor.shutdown()
        c.close()


def wait_job(user: UserHandle, job_id: str, timeout: float = 120) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        job = user.get(f"/v1/jobs/{job_id}").json()
        return job if job["status"] in ("succeeded", "failed", "cancelled", "dead") else None

    return dict(wait_for(done, timeout=timeout, interval=0.1))


def runs(marks: Path) -> Counter[int]:
    return Counter(int(p.name.split("-")[0]) for p in marks.iterdir() if p.name[0].isdigit())


def test_map_items_run_as_ray_tasks_with_their_resources(ray_cluster: Any, tmp_path: Path, sqlite_url: str) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    with ray_env(tmp_path, sqlite_url) as env:
        user = register(env.client, "alice@example.com")
        r = user.post("/v1/jobs", json={"kind": "test.ray_fanout", "input": {"n": 4, "marks": str(marks)}})
        assert r.status_code == 202, r.text
        job = wait_job(user, r.json()["id"])
        assert job["status"] == "succeeded", job
        items = job["outputs"]["result"]
        assert [i["index"] for i in items] == [0, 1, 2, 3]
        # each item ran in a Ray worker process, not in the worker, with the CPU and memory its step declares
        assert all(i["pid"] != os.getpid() for i in items)
        assert all(i["assigned"].get("CPU") == 1.0 and i["assigned"].get("memory") == 64 * 2**20 for i in items)
        assert all(i["memory_mb"] == 64 for i in items)
        assert runs(marks) == {0: 1, 1: 1, 2: 1, 3: 1}
        # a step asking for more than the cluster has fails at once with resources_unavailable
        from reelforge.domain.pipeline import Resources

        assert not env.worker.executor.resources_ok(Resources(cpu=1, gpu=2))
        assert env.worker.executor.resources_ok(Resources(cpu=2, gpu=1))


def test_killed_ray_worker_is_retried_from_checkpoints(ray_cluster: Any, tmp_path: Path, sqlite_url: str) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    with ray_env(tmp_path, sqlite_url) as env:
        user = register(env.client, "alice@example.com")
        r = user.post("/v1/jobs", json={"kind": "test.ray_fanout", "input": {"n": 4, "marks": str(marks), "hold": 2}})
        assert r.status_code == 202, r.text
        pid_file = marks / "hold.pid"
        wait_for(lambda: pid_file.exists() and pid_file.read_text(), timeout=60)
        pid = int(pid_file.read_text())
        # progress reported inside the Ray tasks reached the job while it runs
        progress = wait_for(lambda: (p := user.get(f"/v1/jobs/{r.json()['id']}").json()["progress"])
                            and p.get("message") == "item 1 done" and p, timeout=10)
        assert progress["fraction"] == pytest.approx(2 / 5)
        assert pid != os.getpid()
        os.kill(pid, signal.SIGKILL)  # the Ray worker process running item 2
        job = wait_job(user, r.json()["id"])
        assert job["status"] == "succeeded", job
        # items 0 and 1 were checkpointed before the kill and never ran again; item 2 ran twice; 3 once
        assert runs(marks) == {0: 1, 1: 1, 2: 2, 3: 1}
        with env.container.store.tx(write=False) as tx:
            row = tx.jobs.job(job["id"])
        assert row is not None and row.failures == 1 and row.attempt == 2
        hist = user.get(f"/v1/jobs/{job['id']}/history").json()["events"]
        failed = [e for e in hist if e["type"] == "TaskFailed"]
        assert [e["path"] for e in failed] == ["items/item[2]/work"]
        assert failed[0]["details"]["error"] == "transient_error"
        skipped = {e["path"] for e in hist if e["type"] == "MapIterationSucceeded" and e["details"].get("skipped")}
        assert skipped == {"items/item[0]", "items/item[1]"}


def test_video_upscale_model_actor_keeps_weights(ray_cluster: Any, tmp_path: Path, sqlite_url: str) -> None:
    from reelforge.apps.upscale.image_pipeline import TASK
    from tests.fixtures.videos import make_testsrc
    from tests.integration.test_video_upscale import Env as UpEnv
    from tests.integration.test_video_upscale import upload

    src = make_testsrc(tmp_path / "clip.mp4", seconds=2.0, size=(64, 48))
    with ray_env(tmp_path, sqlite_url, upscale={"chunk_seconds": 1.0, "batch_size": 8}) as env:
        user = register(env.client, "alice@example.com")
        asset = upload(UpEnv(env.container, env.worker, env.client), user, src, "video/mp4")
        pids = []
        for _ in range(2):
            r = user.post("/v1/jobs", json={"kind": "video.upscale", "input": {
                "asset_id": asset["id"], "model": "realesr-animevideov3", "scale": 2,
                "output": {"preset": "ultrafast"}}})
            assert r.status_code == 202, r.text
            t0 = time.monotonic()
            job = wait_job(user, r.json()["id"], timeout=180)
            assert job["status"] == "succeeded", job
            assert job["outputs"]["chunk_count"] >= 2 and job["outputs"]["width"] == 128, time.monotonic() - t0
            stats = env.worker.executor.model_actor_stats(TASK, "realesr-animevideov3")
            pids.append(stats["pid"])
            # loaded once, in the actor, for every chunk of both jobs
            assert stats["loads"] == 1 and stats["loaded"] and stats["invocations"] >= 2
        assert pids[0] == pids[1] != os.getpid()
        # the worker process itself never loaded the model
        assert not env.container.models.stats()[f"{TASK}/realesr-animevideov3"]["loaded"]


def test_preemption_reaches_a_step_on_ray(ray_cluster: Any, tmp_path: Path, sqlite_url: str) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    with ray_env(tmp_path, sqlite_url) as env:
        user = register(env.client, "alice@example.com")
        r = user.post("/v1/jobs", json={"kind": "test.ray_fanout", "input": {"n": 3, "marks": str(marks), "hold": 1}})
        assert r.status_code == 202, r.text
        wait_for(lambda: (marks / "hold.pid").exists(), timeout=60)
        env.worker.preempt("test")
        assert env.worker.wait_handed_back(30)
        job_id = r.json()["id"]
        with env.container.store.tx(write=False) as tx:
            row = tx.jobs.job(job_id)
            events = list(tx.jobs.events(job_id))
        assert row is not None and row.status == "queued" and row.failures == 0
        assert [e.details for e in events if e.type == "JobReleased"] == [{"reason": "preempted"}]
        aborted = [e for e in events if e.type == "TaskAborted"]
        assert [e.path for e in aborted] == ["items/item[1]/work"]
        assert aborted[0].details.get("error") == "preempted"
        # item 0 finished on Ray before the notice and is checkpointed for the next worker
        with env.container.store.tx(write=False) as tx:
            assert tx.jobs.checkpoint(job_id, "items/item[0]") is not None
