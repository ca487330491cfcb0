"""`video.analyze` through a real worker: the real models on generated videos, and a failing model.

The happy path uploads one trend video and one noise video through the API, lets the worker run the
pipeline with the local models (rapidocr, faster-whisper tiny.en, MobileNetV2 + MiniLM), and checks what a
user then sees. The failure path swaps in adapters that raise, and checks that nothing was made up.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reelforge.errors import ReelforgeError
from reelforge.ports.models import Availability
from tests.conftest import UserHandle, make_settings, register, wait_for
from tests.fixtures.hashing import fast_password_hashing  # noqa: F401

TERMINAL = ("validated", "rejected", "failed")


@pytest.fixture
def mobs_env(tmp_path: Path, sqlite_url: str) -> Iterator[tuple[Any, Any]]:
    from fastapi.testclient import TestClient

    from reelforge.api.app import create_app
    from reelforge.container import Container

    settings = make_settings(tmp_path, sqlite_url, webhooks={"allow_private_targets": True})
    c = Container(settings)
    with TestClient(create_app(container=c)) as client:
        yield c, client
    c.close()


def upload(user: UserHandle, path: Path, caption: str) -> str:
    data = path.read_bytes()
    r = user.post("/v1/videos/submit", json={"filename": path.name, "content_type": "video/mp4", "size": len(data),
                                              "caption": caption, "sha256": hashlib.sha256(data).hexdigest()})
    assert r.status_code == 201, r.text
    up = r.json()["upload"]
    put = user.client.put(up["url"].replace("http://testserver", ""), content=data, headers=up["headers"])
    assert put.status_code == 200, put.text
    done = user.post(up["complete_url"], json={})
    assert done.status_code == 202, done.text
    return str(r.json()["video"]["id"])


def finished(user: UserHandle, vid: str) -> dict[str, Any] | None:
    v = user.get(f"/v1/videos/{vid}").json()
    return v if v["status"] in TERMINAL else None


def test_real_pipeline_on_generated_videos(mobs_env: tuple[Any, Any], tmp_path: Path) -> None:
    from reelforge.runtime.worker import Worker
    from tests.fixtures.mob_corpus import make_corpus

    c, client = mobs_env
    reason = c.models.info("video.participation", "local").reason or c.models.info("video.embed", "local").reason
    if reason:
        pytest.skip(f"local video models unavailable: {reason}")
    corpus = make_corpus(tmp_path / "corpus", trends=1, per_trend=1, noise=1, seconds=3.0)
    trend = next(v for v in corpus if v.trend)
    noise = next(v for v in corpus if not v.trend)
    alice = register(client, "alice@example.com")
    bob = register(client, "bob@example.com")
    with c.store.tx() as tx:  # alice subscribes to her videos' events
        hook = tx.events.add_webhook(owner_id=alice.id, url="http://127.0.0.1:9/hook", secret="s",
                                     event_types=["video.analyzed"], description="")
    v_trend = upload(alice, trend.path, trend.caption)
    v_noise = upload(alice, noise.path, noise.caption)
    w = Worker(c, concurrency=1)
    w.start()
    try:
        a = wait_for(lambda: finished(alice, v_trend), timeout=240, interval=0.5)
        n = wait_for(lambda: finished(alice, v_noise), timeout=240, interval=0.5)
    finally:
        w.stop(grace_s=5)
    assert a["status"] == "validated", a
    assert a["scores"]["score"] >= a["scores"]["threshold"] and len(a["scores"]["reasons"]) >= 4
    assert trend.expected_hashtag in a["analysis"]["hashtags"]
    assert any(trend.text.split()[0].lower() in t.lower() for t in a["analysis"]["ocr_text"]), a["analysis"]
    assert a["analysis"]["transcript"].strip() and a["mob_id"] and a["thumbnail_url"] and a["playback_url"]
    assert a["embed_model_version"]
    assert n["status"] == "rejected" and n["mob_id"] is None and n["scores"]["score"] < n["scores"]["threshold"]
    # what bob sees: the validated video in feed and mobs; the rejected one nowhere
    assert [v["id"] for v in bob.get("/v1/feed").json()["data"]] == [v_trend]
    assert bob.get("/v1/mobs").json()["data"][0]["count"] == 1
    assert bob.get(f"/v1/videos/{v_noise}").status_code == 404
    assert c.vectors.get("videos", v_noise) is None
    rec = c.vectors.get("videos", v_trend)
    assert rec is not None and rec.visibility == "public" and rec.model_version == a["embed_model_version"]
    # the step history, and one video.analyzed event per video
    hist = alice.get(f"/v1/execution-history?videoId={v_trend}").json()["events"]
    done = {e["path"] for e in hist if e["type"] == "TaskSucceeded"}
    assert {"mark_processing", "analyze/branch[0]/thumbnail", "analyze/branch[0]/participation",
            "analyze/branch[1]/embed", "store_results", "validate", "assign_mob", "emit"} <= done
    c.events.fan_out()  # the worker may have stopped before its dispatcher saw the last event
    with c.store.tx(write=False) as tx:
        events = [e for e in tx.events.events_after(0, owner_id=alice.id) if e.type == "video.analyzed"]
        deliveries = list(tx.events.deliveries(owner_id=alice.id, webhook_id=hook.id))
    assert sorted((e.payload["video_id"], e.payload["status"]) for e in events) == sorted(
        [(v_trend, "validated"), (v_noise, "rejected")])
    assert next(e for e in events if e.payload["video_id"] == v_trend).payload["mob_id"] == a["mob_id"]
    assert len(deliveries) == 2
    # model usage was metered per model
    usage = c.app("mobs").admin.usage(days=1)
    assert {(u["task"], u["model"]) for u in usage} >= {("video.participation", "local"), ("video.embed", "local")}


class Broken:
    """An adapter whose model fails every time (the hosted model of the AWS design, down)."""

    description = "fails"
    test_model = True

    def __init__(self, task: str) -> None:
        self.task = task
        self.name = "local"
        self.calls = 0

    def availability(self) -> Availability:
        return Availability(True)

    def setup(self) -> None:
        pass

    def run(self, request: Any, *, progress: Any = None, cancelled: Any = None) -> Any:
        self.calls += 1
        raise RuntimeError(f"{self.task} backend crashed")


def test_failed_model_fails_the_step_and_stores_nothing(mobs_env: tuple[Any, Any], tmp_path: Path) -> None:
    from reelforge.runtime.worker import Worker
    from tests.fixtures.mob_corpus import make_noise_video

    c, client = mobs_env
    broken = {t: Broken(t) for t in ("video.participation", "video.embed")}
    for b in broken.values():
        c.models.register(b, replace=True)
    clip = make_noise_video(tmp_path / "n.mp4", 0, seconds=1.0)
    alice = register(client, "alice@example.com")
    vid = upload(alice, clip.path, "#cats")
    mallory = register(client, "mallory@example.com")
    stolen = mallory.post("/v1/jobs", json={"kind": "video.analyze", "input": {"video_id": vid}})
    assert stolen.status_code == 404 and stolen.json()["code"] == "video_not_found"
    w = Worker(c, concurrency=1)
    w.start()
    try:
        v = wait_for(lambda: finished(alice, vid), timeout=60, interval=0.2)
    finally:
        w.stop(grace_s=5)
    # the worker checks the owner too (a job queued before the check existed, say)
    with pytest.raises(ReelforgeError) as exc:
        c.app("mobs").analysis.start_processing(vid, v["job_id"], mallory.id)
    assert exc.value.code == "video_not_found"
    assert v["status"] == "failed" and v["error"]["code"] == "internal_error"
    assert "backend crashed" in v["error"]["message"]
    assert v["score"] is None and v["scores"] is None and v["analysis"] is None and v["mob_id"] is None
    assert c.vectors.get("videos", vid) is None
    job = alice.get(f"/v1/jobs/{v['job_id']}").json()
    assert job["status"] == "failed" and "backend crashed" in job["error"]["message"]
    hist = alice.get(f"/v1/execution-history?videoId={vid}").json()["events"]
    failed_paths = [e["path"] for e in hist if e["type"] == "TaskFailed"]
    assert any(t in " ".join(failed_paths) for t in ("participation", "embed"))
    assert any(e["type"] == "TaskRetryScheduled" for e in hist), hist
    types = {(e["type"], e["path"]) for e in hist}
    assert {("TaskCaught", "analyze"), ("TaskStateEntered", "failed"), ("TaskFailed", "failed")} <= types
    assert alice.get("/v1/feed").json()["data"] == [] and alice.get("/v1/mobs").json()["data"] == []
    assert max(b.calls for b in broken.values()) >= 2  # the step was retried before it gave up
