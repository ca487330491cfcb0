"""A cancel stops a long model call within one unit of its work, not at the worker's next heartbeat.

The worker's heartbeat (which also reads the cancel flag) is set far apart here, so only the steps' own
cancellation checks (ctx.stopping() / ctx.check_cancelled(), handed to the adapters as their `cancelled`
probe) can see the owner's cancel in time. Each unit of work (a denoising step of the tiny diffusion model, a
tile of the Real-ESRGAN upscaler) is made to last longer than the flag's read interval, as a 1024x1024
step of a real model does; the cancel is requested through the job service, as `POST /v1/jobs/{id}/cancel`
does, in the middle of one unit.
"""

from __future__ import annotations

import io
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_settings, wait_for

UNIT_S = 0.35  # longer than jobs.cancel_poll_s (0.25)


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Any:
    return make_settings(tmp_path, db_url, jobs={"heartbeat_s": 30, "lease_s": 120},
                         upscale={"tile": 32})


@pytest.fixture
def owner(container: Any) -> Any:
    from reelforge.domain.types import Principal, Role

    u = container.auth.register("canceller@example.com", "correct horse battery")
    return Principal(user_id=u.id, email=u.email, role=Role.user)


@pytest.fixture
def worker(container: Any) -> Iterator[Any]:
    from reelforge.runtime.worker import Worker

    w = Worker(container, concurrency=1)
    w.start()
    yield w
    w.stop(grace_s=5)


def _status(container: Any, job_id: str) -> str:
    with container.store.tx(write=False) as tx:
        return str(tx.jobs.job(job_id).status)


def _wait_end(container: Any, job_id: str, timeout: float = 120) -> str:
    return str(wait_for(lambda: (s := _status(container, job_id)) in ("succeeded", "failed", "dead", "cancelled")
                        and s, timeout=timeout, interval=0.05))


def test_image_generation_stops_within_one_denoising_step(container: Any, owner: Any, worker: Any) -> None:
    job, _ = container.jobs.submit(owner, "image.generate", {
        "prompt": "a red circle", "width": 64, "height": 64, "steps": 40, "seed": 7, "num_images": 1,
        "model": "tiny-sd"})
    steps: list[int] = []
    cancelled_at: list[int] = []
    report = worker._progress

    def progress(run: Any, fraction: float, message: str) -> None:
        report(run, fraction, message)
        m = re.match(r"step (\d+)/", message)
        if not m:
            return
        steps.append(int(m.group(1)))
        if int(m.group(1)) == 3 and not cancelled_at:
            container.jobs.cancel(owner, job.id)
            cancelled_at.append(3)
        time.sleep(UNIT_S)  # a long step: the one in which the cancel arrives

    worker._progress = progress
    t0 = time.monotonic()
    assert _wait_end(container, job.id) == "cancelled"
    assert cancelled_at == [3]
    # The step during which the cancel came is the last one: its end-of-step check sees it (one more at most).
    assert max(steps) <= 4, steps
    assert time.monotonic() - t0 < 30
    with container.store.tx(write=False) as tx:
        done = tx.jobs.job(job.id)
    assert done.credits_state == "refunded"


class _SlowTiles:
    """The worker's model registry with every cancellation check of the upscaler taking UNIT_S (a long tile):
    the cancel is requested during the third check; counts the checks that pass after it."""

    def __init__(self, inner: Any, cancel: Any) -> None:
        self.inner = inner
        self.cancel = cancel
        self.checks = 0
        self.after = 0
        self.sent = False
        self.lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def run(self, task: str, name: str, request: Any, **kw: Any) -> Any:
        probe = kw.get("cancelled")

        def cancelled() -> bool:
            with self.lock:
                self.checks += 1
                if self.checks == 3:
                    self.cancel()
                    self.sent = True
                sent = self.sent
            time.sleep(UNIT_S)
            stop = bool(probe and probe())
            if sent and not stop:
                with self.lock:
                    self.after += 1
            return stop

        return self.inner.run(task, name, request, **{**kw, "cancelled": cancelled})


def test_upscaling_stops_within_one_tile(container: Any, owner: Any, worker: Any, tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image

    from reelforge.domain.keys import new_key

    buf = io.BytesIO()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (128, 128, 3), dtype=np.uint8), "RGB").save(buf, format="PNG")
    key = new_key(f"{owner.user_id}/uploads", ".png")
    info = container.objects.put_bytes(key, buf.getvalue(), "image/png")
    with container.store.tx() as tx:
        asset = tx.assets.add_asset(owner_id=owner.user_id, key=key, content_type="image/png", size=info.size,
                                    sha256=info.sha256, lifecycle="hot", filename="noise.png", meta={})
    ids: list[str] = []
    slow = _SlowTiles(worker.services.models, lambda: container.jobs.cancel(owner, ids[0]))
    worker.services.models = slow
    job, _ = container.jobs.submit(owner, "image.upscale", {"asset_id": asset.id, "model": "realesr-animevideov3",
                                                            "scale": 2})
    ids.append(job.id)
    assert _wait_end(container, job.id) == "cancelled"
    # 128x128 in 32-pixel tiles is 16 of them; the check after the one the cancel came in stops the run.
    assert slow.sent and slow.after == 0, (slow.checks, slow.after)
    assert slow.checks <= 4
