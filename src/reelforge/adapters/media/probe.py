"""Probe a media file with PyAV: what it holds, and whether the video pipelines can process it.

Refusals are :class:`reelforge.errors.ValidationFailed` with a stable ``code``: ``not_a_video``,
``unsupported_format``, ``unsupported_codec``, ``video_too_long``, ``video_too_large``, ``frame_rate_too_high``,
``media_truncated``. With ``limits`` (the media policy, domain/media.py) the size, duration, frame rate and codec
are checked from the headers before any packet is read or frame decoded; the file is opened through
:func:`~reelforge.adapters.media.inputs.open_input` (whitelisted containers, capped decoders).
"""

from __future__ import annotations

import itertools
import math
import statistics
from array import array
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.stream

from reelforge.adapters.media.inputs import limit_decoder, open_input
from reelforge.domain.media import MediaLimits, check_complete, check_video, refuse

# Demuxers that read one picture, and codecs that only carry stills when a file holds one frame.
_IMAGE_FORMATS = {"image2", "image2pipe", "apng", "webp_pipe", "png_pipe", "jpeg_pipe", "bmp_pipe", "tiff_pipe"}
_STILL_CODECS = {"png", "mjpeg", "bmp", "tiff", "webp", "jpeg2000", "jpegls", "gif", "apng", "qoi", "ppm", "pgm"}
STREAM_TYPES = ("video", "audio", "subtitle", "data", "attachment")


@dataclass(frozen=True)
class StreamInfo:
    index: int
    type: str  # 'video' | 'audio' | 'subtitle' | 'data' | 'attachment'
    codec: str
    language: str | None
    title: str | None


@dataclass(frozen=True)
class VideoInfo:
    format_name: str
    duration_s: float
    size_bytes: int
    width: int  # coded size (before rotation)
    height: int
    codec: str
    pix_fmt: str
    fps: float  # average frame rate
    frames: int  # exact number of frames of the video stream (packets the decoder will turn into frames)
    rotation: int  # clockwise degrees a player turns the picture (0, 90, 180, 270), from the display matrix
    vfr: bool  # frame durations vary beyond timestamp rounding
    streams: tuple[StreamInfo, ...]
    chapters: int
    video_index: int = 0  # index of the video stream among all streams
    time_base: str = "1/1"  # of the video stream, "num/den"
    start_pts: int = 0  # first presentation timestamp of the video stream, in time_base
    video_duration_s: float = 0.0  # from the first frame's start to the last frame's end
    sample_aspect_ratio: str | None = None  # "num/den" when not square pixels
    metadata: dict[str, str] = field(default_factory=dict)  # global tags (title, ...)

    @property
    def display_size(self) -> tuple[int, int]:
        """Width and height as shown, after rotation."""
        return (self.height, self.width) if self.rotation in (90, 270) else (self.width, self.height)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["streams"] = [asdict(s) for s in self.streams]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VideoInfo:
        data = dict(d)
        data["streams"] = tuple(StreamInfo(**s) for s in data.get("streams", ()))
        return cls(**data)


@dataclass
class PacketIndex:
    """The video stream's packets in decode order (pts falls back to dts where the container has none)."""

    pts: array = field(default_factory=lambda: array("q"))
    dts: array = field(default_factory=lambda: array("q"))
    duration: array = field(default_factory=lambda: array("q"))
    keyframe: bytearray = field(default_factory=bytearray)

    def __len__(self) -> int:
        return len(self.pts)


def _tag(meta: dict[str, str], key: str) -> str | None:
    for k, v in meta.items():
        if k.lower() == key and v and v.strip():
            return v.strip()
    return None


def stream_info(s: Any) -> StreamInfo:
    cc = getattr(s, "codec_context", None)
    codec = (cc.name if cc is not None else None) or _tag(s.metadata, "mimetype") or "unknown"
    lang = _tag(s.metadata, "language")
    return StreamInfo(index=s.index, type=s.type if s.type in STREAM_TYPES else "data", codec=codec,
                      language=None if lang in (None, "und") else lang,
                      # MP4 keeps a track's title in its "name" user-data atom.
                      title=_tag(s.metadata, "title") or _tag(s.metadata, "name"))


def is_attached_picture(s: Any) -> bool:
    return bool(int(s.disposition) & int(av.stream.Disposition.attached_pic))


def main_video_stream(container: Any) -> Any | None:
    """The first video stream that is not cover art."""
    for s in container.streams.video:
        if not is_attached_picture(s):
            return s
    return None


def scan_packets(container: Any, stream: Any) -> PacketIndex:
    """Demux (no decoding) the stream's packets; skips empty and discard-flagged packets, which give no frame."""
    idx = PacketIndex()
    for pkt in container.demux(stream):
        if pkt.size == 0 or pkt.is_discard:
            continue
        ts = pkt.pts if pkt.pts is not None else pkt.dts
        if ts is None:
            raise refuse("not_a_video", "The video stream has packets without timestamps; remux it into MP4 or MKV")
        idx.pts.append(ts)
        idx.dts.append(pkt.dts if pkt.dts is not None else ts)
        idx.duration.append(pkt.duration or 0)
        idx.keyframe.append(1 if pkt.is_keyframe else 0)
    return idx


def frame_durations(pts_sorted: list[int]) -> list[int]:
    return [b - a for a, b in itertools.pairwise(pts_sorted)]


def detect_vfr(pts_sorted: list[int]) -> bool:
    """Durations that differ by more than timestamp rounding (a tick or 5 %) mean variable frame rate."""
    d = [x for x in frame_durations(pts_sorted) if x > 0]
    if len(d) < 2:
        return False
    med = statistics.median(d)
    return (max(d) - min(d)) > max(2, 0.05 * med)


def probe(path: Path, *, max_duration_s: float | None = None, max_pixels: int | None = None,
          limits: MediaLimits | None = None) -> VideoInfo:
    """Describe a video file, or refuse it with a ValidationFailed whose code says why.

    ``limits`` applies the media policy from the headers (before reading packets or decoding); ``max_pixels``
    and ``max_duration_s`` are a caller's own caps on top. A file that holds fewer packets than its container
    claims is refused as ``media_truncated``.
    """
    path = Path(path)
    if not path.is_file():
        raise refuse("not_a_video", f"No such file: {path.name}")
    size = path.stat().st_size
    caps = [c for c in (max_pixels, limits.max_pixels if limits else None) if c]
    cap = min(caps) if caps else MediaLimits().max_pixels
    container = open_input(path, max_pixels=cap, what="media file")
    with container:
        fmt = container.format.name
        vs = main_video_stream(container)
        if vs is None:
            kinds: list[str] = sorted({str(s.type) for s in container.streams}) or ["nothing"]
            raise refuse("not_a_video", f"The file has no video stream (found: {', '.join(kinds)})", format=fmt)
        cc = vs.codec_context
        if cc is None:
            raise refuse("unsupported_codec", "The video codec is not supported: no decoder for it", format=fmt)
        codec = cc.name
        width, height = int(cc.width or 0), int(cc.height or 0)
        if fmt in _IMAGE_FORMATS or fmt.endswith("_pipe"):
            raise refuse("not_a_video", f"The file is a still image ({codec}), not a video", format=fmt, codec=codec)
        tb = vs.time_base or Fraction(1, 1)
        duration_s = 0.0
        if container.duration:
            duration_s = container.duration / av.time_base
            if fmt.startswith("matroska") and container.start_time and container.start_time > 0:
                # Matroska's duration counts from timestamp 0, not from the first frame.
                duration_s -= container.start_time / av.time_base
        elif vs.duration:
            duration_s = float(vs.duration * tb)
        if max_pixels is not None and width * height > max_pixels:
            raise refuse("video_too_large",
                         f"The video is {width}x{height} ({width * height} pixels); the limit is {max_pixels} pixels",
                         width=width, height=height, max_pixels=max_pixels)
        if max_duration_s is not None and duration_s > max_duration_s:
            raise refuse("video_too_long",
                         f"The video lasts {duration_s:.2f} s; the limit is {max_duration_s:g} s",
                         duration_s=round(duration_s, 3), max_duration_s=max_duration_s)
        header_rate = vs.average_rate or vs.guessed_rate
        if limits is not None:
            check_video(limits, width=width, height=height, duration_s=duration_s,
                        fps=float(header_rate) if header_rate else 0.0, codec=codec)
        streams = tuple(stream_info(s) for s in container.streams)
        chapters = len(container.chapters())
        metadata = {str(k): str(v) for k, v in container.metadata.items()}
        sar = vs.sample_aspect_ratio
        try:
            index, span, cut = _scan_all(container, vs)
        except av.error.FFmpegError as exc:
            raise refuse("not_a_video", f"The video stream cannot be read ({exc.strerror or type(exc).__name__})") \
                from exc
        frames = len(index)
        if frames <= 1 and codec in _STILL_CODECS:
            raise refuse("not_a_video", f"The file is a still image ({codec}), not a video", format=fmt, codec=codec)
        if frames == 0:
            raise refuse("not_a_video", "The video stream holds no frames", format=fmt)
        pts_sorted = sorted(index.pts)
        last_dur = _last_duration(index, pts_sorted)
        start_pts = pts_sorted[0]
        video_duration_s = float((pts_sorted[-1] + last_dur - start_pts) * tb)
        frame_s = float(last_dur * tb)
        # What the headers promise against what is there: the video stream's own frame count and duration when
        # the container keeps them (MP4 does), else the container's duration against every stream's packets.
        stream_s = float(vs.duration * tb) if vs.duration else 0.0
        check_complete(claimed_frames=int(vs.frames or 0), frames=frames, frame_s=frame_s, cut=cut,
                       claimed_s=stream_s or duration_s, present_s=video_duration_s if stream_s else span)
        rotation = _first_frame_rotation(container, vs, codec, min(cap, max(1, width * height)))
        if not duration_s:
            duration_s = video_duration_s
        rate = vs.average_rate or vs.guessed_rate
        fps = float(rate) if rate else (frames / video_duration_s if video_duration_s else 0.0)
        if max_duration_s is not None and duration_s > max_duration_s:
            raise refuse("video_too_long", f"The video lasts {duration_s:.2f} s; the limit is {max_duration_s:g} s",
                         duration_s=round(duration_s, 3), max_duration_s=max_duration_s)
        if limits is not None:
            check_video(limits, width=width, height=height, duration_s=duration_s, fps=fps, codec=codec)
        return VideoInfo(
            format_name=fmt, duration_s=duration_s, size_bytes=size, width=width, height=height, codec=codec,
            pix_fmt=cc.pix_fmt or "unknown", fps=fps, frames=frames, rotation=rotation,
            vfr=detect_vfr(pts_sorted), streams=streams, chapters=chapters, video_index=vs.index,
            time_base=f"{tb.numerator}/{tb.denominator}", start_pts=start_pts, video_duration_s=video_duration_s,
            sample_aspect_ratio=(f"{sar.numerator}/{sar.denominator}" if sar and sar != 1 else None),
            metadata=metadata)


def decode_budget(path: Path, memory_mb: int, *, held_rgb: int = 0, rgb_scale: int = 1,
                  what: str = "decoding this video") -> tuple[int, int]:
    """Check, from the header alone (FFmpeg's probing decode capped to nothing), that decoding the file's video
    fits in ``memory_mb`` (a step's declared memory): MemoryLimitExceeded before any picture is allocated.
    Returns the coded (width, height)."""
    from reelforge.adapters.media.inputs import decoder_threads
    from reelforge.domain.media import check_decode_memory, decode_memory

    with open_input(Path(path), max_pixels=1) as container:
        vs = main_video_stream(container)
        cc = vs.codec_context if vs is not None else None
        if cc is None:
            return 0, 0
        width, height = int(cc.width or 0), int(cc.height or 0)
        need = decode_memory(width, height, cc.pix_fmt or "yuv420p", threads=decoder_threads(), held_rgb=held_rgb,
                             rgb_scale=rgb_scale)
    check_decode_memory(need, memory_mb, what=what)
    return width, height


def _scan_all(container: Any, vs: Any) -> tuple[PacketIndex, float, bool]:
    """One demux pass over every stream: the video stream's packet index (as :func:`scan_packets`), the seconds
    from the earliest packet of any stream to the end of the latest, and whether a packet was read short."""
    idx = PacketIndex()
    lo: float | None = None
    hi: float | None = None
    cut = False
    for pkt in container.demux():
        if pkt.size == 0 or pkt.stream is None:
            continue
        ts = pkt.pts if pkt.pts is not None else pkt.dts
        cut = cut or bool(pkt.is_corrupt)
        if pkt.stream.index == vs.index:
            if pkt.is_discard:
                continue
            if ts is None:
                raise refuse("not_a_video", "The video stream has packets without timestamps; remux it into MP4 or "
                             "MKV")
            idx.pts.append(ts)
            idx.dts.append(pkt.dts if pkt.dts is not None else ts)
            idx.duration.append(pkt.duration or 0)
            idx.keyframe.append(1 if pkt.is_keyframe else 0)
        if ts is None or pkt.time_base is None:
            continue
        start = float(ts * pkt.time_base)
        end = float((ts + (pkt.duration or 0)) * pkt.time_base)
        lo = start if lo is None else min(lo, start)
        hi = end if hi is None else max(hi, end)
    return idx, (hi - lo) if lo is not None and hi is not None else 0.0, cut


def _last_duration(index: PacketIndex, pts_sorted: list[int]) -> int:
    last = pts_sorted[-1]
    for i in range(len(index) - 1, -1, -1):
        if index.pts[i] == last and index.duration[i] > 0:
            return int(index.duration[i])
    d = frame_durations(pts_sorted)
    return int(statistics.median(d)) if d else 1


def _first_frame_rotation(container: Any, vs: Any, codec: str, max_pixels: int) -> int:
    """Decode the first frame: proves a decoder exists and reads the display matrix (ffmpeg's angle is
    counter-clockwise; we report the clockwise turn, like the legacy ``rotate`` tag). The decoder is capped at
    ``max_pixels``."""
    try:
        container.seek(0, stream=vs, backward=True)
    except av.error.FFmpegError:
        pass
    limit_decoder(vs, max_pixels)
    try:
        for frame in container.decode(vs):
            ccw = float(frame.rotation or 0)
            return int(round(-ccw / 90.0) * 90) % 360 if not math.isnan(ccw) else 0
    except av.error.DecoderNotFoundError as exc:
        raise refuse("unsupported_codec", f"The video codec {codec!r} is not supported: no decoder") from exc
    except av.error.FFmpegError as exc:
        raise refuse("not_a_video", f"The video stream cannot be decoded ({exc.strerror or type(exc).__name__})",
                     codec=codec) from exc
    raise refuse("not_a_video", "The video stream decodes to no frames", codec=codec)
