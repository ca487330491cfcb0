"""Composition: one H.264/AAC MP4 from clips and a mix, with crossfades, subtitles, -14 LUFS and a thumbnail."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from reelforge.adapters.media.probe import probe
from reelforge.apps.film.media import audio, compose, music, visuals
from reelforge.apps.film.media.subtitles import Cue

FPS = 24.0
RATE = audio.MIX_RATE


def solid(colour: tuple[int, int, int], seconds: float, size: tuple[int, int]) -> visuals.Clip:
    n = int(seconds * FPS)

    def frames() -> Iterator[np.ndarray]:
        for _ in range(n):
            yield np.broadcast_to(np.array(colour, np.uint8), (size[1], size[0], 3)).copy()

    return visuals.Clip(frames(), n, FPS, size, "solid")


def soundtrack(seconds: float, level_db: float) -> np.ndarray:
    """Music with a talking-like burst pattern on top, scaled so its RMS is level_db."""
    score = music.score("calm", seconds, seed=2).samples
    t = np.arange(score.size) / RATE
    talk = np.sin(2 * np.pi * 150 * t) * (np.sin(2 * np.pi * 3 * t) > 0) * (t > 1) * (t < seconds - 1)
    x = score + 0.3 * talk.astype(np.float32)
    return (x * audio.db_to_gain(level_db) / np.sqrt(np.mean(x ** 2))).astype(np.float32)


def decode(path: Path) -> list[np.ndarray]:
    import av

    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])]


def test_scene_starts() -> None:
    assert compose.scene_starts([10, 10, 10], 0.5) == [0.0, 9.5, 19.0]
    assert compose.scene_starts([3.0], 1.0) == [0.0]


def test_film_with_crossfades_burned_subtitles_loudness_and_thumbnail(tmp_path: Path) -> None:
    size = (640, 360)
    clips = [solid((200, 20, 20), 2.0, size), solid((20, 20, 200), 2.0, size), solid((20, 160, 20), 2.0, size)]
    starts = compose.scene_starts([2.0, 2.0, 2.0], 0.5)
    duration = starts[-1] + 2.0  # 5.0 s
    mix = soundtrack(duration, -30.0)  # far below the target: normalisation must raise it
    cues = [Cue(0.2, 1.2, "Hello there."), Cue(2.0, 3.0, "The storm is coming,\nshe said.")]
    out = tmp_path / "film.mp4"
    film = compose.compose(clips, mix, RATE, out, transition_s=0.5, cues=cues, thumbnail=tmp_path / "thumb.jpg")

    assert film.frames == 3 * 48 - 2 * 12 and film.duration_s == pytest.approx(5.0)
    assert film.subtitles == ("libass" if compose.has_libass() else "pillow")
    assert film.loudness_in is not None and film.loudness_in.integrated_lufs < -25
    info = probe(out)
    assert info.codec == "h264" and (info.width, info.height) == size and info.frames == film.frames
    assert info.fps == pytest.approx(FPS) and info.duration_s == pytest.approx(5.0, abs=0.1)
    assert {s.codec for s in info.streams if s.type == "audio"} == {"aac"}
    loud = compose.measure_loudness(out)
    assert abs(loud.integrated_lufs + 14.0) <= 1.0, loud
    assert loud.true_peak_db is not None and loud.true_peak_db <= -0.5

    frames = decode(out)
    assert len(frames) == film.frames
    red, blend, blue = frames[10], frames[42], frames[60]
    assert red[20, 20, 0] > 170 and red[20, 20, 2] < 50
    assert blue[20, 20, 2] > 170 and blue[20, 20, 0] < 50
    # 42 is the middle of the first 12-frame crossfade (frames 36..47): half red, half blue
    assert 80 < blend[20, 20, 0] < 140 and 80 < blend[20, 20, 2] < 140
    # burned-in text: white pixels near the bottom while a cue shows, none when no cue shows
    assert (frames[12][int(0.7 * 360):].min(axis=2) > 200).sum() > 100  # t = 0.5 s, "Hello there."
    assert (frames[36][int(0.7 * 360):].min(axis=2) > 200).sum() == 0  # t = 1.5 s, between cues

    from PIL import Image

    with Image.open(film.thumbnail or "") as im:
        assert im.format == "JPEG" and im.size == size
        # a third of the way in (frame 40): inside the red-blue crossfade, without subtitles
        px = np.asarray(im)[20, 20]
        assert px[0] > 60 and px[2] > 60


def test_portrait_film_with_soft_subtitles_from_a_loud_mix(tmp_path: Path) -> None:
    size = (360, 640)
    clip = visuals.ken_burns(visuals.sample_photo("rocket"), 4.0, size=size, fps=FPS, move="pan_up")
    out = tmp_path / "portrait.mp4"
    film = compose.compose([clip], soundtrack(4.0, -6.0), RATE, out, cues=[Cue(0.5, 2.0, "Lift off.")],
                           subtitles="soft")
    assert film.subtitles == "mov_text" and film.thumbnail is None
    info = probe(out)
    assert (info.width, info.height) == size and info.frames == 96
    assert [s.codec for s in info.streams if s.type == "subtitle"] == ["mov_text"]
    assert abs(compose.measure_loudness(out).integrated_lufs + 14.0) <= 1.0


def test_pillow_subtitles_and_a_silent_mix(tmp_path: Path) -> None:
    size = (320, 180)
    out = tmp_path / "quiet.mp4"
    film = compose.compose([solid((30, 30, 30), 2.0, size)], np.zeros(2 * RATE, np.float32), RATE, out,
                           cues=[Cue(0.0, 2.0, "Nothing to hear.")], subtitles="pillow")
    assert film.subtitles == "pillow" and any("silent" in n for n in film.notes)
    frames = decode(out)
    assert (frames[10][int(0.6 * 180):].min(axis=2) > 200).sum() > 50
    assert (frames[10][: int(0.5 * 180)].min(axis=2) > 200).sum() == 0


def test_clips_must_match(tmp_path: Path) -> None:
    from reelforge import errors

    with pytest.raises(errors.ValidationFailed):
        compose.compose([solid((0, 0, 0), 1.0, (320, 180)), solid((0, 0, 0), 1.0, (180, 320))],
                        np.zeros(RATE, np.float32), RATE, tmp_path / "x.mp4")
    with pytest.raises(errors.ValidationFailed):
        compose.compose([solid((0, 0, 0), 1.0, (321, 180))], np.zeros(RATE, np.float32), RATE, tmp_path / "x.mp4")
