"""Chunk planning, chunk processing, joining and remuxing on real generated videos (PyAV + ffmpeg)."""

from __future__ import annotations

import json
import tracemalloc
import weakref
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from reelforge import errors
from reelforge.adapters.media.probe import VideoInfo, probe
from reelforge.adapters.media.video import (
    Chunk,
    EncodeOptions,
    MediaError,
    choose_container,
    concat_chunks,
    plan_chunks,
    process_chunk,
    remux,
)
from tests.fixtures import videos as v

FAST = EncodeOptions(preset="veryfast")


def identity(frames: list[np.ndarray]) -> list[np.ndarray]:
    return list(frames)


def nearest2x(frames: list[np.ndarray]) -> list[np.ndarray]:
    return [np.repeat(np.repeat(f, 2, axis=0), 2, axis=1) for f in frames]


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("video")
    return {
        "testsrc": v.make_testsrc(d / "testsrc.mp4"),
        "rich_mkv": v.make_rich_video(d / "rich.mkv"),
        "rich_mp4": v.make_rich_video(d / "rich.mp4"),
        "vfr": v.make_vfr_video(d / "vfr.mp4"),
        "rotated": v.make_rotated_video(d / "rotated.mp4", rotation=90),
    }


def keyframe_pts(path: Path) -> list[int]:
    import av

    with av.open(str(path)) as c:
        s = c.streams.video[0]
        return sorted(int(p.pts) for p in c.demux(s) if p.size and p.is_keyframe and p.pts is not None)


def all_pts(path: Path) -> list[int]:
    import av

    with av.open(str(path)) as c:
        s = c.streams.video[0]
        return sorted(int(p.pts) for p in c.demux(s) if p.size and p.pts is not None)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)


# ------------------------------------------------------------------------------------------------ planning


@pytest.mark.parametrize("name", ["testsrc", "rich_mkv", "vfr"])
@pytest.mark.parametrize("seconds", [0.3, 0.9, 100.0])
def test_plan_covers_every_frame_once_and_cuts_at_keyframes(media: dict[str, Path], name: str,
                                                             seconds: float) -> None:
    path = media[name]
    info = probe(path)
    chunks = plan_chunks(path, info, seconds)
    pts = all_pts(path)
    keys = set(keyframe_pts(path))
    tb = Fraction(info.time_base)
    covered: list[int] = []
    for i, c in enumerate(chunks):
        assert c.index == i
        assert c.start_pts in keys
        members = [p for p in pts if p >= c.start_pts and (c.end_pts is None or p < c.end_pts)]
        assert len(members) == c.frames and c.start_frame == len(covered)
        covered += members
        if c.end_pts is not None:
            assert chunks[i + 1].start_pts == c.end_pts
            assert (c.end_pts - c.start_pts) * tb >= Fraction(seconds).limit_denominator(1000) - tb
            assert c.end_s - c.start_s >= seconds - 1e-6
        assert Chunk.from_dict(json.loads(json.dumps(c.to_dict()))) == c
    assert covered == pts and sum(c.frames for c in chunks) == info.frames
    assert chunks[-1].end_pts is None
    assert chunks[-1].end_s == pytest.approx(info.video_duration_s, abs=1e-6)
    if seconds == 100.0:
        assert len(chunks) == 1
    if seconds == 0.3 and name == "testsrc":
        assert len(chunks) == 4  # a keyframe every 12 frames = 0.5 s


def test_plan_rejects_bad_length(media: dict[str, Path]) -> None:
    info = probe(media["testsrc"])
    with pytest.raises(errors.ValidationFailed):
        plan_chunks(media["testsrc"], info, 0)


# ------------------------------------------------------------------------------------------------ end to end


def upscale_video(src: Path, work: Path, frame_fn: Callable[[list[np.ndarray]], list[np.ndarray]], *,
                  container: str = "mp4", encode: EncodeOptions = FAST, chunk_seconds: float = 0.5,
                  chunk_suffix: str = ".mp4", batch_size: int = 4) -> tuple[VideoInfo, Path, list[Chunk]]:
    info = probe(src)
    chunks = plan_chunks(src, info, chunk_seconds)
    assert len(chunks) >= 2
    # Chunks are independent: process them out of order to prove it.
    results = {}
    for c in reversed(chunks):
        seen: list[int] = []
        r = process_chunk(src, info, Chunk.from_dict(c.to_dict()), work / f"chunk{c.index:04d}{chunk_suffix}",
                          frame_fn, encode=encode, batch_size=batch_size, progress=seen.append)
        assert r.frames == c.frames and seen[-1] == c.frames and seen == sorted(seen)
        assert r.seconds == pytest.approx(c.end_s - c.start_s, abs=1e-9)
        results[c.index] = r
    joined = work / f"joined{chunk_suffix}"
    concat_chunks([results[i].path for i in range(len(chunks))], joined)
    assert v.count_frames(joined) == info.frames
    out = work / f"final.{container}"
    remux(joined, src, out, container=container)
    return info, out, chunks


FLAGS = ("default", "forced", "hearing_impaired", "comment")


def dispositions(path: Path) -> list[set[str]]:
    """Each stream's disposition flags, by name."""
    import av
    import av.stream

    with av.open(str(path)) as c:
        return [{name for name, flag in av.stream.Disposition.__members__.items() if int(s.disposition) & int(flag)}
                for s in c.streams]


def expected_dispositions(src: Path, container: str) -> list[set[str]]:
    """The source's flags as remux must write them: MP4 marks the first video/audio/subtitle track default when
    none of its type is (its "track enabled" rule), stores hearing_impaired as the caption role (read back with
    captions) and has no place for "original"."""
    summary = v.stream_summary(src)
    flags = [d - {"attached_pic", "timed_thumbnails", "multilayer"} for d in dispositions(src)]
    if container == "mp4":
        for kind in ("video", "audio", "subtitle"):
            of_kind = [i for i, s in enumerate(summary) if s["type"] == kind]
            if of_kind and not any("default" in flags[i] for i in of_kind):
                flags[of_kind[0]].add("default")
        flags = [(d | {"captions"} if "hearing_impaired" in d else d) - {"original"} for d in flags]
    return [d for s, d in zip(summary, flags, strict=True) if s["type"] != "data"]


def assert_same_streams(src: Path, out: Path) -> None:
    """Same streams, in order, with languages, titles and dispositions (the video's too); mp4 chapter text tracks
    (data) aside."""
    def kept(p: Path) -> list[dict]:
        return [s for s in v.stream_summary(p) if s["type"] not in ("data",)]

    a, b = kept(src), kept(out)
    assert [s["type"] for s in a] == [s["type"] for s in b]
    for x, y in zip(a, b, strict=True):
        assert (x["language"], x["title"]) == (y["language"], y["title"]), (x, y)
        if x["type"] == "audio":
            assert x["codec"] == y["codec"]
    container = "mp4" if out.suffix == ".mp4" else "mkv"
    got = [d for s, d in zip(v.stream_summary(out), dispositions(out), strict=True) if s["type"] != "data"]
    want = expected_dispositions(src, container)
    assert [{f for f in d if f in FLAGS} for d in got] == [{f for f in d if f in FLAGS} for d in want], (got, want)


@pytest.mark.parametrize(("name", "fn", "container", "codec"), [
    ("rich_mkv", nearest2x, "mp4", "h264"),
    ("rich_mkv", identity, "mkv", "h265"),
    ("rich_mp4", nearest2x, "mkv", "h264"),
    ("rich_mp4", identity, "mp4", "h264"),
])
def test_rich_video_keeps_everything(media: dict[str, Path], tmp_path: Path, name: str, fn, container: str,
                                     codec: str) -> None:
    src = media[name]
    info, out, _ = upscale_video(src, tmp_path, fn, container=container, encode=EncodeOptions(codec=codec,
                                                                                             preset="veryfast"))
    got = probe(out)
    scale = 2 if fn is nearest2x else 1
    assert (got.width, got.height) == (info.width * scale, info.height * scale)
    assert got.codec == {"h264": "h264", "h265": "hevc"}[codec]
    assert got.frames == info.frames == v.count_frames(out)
    frame = 1 / info.fps
    assert abs(v.video_duration(out) - v.video_duration(src)) <= frame
    assert abs(got.duration_s - info.duration_s) <= frame
    assert_same_streams(src, out)
    assert got.chapters == info.chapters == 2
    assert [c["title"] for c in v.chapters(out)] == [c["title"] for c in v.chapters(src)]
    assert v.global_tags(out)["title"] == v.RICH_TITLE
    assert [c for _, c in v.subtitle_cues(out) if c] == list(v.RICH_CUES)
    # Same timestamps (Matroska keeps milliseconds).
    tol = Fraction(1, 1000) if "mkv" in (container, src.suffix[1:]) else 0
    assert all(abs(a - b) <= tol for a, b in zip(v.video_pts_seconds(src), v.video_pts_seconds(out), strict=True))
    # The picture is the source's, scaled: compare a few frames after scaling back down.
    for a, b in zip(v.frames_rgb(src, 8), v.frames_rgb(out, 8), strict=True):
        assert psnr(a, b[::scale, ::scale]) > 30


def test_vfr_timestamps_preserved(media: dict[str, Path], tmp_path: Path) -> None:
    src = media["vfr"]
    info, out, _ = upscale_video(src, tmp_path, nearest2x, chunk_seconds=0.3)
    got = probe(out)
    assert got.vfr and got.frames == info.frames == v.count_frames(out)
    assert v.video_pts_seconds(out) == v.video_pts_seconds(src)
    assert v.video_duration(out) == pytest.approx(v.video_duration(src), abs=1e-9)
    assert_same_streams(src, out)


def test_rotation_kept(media: dict[str, Path], tmp_path: Path) -> None:
    _, out, _ = upscale_video(media["rotated"], tmp_path, nearest2x,
                                 encode=EncodeOptions(codec="h265", preset="ultrafast"))
    got = probe(out)
    assert got.rotation == 90 and (got.width, got.height) == (320, 240) and got.display_size == (240, 320)
    assert got.frames == 48 and got.codec == "hevc"


def test_matroska_chunks(media: dict[str, Path], tmp_path: Path) -> None:
    """Chunk files in Matroska (no stored decode timestamps) join too; timestamps keep millisecond precision."""
    src = media["testsrc"]
    info, out, _ = upscale_video(src, tmp_path, identity, chunk_suffix=".mkv", container="mkv")
    assert v.count_frames(out) == info.frames
    assert abs(v.video_duration(out) - info.video_duration_s) <= 1 / info.fps


# ------------------------------------------------------------------------------------------------ behaviour


def test_process_chunk_decodes_only_its_frames(media: dict[str, Path], tmp_path: Path) -> None:
    src = media["testsrc"]
    info = probe(src)
    chunks = plan_chunks(src, info, 0.5)
    c = chunks[2]
    source_frames = v.frames_rgb(src)[c.start_frame:c.start_frame + c.frames]
    got: list[np.ndarray] = []

    def record(frames: list[np.ndarray]) -> list[np.ndarray]:
        got.extend(f.copy() for f in frames)
        return frames

    r = process_chunk(src, info, c, tmp_path / "c2.mp4", record, batch_size=5)
    assert len(got) == c.frames == r.frames == v.count_frames(r.path)
    for a, b in zip(got, source_frames, strict=True):
        assert np.array_equal(a, b)
    assert v.video_pts_seconds(r.path)[0] == c.start_pts * Fraction(info.time_base)


def test_cancel_stops_within_one_batch(media: dict[str, Path], tmp_path: Path) -> None:
    src = media["testsrc"]
    info = probe(src)
    chunk = plan_chunks(src, info, 100.0)[0]
    calls: list[int] = []
    flag = {"cancel": False}

    def fn(frames: list[np.ndarray]) -> list[np.ndarray]:
        calls.append(len(frames))
        flag["cancel"] = True  # a cancel arrives while the first batch runs
        return frames

    out = tmp_path / "cancelled.mp4"
    with pytest.raises(errors.JobCancelled):
        process_chunk(src, info, chunk, out, fn, batch_size=4, cancelled=lambda: flag["cancel"])
    assert calls == [4]
    assert not out.exists() and not list(tmp_path.iterdir())
    with pytest.raises(errors.JobCancelled):
        process_chunk(src, info, chunk, out, fn, cancelled=lambda: True)


def _peak_bytes(src: Path, tmp: Path, batch: int, live: list[int]) -> int:
    info = probe(src)
    chunk = plan_chunks(src, info, 1000.0)[0]
    refs: list[weakref.ref] = []

    def fn(frames: list[np.ndarray]) -> list[np.ndarray]:
        out = nearest2x(frames)
        refs.extend(weakref.ref(f) for f in (*frames, *out))
        live.append(sum(r() is not None for r in refs))
        return out

    tracemalloc.start()
    try:
        process_chunk(src, info, chunk, tmp / f"{src.stem}.mp4", fn, batch_size=batch,
                      encode=EncodeOptions(preset="ultrafast"))
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_is_bounded(tmp_path: Path) -> None:
    short = v.make_testsrc(tmp_path / "short.mp4", seconds=2.0, size=(320, 240), audio=False)
    long = v.make_testsrc(tmp_path / "long.mp4", seconds=6.0, size=(320, 240), audio=False)
    live_short: list[int] = []
    live_long: list[int] = []
    peak_short = _peak_bytes(short, tmp_path, 4, live_short)
    peak_long = _peak_bytes(long, tmp_path, 4, live_long)
    frame_in, frame_out = 320 * 240 * 3, 640 * 480 * 3
    # Never more than two batches of frames in and out at once, whatever the length.
    assert max(live_long) <= 2 * 4 * 2 and max(live_short) <= 2 * 4 * 2
    assert peak_long < 3 * 4 * (frame_in + frame_out)
    assert peak_long < 1.25 * peak_short + frame_out  # 3x the frames, same peak
    assert len(live_long) == 144 // 4


def test_odd_output_size_is_padded(media: dict[str, Path], tmp_path: Path) -> None:
    src = media["testsrc"]
    info = probe(src)
    chunk = plan_chunks(src, info, 0.5)[0]

    def crop_odd(frames: list[np.ndarray]) -> list[np.ndarray]:
        return [f[:119, :159] for f in frames]

    r = process_chunk(src, info, chunk, tmp_path / "odd.mp4", crop_odd, encode=FAST)
    assert (r.width, r.height) == (160, 120)
    assert v.count_frames(r.path) == chunk.frames
    img = v.frames_rgb(r.path, 1)[0]
    assert psnr(img[:119, :159], v.frames_rgb(src, 1)[0][:119, :159]) > 30


def test_bad_frame_fn_output(media: dict[str, Path], tmp_path: Path) -> None:
    src = media["testsrc"]
    info = probe(src)
    chunk = plan_chunks(src, info, 0.5)[0]
    cases = [
        lambda fs: fs[:-1],
        lambda fs: [f.astype(np.float32) for f in fs],
        lambda fs: [f[..., 0] for f in fs],
        lambda fs: [f if i % 2 else f[:-2] for i, f in enumerate(fs)],
    ]
    for fn in cases:
        with pytest.raises(MediaError) as exc:
            process_chunk(src, info, chunk, tmp_path / "bad.mp4", fn)
        assert exc.value.code == "frame_fn_invalid"
    assert not (tmp_path / "bad.mp4").exists()


def test_concat_refuses_mismatched_chunks(media: dict[str, Path], tmp_path: Path) -> None:
    src = media["testsrc"]
    info = probe(src)
    c0, c1 = plan_chunks(src, info, 0.5)[:2]
    a = process_chunk(src, info, c0, tmp_path / "a.mp4", identity, encode=FAST)
    b = process_chunk(src, info, c1, tmp_path / "b.mp4", nearest2x, encode=FAST)
    with pytest.raises(MediaError) as exc:
        concat_chunks([a.path, b.path], tmp_path / "joined.mp4")
    assert exc.value.code == "bad_chunk"
    assert not (tmp_path / "joined.mp4").exists()


def test_remux_converts_audio_mp4_cannot_hold(tmp_path: Path) -> None:
    from reelforge.adapters.media.ffmpeg import run_ffmpeg

    src = tmp_path / "pcm.mkv"
    run_ffmpeg(["-f", "lavfi", "-i", "testsrc2=size=96x64:rate=24:duration=1", "-f", "lavfi", "-i",
                "sine=duration=1", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "pcm_s16le",
                "-metadata:s:a:0", "language=deu", str(src)])
    info = probe(src)
    assert choose_container(info) == "mp4"
    chunk = plan_chunks(src, info, 100.0)[0]
    r = process_chunk(src, info, chunk, tmp_path / "c.mp4", identity, encode=FAST)
    remux(r.path, src, tmp_path / "out.mp4")
    summary = v.stream_summary(tmp_path / "out.mp4")
    assert [(s["type"], s["codec"], s["language"]) for s in summary] == [("video", "h264", None),
                                                                        ("audio", "aac", "deu")]
    remux(r.path, src, tmp_path / "out.mkv", container="mkv")
    assert v.stream_summary(tmp_path / "out.mkv")[1]["codec"] == "pcm_s16le"
    with pytest.raises(errors.ValidationFailed):
        remux(r.path, src, tmp_path / "out.avi", container="avi")


@pytest.mark.parametrize("container", ["mp4", "mkv"])
def test_remux_keeps_dispositions(media: dict[str, Path], tmp_path: Path, container: str) -> None:
    """Every stream keeps its disposition flags: a video that is not default stays so (in Matroska; MP4 must
    enable one video track), forced, hearing_impaired, comment, dub, descriptions... survive for each stream."""
    from reelforge.adapters.media.ffmpeg import run_ffmpeg

    src = tmp_path / "flags.mkv"
    flags = {0: "0", 1: "comment+original", 2: "default+hearing_impaired+dub",
             3: "forced+visual_impaired+descriptions"}
    args = ["-i", str(media["rich_mkv"]), "-map", "0", "-c", "copy"]
    for i, f in flags.items():
        args += [f"-disposition:{i}", f]
    run_ffmpeg([*args, str(src)])
    assert dispositions(src) == [set() if f == "0" else set(f.split("+")) for f in flags.values()]
    info = probe(src)
    r = process_chunk(src, info, plan_chunks(src, info, 100.0)[0], tmp_path / "c.mp4", identity,
                      encode=EncodeOptions(preset="ultrafast"))
    out = tmp_path / f"out.{container}"
    remux(r.path, src, out, container=container)
    assert_same_streams(src, out)
    got = [d for s, d in zip(v.stream_summary(out), dispositions(out), strict=True) if s["type"] != "data"]
    assert got == expected_dispositions(src, container)
    if container == "mkv":
        assert got == dispositions(src) and "default" not in got[0]
    else:
        assert got[0] == {"default"} and got[3] == {"default", "forced", "visual_impaired", "descriptions"}


def test_decodes_only_the_chunk(media: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Seeking lands on the chunk's keyframe: no frame of earlier chunks is decoded."""
    import reelforge.adapters.media.video as video

    original = video._chunk_frames
    decoded: list[int] = []

    def counting(*args, **kwargs):
        decoded.append(0)
        for frame in original(*args, **kwargs):
            decoded[-1] += 1
            yield frame

    monkeypatch.setattr(video, "_chunk_frames", counting)
    for name in ("testsrc", "rich_mkv"):
        src = media[name]
        info = probe(src)
        chunks = plan_chunks(src, info, 0.5)
        for c in chunks:
            process_chunk(src, info, c, tmp_path / f"{name}{c.index}.mp4", identity, encode=FAST)
            # this chunk's frames, plus the first frame of the next chunk that tells it to stop
            assert decoded[-1] == c.frames + (c.end_pts is not None)


@pytest.mark.parametrize("kind", ["open_gop", "mpegts_offset", "mkv_offset_ntsc"])
def test_unusual_sources(tmp_path: Path, kind: str) -> None:
    """Open GOPs (leading B-frames belong to the previous chunk), MPEG-TS starting at 1.48 s with MP2 audio,
    and Matroska starting at 0.5 s at 30000/1001 fps: exact frames and timestamps, audio start kept."""
    from reelforge.adapters.media.ffmpeg import run_ffmpeg

    lavfi = ["-f", "lavfi", "-i", "testsrc2=size=96x64:rate=25:duration=2", "-f", "lavfi", "-i", "sine=duration=2"]
    if kind == "open_gop":
        src = tmp_path / "src.mp4"
        run_ffmpeg([*lavfi, "-c:v", "libx264", "-preset", "veryfast", "-x264-params",
                    "keyint=10:min-keyint=10:open-gop=1:scenecut=0:bframes=3", "-c:a", "aac", str(src)])
    elif kind == "mpegts_offset":
        src = tmp_path / "src.ts"
        run_ffmpeg([*lavfi, "-c:v", "libx264", "-preset", "veryfast", "-g", "10", "-c:a", "mp2", "-f", "mpegts",
                    str(src)])
    else:
        src = tmp_path / "src.mkv"
        run_ffmpeg(["-f", "lavfi", "-i", "testsrc2=size=96x64:rate=30000/1001:duration=2", "-f", "lavfi", "-i",
                    "sine=duration=2", "-c:v", "libx264", "-preset", "veryfast", "-g", "15", "-c:a", "libopus",
                    "-output_ts_offset", "0.5", str(src)])
    work = tmp_path / "work"
    info, out, _ = upscale_video(src, work, nearest2x, chunk_seconds=0.3)
    got = probe(out)
    assert got.frames == info.frames == v.count_frames(out)
    assert v.video_pts_seconds(out) == v.video_pts_seconds(src)
    assert abs(got.duration_s - info.duration_s) <= 1 / info.fps
    assert [s["type"] for s in v.stream_summary(out)] == ["video", "audio"]

    def audio_start(p: Path) -> float:
        import av

        with av.open(str(p)) as c:
            a = c.streams.audio[0]
            return float(a.start_time * Fraction(a.time_base or 1)) if a.start_time is not None else 0.0

    # Opus's 6.5 ms pre-skip is reported differently by Matroska and MP4 (first packet vs first sample).
    assert audio_start(out) == pytest.approx(audio_start(src), abs=0.002 if kind != "mkv_offset_ntsc" else 0.01)


def test_frame_count_guard(media: dict[str, Path], tmp_path: Path) -> None:
    """A chunk that does not decode to the frames its plan promised fails loudly (422), leaving no file."""
    import dataclasses

    from reelforge.adapters.media.video import CorruptVideo

    src = media["testsrc"]
    info = probe(src)
    chunk = plan_chunks(src, info, 0.5)[1]
    with pytest.raises(CorruptVideo) as exc:
        process_chunk(src, info, dataclasses.replace(chunk, frames=chunk.frames + 1), tmp_path / "x.mp4", identity)
    assert exc.value.code == "frame_count_mismatch" and exc.value.status == 422
    assert not list(tmp_path.iterdir())


def test_ass_subtitles_and_font_attachment(media: dict[str, Path], tmp_path: Path) -> None:
    """MKV keeps ASS subtitles and font attachments as they are; MP4 gets mov_text and leaves the font out."""
    from reelforge.adapters.media.ffmpeg import run_ffmpeg

    font = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
    if not font.is_file():
        pytest.skip("no DejaVu font to attach")
    src = tmp_path / "ass.mkv"
    run_ffmpeg(["-i", str(media["rich_mkv"]), "-map", "0", "-c", "copy", "-c:s", "ass", "-attach", str(font),
                "-metadata:s:t:0", "mimetype=font/ttf", str(src)])
    info = probe(src)
    assert [(s.type, s.codec) for s in info.streams][3:] == [("subtitle", "ssa"), ("attachment", "font/ttf")]
    assert choose_container(info) == "mkv"
    work = tmp_path / "work"
    _, out, _ = upscale_video(src, work, identity, container="mkv", chunk_seconds=1.0)
    assert [(s["type"], s["codec"]) for s in v.stream_summary(out)][3:] == [("subtitle", "ssa"), ("attachment", None)]
    assert "Hello there." in v.subtitle_cues(out)[0][1]
    remux(work / "joined.mp4", src, work / "out.mp4", container="mp4")
    kinds = [(s["type"], s["codec"]) for s in v.stream_summary(work / "out.mp4") if s["type"] != "data"]
    assert kinds[3:] == [("subtitle", "mov_text")]
    assert [c for _, c in v.subtitle_cues(work / "out.mp4") if c] == list(v.RICH_CUES)


# ------------------------------------------------------------------------------------------------ native scaling


def test_native_scale_matches_the_rgb_path(media: dict[str, Path], tmp_path: Path) -> None:
    """Lanczos inside libswscale (YUV to YUV) gives the same picture as Pillow's Lanczos on RGB frames, with
    exact frames, timestamps and streams; cancel still stops within one batch."""
    from PIL import Image

    from reelforge.adapters.media.video import NativeScale

    src = media["vfr"]
    info = probe(src)
    w, h = info.width * 2, info.height * 2
    LOSSLESS = EncodeOptions(crf=0, preset="ultrafast")

    def pillow2x(frames: list[np.ndarray]) -> list[np.ndarray]:
        return [np.asarray(Image.fromarray(f).resize((w, h), Image.Resampling.LANCZOS)) for f in frames]

    chunks = plan_chunks(src, info, 0.3)
    outs: dict[str, list[Path]] = {"native": [], "rgb": []}
    for c in chunks:
        seen: list[int] = []
        r = process_chunk(src, info, c, tmp_path / f"n{c.index}.mp4", None, encode=LOSSLESS, progress=seen.append,
                          native=NativeScale(w, h, "lanczos"))
        assert r.frames == c.frames == seen[-1] and (r.width, r.height) == (w, h)
        outs["native"].append(r.path)
        outs["rgb"].append(process_chunk(src, info, c, tmp_path / f"r{c.index}.mp4", pillow2x, encode=FAST).path)
    for name, paths in outs.items():
        concat_chunks(paths, tmp_path / f"{name}.mp4")
    native, rgb = tmp_path / "native.mp4", tmp_path / "rgb.mp4"
    assert v.count_frames(native) == info.frames
    assert v.video_pts_seconds(native) == v.video_pts_seconds(src)
    # The picture is what `ffmpeg -vf scale=...:flags=lanczos` makes of the source (the same libswscale filter,
    # chroma resampled in its 4:2:0 planes); Pillow's RGB Lanczos differs only at saturated edges.
    from reelforge.adapters.media.ffmpeg import run_ffmpeg

    bare = tmp_path / "bare.mp4"
    run_ffmpeg(["-i", str(src), "-vf", f"scale={w}:{h}:flags=lanczos", "-c:v", "libx264", "-crf", "0",
                "-preset", "ultrafast", "-fps_mode", "passthrough", "-an", str(bare)])
    for a, b, p in zip(v.frames_rgb(native, 8), v.frames_rgb(bare, 8), v.frames_rgb(rgb, 8), strict=True):
        assert psnr(a, b) > 30  # swscale flags differ slightly from the scale filter's defaults
        assert psnr(a, p) > 24 and abs(float(a.mean()) - float(p.mean())) < 1.5

    calls = {"n": 0}

    def cancel_after_first_batch() -> bool:
        calls["n"] += 1
        return calls["n"] > 2  # before the chunk, then before batch 1: go on; before batch 2: stop

    big = max(chunks, key=lambda c: c.frames)
    with pytest.raises(errors.JobCancelled):
        process_chunk(src, info, big, tmp_path / "cancel.mp4", None, encode=FAST, batch_size=2,
                      cancelled=cancel_after_first_batch, native=NativeScale(w, h))
    assert not (tmp_path / "cancel.mp4").exists()
    with pytest.raises(errors.ValidationFailed):
        NativeScale(w + 1, h)
    with pytest.raises(errors.ValidationFailed):
        process_chunk(src, info, big, tmp_path / "x.mp4", None)
