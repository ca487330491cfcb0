"""Lifecycle sweeping: expired temporary objects, abandoned uploads and expired job records go; the rest stays."""

from __future__ import annotations

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

    assert counts == {"assets": 1, "uploads": 1, "jobs": 1, "login_throttles": 0}
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
