"""Spot interruptions: a worker that reads a two-minute notice from the instance metadata service (a local IMDSv2
server) stops claiming, stops its running chunk at the next batch, hands the job back at once (queued, not a
failure) and another worker resumes it: only the interrupted chunk is computed again."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_settings, register, wait_for
from tests.fixtures.fake_imds import FakeImds
from tests.fixtures.videos import make_testsrc
from tests.integration.test_video_upscale import Env, submit, upload, wait_job

pytestmark = pytest.mark.timeout(240)


def _settings(tmp_path: Path, db_url: str, **over: Any) -> Any:
    return make_settings(
        tmp_path, db_url, upscale={"chunk_seconds": 0.5, "batch_size": 2, "max_chunk_concurrency": 1},
        rate_limit={"writes_per_window_ip": 100_000, "writes_per_window_account": 100_000,
                    "reads_per_window_ip": 1_000_000, "reads_per_window_account": 1_000_000}, **over)


def _events(container: Any, job_id: str) -> list[Any]:
    with container.store.tx(write=False) as tx:
        return list(tx.jobs.events(job_id))


def test_imds_adapter_speaks_imdsv2() -> None:
    from reelforge.adapters.cloud.imds import InstanceMetadataNotices

    with FakeImds() as imds:
        notices = InstanceMetadataNotices(imds.url, timeout_s=2)
        assert notices.poll() is None and imds.polls == 1  # 404: nothing scheduled
        imds.expire_tokens()  # a 401 fetches one new token
        assert notices.poll() is None and imds.token_requests == 2
        imds.interrupt("terminate", in_s=120)
        notice = notices.poll()
        assert notice is not None and notice.action == "terminate" and notice.time.endswith("Z")
    # an unreachable service is no notice
    assert InstanceMetadataNotices("http://127.0.0.1:9", timeout_s=0.5).poll() is None


def test_spot_notice_hands_a_long_upscale_back(tmp_path: Path, sqlite_url: str) -> None:
    from fastapi.testclient import TestClient

    from reelforge.api.app import create_app
    from reelforge.container import Container
    from reelforge.runtime.worker import Worker

    src = make_testsrc(tmp_path / "clip.mp4", seconds=4.0, size=(64, 48), gop=12)  # 8 chunks of 0.5 s
    with FakeImds() as imds:
        spot = _settings(tmp_path, sqlite_url, spot={"enabled": True, "metadata_url": imds.url, "poll_s": 0.05})
        c = Container(spot)
        a = Worker(c, concurrency=1)
        a.start()
        client_cm = TestClient(create_app(container=c))
        client = client_cm.__enter__()
        b = None
        c2 = None
        try:
            user = register(client, "alice@example.com")
            asset = upload(Env(c, a, client), user, src, "video/mp4")
            r = submit(user, "video.upscale", asset_id=asset["id"], model="realesr-animevideov3", scale=2,
                       output={"preset": "ultrafast"})
            assert r.status_code == 202, r.text
            job_id = r.json()["id"]

            def chunks_done() -> int:
                return sum(1 for e in _events(c, job_id) if e.type == "MapIterationSucceeded")

            wait_for(lambda: chunks_done() >= 3, timeout=120, interval=0.05)
            imds.interrupt()
            # the job is back in the queue within a moment, not after a lease expiry, and not as a failure
            wait_for(lambda: not a.running, timeout=20, interval=0.02)
            assert a.preempted.is_set() and a.stopping.is_set()
            with c.store.tx(write=False) as tx:
                row = tx.jobs.job(job_id)
            assert row is not None and row.status == "queued" and row.failures == 0 and row.worker_id is None
            released = [e for e in _events(c, job_id) if e.type == "JobReleased"]
            assert len(released) == 1 and released[0].details == {"reason": "preempted"}
            done_before = chunks_done()
            a.stop(grace_s=0)

            # another worker (not on Spot) resumes it
            c2 = Container(_settings(tmp_path, sqlite_url))
            b = Worker(c2, concurrency=1)
            b.start()
            job = wait_job(user, job_id, timeout=180)
            assert job["status"] == "succeeded", job
            assert job["outputs"]["chunk_count"] == 8
            history = user.get(f"/v1/jobs/{job_id}/history").json()["events"]
            entered = Counter(e["path"] for e in history
                              if e["type"] == "TaskStateEntered" and e["path"].startswith("chunks/"))
            # every chunk ran once, except the one the notice interrupted, which ran again
            assert set(entered) == {f"chunks/item[{i}]/upscale" for i in range(8)}
            again = [p for p, n in entered.items() if n > 1]
            assert len(again) <= 1 and all(entered[p] == 2 for p in again)
            aborted = [e for e in history if e["type"] == "TaskAborted"]
            assert [e["path"] for e in aborted] == again
            assert all(e["details"].get("error") == "preempted" for e in aborted)
            # the chunks finished before the notice came from their checkpoints
            assert job["outputs"]["chunks_reused"] >= done_before >= 3
        finally:
            client_cm.__exit__(None, None, None)
            if b is not None:
                b.stop(grace_s=5)
            a.stop(grace_s=0)
            if c2 is not None:
                c2.close()
            c.close()
