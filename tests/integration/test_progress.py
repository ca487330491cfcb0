"""Job progress never goes backwards: not when a resumed attempt starts again below where the last one got (a
chunk that was half done is done again from its start), nor when parallel chunks report out of order."""

from __future__ import annotations

from typing import Any

from reelforge.domain.types import Principal, Role
from reelforge.runtime.worker import Worker, _Running


def _progress(container: Any, job_id: str) -> tuple[float, str]:
    with container.store.tx(write=False) as tx:
        job = tx.jobs.job(job_id)
    return float(job.progress), str(job.progress_message)


def test_progress_is_monotonic_across_attempts_and_out_of_order_reports(container: Any) -> None:
    u = container.auth.register("progress@example.com", "password-123")
    owner = Principal(user_id=u.id, email=u.email, role=Role.user)
    job, _ = container.jobs.submit(owner, "system.noop", {"echo": 1})
    # The first attempt got to 60 % (in the middle of chunk 3) before its worker died; the job is claimed again.
    with container.store.tx() as tx:
        tx.jobs.update_job(job.id, progress=0.6, progress_message="chunk 3/4: 60/96 frames")
    with container.store.tx() as tx:
        claimed = tx.jobs.claim_job("w-2", 30)
    assert claimed is not None and claimed.id == job.id

    worker = Worker(container, maintenance=False)
    run = _Running(claimed)
    worker._progress(run, 0.03, "2 chunk(s), 96 frames")  # the resumed attempt's first report
    worker._progress(run, 0.45, "chunk 3/4: 10/96 frames")  # chunk 3 again from its start
    worker._write_progress(run)
    assert _progress(container, job.id) == (0.6, "chunk 3/4: 60/96 frames")

    # Two chunks running at once report out of order: the later, lower report does not replace the higher one.
    worker._progress(run, 0.72, "chunk 4/4: 70/96 frames")
    worker._progress(run, 0.71, "chunk 3/4: 69/96 frames")
    worker._write_progress(run)
    assert _progress(container, job.id) == (0.72, "chunk 4/4: 70/96 frames")
    worker._progress(run, 0.73, "chunk 3/4: 71/96 frames")
    worker._write_progress(run)
    assert _progress(container, job.id) == (0.73, "chunk 3/4: 71/96 frames")
