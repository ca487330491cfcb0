"""A step's last progress report reaches the job even when the worker's spacing of progress writes (one per
0.5 s) held it back: the step's checkpoint writes it. Before, a short step's last word (the running frame rate of
an upscale chunk, say) could be lost, and a client watching saw only an older report until the next one."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import make_settings, register, wait_for


@pytest.fixture
def env(tmp_path: Any, db_url: str) -> Iterator[tuple[Any, Any]]:
    from fastapi.testclient import TestClient

    from reelforge.api.app import create_app
    from reelforge.container import Container
    from reelforge.runtime.worker import Worker
    from tests.fixtures import progress_pipelines

    progress_pipelines.GATE.clear()
    c = Container(make_settings(tmp_path, db_url, extra_pipelines=["tests.fixtures.progress_pipelines"]))
    w = Worker(c, concurrency=1)
    w.start()
    try:
        with TestClient(create_app(container=c)) as client:
            yield client, c
    finally:
        progress_pipelines.GATE.set()
        w.stop(grace_s=5)
        c.close()


def test_the_last_report_of_a_step_is_written_with_its_checkpoint(env: tuple[Any, Any]) -> None:
    from tests.fixtures import progress_pipelines

    client, _ = env
    user = register(client, "watcher@example.com")
    job = user.post("/v1/jobs", json={"kind": "test.progress", "input": {}}).json()

    def shown() -> dict[str, Any] | None:
        j = user.get(f"/v1/jobs/{job['id']}").json()
        return j if j["progress"]["message"] == "first: done, 12 frames per second" else None

    seen = wait_for(shown, timeout=10)
    # ...while the second step still waits: the report came with the first step's checkpoint, not a later write
    assert seen["status"] == "running" and seen["progress"]["fraction"] == pytest.approx(0.4)
    assert not progress_pipelines.GATE.is_set()
    progress_pipelines.GATE.set()
    done = wait_for(lambda: (j := user.get(f"/v1/jobs/{job['id']}").json())["status"] == "succeeded" and j,
                    timeout=20)
    assert done["progress"]["fraction"] == 1.0
