"""Chunked video processing: plan chunks at keyframes, decode -> transform -> encode one chunk, join, remux.

Timestamps: every chunk keeps the source's own presentation timestamps (same time base), so joining needs no
offsets and variable frame rate survives. Chunk files should be MP4 (``.mp4``) or NUT (``.nut``): both store
those timestamps exactly; Matroska rounds them to milliseconds.

Frame sizes: H.264/H.265 in 4:2:0 need even dimensions. A frame_fn result with an odd width or height is padded
by one row/column that repeats the edge pixels (no content is lost, the picture grows by at most one pixel); the
ChunkResult reports the encoded size.
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields
from fractions import Fraction
from pathlib import Path
from typing import Any, cast

import av
import av.stream
import numpy as np

from reelforge import errors
from reelforge.adapters.media.ffmpeg import run_ffmpeg
from reelforge.adapters.media.inputs import ffmpeg_input_args, limit_decoder, open_input
from reelforge.adapters.media.probe import (
    PacketIndex,
    VideoInfo,
    frame_durations,
    main_video_stream,
    probe,
    refuse,
    scan_packets,
)

log = logging.getLogger("reelforge.media")

FrameFn = Callable[[list[np.ndarray]], list[np.ndarray]]


@dataclass(frozen=True)
class NativeScale:
    """Resample each frame inside FFmpeg (libswscale, the filter `ffmpeg -vf scale` uses), YUV to YUV.

    For classical filters there is no reason to round-trip through RGB arrays: the frame never leaves C, so a
    Lanczos or bicubic job runs at the speed of the encoder. ``interpolation`` is a libswscale name
    (``LANCZOS``, ``BICUBIC``, ``BILINEAR``, ``AREA``...); width and height must be even (4:2:0).
    """

    width: int
    height: int
    interpolation: str = "LANCZOS"

    def __post_init__(self) -> None:
        if self.width < 2 or self.height < 2 or self.width % 2 or self.height % 2:
            raise errors.ValidationFailed(f"Native scaling needs an even output size, not {self.width}x{self.height}",
                                          code="invalid_size")
        from av.video.reformatter import Interpolation

        if self.interpolation.upper() not in Interpolation.__members__:
            raise errors.ValidationFailed(f"Unknown interpolation {self.interpolation!r}", code="invalid_interpolation")

_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".nut": "nut", ".webm": "webm"}
_ENCODERS = {"h264": "libx264", "h265": "libx265"}
# Audio codecs the MP4 muxer takes as they are; any other is converted to AAC for mp4 output.
_MP4_AUDIO = {"aac", "mp3", "ac3", "eac3", "opus", "flac", "alac", "mp2", "dts", "truehd"}
_TEXT_SUBS = {"subrip", "srt", "ass", "ssa", "webvtt", "mov_text", "text"}
_MP4_BITMAP_SUBS = {"dvd_subtitle"}


class MediaError(errors.ReelforgeError):
    """The media layer could not finish (encoder or muxer failure, bad frame_fn output, mismatched chunks)."""

    status, code, title = 500, "media_error", "Media processing failed"


class CorruptVideo(MediaError):
    """The source stopped decoding part-way or gave other frames than its packets promised: bad input."""

    status, code, title = 422, "corrupt_video", "The video cannot be decoded"


@dataclass(frozen=True)
class Chunk:
    index: int
    start_frame: int
    frames: int
    start_pts: int  # pts of the chunk's first frame (a keyframe), in the video stream's time_base
    end_pts: int | None  # exclusive; None = to the end
    start_s: float
    end_s: float
    seek_pts: int | None = None  # decode timestamp of the keyframe: where seeking must land (None: from the start)
    last_duration: int = 0  # last chunk only: duration of the video's final frame, in time_base

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Chunk:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass(frozen=True)
class EncodeOptions:
    codec: str = "h264"  # 'h264' | 'h265'
    crf: int = 18
    preset: str = "medium"
    threads: int = 0  # encoder threads; 0 = as many as the encoder likes


@dataclass(frozen=True)
class ChunkResult:
    index: int
    frames: int
    path: Path
    width: int  # encoded size (even)
    height: int
    seconds: float  # media duration of the chunk
    elapsed_s: float = 0.0  # wall time spent


def _fmt_for(path: Path) -> str:
    return _FORMATS.get(path.suffix.lower(), "mp4")


def _part(out: Path) -> Path:
    return out.with_name(f".{out.name}.part")


def _time_base(stream: Any) -> Fraction:
    return Fraction(stream.time_base) if stream.time_base else Fraction(1, 1)


# ---------------------------------------------------------------------------------------------------- planning


def plan_chunks(path: Path, info: VideoInfo, chunk_seconds: float) -> list[Chunk]:
    """Cut the video at keyframes into chunks of at least ``chunk_seconds`` (the last may be shorter).

    Chunks are ranges of presentation timestamps; together they hold every frame exactly once.
    """
    if not chunk_seconds > 0:
        raise errors.ValidationFailed("chunk_seconds must be positive", code="invalid_chunk_seconds")
    with open_input(path, max_pixels=_picture(info)) as container:
        vs = _video_stream(container, info)
        tb = _time_base(vs)
        index = scan_packets(container, vs)
    if not len(index):
        raise refuse("not_a_video", "The video stream holds no frames")
    pts_sorted = sorted(index.pts)
    keyframes = _keyframes(index)
    first = pts_sorted[0]
    min_ticks = chunk_seconds / tb
    starts: list[tuple[int, int | None]] = [(first, None)]
    for pts, dts in keyframes:
        if pts <= first:
            continue
        if pts - starts[-1][0] >= min_ticks:
            starts.append((pts, dts))
    last_dur = _last_frame_duration(index, pts_sorted)
    video_end = pts_sorted[-1] + last_dur
    chunks: list[Chunk] = []
    for i, (start, seek) in enumerate(starts):
        end = starts[i + 1][0] if i + 1 < len(starts) else None
        lo = bisect.bisect_left(pts_sorted, start)
        hi = bisect.bisect_left(pts_sorted, end) if end is not None else len(pts_sorted)
        chunks.append(Chunk(index=i, start_frame=lo, frames=hi - lo, start_pts=start, end_pts=end,
                            start_s=float(start * tb), end_s=float((end if end is not None else video_end) * tb),
                            seek_pts=seek, last_duration=last_dur if end is None else 0))
    return chunks


def _keyframes(index: PacketIndex) -> list[tuple[int, int]]:
    return sorted((index.pts[i], index.dts[i]) for i in range(len(index)) if index.keyframe[i])


def _last_frame_duration(index: PacketIndex, pts_sorted: list[int]) -> int:
    last = pts_sorted[-1]
    for i in range(len(index) - 1, -1, -1):
        if index.pts[i] == last and index.duration[i] > 0:
            return int(index.duration[i])
    d = sorted(frame_durations(pts_sorted))
    return d[len(d) // 2] if d else 1


def _video_stream(container: Any, info: VideoInfo) -> Any:
    if 0 <= info.video_index < len(container.streams) and container.streams[info.video_index].type == "video":
        return container.streams[info.video_index]
    vs = main_video_stream(container)
    if vs is None:
        raise refuse("not_a_video", "The file has no video stream")
    return vs


# ---------------------------------------------------------------------------------------------------- one chunk


class _Encoder:
    """Encodes RGB frames at the chunk's source timestamps; muxes each packet once its duration is known."""

    def __init__(self, out: Path, fmt: str, opts: EncodeOptions, tb: Fraction, rate: Fraction | None,
                 width: int, height: int, src: Any, durations: dict[int, int]) -> None:
        codec = _ENCODERS.get(opts.codec)
        if codec is None:
            raise errors.ValidationFailed(f"Unknown codec {opts.codec!r}; use one of {', '.join(_ENCODERS)}",
                                          code="unsupported_codec")
        self.container: Any = av.open(str(out), "w", format=fmt)
        self.stream: Any = cast(Any, self.container.add_stream(codec, rate=rate))
        cc: Any = self.stream.codec_context
        self.stream.width, self.stream.height, self.stream.pix_fmt = width, height, "yuv420p"
        self.stream.time_base = tb
        cc.time_base = tb
        options: dict[str, str] = {"crf": str(opts.crf), "preset": opts.preset}
        if codec == "libx265":
            options["x265-params"] = "log-level=error"
            if fmt in ("mp4", "mov"):
                cc.codec_tag = "hvc1"  # the tag Apple players require
        self.stream.options = options
        if opts.threads > 0:
            cc.thread_count = opts.threads
        self.colorspace = None
        scc = src.codec_context
        # Frames are converted back to YUV with the source's matrix and tagged like the source, so colours
        # do not shift; the range is always limited ("tv"), which is what the RGB -> yuv420p conversion makes.
        for attr in ("color_primaries", "color_trc", "colorspace"):
            with contextlib.suppress(Exception):
                value = getattr(scc, attr)
                if value and int(value) not in (0, 2):  # skip "reserved" / "unspecified"
                    setattr(cc, attr, value)
                    if attr == "colorspace":
                        self.colorspace = value
        with contextlib.suppress(Exception):
            cc.color_range = 1  # AVCOL_RANGE_MPEG
        sar = src.sample_aspect_ratio
        if sar and sar != 1:
            cc.sample_aspect_ratio = sar
        self.width, self.height, self.tb = width, height, tb
        self.pending: deque[Any] = deque()
        self.durations = durations

    def encode(self, rgb: np.ndarray, pts: int) -> None:
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        frame = frame.reformat(format="yuv420p", dst_colorspace=self.colorspace) if self.colorspace else \
            frame.reformat(format="yuv420p")
        self.encode_frame(frame, pts)

    def encode_frame(self, frame: Any, pts: int) -> None:
        """Encode a yuv420p frame of the output size at a source timestamp."""
        frame.pts, frame.time_base = pts, self.tb
        self.pending.extend(self.stream.encode(frame))

    def drain(self) -> None:
        while self.pending and self.pending[0].pts in self.durations:
            pkt = self.pending.popleft()
            pkt.duration = self.durations.pop(pkt.pts)
            self.container.mux(pkt)

    def finish(self) -> None:
        self.pending.extend(self.stream.encode(None))
        self.drain()
        if self.pending:
            raise MediaError(f"{len(self.pending)} encoded packets have no known duration")
        self.container.close()


def _even(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    if h % 2 or w % 2:
        img = np.pad(img, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    return img


def _check_batch(out: Any, n: int, size: tuple[int, int] | None) -> list[np.ndarray]:
    if not isinstance(out, list | tuple) or len(out) != n:
        raise MediaError(f"frame_fn returned {len(out) if hasattr(out, '__len__') else type(out).__name__} "
                         f"frames for a batch of {n}", code="frame_fn_invalid")
    for img in out:
        if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            desc = f"{img.dtype} {img.shape}" if isinstance(img, np.ndarray) else type(img).__name__
            raise MediaError(f"frame_fn must return RGB uint8 HxWx3 arrays, got {desc}", code="frame_fn_invalid")
        if size is not None and img.shape[:2] != size:
            raise MediaError(f"frame_fn returned frames of different sizes: {img.shape[:2]} after {size}",
                             code="frame_fn_invalid")
        if size is None:
            size = img.shape[:2]
    return list(out)


def _chunk_frames(container: Any, vs: Any, src: Path, info: VideoInfo, chunk: Chunk) -> Iterator[Any]:
    """Frames from the chunk's keyframe onwards (a few earlier ones may come first; the caller drops them).

    Seeks to the keyframe's pts; a demuxer that lands past it gets a second try at the keyframe's dts, and
    as a last resort the file is decoded from its start. Decoder failures become CorruptVideo.
    """
    try:
        yield from _seek_and_decode(container, vs, src, info, chunk)
    except av.error.FFmpegError as exc:
        raise CorruptVideo(f"Decoding chunk {chunk.index} failed: {exc}") from exc


def _seek_and_decode(container: Any, vs: Any, src: Path, info: VideoInfo, chunk: Chunk) -> Iterator[Any]:
    if chunk.start_frame == 0 or chunk.seek_pts is None:
        yield from container.decode(vs)
        return
    for target in dict.fromkeys((chunk.start_pts, chunk.seek_pts)):
        container.seek(target, stream=vs, backward=True, any_frame=False)
        frames = container.decode(vs)
        head = next(frames, None)
        if head is not None and head.pts is not None and head.pts <= chunk.start_pts:
            yield head
            yield from frames
            return
        log.info("seek to %d for chunk %d landed at pts %s", target, chunk.index, None if head is None else head.pts)
    log.warning("seeking cannot reach chunk %d (pts %d); decoding from the start", chunk.index, chunk.start_pts)
    with open_input(src, max_pixels=_picture(info)) as again:
        vs2 = _video_stream(again, info)
        vs2.thread_type = "AUTO"
        limit_decoder(vs2, _picture(info))
        yield from again.decode(vs2)


def process_chunk(src: Path, info: VideoInfo, chunk: Chunk, out: Path, frame_fn: FrameFn | None, *,
                  encode: EncodeOptions = EncodeOptions(), batch_size: int = 4,
                  progress: Callable[[int], None] | None = None,
                  cancelled: Callable[[], bool] | None = None,
                  native: NativeScale | None = None) -> ChunkResult:
    """Decode only this chunk's frames, pass them through ``frame_fn`` in batches, encode a video-only file.

    Each output frame keeps its source timestamp and duration, so the frame count and variable frame rate
    survive. ``cancelled()`` is checked before each batch (raising JobCancelled). At most one batch of decoded
    frames and one batch of transformed frames are held at a time. With ``native``, frames are resampled by
    libswscale in YUV and ``frame_fn`` is not used (a batch is then a batch of decoded frames).
    """
    if frame_fn is None and native is None:
        raise errors.ValidationFailed("process_chunk needs a frame_fn or a native scale", code="frame_fn_invalid")
    if batch_size < 1:
        raise errors.ValidationFailed("batch_size must be at least 1", code="invalid_batch_size")
    t0 = time.monotonic()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    part = _part(out)
    fmt = _fmt_for(out)
    enc: _Encoder | None = None
    durations: dict[int, int] = {}  # pts -> duration, filled as the next frame's pts becomes known
    batch: list[Any] = []
    batch_pts: list[int] = []
    kept = 0
    interpolation: Any = None
    if native is not None:
        from av.video.reformatter import Interpolation

        interpolation = Interpolation[native.interpolation.upper()]

    def is_cancelled() -> bool:
        return cancelled is not None and bool(cancelled())

    try:
        with open_input(src, max_pixels=_picture(info)) as container:
            vs = _video_stream(container, info)
            vs.thread_type = "AUTO"
            # The decoder refuses a picture larger than the probe saw (a stream whose size grows mid-way).
            limit_decoder(vs, _picture(info))
            tb = _time_base(vs)
            rate = vs.average_rate or vs.guessed_rate
            size: tuple[int, int] | None = None

            def flush() -> None:
                nonlocal enc, size
                if is_cancelled():
                    raise errors.JobCancelled(f"Cancelled at frame {chunk.start_frame + kept - len(batch)}")
                if native is not None:
                    _flush_native(batch, batch_pts)
                    return
                assert frame_fn is not None
                result = _check_batch(frame_fn(batch), len(batch), size)
                batch.clear()
                for pts, img in zip(batch_pts, result, strict=True):
                    size = (int(img.shape[0]), int(img.shape[1]))
                    even = _even(img)
                    if enc is None:
                        enc = _Encoder(part, fmt, encode, tb, rate, even.shape[1], even.shape[0], vs, durations)
                    enc.encode(even, pts)
                batch_pts.clear()
                result.clear()
                if enc is not None:
                    enc.drain()
                if progress is not None:
                    progress(kept)

            def _flush_native(frames_in: list[Any], pts_in: list[int]) -> None:
                nonlocal enc
                assert native is not None
                for pts, vf in zip(pts_in, frames_in, strict=True):
                    scaled = vf.reformat(width=native.width, height=native.height, format="yuv420p",
                                         interpolation=interpolation)
                    if enc is None:
                        enc = _Encoder(part, fmt, encode, tb, rate, native.width, native.height, vs, durations)
                    enc.encode_frame(scaled, pts)
                frames_in.clear()
                pts_in.clear()
                if enc is not None:
                    enc.drain()
                if progress is not None:
                    progress(kept)

            if is_cancelled():
                raise errors.JobCancelled("Cancelled before the chunk started")
            prev_pts: int | None = None
            last_dur = chunk.last_duration
            frames = _chunk_frames(container, vs, Path(src), info, chunk)
            try:
                for frame in frames:
                    if frame.pts is None:
                        raise CorruptVideo("A decoded frame has no timestamp")
                    pts = int(frame.pts)
                    if pts < chunk.start_pts:
                        continue
                    if chunk.end_pts is not None and pts >= chunk.end_pts:
                        break
                    if prev_pts is None and pts != chunk.start_pts:
                        raise CorruptVideo(f"Chunk {chunk.index} should start at pts {chunk.start_pts}, "
                                           f"the first decoded frame has pts {pts}")
                    if prev_pts is not None:
                        if pts <= prev_pts:
                            raise CorruptVideo(f"Decoded timestamps go backwards ({prev_pts} then {pts})")
                        durations[prev_pts] = pts - prev_pts
                    if not chunk.last_duration and frame.duration:
                        last_dur = int(frame.duration)
                    batch.append(frame if native is not None else frame.to_ndarray(format="rgb24"))
                    batch_pts.append(pts)
                    prev_pts = pts
                    kept += 1
                    if len(batch) >= batch_size:
                        flush()
            finally:
                close = getattr(frames, "close", None)
                if close is not None:
                    close()
            if prev_pts is None:
                raise CorruptVideo(f"Chunk {chunk.index} decoded no frames", code="frame_count_mismatch")
            end = chunk.end_pts if chunk.end_pts is not None else prev_pts + (last_dur or _step(rate, tb))
            durations[prev_pts] = end - prev_pts
            if batch:
                flush()
        if kept != chunk.frames:
            raise CorruptVideo(f"Chunk {chunk.index}: decoded {kept} frames, expected {chunk.frames}",
                               code="frame_count_mismatch")
        assert enc is not None
        enc.finish()
        os.replace(part, out)
    except av.error.FFmpegError as exc:
        _abort(enc, part)
        raise MediaError(f"Chunk {chunk.index}: {exc}") from exc
    except BaseException:
        _abort(enc, part)
        raise
    return ChunkResult(index=chunk.index, frames=kept, path=out, width=enc.width, height=enc.height,
                       seconds=float((end - chunk.start_pts) * tb), elapsed_s=time.monotonic() - t0)


def _picture(info: VideoInfo) -> int:
    """The decoders' picture-size cap for a probed video: its own size (inputs.padded adds the coding slack)."""
    return max(1, int(info.width) * int(info.height))


def _step(rate: Fraction | None, tb: Fraction) -> int:
    return max(1, round(1 / (rate * tb))) if rate else 1


def _abort(enc: _Encoder | None, part: Path) -> None:
    if enc is not None:
        with contextlib.suppress(Exception):
            enc.container.close()
    with contextlib.suppress(FileNotFoundError):
        part.unlink()


# ---------------------------------------------------------------------------------------------------- joining


def concat_chunks(chunk_paths: list[Path], out: Path) -> None:
    """Join chunk files (from :func:`process_chunk`, in order) into one video file without re-encoding.

    The chunks carry the source's timestamps, so packets are copied as they are. Decode timestamps at a chunk
    seam may overlap when frame durations vary (the encoder's reorder delay is estimated per chunk); they are
    moved forward the least needed, never past the frame's presentation time.
    """
    if not chunk_paths:
        raise MediaError("No chunks to join", code="no_chunks")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    part = _part(out)
    ocontainer = av.open(str(part), "w", format=_fmt_for(out))
    try:
        ostream: Any = None
        tb0: Fraction | None = None
        ref: tuple[Any, ...] | None = None
        last_dts: int | None = None
        for path in chunk_paths:
            with open_input(path) as ic:
                if not ic.streams.video:
                    raise MediaError(f"Chunk {Path(path).name} has no video stream", code="bad_chunk")
                s: Any = ic.streams.video[0]
                cc = s.codec_context
                key = (cc.name, cc.width, cc.height, cc.pix_fmt, bytes(cc.extradata or b""))
                if ostream is None:
                    ostream = ocontainer.add_stream_from_template(s)
                    tb0, ref = Fraction(s.time_base), key
                elif key != ref:
                    raise MediaError(f"Chunk {Path(path).name} was encoded differently from the first chunk "
                                     f"({key[:4]} vs {ref[:4] if ref else None}); re-encode it with the same options",
                                     code="bad_chunk")
                tb = Fraction(s.time_base)
                made_dts = _synth_dts(path)
                k = -1
                packets: Any = ic.demux(s)
                for pkt in packets:
                    if pkt.size == 0 or pkt.pts is None:
                        continue
                    k += 1
                    if made_dts is not None:
                        pkt.dts = made_dts[k]
                    if tb != tb0:
                        assert tb0 is not None
                        pkt.pts = round(pkt.pts * tb / tb0)
                        if pkt.dts is not None:
                            pkt.dts = round(pkt.dts * tb / tb0)
                        pkt.duration = round((pkt.duration or 0) * tb / tb0)
                        pkt.time_base = tb0
                    if last_dts is not None and pkt.dts <= last_dts:
                        if last_dts + 1 > pkt.pts:
                            raise MediaError(f"Chunk {Path(path).name} overlaps the previous chunk "
                                             f"(pts {pkt.pts} <= {last_dts})", code="bad_chunk")
                        pkt.dts = last_dts + 1
                    last_dts = pkt.dts
                    pkt.stream = ostream
                    ocontainer.mux(pkt)
        ocontainer.close()
        os.replace(part, out)
    except BaseException as exc:
        with contextlib.suppress(Exception):
            ocontainer.close()
        with contextlib.suppress(FileNotFoundError):
            part.unlink()
        if isinstance(exc, av.error.FFmpegError):
            raise MediaError(f"Joining chunks failed: {exc}") from exc
        raise


def _synth_dts(path: Path) -> list[int] | None:
    """Decode timestamps for a chunk whose container stores none (Matroska): the k-th smallest pts minus the
    largest reorder lead, which increases strictly and never passes a frame's pts. None when all are present."""
    with open_input(path) as ic:
        s = ic.streams.video[0]
        pkts = [(p.pts, p.dts) for p in ic.demux(s) if p.size and p.pts is not None]
    if all(d is not None for _, d in pkts):
        return None
    order = sorted(p for p, _ in pkts)
    lead = max((q - p for q, (p, _) in zip(order, pkts, strict=True)), default=0)
    return [q - lead for q in order]


def default_container(source_info: VideoInfo) -> str:
    """The output container when none is asked for: the source's own family, so that nothing of it is lost
    (Matroska and WebM sources stay Matroska, with their attachments, subtitle codecs and flags); an MP4 or
    QuickTime source stays MP4 unless a stream needs Matroska; anything else becomes Matroska, which holds any
    stream."""
    fmt = source_info.format_name or ""
    if "matroska" in fmt or "webm" in fmt:
        return "mkv"
    if "mp4" in fmt or "mov" in fmt:
        return choose_container(source_info)
    return "mkv"


def choose_container(source_info: VideoInfo) -> str:
    """'mp4' when every kept stream fits in MP4 as it is (or as mov_text/AAC), else 'mkv'."""
    for s in source_info.streams:
        if s.type == "subtitle" and s.codec not in _TEXT_SUBS | _MP4_BITMAP_SUBS:
            return "mkv"
        if s.type == "attachment":
            return "mkv"
    return "mp4"


@dataclass(frozen=True)
class RemuxReport:
    """What a remux did not carry over as it was: streams left out, and streams converted to fit the container."""

    dropped: tuple[str, ...] = ()
    converted: tuple[str, ...] = ()


def remux(video: Path, source: Path, out: Path, *, container: str = "mp4",
          ffmpeg: str | None = None) -> RemuxReport:
    """Write ``out``: the new video stream of ``video`` with every other stream of ``source``.

    Kept from the source: all audio tracks, subtitles (converted to mov_text for mp4 when they are text; copied
    for mkv, where mov_text becomes SRT), chapters, global and per-stream metadata (language, title, ...), stream
    dispositions (default, forced, hearing_impaired, comment, ... of every stream, the video's too) and the
    rotation. Timestamps stay as in the source (``-copyts``). Audio codecs MP4 cannot hold are converted to AAC.
    MP4 itself marks the first video, audio and subtitle track as default ("enabled") when no track of its type
    is, stores hearing_impaired as the "caption" role, which reads back as captions too, and has no place for
    original; Matroska keeps the flags exactly (but has none for captions). Data streams (timecode, telemetry)
    are dropped, and font attachments too for mp4; bitmap subtitles other than DVD ones cannot go into mp4 and
    are refused with code ``unsupported_stream``.
    ``ffmpeg`` is an explicit binary (a setting); otherwise see :func:`ffmpeg_exe`. Returns what was dropped
    or converted, for the job to report.
    """
    if container not in ("mp4", "mkv"):
        raise errors.ValidationFailed(f"Unknown container {container!r}; use mp4 or mkv", code="invalid_container")
    info = probe(Path(source))
    with open_input(video) as vc:
        vstream = main_video_stream(vc)
        if vstream is None:
            raise MediaError(f"{Path(video).name} has no video stream", code="bad_chunk")
        vcodec = vstream.codec_context.name if vstream.codec_context else ""
    args: list[str] = ["-copyts"]
    if info.rotation:
        # ffmpeg's display rotation is counter-clockwise.
        args += ["-display_rotation:v:0", str(-info.rotation)]
    # Both inputs are read with the whitelisted demuxers and the file protocol only (adapters/media/inputs.py).
    args += [*ffmpeg_input_args(), "-i", str(video), *ffmpeg_input_args(), "-i", str(source), "-map", "0:v:0",
             "-c", "copy"]
    # Every output stream gets its source stream's dispositions, set explicitly: left to itself ffmpeg marks
    # the only stream of a type as default (and the video is always the only one).
    dispositions = _dispositions(Path(source))
    args += ["-disposition:0", dispositions.get(info.video_index, "0")]
    n = 1  # output stream index
    dropped: list[str] = []
    converted: list[str] = []
    refused: list[str] = []
    for s in info.streams:
        if s.type == "video":
            continue
        if s.type == "data" or (s.type == "attachment" and container == "mp4"):
            # Data streams (timecode, telemetry, MP4 chapter text tracks) do not survive a remux as they
            # are; chapters themselves are carried by -map_chapters.
            dropped.append(f"#{s.index} {s.type} ({s.codec})")
            continue
        args += ["-map", f"1:{s.index}", f"-disposition:{n}", dispositions.get(s.index, "0")]
        if s.title:
            # Titles travel under "title" in Matroska and "name" in MP4; set it so either container gets it.
            args += [f"-metadata:s:{n}", f"title={s.title}"]
        if s.type == "audio" and container == "mp4" and s.codec not in _MP4_AUDIO:
            args += [f"-c:{n}", "aac", f"-b:{n}", "192k"]
            converted.append(f"#{s.index} audio ({s.codec} -> aac)")
        elif s.type == "subtitle" and container == "mp4":
            if s.codec in _TEXT_SUBS:
                args += [f"-c:{n}", "mov_text"]
                if s.codec != "mov_text":
                    # styling (ASS) and anything mov_text has no place for is lost
                    converted.append(f"#{s.index} subtitle ({s.codec} -> mov_text)")
            elif s.codec not in _MP4_BITMAP_SUBS:
                refused.append(f"#{s.index} subtitle ({s.codec})")
        elif s.type == "subtitle" and container == "mkv" and s.codec == "mov_text":
            args += [f"-c:{n}", "srt"]
            converted.append(f"#{s.index} subtitle (mov_text -> srt)")
        n += 1
    if refused:
        raise errors.ValidationFailed(f"MP4 cannot hold these streams: {', '.join(refused)}; use mkv",
                                      code="unsupported_stream", streams=refused)
    if dropped:
        log.info("remux to %s leaves out: %s", container, ", ".join(dropped))
    # A stream-level -map_metadata would switch off ffmpeg's automatic per-stream copy for every other stream,
    # so the video stream's tags are set one by one instead.
    for key, value in _video_tags(Path(source), info.video_index).items():
        args += ["-metadata:s:0", f"{key}={value}"]
    args += ["-map_metadata", "1", "-map_chapters", "1"]
    if container == "mp4":
        args += ["-movflags", "+faststart"]
        if vcodec == "hevc":
            args += ["-tag:v", "hvc1"]
    else:
        args += ["-default_mode", "passthrough"]  # FlagDefault exactly as the dispositions say, nothing inferred
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    part = _part(out)
    args += ["-f", "mp4" if container == "mp4" else "matroska", str(part)]
    try:
        run_ffmpeg(args, exe=ffmpeg)
        os.replace(part, out)
    finally:
        with contextlib.suppress(FileNotFoundError):
            part.unlink()
    return RemuxReport(tuple(dropped), tuple(converted))


# Disposition flags carried over from the source's streams. Left out: attached_pic and timed_thumbnails (kinds of
# stream that are never kept: cover art and thumbnails) and multilayer (a property of the old encoding).
_KEPT_DISPOSITIONS = ("default", "dub", "original", "comment", "lyrics", "karaoke", "forced", "hearing_impaired",
                      "visual_impaired", "clean_effects", "non_diegetic", "captions", "descriptions", "metadata",
                      "dependent", "still_image")


def _dispositions(source: Path) -> dict[int, str]:
    """Each source stream's dispositions as an ffmpeg ``-disposition`` value: ``default+forced``, ``0`` for none."""
    members = av.stream.Disposition.__members__
    flags = [(name, int(members[name])) for name in _KEPT_DISPOSITIONS if name in members]
    with open_input(source) as c:
        return {s.index: "+".join(name for name, bit in flags if int(s.disposition) & bit) or "0" for s in c.streams}


# Tags that describe the old encoding of the video stream rather than its content.
_STALE_TAGS = {"encoder", "duration", "bps", "number_of_frames", "number_of_bytes", "vendor_id", "creation_time"}


def _video_tags(source: Path, index: int) -> dict[str, str]:
    with open_input(source) as c:
        meta = dict(c.streams[index].metadata)
    return {k: v for k, v in meta.items()
            if k.lower() not in _STALE_TAGS and not k.lower().startswith("_statistics") and v is not None}
