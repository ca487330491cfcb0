"""Models are loaded when a worker starts (application hook `on_worker_start`), where settings allow."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.conftest import make_settings


def test_worker_runs_each_applications_start_hook_in_a_thread() -> None:
    from reelforge.applications import AppManifest
    from reelforge.runtime.worker import Worker

    seen: list[Any] = []

    def boom(_c: Any) -> None:
        raise RuntimeError("a failing hook is logged, not raised")

    fake = SimpleNamespace(apps=(AppManifest(name="one", title="One", on_worker_start=seen.append),
                                 AppManifest(name="two", title="Two"),
                                 AppManifest(name="three", title="Three", on_worker_start=boom)))
    stub = SimpleNamespace(c=fake, start_hooks=[])
    Worker._start_hooks(stub)  # type: ignore[arg-type]
    for t in stub.start_hooks:
        t.join(10)
    assert seen == [fake] and len(stub.start_hooks) == 2


@pytest.mark.parametrize("preload", [True, False])
def test_worker_start_loads_the_local_video_models(tmp_path: Path, sqlite_url: str, preload: bool) -> None:
    from reelforge.container import Container
    from reelforge.runtime.worker import Worker

    c = Container(make_settings(tmp_path, sqlite_url, mobs={"preload_models": preload}))
    try:
        c.migrate()
        reason = c.models.info("video.participation", "local").reason or c.models.info("video.embed", "local").reason
        if reason:
            pytest.skip(f"local video models unavailable: {reason}")
        w = Worker(c, concurrency=1)
        w.start()
        try:
            for t in w.start_hooks:
                t.join(600)
        finally:
            w.stop(grace_s=2)
        stats = c.models.stats()
        loaded = [stats[k]["loaded"] for k in ("video.participation/local", "video.embed/local")]
        assert loaded == [preload, preload], stats
    finally:
        c.close()
