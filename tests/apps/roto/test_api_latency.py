"""The interactive budget, measured through the API: a prompt on a frame whose features the worker holds is
answered (masks, overlay stored, URL signed) with p50 under 250 ms and p95 under 500 ms at 854x480, offline engine,
real worker and SQLite. The figures are printed (`-s`) for docs and reports."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest

from tests.apps.roto.roto_env import (
    click,
    clip_named,
    decode_rle,
    encode_clip,
    iou,
    new_session,
    roto_env,
    truth,
    upload,
)
from tests.conftest import register

CLIP = clip_named("pan_blob", frames=24)
FRAMES = (3, 8, 13, 18)
ROUNDS = 40


def nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def test_prompt_latency_within_the_interactive_budget(tmp_path: Path, sqlite_url: str) -> None:
    path = encode_clip(tmp_path / "clip.mp4", CLIP)
    with roto_env(tmp_path, sqlite_url) as env:
        alice = register(env.client, "alice@example.com")
        s = new_session(alice, upload(env, alice, path))
        base = f"/v1/roto/sessions/{s['id']}/prompts"
        # the first prompt on each frame decodes it and computes its features (and, the first of all, loads the
        # engine): that is the cache being filled, not what the budget is about
        warm = []
        for i, frame in enumerate(FRAMES):
            started = time.perf_counter()
            r = alice.post(base, json={"frame": frame, "object_id": None if i == 0 else 1,
                                       "points": [click(CLIP, frame)]})
            warm.append((time.perf_counter() - started) * 1000)
            assert r.status_code == 200, r.text
        took: list[float] = []
        worker_ms: list[float] = []
        for n in range(ROUNDS):
            frame = FRAMES[n % len(FRAMES)]
            point = click(CLIP, frame)
            # alternately a positive click next to the first one and a negative click in a corner
            body = {"frame": frame, "object_id": 1,
                    "points": [{"x": point["x"] + (n % 5) - 2, "y": point["y"], "label": 1}] if n % 2 == 0 else
                    [{"x": 4.0 + n, "y": 4.0, "label": 0}]}
            started = time.perf_counter()
            r = alice.post(base, json=body)
            took.append((time.perf_counter() - started) * 1000)
            assert r.status_code == 200, r.text
            answer = r.json()
            assert answer["cache"]["session"] == "hit" and answer["cache"]["features"] == "hit", answer["cache"]
            assert iou(decode_rle(answer["masks"][0]["rle"]), truth(CLIP, frame)) > 0.85
            worker_ms.append(float(answer["timing_ms"]["total"]))
        p50, p95 = nearest_rank(took, 0.50), nearest_rank(took, 0.95)
        print(f"\nprompt through the API at 854x480, frame cached (n={ROUNDS}): p50 {p50:.1f} ms, p95 {p95:.1f} ms, "
              f"max {max(took):.1f} ms; on the worker p50 {nearest_rank(worker_ms, 0.5):.1f} ms; "
              f"first prompts on a frame {', '.join(f'{w:.0f}' for w in warm)} ms")
        assert p50 < 250 and p95 < 500, (p50, p95, sorted(took))


@pytest.mark.parametrize("frame", [0])
def test_a_new_frame_costs_its_features_once(tmp_path: Path, sqlite_url: str, frame: int) -> None:
    path = encode_clip(tmp_path / "clip.mp4", CLIP)
    with roto_env(tmp_path, sqlite_url) as env:
        alice = register(env.client, "alice@example.com")
        s = new_session(alice, upload(env, alice, path))
        base = f"/v1/roto/sessions/{s['id']}/prompts"
        first = alice.post(base, json={"frame": frame, "points": [click(CLIP, frame)]}).json()
        assert first["cache"]["features"] == "miss" and first["cache"]["session"] == "miss"
        again = alice.post(base, json={"frame": frame, "object_id": 1,
                                       "points": [{"x": 3.0, "y": 3.0, "label": 0}]}).json()
        assert again["cache"] == {**again["cache"], "features": "hit", "session": "hit", "frame": "hit"}
        assert "features" in first["timing_ms"] and again["timing_ms"]["features"] < first["timing_ms"]["features"]
