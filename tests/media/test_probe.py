"""probe(): what the video pipeline learns about an upload, and every refusal code, on real generated files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reelforge import errors
from reelforge.adapters.media import ffmpeg as ff
from reelforge.adapters.media.probe import VideoInfo, probe
from tests.fixtures import videos as v


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("probe")
    files = {
        "testsrc": v.make_testsrc(d / "testsrc.mp4"),
        "rich_mkv": v.make_rich_video(d / "rich.mkv"),
        "rich_mp4": v.make_rich_video(d / "rich.mp4"),
        "vfr": v.make_vfr_video(d / "vfr.mp4"),
        "rotated": v.make_rotated_video(d / "rotated.mp4", rotation=90),
        "rotated270": v.make_rotated_video(d / "rotated270.mkv", rotation=270, audio=False),
        "audio": v.make_audio_only(d / "audio.m4a"),
        "png": v.make_png(d / "still.png"),
    }
    (d / "notes.txt").write_text("this is not a video\n")
    files["text"] = d / "notes.txt"
    # A Matroska file whose video codec id nobody knows: patch the CodecID element, same length.
    mkv = v.make_testsrc(d / "plain.mkv", audio=False)
    raw = mkv.read_bytes()
    assert b"V_MPEG4/ISO/AVC" in raw
    (d / "unknown_codec.mkv").write_bytes(raw.replace(b"V_MPEG4/ISO/AVC", b"V_QQQQQ/ISO/AVC", 1))
    files["unknown_codec"] = d / "unknown_codec.mkv"
    return files


def test_testsrc(media: dict[str, Path]) -> None:
    info = probe(media["testsrc"])
    assert (info.width, info.height, info.codec, info.pix_fmt) == (160, 120, "h264", "yuv420p")
    assert info.fps == pytest.approx(24.0)
    assert info.frames == 48 == v.count_frames(media["testsrc"])
    assert info.duration_s == pytest.approx(2.0, abs=0.05)
    assert info.video_duration_s == pytest.approx(2.0, abs=1e-6)
    assert info.rotation == 0 and not info.vfr and info.chapters == 0
    assert [s.type for s in info.streams] == ["video", "audio"]
    assert info.streams[1].codec == "aac"
    assert "mp4" in info.format_name and info.size_bytes == media["testsrc"].stat().st_size


@pytest.mark.parametrize("name", ["rich_mkv", "rich_mp4"])
def test_rich_video(media: dict[str, Path], name: str) -> None:
    info = probe(media[name])
    assert (info.width, info.height, info.frames) == (192, 128, 72)
    assert info.chapters == 2
    assert info.metadata.get("title") == v.RICH_TITLE
    audio = [s for s in info.streams if s.type == "audio"]
    assert [(s.language, s.title) for s in audio] == [(a["language"], a["title"]) for a in v.RICH_AUDIO]
    subs = [s for s in info.streams if s.type == "subtitle"]
    assert len(subs) == 1 and subs[0].language == "eng" and subs[0].title == v.RICH_SUBTITLE["title"]
    assert subs[0].codec in (("srt", "subrip") if name == "rich_mkv" else ("mov_text",))
    assert [c for _, c in v.subtitle_cues(media[name]) if c] == list(v.RICH_CUES)


def test_vfr_and_cfr_detection(media: dict[str, Path]) -> None:
    vfr = probe(media["vfr"])
    assert vfr.vfr is True
    assert vfr.frames == v.count_frames(media["vfr"]) == len(v.video_pts_seconds(media["vfr"]))
    assert vfr.frames < 60  # frames were dropped from a 30 fps, 2 s source
    # Matroska rounds 24 fps timestamps to milliseconds (41/42 ms): still constant frame rate.
    assert probe(media["rich_mkv"]).vfr is False


def test_rotation(media: dict[str, Path]) -> None:
    info = probe(media["rotated"])
    assert info.rotation == 90
    assert (info.width, info.height) == (160, 120) and info.display_size == (120, 160)
    assert probe(media["rotated270"]).rotation == 270


def test_to_dict_is_json_and_round_trips(media: dict[str, Path]) -> None:
    info = probe(media["rich_mkv"])
    d = json.loads(json.dumps(info.to_dict()))
    assert d["streams"][1]["language"] == "eng"
    assert VideoInfo.from_dict(d) == info


@pytest.mark.parametrize(("name", "fragment"), [
    ("text", "Not a readable media file"),
    ("png", "still image"),
    ("audio", "no video stream (found: audio)"),
])
def test_not_a_video(media: dict[str, Path], name: str, fragment: str) -> None:
    with pytest.raises(errors.ValidationFailed) as exc:
        probe(media[name])
    assert exc.value.code == "not_a_video"
    assert exc.value.status == 422
    assert fragment in exc.value.message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(errors.ValidationFailed) as exc:
        probe(tmp_path / "nope.mp4")
    assert exc.value.code == "not_a_video"


def test_unsupported_codec(media: dict[str, Path]) -> None:
    with pytest.raises(errors.ValidationFailed) as exc:
        probe(media["unknown_codec"])
    assert exc.value.code == "unsupported_codec"
    assert "no decoder" in exc.value.message


def test_limits(media: dict[str, Path]) -> None:
    with pytest.raises(errors.ValidationFailed) as exc:
        probe(media["testsrc"], max_duration_s=1.5)
    assert exc.value.code == "video_too_long"
    assert "2.00 s" in exc.value.message and "1.5 s" in exc.value.message
    with pytest.raises(errors.ValidationFailed) as exc:
        probe(media["testsrc"], max_pixels=160 * 120 - 1)
    assert exc.value.code == "video_too_large"
    assert "160x120" in exc.value.message and str(160 * 120 - 1) in exc.value.message
    # At the limit exactly: accepted.
    assert probe(media["testsrc"], max_duration_s=2.5, max_pixels=160 * 120).frames == 48


def test_ffmpeg_location(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert Path(ff.ffmpeg_exe()).is_file()
    monkeypatch.setenv(ff.ENV_VAR, str(tmp_path / "missing-ffmpeg"))
    with pytest.raises(ff.FFmpegNotFound) as exc:
        ff.ffmpeg_exe()
    assert ff.ENV_VAR in exc.value.message
    monkeypatch.delenv(ff.ENV_VAR)
    # An explicit setting wins over the environment.
    exe = ff.ffmpeg_exe()
    assert ff.ffmpeg_exe(exe) == exe


def test_ffmpeg_failure_is_clear(tmp_path: Path) -> None:
    with pytest.raises(ff.FFmpegError) as exc:
        ff.run_ffmpeg(["-i", str(tmp_path / "absent.mp4"), str(tmp_path / "out.mp4")])
    assert exc.value.code == "ffmpeg_failed"
    assert "absent.mp4" in exc.value.message and "command" in exc.value.details
