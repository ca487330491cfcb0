"""`film.render` end to end: a three-scene screenplay with two characters becomes one MP4, checked with ffprobe
and measurements: video and audio streams, the planned duration, a subtitle track whose cues cover the
dialogue, the loudness target, and mouths that move with the voices."""

from __future__ import annotations

import math
import re
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from reelforge.adapters.media.ffmpeg import ffmpeg_exe
from tests.apps.film.helpers import make_project
from tests.apps.film.render_env import SCRIPT, cast, download, wait_job
from tests.fixtures.videos import ffprobe

HEIGHT = 240
FPS = 24


def _frames(path: Path, size: tuple[int, int]) -> np.ndarray:
    w, h = size
    raw = subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                         capture_output=True, check=True, timeout=300).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, h, w, 3)


def _audio(path: Path, rate: int = 48000) -> np.ndarray:
    raw = subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(path), "-map", "0:a:0", "-ac", "1", "-ar", str(rate),
                          "-f", "f32le", "-"], capture_output=True, check=True, timeout=300).stdout
    return np.frombuffer(raw, np.float32)


def _subtitle_cues(path: Path) -> list[tuple[float, float, str]]:
    """The MP4's soft subtitle track as (start, end, text), read back through ffmpeg as SRT."""
    srt = subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(path), "-map", "0:s:0", "-f", "srt", "-"],
                         capture_output=True, check=True, timeout=120, text=True).stdout
    from reelforge.apps.film.media.subtitles import parse_srt

    return [(c.start, c.end, c.text) for c in parse_srt(srt)]


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


@pytest.fixture
def rendered(client: Any, container: Any, worker: Any, alice: Any, tmp_path: Path) -> dict[str, Any]:
    project = make_project(alice, script=SCRIPT, characters=cast(container, alice.id))
    before = alice.get("/v1/credits").json()["balance"]
    r = alice.post(f"/v1/projects/{project['id']}/render", json={"height": HEIGHT, "fps": FPS})
    assert r.status_code == 202, r.text
    assert r.headers["Location"] == f"/v1/jobs/{r.json()['id']}"
    submitted = r.json()
    job = wait_job(alice, submitted["id"])
    assert job["status"] == "succeeded", job["error"]
    out = job["outputs"]
    path = tmp_path / "film.mp4"
    path.write_bytes(download(container, alice.id, out["video_asset_id"]))
    return {"job": job, "out": out, "path": path, "project": project, "user": alice, "before": before,
            "submitted": submitted, "container": container}


def test_three_scene_film(rendered: dict[str, Any]) -> None:
    """One render (they take seconds) checked for what the film is, then for what it cost."""
    check_film(rendered)
    check_price(rendered)


def check_film(rendered: dict[str, Any]) -> None:
    out, path = rendered["out"], rendered["path"]
    # the streams an editor and a player expect
    probe = ffprobe(path, "-show_entries", "stream=codec_type,codec_name,width,height,pix_fmt:format=duration")
    kinds = {s["codec_type"]: s for s in probe["streams"]}
    assert kinds["video"]["codec_name"] == "h264" and kinds["video"]["pix_fmt"] == "yuv420p"
    assert (kinds["video"]["width"], kinds["video"]["height"]) == (426, 240) == tuple(out["size"])
    assert kinds["audio"]["codec_name"] == "aac"
    assert kinds["subtitle"]["codec_name"] == "mov_text" and out["subtitles_mode"] == "mov_text"
    # the plan: a title card and three scenes, crossfaded
    assert [s["heading"] for s in out["scenes"]] == ["INT. KITCHEN - NIGHT", "EXT. PORCH - NIGHT",
                                                     "INT. KITCHEN - LATER"]
    planned = out["title_card_s"] + sum(s["duration_s"] for s in out["scenes"]) - 3 * out["transition_s"]
    assert out["planned_duration_s"] == pytest.approx(planned, abs=0.01)
    assert float(probe["format"]["duration"]) == pytest.approx(out["planned_duration_s"], abs=0.5)
    # two characters, each with the voice the project gave them
    assert set(out["voices"]) == {"Martha", "John"}
    assert out["voices"]["Martha"]["voice"] == "warm-female" and out["voices"]["John"]["voice"] == "deep-male"
    # loudness: -14 LUFS integrated, within 1 LU, measured on the file (EBU R128)
    from reelforge.apps.film.media.compose import measure_loudness

    assert measure_loudness(path).integrated_lufs == pytest.approx(-14.0, abs=1.0)
    # subtitles: every line of dialogue is covered by cues that hold its words while it is spoken
    cues = _subtitle_cues(path)
    assert cues
    lines = [(s["start_s"], ln) for s in out["scenes"] for ln in s["talking"]]
    dialogue = ["Don't open it. Not tonight.", "It could be Tom. He said he would come back before the storm.",
                "Tom? Is that you?", "We leave at dawn, whatever happens."]
    said = " ".join(_words(" ".join(c[2] for c in cues)))
    for text in dialogue:
        assert " ".join(_words(text)) in said, (text, said)
    for start, ln in lines:
        t0, t1 = start + ln["start_s"], start + ln["end_s"]
        covering = [c for c in cues if c[0] < t1 and c[1] > t0]
        assert covering, (ln, cues)
    # mouths move with the voices: in each spoken line, the mouth region's change against the closed mouth
    # follows the loudness of the film's own sound
    from reelforge.apps.film.media import lipsync

    frames = _frames(path, tuple(out["size"]))
    sound = _audio(path)
    scores = []
    for start, ln in lines:
        a, b = (round((start + t) * FPS) for t in (ln["start_s"], ln["end_s"]))
        x0, y0, x1, y1 = ln["mouth_box"]
        box = lipsync.MouthBox(x0, y0, x1, y1, 0.0, 0.0, 0.0)
        still = frames[a + 1]  # before the first word: the portrait with its mouth closed
        measured = lipsync.measure_mouth_signal(frames[a:b], box, still)
        part = sound[round(a / FPS * 48000):round(b / FPS * 48000)]
        scores.append(lipsync.sync_correlation(measured, part, 48000, FPS))
    assert len(scores) == 4 and min(scores) > 0.4, scores
    assert all("lbp-cascade" in ln["method"] for _, ln in lines)
    # posters and a thumbnail, kept as the owner's assets; temporary scene tracks gone with the job
    c, owner = rendered["container"], rendered["user"].id
    for s in out["scenes"]:
        assert download(c, owner, s["poster_asset_id"])[:3] == b"\xff\xd8\xff"
    assert download(c, owner, out["thumbnail_asset_id"])[:3] == b"\xff\xd8\xff"
    vtt = download(c, owner, out["subtitles"]["en"]["vtt_asset_id"]).decode()
    assert vtt.startswith("WEBVTT") and "whatever happens" in vtt
    srt = download(c, owner, out["subtitles"]["en"]["srt_asset_id"]).decode()
    assert srt.startswith("1\n") and "-->" in srt


def check_price(rendered: dict[str, Any]) -> None:
    """Priced per rendered second, noted on the project."""
    job, user = rendered["job"], rendered["user"]
    estimate = job["input"]["estimate"]["seconds"]
    # reserved at submit: 0.1 credit per estimated second with a 25 % margin, rounded up
    reserved = rendered["submitted"]["credits"]
    assert reserved == max(1, math.ceil(estimate * 1.25 * 0.1 - 1e-9))
    # charged: 0.1 credit per rendered second; the rest of the reservation came back
    assert job["credits"] == max(1, math.ceil(job["outputs"]["duration_s"] * 0.1 - 1e-9)) <= reserved
    assert job["credits_state"] == "settled"
    credits = user.get("/v1/credits").json()
    assert credits["balance"] == rendered["before"] - job["credits"]
    mine = sorted((e["kind"], e["amount"]) for e in credits["ledger"] if e["job_id"] == job["id"])
    refund = [("refund", reserved - job["credits"])] if reserved > job["credits"] else []
    assert mine == sorted([("reserve", -reserved), *refund, ("settle", 0)])
    project = user.get(f"/v1/projects/{rendered['project']['id']}").json()
    assert project["last_render_job_id"] == job["id"]
