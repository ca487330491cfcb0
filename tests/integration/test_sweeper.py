"""Lifecycle sweeping: expired temporary objects, abandoned uploads and expired job records go; the rest stays."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from sqlalchemy import update

from reelforge.adapters.db.models import Asset as AssetRow
from reelforge.domain.types import Principal, Role
from reelforge.runtime.worker import Worker


def _owner(container: Any) -> Principal:
    u = container.auth.register("sweep@example.com", "password-123")
    return Principal(user_id=u.id, email=u.email, role=Role.user)


def test_sweeper_deletes_only_what_expired(container: Any) -> None:
    p = _owner(container)
    assets = container.assets
    temp_old = assets.store_output(owner_id=p.user_id, job_id=None, data=b"old", content_type="text/plain",
                                   lifecycle="temporary")
    temp_new = assets.store_output(owner_id=p.user_id, job_id=None, data=b"new", content_type="text/plain",
                                   lifecycle="temporary")
    hot = assets.store_output(owner_id=p.user_id, job_id=None, data=b"hot", content_type="text/plain")
    with container.store.tx() as tx:
        tx.s.execute(update(AssetRow).where(AssetRow.id == temp_old.id).values(expires_at=tx.now() - 1))
    ticket = assets.create_upload(p, filename="a.bin", content_type="application/octet-stream", size=3)
    with container.store.tx() as tx:
        tx.assets.update_upload(ticket.upload.id, expires_at=tx.now() - 1)
    # an expired, finished job with a temporary output; and a fresh one
    old_job, _ = container.jobs.submit(p, "system.noop", {"echo": 1})
    new_job, _ = container.jobs.submit(p, "system.noop", {"echo": 2})
    scratch = assets.store_output(owner_id=p.user_id, job_id=old_job.id, data=b"chunk", content_type="text/plain",
                                  lifecycle="temporary")
    with container.store.tx() as tx:
        tx.jobs.update_job(old_job.id, status="succeeded", finished_at=tx.now() - 10, expires_at=tx.now() - 1)
        tx.jobs.update_job(new_job.id, status="succeeded", finished_at=tx.now(), expires_at=tx.now() + 3600)

    counts = Worker(container, maintenance=False).sweep()

    assert counts == {"assets": 1, "uploads": 1, "jobs": 1, "login_throttles": 0, "temp_files": 0, "link_tokens": 0,
                      "accounts_deleted": 0, "audit_pruned": 0}
    objects = container.objects
    assert objects.head(temp_old.key) is None and objects.head(scratch.key) is None
    assert objects.head(temp_new.key) is not None and objects.head(hot.key) is not None
    with container.store.tx(write=False) as tx:
        assert tx.assets.asset(temp_old.id) is None and tx.assets.asset(scratch.id) is None
        assert tx.assets.asset(hot.id) is not None and tx.assets.asset(temp_new.id) is not None
        assert tx.assets.upload(ticket.upload.id).status == "expired"
        assert tx.jobs.job(old_job.id) is None and tx.jobs.job(new_job.id) is not None
        assert tx.jobs.events(old_job.id) == []


def test_sweeper_runs_once_per_tick_across_workers(container: Any) -> None:
    with container.store.tx() as tx:
        first = tx.ops.try_schedule("sweeper-test", 60, "w1")
    with container.store.tx() as tx:
        second = tx.ops.try_schedule("sweeper-test", 60, "w2")
    assert first and not second


def _age(path: Path, seconds: float) -> None:
    """Make `path` and everything under it look untouched for `seconds`."""
    when = time.time() - seconds
    for p in [path, *path.rglob("*")] if path.is_dir() else [path]:
        os.utime(p, (when, when), follow_symlinks=False)


def test_sweeper_removes_what_crashed_steps_left_on_disk(container: Any) -> None:
    """A worker killed while encoding a chunk leaves its scratch folder with a partial file; later sweeps remove
    it once it is older than the grace period, but never the folder of an attempt that is running now."""
    import tempfile

    from reelforge.runtime.scratch import scratch_prefix, scratch_root

    p = _owner(container)
    settings = container.settings
    grace = settings.jobs.scratch_grace_s
    crashed, _ = container.jobs.submit(p, "system.noop", {"echo": 1})
    running, _ = container.jobs.submit(p, "system.noop", {"echo": 2})
    with container.store.tx() as tx:
        claimed = tx.jobs.claim_jobs("w-live", 300, None, 2)
    attempt = {j.id: j.attempt for j in claimed}
    with container.store.tx() as tx:
        tx.jobs.update_job(crashed.id, status="queued", worker_id=None, lease_expires_at=None)  # to be resumed

    root = scratch_root(settings)
    root.mkdir(parents=True)

    def scratch(job_id: str, label: str) -> Path:
        # What `ctx.scratch(label)` makes, here without the cleanup a killed worker never gets to run.
        return Path(tempfile.mkdtemp(dir=root, prefix=scratch_prefix(job_id, attempt[job_id], label)))

    left = scratch(crashed.id, "chunk")
    (left / ".chunk-00007.mp4.part").write_bytes(b"half a chunk")
    # The running attempt's folder, just as old (a long chunk whose files are not being touched right now).
    live = scratch(running.id, "chunk")
    (live / ".chunk-00001.mp4.part").write_bytes(b"in progress")
    # A leftover of the crashed job that is still fresh, and a stray file.
    fresh = scratch(crashed.id, "assemble")
    (fresh / "joined.mp4").write_bytes(b"x")
    stray = root / "something-else"
    stray.write_bytes(b"?")
    partial = settings.data_dir / "cache" / "mobs" / ".abc.123.part"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"partial download")
    for path in (left, live, stray, partial):
        _age(path, grace + 60)

    worker = Worker(container, maintenance=False)
    assert worker.sweep()["temp_files"] == 3
    assert not left.exists() and not stray.exists() and not partial.exists()
    assert (live / ".chunk-00001.mp4.part").exists() and (fresh / "joined.mp4").exists()
    # Once the running attempt is over, its leftovers go too; the fresh one waits out its grace.
    with container.store.tx() as tx:
        tx.jobs.update_job(running.id, status="succeeded")
    assert worker.sweep()["temp_files"] == 1 and not live.exists() and fresh.exists()
