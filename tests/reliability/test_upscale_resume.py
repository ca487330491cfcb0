"""A `video.upscale` job survives SIGKILL of its worker: the next worker resumes at the first chunk without a
stored output, finished chunks are never computed again, and the job succeeds once, charged once.

Real `reelforge worker` processes on the test's database and local store; the model is Real-ESRGAN
animevideov3 through ncnn (slow enough on CPU that the kill lands between chunks). The proof that finished
chunks are not recomputed is the model metering: every model run is a `model_invocations` row with its
worker and the frames it processed, so the second worker's rows must add up to no more than the frames of
the chunks that had no stored output when the first worker died.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.fixtures.videos import count_frames, make_testsrc
from tests.reliability.conftest import WorkerProcs, balance, job_record, wait_until

CHUNK_KIND = "video.upscale.chunk"


def _chunk_assets(container: Any, owner_id: str, job_id: str) -> dict[int, Any]:
    with container.store.tx(write=False) as tx:
        rows = tx.assets.assets(owner_id=owner_id, job_id=job_id, limit=1000)
    return {int(a.meta["index"]): a for a in rows if (a.meta or {}).get("kind") == CHUNK_KIND}


def _frames_by_worker(container: Any, job_id: str) -> dict[int, float]:
    from reelforge.adapters.db.models import ModelInvocation

    out: dict[int, float] = {}
    with container.store.tx(write=False) as tx:
        for worker_id, units in tx.s.execute(select(ModelInvocation.worker_id, ModelInvocation.units)
                                             .where(ModelInvocation.job_id == job_id)):
            pid = int(str(worker_id).split(":")[1])
            out[pid] = out.get(pid, 0.0) + float(units)
    return out


@pytest.mark.reliability
def test_sigkill_between_chunks_resumes_without_recomputing(container: Any, user: Any, procs: WorkerProcs,
                                                            tmp_path: Path) -> None:
    from reelforge.domain.keys import new_key

    src = make_testsrc(tmp_path / "clip.mp4", seconds=4.0, size=(96, 64))
    total = count_frames(src)
    data = src.read_bytes()
    key = new_key(f"{user.user_id}/uploads", ".mp4")
    info = container.objects.put_bytes(key, data, "video/mp4")
    with container.store.tx() as tx:
        asset = tx.assets.add_asset(owner_id=user.user_id, key=key, content_type="video/mp4", size=info.size,
                                    sha256=info.sha256, lifecycle="hot", filename="clip.mp4", meta={})
    grant = balance(container, user.user_id)
    job, _ = container.jobs.submit(user, "video.upscale", {
        "asset_id": asset.id, "model": "realesr-animevideov3", "scale": 2, "chunk_seconds": 1.0,
        "output": {"preset": "ultrafast"}})
    assert job.credits >= 1

    base_env = procs.env

    def env(n: int, **overrides: Any) -> dict[str, str]:
        return {**base_env(n, **overrides), "REELFORGE_UPSCALE__MAX_CHUNK_CONCURRENCY": "1",
                "REELFORGE_UPSCALE__BATCH_SIZE": "4", "REELFORGE_UPSCALE__CACHE_DIR": str(tmp_path / f"cache-{n}")}

    procs.env = env  # type: ignore[method-assign]
    first = procs.start(concurrency=1)
    def some_stored() -> dict[int, Any] | None:
        rec = job_record(container, job.id)
        assert rec.job.status in ("queued", "running"), (rec.job.status, rec.job.error_code, rec.job.error_message)
        found = _chunk_assets(container, user.user_id, job.id)
        # a chunk whose map item is checkpointed too: the next attempt skips it rather than finding its asset
        done = [i for i in found if f"chunks/item[{i}]" in rec.checkpoints]
        return found if done else None

    stored = wait_until(some_stored, 240, "a chunk stored and checkpointed by the first worker")
    procs.kill(first)
    before = _chunk_assets(container, user.user_id, job.id)
    assert len(before) >= len(stored) and len(before) < 4, "the kill must land before the last chunk"
    frames_left = total - sum(int(a.meta["frames"]) for a in before.values())

    second = procs.start(concurrency=1)
    wait_until(lambda: job_record(container, job.id).job.status in ("succeeded", "failed", "dead") or None, 240,
               "the job to end on the second worker")
    rec = job_record(container, job.id)
    assert rec.job.status == "succeeded", (rec.job.error_code, rec.job.error_message, procs.report())
    assert rec.job.outputs["frames"] == total and rec.job.outputs["chunk_count"] == 4
    assert rec.job.attempt >= 2 and rec.count("JobSucceeded") == 1
    assert balance(container, user.user_id) == grant - job.credits  # charged once

    # finished chunks were not computed again: the second worker upscaled only the frames that had no stored chunk
    by_worker = _frames_by_worker(container, job.id)
    assert by_worker.get(second.pid, 0.0) <= frames_left, (by_worker, frames_left)
    assert by_worker.get(first.pid, 0.0) >= total - frames_left
    # ...and the runner skipped them or the step found their assets
    resumed = [e for e in rec.events if e.attempt == rec.job.attempt]
    chunks = rec.job.outputs["chunks"]
    for index in before:
        path = f"chunks/item[{index}]/upscale"
        ran_again = [e for e in resumed if e.type == "TaskStateEntered" and e.path == path]
        skipped = [e for e in resumed if e.type == "MapIterationSucceeded" and e.path == f"chunks/item[{index}]"
                   and e.details.get("skipped")]
        # ...and the output says so: every chunk the first worker stored was reused, from its checkpoint when
        # the runner skipped it, else from its stored asset.
        assert chunks[index]["reused"], f"chunk {index} was stored by the first worker: {chunks[index]}"
        assert chunks[index]["reused_from"] == ("checkpoint" if skipped else "stored"), (index, chunks[index])
        assert not ran_again or chunks[index]["reused_from"] == "stored", f"chunk {index} ran again"
    assert [c["reused"] for c in chunks] == [c["index"] in before for c in chunks]
    assert rec.job.outputs["chunks_reused"] == len(before)
    assert any(e.type == "ExecutionResumed" for e in resumed)
    assert [e for e in resumed if e.type == "MapIterationSucceeded" and re.search(r"item\[0\]", e.path or "")]
    # what the killed worker left on disk (its chunk's scratch folder, a partial file) goes with the next sweep
    from reelforge.runtime.scratch import scratch_root
    from reelforge.runtime.worker import Worker

    Worker(container, maintenance=False).maintainer.sweep_scratch(grace_s=0)
    root = scratch_root(container.settings)
    assert not root.exists() or list(root.iterdir()) == []
    # no chunk asset is left behind, and the output is there once
    assert _chunk_assets(container, user.user_id, job.id) == {}
    with container.store.tx(write=False) as tx:
        outputs = [a for a in tx.assets.assets(owner_id=user.user_id, job_id=job.id, limit=100)]
    assert [a.id for a in outputs] == [rec.job.outputs["asset_id"]]
