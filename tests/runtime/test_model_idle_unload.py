"""A worker unloads a model nobody used for `models.idle_unload_s`, reports the memory that gave back (the process's
resident set before and after), and loads it again on the next use: the design's "endpoint shutdown after
processing" for a worker that keeps its models in memory."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_settings, wait_for
from tests.fixtures.tiny_model import NAME, TASK, TinyProjection

KEY = f"{TASK}/{NAME}"


@pytest.fixture
def settings(tmp_path: Path, sqlite_url: str) -> Any:
    return make_settings(tmp_path, sqlite_url, extra_pipelines=["tests.fixtures.tiny_model"],
                         models={"idle_unload_s": 0.5})


@pytest.fixture
def owner(container: Any) -> Any:
    from reelforge.domain.types import Principal, Role

    u = container.auth.register("idle@example.com", "correct horse battery")
    return Principal(user_id=u.id, email=u.email, role=Role.user)


def _run(container: Any, owner: Any) -> Any:
    job, _ = container.jobs.submit(owner, "test.project", {"x": [1.0, 2.0, 3.0]})

    def done() -> Any:
        with container.store.tx(write=False) as tx:
            row = tx.jobs.job(job.id)
        return row if row is not None and row.status in ("succeeded", "failed", "dead") else None

    row = wait_for(done, timeout=30, interval=0.05)
    assert row.status == "succeeded", row.error_message
    return row


def test_idle_model_is_unloaded_and_reloaded(container: Any, owner: Any, caplog: pytest.LogCaptureFixture) -> None:
    from reelforge.runtime.worker import Worker

    model = TinyProjection()
    container.models.register(model)
    w = Worker(container, concurrency=1)
    w.start()
    caplog.set_level(logging.INFO, logger="reelforge.worker")
    try:
        first = _run(container, owner)
        assert model.setups == 1 and container.models.stats()[KEY]["loaded"]
        unload = wait_for(lambda: w.unloads and w.unloads[0], timeout=10, interval=0.05)
        assert model.teardowns == 1 and model.weights is None
        stats = container.models.stats()[KEY]
        assert not stats["loaded"] and stats["unloads"] == 1
        # the 64 MiB of weights came back to the system (RSS before minus after), and the figure was logged
        assert unload["model"] == KEY and unload["idle_s"] >= 0.5
        assert unload["rss_before"] - unload["rss_after"] == unload["freed_bytes"] >= 48 * 2**20
        assert stats["freed_bytes_total"] == unload["freed_bytes"]
        assert any("unloaded model test.project/tiny-projection" in r.getMessage() and "MiB freed" in r.getMessage()
                   for r in caplog.records)
        # the next job loads it again, with the same answer
        second = _run(container, owner)
        assert model.setups == 2 and container.models.stats()[KEY]["loads"] == 2
        assert second.outputs == first.outputs
    finally:
        w.stop(grace_s=2)


def test_running_or_recent_models_are_kept(container: Any) -> None:
    import threading

    class Slow(TinyProjection):
        def __init__(self) -> None:
            super().__init__()
            self.go = threading.Event()
            self.entered = threading.Event()

        def run(self, request: Any, **kw: Any) -> Any:
            self.entered.set()
            self.go.wait(10)
            return super().run(request, **kw)

    class NoTeardown:
        name, task, description, test_model = "kept", TASK, "no teardown", True

        def availability(self) -> Any:
            from reelforge.ports.models import Availability

            return Availability(True)

        def setup(self) -> None:
            pass

        def run(self, request: Any, **kw: Any) -> Any:
            return request

    registry = container.models
    model = Slow()
    registry.register(model)
    registry.register(NoTeardown())
    registry.ensure_ready(TASK, "kept")
    t = threading.Thread(target=registry.run, args=(TASK, NAME, [1.0]))
    t.start()
    assert model.entered.wait(10)
    # a model in the middle of a run is kept however long ago it was set up, and one without teardown() always
    assert registry.unload_idle(0.0) == []
    model.go.set()
    t.join(10)
    assert registry.unload_idle(60.0) == []  # used just now
    done = registry.unload_idle(0.0)
    assert [u["model"] for u in done] == [KEY] and model.teardowns == 1
    assert registry.stats()[f"{TASK}/kept"]["loaded"]


def test_real_esrgan_gives_its_weights_back(container: Any) -> None:
    import numpy as np

    from reelforge.apps.upscale.image_pipeline import TASK as UPSCALE
    from reelforge.apps.upscale.ports import UpscaleRequest

    registry = container.models
    name = "realesr-animevideov3"
    if not registry.info(UPSCALE, name).available:
        pytest.skip(registry.info(UPSCALE, name).reason)
    frame = np.zeros((16, 16, 3), dtype=np.uint8)
    first = registry.run(UPSCALE, name, UpscaleRequest(images=[frame], scale=2))
    adapter = registry.get(UPSCALE, name)
    assert adapter._runners
    done = registry.unload_idle(0.0)
    assert [u["model"] for u in done] == [f"{UPSCALE}/{name}"] and adapter._runners == {}
    again = registry.run(UPSCALE, name, UpscaleRequest(images=[frame], scale=2))
    assert registry.stats()[f"{UPSCALE}/{name}"]["loads"] == 2
    assert np.array_equal(np.asarray(first.images[0]), np.asarray(again.images[0]))
