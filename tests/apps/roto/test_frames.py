"""FrameSource: probing, random access and streaming both ways, on videos made here with ffmpeg.

References come from outside the code under test: a plain sequential PyAV decode for pixels and timestamps,
and the ffmpeg binary's own auto-rotation for what a player shows.
"""

from __future__ import annotations

import itertools
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from reelforge import errors
from reelforge.adapters.media.ffmpeg import run_ffmpeg
from reelforge.apps.roto.frames import FrameSource, rotate
from tests.fixtures import videos as v


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("frames")
    files = {
        "cfr": v.make_testsrc(d / "cfr.mp4", seconds=3.0, gop=12),
        "silent": v.make_testsrc(d / "silent.mkv", seconds=1.0, audio=False),
        "vfr_mp4": v.make_vfr_video(d / "vfr.mp4", seconds=3.0),
        "vfr_mkv": v.make_vfr_video(d / "vfr.mkv", seconds=3.0, audio=False),
        "rot90": v.make_rotated_video(d / "rot90.mp4", 90, size=(160, 96)),
        "rot180": v.make_rotated_video(d / "rot180.mp4", 180, size=(160, 96), audio=False),
        "rot270": v.make_rotated_video(d / "rot270.mp4", 270, size=(160, 96)),
        "long_gop": v.make_testsrc(d / "long_gop.mp4", seconds=4.0, gop=96, audio=False),
    }
    (d / "list.m3u8").write_text("#EXTM3U\n#EXTINF:2,\ncfr.mp4\n#EXT-X-ENDLIST\n")
    files["playlist"] = d / "list.m3u8"
    (d / "notes.txt").write_text("no video here\n")
    files["text"] = d / "notes.txt"
    return files


def shown_by_ffmpeg(path: Path, width: int, height: int) -> list[np.ndarray]:
    """Every frame as the ffmpeg binary shows it (auto-rotation on), as RGB arrays."""
    out = path.with_suffix(".rgb")
    run_ffmpeg(["-i", str(path), "-map", "0:v:0", "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24",
                str(out)])
    raw = np.frombuffer(out.read_bytes(), np.uint8)
    out.unlink()
    return list(raw.reshape(-1, height, width, 3))


def test_probe_constant_rate(media: dict[str, Path]) -> None:
    with FrameSource(media["cfr"]) as fs:
        info = fs.info
        assert (info.width, info.height, info.coded_width, info.coded_height) == (160, 120, 160, 120)
        assert info.frame_count == 72 == v.count_frames(media["cfr"])
        assert info.fps == pytest.approx(24.0) and not info.vfr and info.rotation == 0
        assert info.has_audio and info.duration_s == pytest.approx(3.0, abs=1e-6)
        assert info.keyframes == (0, 12, 24, 36, 48, 60)
        assert [p * info.time_base for p in info.pts] == v.video_pts_seconds(media["cfr"])
        assert set(info.durations) == {info.pts[1] - info.pts[0]}
        assert info.time_of(24) == pytest.approx(1.0) and info.index_at(1.01) == 24 and info.index_at(-5) == 0
        summary = info.summary()
        assert summary["frame_count"] == 72 and summary["has_audio"] is True and summary["rotation"] == 0
    with FrameSource(media["silent"]) as fs:
        assert not fs.info.has_audio and fs.info.frame_count == 24


@pytest.mark.parametrize("name", ["vfr_mp4", "vfr_mkv"])
def test_probe_variable_rate(media: dict[str, Path], name: str) -> None:
    path = media[name]
    with FrameSource(path) as fs:
        info = fs.info
        assert info.vfr
        times = [p * info.time_base for p in info.pts]
        assert times == v.video_pts_seconds(path)
        assert info.frame_count == len(times) == v.count_frames(path)
        assert len(set(info.durations)) > 2  # 1 to 4 ticks of 1/30 s
        assert list(info.durations[:-1]) == [b - a for a, b in itertools.pairwise(info.pts)]
        # time -> frame follows the real timestamps, not an average rate
        for n in (5, 17, info.frame_count - 1):
            assert info.index_at(info.time_of(n)) == n
        ref = v.frames_rgb(path)
        for n in (0, 9, 10, 33, info.frame_count - 1, 2):
            assert np.array_equal(fs.frame(n), ref[n]), n


@pytest.mark.parametrize("name,rotation", [("rot90", 90), ("rot180", 180), ("rot270", 270)])
def test_rotation_matches_what_a_player_shows(media: dict[str, Path], name: str, rotation: int) -> None:
    with FrameSource(media[name]) as fs:
        info = fs.info
        assert info.rotation == rotation and (info.coded_width, info.coded_height) == (160, 96)
        assert (info.width, info.height) == ((96, 160) if rotation in (90, 270) else (160, 96))
        shown = shown_by_ffmpeg(media[name], info.width, info.height)
        assert len(shown) == info.frame_count
        for n in (0, 13, info.frame_count - 1):
            got = fs.frame(n)
            assert got.shape == (info.height, info.width, 3)
            # the same decode up to the RGB conversion's rounding
            assert np.abs(got.astype(int) - shown[n].astype(int)).mean() < 2.0, n
        # and far from the unrotated picture (the pattern is not symmetric)
        plain = fs.frame(0)
        assert not np.array_equal(plain, rotate(plain, 180))


def test_random_access_matches_sequential_decode(media: dict[str, Path]) -> None:
    path = media["cfr"]
    ref = v.frames_rgb(path)
    with FrameSource(path, cache_frames=4) as fs:
        for n in (70, 3, 36, 35, 37, 71, 0, 59, 60, 61, 12, 11):
            assert np.array_equal(fs.frame(n), ref[n]), n
        with pytest.raises(ValueError):
            fs.frame(3)[0, 0, 0] = 1  # cached frames are read-only


def test_seeks_decode_at_most_a_gop_and_cache_hits_decode_nothing(media: dict[str, Path]) -> None:
    with FrameSource(media["cfr"], cache_frames=4) as fs:
        fs.frame(47)  # GOP 36..47: 12 decodes at most
        assert fs.decoded <= 12
        before = fs.decoded
        fs.frame(47)
        assert fs.decoded == before  # from the cache
        fs.frame(48)  # the next frame: the decoder goes on, one decode
        assert fs.decoded == before + 1
        fs.frame(50)
        assert fs.decoded == before + 3
        fs.frame(10)  # back: seek to 0, decode 0..10
        assert fs.decoded == before + 3 + 11


def test_iterates_forwards_and_backwards(media: dict[str, Path]) -> None:
    path = media["vfr_mp4"]
    ref = v.frames_rgb(path)
    n = len(ref)
    with FrameSource(path, block=7) as fs:
        got = list(fs.iter_frames())
        assert [i for i, _ in got] == list(range(n))
        assert all(np.array_equal(f, ref[i]) for i, f in got)
        back = list(fs.iter_frames(n - 1, None, -1))
        assert [i for i, _ in back] == list(range(n - 1, -1, -1))
        assert all(np.array_equal(f, ref[i]) for i, f in back)
        assert [i for i, _ in fs.iter_frames(40, 3, -3)] == list(range(40, 3, -3))
        assert [i for i, _ in fs.iter_frames(5, 30, 4)] == list(range(5, 30, 4))
        assert list(fs.iter_frames(10, 10)) == []
        for i, f in fs.iter_frames(31, 8, -5):
            assert np.array_equal(f, ref[i])


def test_backward_streaming_holds_one_block(media: dict[str, Path]) -> None:
    """A 96-frame GOP walked backwards with blocks of 8 frames: peak memory stays near 8 frames, far below the
    whole video's 96 frames."""
    path = media["long_gop"]
    with FrameSource(path, block=8) as fs:
        info = fs.info
        assert info.keyframes == (0,) and info.frame_count == 96
        frame = info.frame_bytes()
        tracemalloc.start()
        try:
            seen = [i for i, _ in fs.iter_frames(None, None, -1)]
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert seen == list(range(95, -1, -1))
        assert peak < 20 * frame, (peak, frame)
        assert 96 * frame > 4 * peak


def test_rotated_streaming_is_rotated(media: dict[str, Path]) -> None:
    with FrameSource(media["rot90"]) as fs:
        shapes = {f.shape for _, f in fs.iter_frames(None, None, -1)}
        assert shapes == {(160, 96, 3)}


def test_refusals(media: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(errors.ValidationFailed) as e:
        FrameSource(media["playlist"])  # it names a real video beside it: nothing but the file itself is read
    assert e.value.code in ("unsupported_format", "not_a_video")
    with pytest.raises(errors.ValidationFailed) as e:
        FrameSource(media["text"])
    assert e.value.code == "not_a_video"
    with pytest.raises(errors.ValidationFailed) as e:
        FrameSource(tmp_path / "missing.mp4")
    assert e.value.code == "not_a_video"
    with FrameSource(media["silent"]) as fs:
        for bad in (-1, 24, 10**9):
            with pytest.raises(errors.ValidationFailed) as e:
                fs.frame(bad)
            assert e.value.code == "frame_out_of_range"
        with pytest.raises(errors.ValidationFailed) as e:
            list(fs.iter_frames(0, 25))
        assert e.value.code == "frame_out_of_range"
        with pytest.raises(errors.ValidationFailed) as e:
            list(fs.iter_frames(0, 5, 0))
        assert e.value.code == "invalid_range"


def test_media_policy_applies(media: dict[str, Path]) -> None:
    from reelforge.domain.media import MediaLimits

    with pytest.raises(errors.ValidationFailed) as e:
        FrameSource(media["cfr"], limits=MediaLimits(max_duration_s=1.0))
    assert e.value.code == "video_too_long"
