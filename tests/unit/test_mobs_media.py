"""Frame sampling, thumbnails and activity measures on videos encoded here with PyAV."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from reelforge.apps.mobs.models import thumbnail
from reelforge.apps.mobs.models.activity import measure
from reelforge.apps.mobs.models.frames import frame_quality, is_black, sample
from reelforge.apps.mobs.models.speech import transcribe
from reelforge.errors import ValidationFailed
from tests.fixtures.mob_corpus import pan_zoom_frames, photo, write_video

SIZE = (160, 120)


def _still(name: str) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(photo(name)).resize(SIZE))


def test_sample_spreads_frames_and_bounds_the_scan(tmp_path: Path) -> None:
    path = write_video(tmp_path / "v.mp4", [_still("astronaut")] * 50, size=SIZE, fps=25)
    s = sample(path, 6, max_side=80, scan_fps=5.0)
    assert len(s.frames) == 6 and max(f.shape[1] for f in s.frames) == 80
    assert 0.0 < s.times[0] < s.times[-1] < 2.0
    assert 9 <= len(s.scan) <= 11 and s.scan.shape[1:] == (48, 64)
    assert s.info.duration_s == pytest.approx(2.0, abs=0.1) and not s.info.has_audio


def test_sampling_stops_within_one_batch_of_frames_once_cancelled(tmp_path: Path) -> None:
    """The cancel probe is checked every CHECK_EVERY decoded frames: a cancel during the sampling of a long
    video stops the decode at the next batch, not at its end (the OCR, transcript and embedding stages check
    per frame, segment and batch the same way)."""
    from reelforge.apps.mobs.models.frames import CHECK_EVERY
    from reelforge.errors import JobCancelled

    path = write_video(tmp_path / "v.mp4", [_still("astronaut")] * 200, size=SIZE, fps=25)
    checks: list[int] = []

    def cancelled() -> bool:
        checks.append(1)
        return len(checks) > 2  # cancelled while the second batch of frames decodes

    with pytest.raises(JobCancelled):
        sample(path, 6, max_side=80, scan_fps=5.0, cancelled=cancelled)
    assert len(checks) == 3 and 200 // CHECK_EVERY > 3  # stopped at the third of 13 batches


def test_thumbnail_skips_black_opening(tmp_path: Path) -> None:
    black = np.zeros((SIZE[1], SIZE[0], 3), np.uint8)
    path = write_video(tmp_path / "v.mp4", [black] * 30 + [_still("coffee")] * 20, size=SIZE, fps=25)
    png, t = thumbnail(path, width=120)
    from PIL import Image

    img = Image.open(io.BytesIO(png))
    assert img.format == "PNG" and img.size == (120, 90)
    assert t >= 1.2
    assert not is_black(frame_quality(np.asarray(img.convert("RGB"))))


def test_all_black_video_still_gets_a_thumbnail(tmp_path: Path) -> None:
    black = np.zeros((SIZE[1], SIZE[0], 3), np.uint8)
    png, t = thumbnail(write_video(tmp_path / "b.mp4", [black] * 25, size=SIZE), width=64)
    assert png.startswith(b"\x89PNG") and 0.0 <= t < 1.0


def test_activity_tells_static_from_moving_and_counts_cuts(tmp_path: Path) -> None:
    still = _still("rocket")
    static = measure(sample(write_video(tmp_path / "s.mp4", [still] * 50, size=SIZE), 6))
    rng = np.random.default_rng(0)
    moving_frames = list(pan_zoom_frames(photo("rocket"), "", size=SIZE, n=50, rng=rng))
    moving = measure(sample(write_video(tmp_path / "m.mp4", moving_frames, size=SIZE), 6))
    cut = measure(sample(write_video(tmp_path / "c.mp4", [still] * 25 + [_still("moon")] * 25, size=SIZE), 6))
    assert static["motion"] < 0.002 < 0.004 < moving["motion"]
    assert static["scene_cuts"] == 0 and moving["scene_cuts"] == 0 and cut["scene_cuts"] == 1
    assert static["coherence"] > 0.8 and static["black_fraction"] == 0.0
    noise = measure(sample(write_video(tmp_path / "n.mp4", [rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
                                                              for _ in range(25)], size=SIZE), 4))
    assert noise["coherence"] < 0.2 and noise["subject_presence"] == 0.0


def test_face_counts_as_subject(tmp_path: Path) -> None:
    path = write_video(tmp_path / "f.mp4", [np.asarray(photo("astronaut"))[::2, ::2].copy()] * 10,
                       size=(256, 256), fps=10)
    a = measure(sample(path, 2))
    assert a["faces"] == 1.0 and a["subject_presence"] == 1.0


def test_no_audio_stream_gives_empty_transcript_with_note(tmp_path: Path) -> None:
    path = write_video(tmp_path / "v.mp4", [_still("coffee")] * 10, size=SIZE)
    t = transcribe(path)
    assert t.text == "" and t.words == [] and "no audio stream" in t.notes[0]


def test_not_a_video_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "x.mp4"
    bad.write_bytes(b"not a video at all")
    with pytest.raises(ValidationFailed) as err:
        sample(bad, 4)
    assert err.value.code == "invalid_media"


def test_truncated_video_is_refused_when_decoded(tmp_path: Path) -> None:
    """An MP4 cut at 30 % with its index first claims 4 s; sampling decodes 1.2 s and says so, instead of analysing
    the part that is there as if it were the whole video."""
    from tests.fixtures.hostile import make_truncated_mp4

    cut = make_truncated_mp4(tmp_path / "cut.mp4", keep=0.3)
    with pytest.raises(ValidationFailed) as err:
        sample(cut, 8)
    assert err.value.code == "media_truncated"


def test_playlists_are_not_followed(tmp_path: Path) -> None:
    from tests.fixtures.hostile import make_hls_playlist

    real = write_video(tmp_path / "v.mp4", [_still("coffee")] * 10, size=SIZE)
    playlist = make_hls_playlist(tmp_path / "list.m3u8", [str(real), f"file://{real}"])
    for fn in (lambda: sample(playlist, 4), lambda: transcribe(playlist)):
        with pytest.raises(ValidationFailed) as err:
            fn()
        assert err.value.code == "unsupported_format"
