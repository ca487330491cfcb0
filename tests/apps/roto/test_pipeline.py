"""`video.rotoscope` through the real API and a real worker (offline engine) on SQLite and PostgreSQL: masks
propagated both ways from every prompted frame and measured against the clips' exact ground truth, the COCO
export, credits (reserved, settled; refunded on failure and cancel), re-prompting that recomputes only the spans
it touches, in/out markers, two objects prompted on different frames, a stopped worker's job resumed from its
stored spans, and memory that does not grow with the video's length."""

from __future__ import annotations

import json
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.apps.roto.roto_env import (
    box_of,
    click,
    clip_named,
    decode_rle,
    encode_clip,
    http,
    iou,
    new_session,
    roto_env,
    truth,
    upload,
    wait_job,
)
from tests.apps.roto.synthetic import long_clip
from tests.conftest import register, wait_for

PAN = clip_named("pan_blob", frames=24)
CROSS = clip_named("crossing", frames=24)


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("clips")
    return {"pan": encode_clip(folder / "pan_blob.mp4", PAN), "cross": encode_clip(folder / "crossing.mp4", CROSS)}


def balance(user: Any) -> int:
    return int(user.get("/v1/credits").json()["balance"])


def prompt(user: Any, session_id: str, frame: int, clip: Any = PAN, object_id: int | None = 1,
           **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"frame": frame, "points": [click(clip, frame, object_id or 1)], **extra}
    if object_id is not None:
        body["object_id"] = object_id
    r = user.post(f"/v1/roto/sessions/{session_id}/prompts", json=body)
    assert r.status_code == 200, r.text
    return dict(r.json())


def coco_of(env: Any, user: Any, job: dict[str, Any]) -> dict[str, Any]:
    [export] = [e for e in job["outputs"]["exports"] if e["kind"] == "coco"]
    asset = user.get(f"/v1/assets/{export['asset_id']}").json()
    r = http(env, "GET", asset["download"]["url"])
    assert r.status_code == 200
    return dict(json.loads(r.content))


def masks_by_frame(coco: dict[str, Any]) -> dict[tuple[int, int], tuple[np.ndarray, str]]:
    return {(a["image_id"] - 1, a["category_id"]): (decode_rle(a["segmentation"]), a["source"])
            for a in coco["annotations"]}


def test_propagation_both_ways_export_and_credits(tmp_path: Path, db_url: str, clips: dict[str, Path]) -> None:
    with roto_env(tmp_path, db_url) as env:
        alice = register(env.client, "alice@example.com")
        s = new_session(alice, upload(env, alice, clips["pan"]))
        prompt(alice, s["id"], 4, object_id=None)
        prompt(alice, s["id"], 20)
        before = balance(alice)
        r = alice.post(f"/v1/roto/sessions/{s['id']}/propagate", json={})
        assert r.status_code == 202, r.text
        queued = r.json()
        # 24 frames, 1 object: 0.24 + 0.24 credits, rounded up
        assert queued["credits"] == 1 and queued["input"]["plan"] == {
            "frames": 24, "objects": 1, "start": 0, "end": 23, "width": 854, "height": 480}
        assert balance(alice) == before - 1  # reserved at submit
        running = alice.get(f"/v1/roto/sessions/{s['id']}").json()
        assert running["propagation"]["job_id"] == queued["id"]
        job = wait_job(alice, queued["id"])
        assert job["status"] == "succeeded", job.get("error")
        out = job["outputs"]
        # spans: forward from 4 (5..12) and from 20 (21..23), backward from 20 (13..19) and from 4 (0..3)
        assert out["spans_computed"] == 4 and out["spans_reused"] == 0 and out["frames_propagated"] == 22
        spans = {(sp["direction"], sp["anchor"]): (sp["start"], sp["stop"]) for sp in out["spans"]}
        assert spans == {("forward", 4): (5, 20), ("forward", 20): (21, 23), ("backward", 20): (4, 19),
                         ("backward", 4): (0, 3)}
        assert job["progress"]["fraction"] == pytest.approx(1.0) and job["credits_state"] == "settled"
        assert balance(alice) == before - 1

        coco = coco_of(env, alice, job)
        assert [im["frame_index"] for im in coco["images"]] == list(range(24))
        assert coco["categories"] == [{"id": 1, "name": "object 1", "supercategory": "object"}]
        got = masks_by_frame(coco)
        assert sorted(f for f, _ in got) == list(range(24))
        assert {f for (f, _), (_, src) in got.items() if src == "prompt"} == {4, 20}
        scores = [iou(got[(f, 1)][0], truth(PAN, f)) for f in range(24)]
        assert min(scores) > 0.75 and float(np.mean(scores)) > 0.85, [round(x, 3) for x in scores]

        # the session shows it, and a frame's overlay now carries the propagated mask
        detail = alice.get(f"/v1/roto/sessions/{s['id']}").json()
        assert detail["state"] == "propagated"
        assert detail["propagation"]["status"] == "succeeded" and not detail["propagation"]["stale"]
        assert detail["propagation"]["range"] == [0, 23] and len(detail["propagation"]["spans"]) == 4
        r = alice.get(f"/v1/roto/sessions/{s['id']}/frames/9/masks")
        [m] = r.json()["masks"]
        assert m["source"] == "propagated" and np.array_equal(decode_rle(m["rle"]), got[(9, 1)][0])

        # a click on a propagated frame refines that frame: the object's mask there is a prompted one now
        refined = prompt(alice, s["id"], 9, **{"points": [click(PAN, 9)]})
        assert [x["source"] for x in refined["masks"]] == ["prompt"]
        assert iou(decode_rle(refined["masks"][0]["rle"]), truth(PAN, 9)) > 0.85
        assert alice.get(f"/v1/roto/sessions/{s['id']}").json()["propagation"]["stale"] is True


def test_reprompt_recomputes_only_the_spans_it_touches(tmp_path: Path, sqlite_url: str,
                                                       clips: dict[str, Path]) -> None:
    with roto_env(tmp_path, sqlite_url) as env:
        alice = register(env.client, "alice@example.com")
        s = new_session(alice, upload(env, alice, clips["pan"]))
        for frame in (2, 10, 18):
            prompt(alice, s["id"], frame, object_id=None if frame == 2 else 1)
        first = wait_job(alice, alice.post(f"/v1/roto/sessions/{s['id']}/propagate").json()["id"])
        assert first["status"] == "succeeded" and first["outputs"]["spans_computed"] == 6
        # another click on frame 10: the spans anchored on 10 (forward 11.., backward ..9) change, no other
        prompt(alice, s["id"], 10, points=[{"x": 3.0, "y": 3.0, "label": 0}])
        second = wait_job(alice, alice.post(f"/v1/roto/sessions/{s['id']}/propagate").json()["id"])
        out = second["outputs"]
        assert second["status"] == "succeeded"
        assert (out["spans_computed"], out["spans_reused"], out["spans_removed"]) == (2, 4, 2)
        redone = {(sp["direction"], sp["anchor"]) for sp in out["spans"] if not sp["reused"]}
        assert redone == {("forward", 10), ("backward", 10)}
        assert out["frames_propagated"] == 7  # 11..14 forward, 9..7 backward
        kept = {sp["key"] for sp in first["outputs"]["spans"]} & {sp["key"] for sp in out["spans"]}
        assert len(kept) == 4
        # the same again: nothing to compute
        third = wait_job(alice, alice.post(f"/v1/roto/sessions/{s['id']}/propagate").json()["id"])
        assert (third["outputs"]["spans_computed"], third["outputs"]["spans_reused"]) == (0, 6)


def test_markers_limit_the_frames(tmp_path: Path, sqlite_url: str, clips: dict[str, Path]) -> None:
    with roto_env(tmp_path, sqlite_url) as env:
        alice = register(env.client, "alice@example.com")
        s = new_session(alice, upload(env, alice, clips["pan"]))
        prompt(alice, s["id"], 2, object_id=None)  # outside the range: not an anchor
        prompt(alice, s["id"], 10)
        r = alice.post(f"/v1/roto/sessions/{s['id']}/propagate", json={"range": {"start": 6, "end": 15}})
        assert r.status_code == 202 and r.json()["input"]["plan"]["frames"] == 10
        job = wait_job(alice, r.json()["id"])
        assert job["status"] == "succeeded", job.get("error")
        assert job["outputs"]["range"] == {"start": 6, "end": 15} and job["outputs"]["frames_propagated"] == 9
        coco = coco_of(env, alice, job)
        assert [im["frame_index"] for im in coco["images"]] == list(range(24))  # the whole clip, as the mattes
        assert sorted(f for f, _ in masks_by_frame(coco)) == list(range(6, 16))
        assert alice.get(f"/v1/roto/sessions/{s['id']}/frames/17/masks").json()["masks"] == []
        assert [m["source"] for m in alice.get(f"/v1/roto/sessions/{s['id']}/frames/2/masks").json()["masks"]] == \
            ["prompt"]


def test_two_objects_prompted_on_different_frames(tmp_path: Path, db_url: str, clips: dict[str, Path]) -> None:
    with roto_env(tmp_path, db_url) as env:
        alice = register(env.client, "alice@example.com")
        s = new_session(alice, upload(env, alice, clips["cross"]))
        a = prompt(alice, s["id"], 1, clip=CROSS, object_id=None, box=box_of(truth(CROSS, 1, 1)))
        assert alice.post(f"/v1/roto/sessions/{s['id']}/objects", json={"name": "cat"}).json()["object_id"] == 2
        prompt(alice, s["id"], 22, clip=CROSS, object_id=2, box=box_of(truth(CROSS, 22, 2)))
        assert a["prompt"]["object_id"] == 1
        job = wait_job(alice, alice.post(f"/v1/roto/sessions/{s['id']}/propagate").json()["id"])
        assert job["status"] == "succeeded", job.get("error")
        assert job["credits"] == 1 and job["input"]["plan"]["objects"] == 2
        got = masks_by_frame(coco_of(env, alice, job))
        assert {o for _, o in got} == {1, 2}
        assert all((f, 1) in got for f in range(24)) and all((f, 2) in got for f in range(24) if f != 0)
        # each object followed from its own prompted frame (object 1 forwards from 1, object 2 backwards from 22),
        # before the crossing, where the offline engine may lose the occluded one
        for obj, anchor in ((1, 1), (2, 22)):
            near = [iou(got[(f, obj)][0], truth(CROSS, f, obj)) for f in range(max(0, anchor - 5), min(24, anchor + 6))
                    if f != anchor]
            assert float(np.mean(near)) > 0.8, (obj, [round(x, 2) for x in near])
        # object 1 forward from frame 1 carries through frame 22 (where only object 2 is prompted) and beyond
        spans = {(sp["direction"], sp["anchor"]): sp for sp in job["outputs"]["spans"]}
        assert spans[("forward", 22)]["objects"] == [1, 2] and spans[("backward", 1)]["objects"] == [1, 2]


def test_failure_refunds_the_credits(tmp_path: Path, sqlite_url: str, clips: dict[str, Path]) -> None:
    with roto_env(tmp_path, sqlite_url) as env:
        alice = register(env.client, "alice@example.com")
        asset = upload(env, alice, clips["pan"])
        s = new_session(alice, asset)
        prompt(alice, s["id"], 5, object_id=None)
        assert alice.delete(f"/v1/assets/{asset}").status_code == 204  # the video is gone before propagation
        before = balance(alice)
        queued = alice.post(f"/v1/roto/sessions/{s['id']}/propagate").json()
        assert balance(alice) == before - queued["credits"]
        job = wait_job(alice, queued["id"])
        assert job["status"] in ("failed", "dead") and job["error"]["code"] == "asset_not_found"
        assert job["credits_state"] == "refunded" and balance(alice) == before


def _long(tmp_path: Path, frames: int, size: tuple[int, int] = (320, 180)) -> tuple[Any, Path]:
    clip = long_clip(size, frames)
    return clip, encode_clip(tmp_path / f"long-{frames}.mp4", clip, gop=24)


def test_cancel_stops_within_a_batch_and_refunds(tmp_path: Path, sqlite_url: str) -> None:
    clip, path = _long(tmp_path, 360)
    with roto_env(tmp_path, sqlite_url, roto={"batch_frames": 4}) as env:
        alice = register(env.client, "alice@example.com")
        s = new_session(alice, upload(env, alice, path))
        prompt(alice, s["id"], 0, clip=clip, object_id=None)
        before = balance(alice)
        queued = alice.post(f"/v1/roto/sessions/{s['id']}/propagate").json()

        def some_progress() -> bool:
            progress = alice.get(f"/v1/jobs/{queued['id']}").json()["progress"] or {}
            return float(progress.get("fraction") or 0) > 0.1

        wait_for(some_progress, timeout=120)
        assert alice.post(f"/v1/jobs/{queued['id']}/cancel").status_code == 200
        cancelled_at = time.monotonic()
        job = wait_job(alice, queued["id"])
        assert job["status"] == "cancelled" and job["credits_state"] == "refunded"
        assert balance(alice) == before
        wait_for(lambda: not env.worker.running, timeout=30)
        assert time.monotonic() - cancelled_at < 20
        assert float(job["progress"]["fraction"]) < 0.9


def test_a_stopped_workers_job_resumes_from_its_stored_spans(tmp_path: Path, sqlite_url: str) -> None:
    from reelforge.apps.roto.repository import RotoRepo
    from reelforge.runtime.worker import Worker

    clip, path = _long(tmp_path, 240)
    with roto_env(tmp_path, sqlite_url, roto={"batch_frames": 4}) as env:
        alice = register(env.client, "alice@example.com")
        s = new_session(alice, upload(env, alice, path))
        for frame in (0, 60, 120, 180):
            prompt(alice, s["id"], frame, clip=clip, object_id=None if frame == 0 else 1)
        before = balance(alice)
        queued = alice.post(f"/v1/roto/sessions/{s['id']}/propagate").json()

        def stored() -> int:
            with env.container.store.tx(write=False) as tx:
                return len(RotoRepo(tx).spans(s["id"]))

        wait_for(lambda: stored() >= 2, timeout=180, interval=0.02)
        env.worker.stop(grace_s=0)  # hands the running job back mid-way
        assert alice.get(f"/v1/jobs/{queued['id']}").json()["status"] in ("queued", "running")
        done_before = stored()
        assert done_before < 7
        second = Worker(env.container, concurrency=2)
        second.start()
        try:
            job = wait_job(alice, queued["id"], timeout=300)
        finally:
            second.stop(grace_s=5)
        assert job["status"] == "succeeded", job.get("error")
        out = job["outputs"]
        assert out["spans_reused"] >= done_before and out["spans_computed"] + out["spans_reused"] == 7
        assert job["attempt"] >= 2 and job["credits_state"] == "settled" and balance(alice) == before - job["credits"]


def _sweep_peak(tmp_path: Path, sqlite_url: str, frames: int) -> int:
    """Peak Python-tracked memory (numpy arrays included) of one forward sweep over `frames` frames."""
    from reelforge.apps.roto.pipeline import sweep
    from reelforge.apps.roto.service import PromptInput
    from reelforge.container import Container
    from reelforge.runtime.context import StepContext
    from reelforge.runtime.worker import StepServices
    from tests.conftest import make_settings

    folder = tmp_path / f"peak-{frames}"
    clip, path = _long(folder, frames)
    c = Container(make_settings(folder, sqlite_url.replace("reelforge.db", f"peak-{frames}.db"),
                                roto={"cache_dir": str(folder / "cache")}))
    try:
        c.migrate()
        services = StepServices(settings=c.settings, models=c.models, assets=c.assets, objects=c.objects,
                                store=c.store, apps={"roto": c.app("roto")}, media=c.media)
        from tests.apps.roto.test_service import _stored_video, _user

        alice = _user(c, "alice@example.com")
        svc = c.app("roto")
        session = svc.create_session(alice, _stored_video(c, alice.user_id, path))
        point = click(clip, 0)
        svc.add_prompt(alice, session.id, PromptInput(0, None, ((point["x"], point["y"], 1),), None))
        ctx = StepContext(job_id="f" * 32, owner_id=alice.user_id, kind="video.rotoscope", attempt=1, path="plan",
                          job_input={"session_id": session.id}, services=services)
        from reelforge.apps.roto.pipeline import plan

        planned = plan(ctx, {"session_id": session.id})
        tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            out = sweep(ctx, planned, "forward")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert out["frames"] == frames - 1
        return int(peak)
    finally:
        c.close()


def test_memory_does_not_grow_with_the_video(tmp_path: Path, sqlite_url: str) -> None:
    short = _sweep_peak(tmp_path, sqlite_url, 60)
    long = _sweep_peak(tmp_path, sqlite_url, 480)
    frame = 320 * 180 * 3
    # eight times the frames: the peak stays within a few frames' worth (the masks kept are RLE text)
    assert long < short + 40 * frame, (short, long)


def test_picture_exports_from_the_exports_module(tmp_path: Path, sqlite_url: str, clips: dict[str, Path]) -> None:
    import av

    with roto_env(tmp_path, sqlite_url) as env:
        alice = register(env.client, "alice@example.com")
        s = new_session(alice, upload(env, alice, clips["pan"]))
        prompt(alice, s["id"], 6, object_id=None)
        r = alice.post(f"/v1/roto/sessions/{s['id']}/propagate",
                       json={"exports": ["coco", "alpha_prores", "png_zip"], "per_object": True})
        assert r.status_code == 202, r.text
        job = wait_job(alice, r.json()["id"])
        assert job["status"] == "succeeded", job.get("error")
        kinds = sorted((e["kind"], e["object_id"]) for e in job["outputs"]["exports"])
        assert kinds == [("alpha_prores", 1), ("coco", None), ("png_zip", 1)]
        mov = next(e for e in job["outputs"]["exports"] if e["kind"] == "alpha_prores")
        assert mov["frames"] == 24 and mov["content_type"] == "video/quicktime"
        asset = alice.get(f"/v1/assets/{mov['asset_id']}").json()
        data = http(env, "GET", asset["download"]["url"]).content
        out = tmp_path / "matte.mov"
        out.write_bytes(data)
        with av.open(str(out)) as container:
            stream = container.streams.video[0]
            assert stream.codec_context.name == "prores" and "yuva444p" in stream.codec_context.pix_fmt
            frames = list(container.decode(stream))
        assert len(frames) == 24
        alpha = frames[12].to_ndarray(format="rgba")[..., 3] > 127
        assert iou(alpha, truth(PAN, 12)) > 0.8  # the propagated mask is the matte's alpha
