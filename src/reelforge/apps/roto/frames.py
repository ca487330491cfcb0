"""Frames of a local video file, as the user sees them: random access and bounded-memory streaming.

`FrameSource(path)` probes the file once (through the platform's media adapters: whitelisted containers,
decoders capped at the video's own size, the media policy when `limits` is given) and indexes every frame of
the main video stream by its presentation timestamp, so frame ``n`` is the n-th picture shown, also when the
frame rate varies. Frames are RGB ``uint8`` arrays of shape ``(height, width, 3)`` with the display rotation
applied (a phone video recorded upright comes out upright), so pixel coordinates are the ones a user clicks.

- `frame(n)`: random access. Seeks to the keyframe at or before ``n`` and decodes forward; a request just
  after the last one decoded continues from there instead of seeking again; a small LRU keeps recent frames.
- `iter_frames(start, stop, step)`: streaming with `range` semantics, forwards or backwards. Backwards decodes
  one block at a time (a GOP, or at most ``block`` frames of a longer one) forwards and yields it reversed, so
  at most one block of frames is held, never the whole video.

Timing: `FrameInfo.pts` holds every frame's presentation timestamp in the stream's `time_base` (variable frame
rate included); `durations` each frame's own duration. Exports carry them over unchanged.
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
import logging
import threading
from array import array
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from reelforge import errors
from reelforge.domain.media import MediaLimits

log = logging.getLogger("reelforge.roto")

# Frames a backward block holds at most when a GOP is longer than that (the block is decoded from the GOP's
# keyframe each time; memory stays bounded, time grows for very long GOPs).
DEFAULT_BLOCK = 48
DEFAULT_CACHE_FRAMES = 12
DEFAULT_CACHE_BYTES = 256 * 1024 * 1024


class FrameError(errors.ReelforgeError):
    """The video gives other frames than its packets promised (damaged, or cut short): bad input."""

    status, code, title = 422, "corrupt_video", "The video cannot be decoded"


@dataclass(frozen=True)
class FrameInfo:
    """What a video holds, per frame. Sizes are as shown (after rotation); `coded_*` as stored."""

    width: int
    height: int
    coded_width: int
    coded_height: int
    frame_count: int
    fps: float  # average frame rate (frame_count / duration for variable frame rate)
    time_base: Fraction  # of the video stream: pts and durations are in these units
    pts: array  # presentation timestamps, one per frame, increasing ('q')
    durations: array  # each frame's duration in time_base ('q'); the last one from its packet
    keyframes: tuple[int, ...]  # frame indices where decoding may start (their seek targets are kept privately)
    rotation: int  # clockwise degrees a player turns the stored picture (0, 90, 180, 270): already applied
    vfr: bool
    audio_codecs: tuple[str, ...]  # of the audio streams, in stream order
    duration_s: float  # first frame's start to the last frame's end
    codec: str
    pix_fmt: str
    format_name: str
    sample_aspect_ratio: Fraction | None = None  # of the picture as shown; None for square pixels

    @property
    def has_audio(self) -> bool:
        return bool(self.audio_codecs)

    @property
    def start_pts(self) -> int:
        return int(self.pts[0])

    def time_of(self, n: int) -> float:
        """Seconds from the first frame's start to frame ``n``'s."""
        return float((self.pts[n] - self.pts[0]) * self.time_base)

    def index_at(self, seconds: float) -> int:
        """The frame shown at ``seconds`` after the first frame started (clamped to the video)."""
        ticks = self.pts[0] + seconds / self.time_base if self.time_base else self.pts[0]
        i = bisect.bisect_right(self.pts, ticks) - 1
        return min(max(i, 0), self.frame_count - 1)

    def keyframe_before(self, n: int) -> int:
        """The index of the last keyframe at or before frame ``n`` (0 when none is)."""
        i = bisect.bisect_right(self.keyframes, n) - 1
        return self.keyframes[i] if i >= 0 else 0

    def frame_bytes(self) -> int:
        return self.width * self.height * 3

    def summary(self) -> dict[str, Any]:
        """JSON-ready description (no per-frame lists): what a session shows its user."""
        return {
            "width": self.width, "height": self.height, "frame_count": self.frame_count,
            "fps": round(self.fps, 6), "duration_s": round(self.duration_s, 6), "rotation": self.rotation,
            "vfr": self.vfr, "has_audio": self.has_audio, "time_base": f"{self.time_base.numerator}/"
            f"{self.time_base.denominator}", "codec": self.codec,
        }


def rotate(rgb: np.ndarray, rotation: int) -> np.ndarray:
    """The stored picture turned ``rotation`` degrees clockwise (how a player shows it); contiguous."""
    k = {0: 0, 90: -1, 180: 2, 270: 1}.get(rotation % 360, 0)
    return np.ascontiguousarray(np.rot90(rgb, k=k)) if k else rgb


def check_range(info: FrameInfo, start: int | None, stop: int | None, step: int) -> range:
    """The frame indices ``range(start, stop, step)`` covers, with `range`'s defaults for None (all frames
    forwards, or all backwards from the last when ``step`` < 0); refuses indices outside the video."""
    if not isinstance(step, int) or step == 0:
        raise errors.ValidationFailed("step must be a non-zero integer", code="invalid_range")
    n = info.frame_count
    if step > 0:
        start = 0 if start is None else start
        stop = n if stop is None else stop
        if not 0 <= start <= n or not 0 <= stop <= n:
            raise errors.ValidationFailed(f"Frames {start}..{stop} are outside the video (0..{n - 1})",
                                          code="frame_out_of_range", frame_count=n)
    else:
        start = n - 1 if start is None else start
        stop = -1 if stop is None else stop
        if not -1 <= start < n or not -1 <= stop < n:
            raise errors.ValidationFailed(f"Frames {start}..{stop} are outside the video (0..{n - 1})",
                                          code="frame_out_of_range", frame_count=n)
    return range(start, stop, step)


def _probe(path: Path, limits: MediaLimits | None) -> tuple[FrameInfo, array, int]:
    """FrameInfo, the seek target (pts) of each keyframe, and the video stream's index."""
    from reelforge.adapters.media.inputs import open_input
    from reelforge.adapters.media.probe import probe, scan_packets

    vinfo = probe(path, limits=limits)
    with open_input(path, max_pixels=max(1, vinfo.width * vinfo.height)) as container:
        vs = container.streams[vinfo.video_index]
        index = scan_packets(container, vs)
    order = sorted(range(len(index)), key=lambda i: index.pts[i])
    pts = array("q", (index.pts[i] for i in order))
    for a, b in itertools.pairwise(pts):
        if b <= a:
            raise FrameError("Two frames of the video have the same timestamp", code="corrupt_video")
    n = len(pts)
    durations = array("q", (pts[i + 1] - pts[i] for i in range(n - 1)))
    last = next((index.duration[i] for i in reversed(order) if index.duration[i] > 0), 0)
    if not last:
        last = int(sorted(durations)[len(durations) // 2]) if durations else 1
    durations.append(int(last))
    keyframes: list[int] = []
    seek_pts = array("q")
    for i in range(len(index)):
        if index.keyframe[i]:
            k = bisect.bisect_left(pts, index.pts[i])
            keyframes.append(k)
    keyframes = sorted(set(keyframes) | {0})
    for k in keyframes:
        seek_pts.append(pts[k])
    tb = Fraction(vinfo.time_base)
    w, h = vinfo.display_size
    sar: Fraction | None = None
    if vinfo.sample_aspect_ratio:
        sar = Fraction(vinfo.sample_aspect_ratio)
        if vinfo.rotation in (90, 270):
            sar = 1 / sar
    duration_s = float((pts[-1] + durations[-1] - pts[0]) * tb)
    fps = vinfo.fps if not vinfo.vfr else (n / duration_s if duration_s else vinfo.fps)
    info = FrameInfo(width=w, height=h, coded_width=vinfo.width, coded_height=vinfo.height, frame_count=n,
                     fps=float(fps), time_base=tb, pts=pts, durations=durations, keyframes=tuple(keyframes),
                     rotation=vinfo.rotation, vfr=vinfo.vfr,
                     audio_codecs=tuple(s.codec for s in vinfo.streams if s.type == "audio"), duration_s=duration_s,
                     codec=vinfo.codec, pix_fmt=vinfo.pix_fmt, format_name=vinfo.format_name,
                     sample_aspect_ratio=sar)
    return info, seek_pts, vinfo.video_index


class _Decoder:
    """One open input and its decoder, positioned somewhere in the video; maps decoded frames to indices."""

    def __init__(self, path: Path, info: FrameInfo, seek_pts: array, stream_index: int) -> None:
        self.path, self.info, self.seek_pts = path, info, seek_pts
        self.stream_index = stream_index
        self.frames: Iterator[Any] | None = None
        self.pos = -1  # index of the last frame this decoder gave
        self._open()

    def _open(self) -> None:
        from reelforge.adapters.media.inputs import limit_decoder, open_input

        cap = max(1, self.info.coded_width * self.info.coded_height)
        self.container: Any = open_input(self.path, max_pixels=cap)
        self.stream: Any = self.container.streams[self.stream_index]
        self.stream.thread_type = "AUTO"
        limit_decoder(self.stream, cap)
        self.fresh = True  # nothing read yet: decoding starts at the first packet

    def close(self) -> None:
        self._drop()
        with contextlib.suppress(Exception):
            self.container.close()

    def _drop(self) -> None:
        if self.frames is not None:
            close = getattr(self.frames, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    close()
        self.frames = None

    def index_of(self, frame: Any) -> int | None:
        if frame.pts is None:
            return None
        pts = self.info.pts
        i = bisect.bisect_left(pts, int(frame.pts))
        return i if i < len(pts) and pts[i] == frame.pts else None

    def _decoded(self) -> Iterator[tuple[int, Any]]:
        """(index, av frame) from the current position on."""
        import av

        assert self.frames is not None
        self.fresh = False
        try:
            for frame in self.frames:
                i = self.index_of(frame)
                if i is None:
                    continue  # a picture with no timestamp of ours (a leading frame of an open GOP)
                self.pos = i
                yield i, frame
        except av.error.FFmpegError as exc:
            raise FrameError(f"Decoding the video failed near frame {self.pos + 1} "
                             f"({exc.strerror or type(exc).__name__})") from exc

    def seek_to(self, n: int) -> Iterator[tuple[int, Any]]:
        """Position the decoder so that the next frames it gives start at or before frame ``n``."""
        import av

        if self.frames is not None and self.pos < n and self.pos >= self.info.keyframe_before(n) - 1:
            return self._decoded()  # going on from here decodes no more than seeking would
        k = bisect.bisect_right(self.info.keyframes, n) - 1
        target = int(self.seek_pts[max(k, 0)])
        self._drop()
        if self.info.keyframes[max(k, 0)] > 0 or not self.fresh:
            try:
                self.container.seek(target, stream=self.stream, backward=True, any_frame=False)
                self.frames = self.container.decode(self.stream)
                it = self._decoded()
                head = next(it, None)
                if head is not None and head[0] <= n:
                    return _prepend(head, it)
                log.info("seeking to frame %d landed at %s; decoding from the start", n, head and head[0])
            except av.error.FFmpegError as exc:
                log.info("seeking to frame %d failed (%s); decoding from the start", n, exc)
            self._drop()
        if not self.fresh:
            # The very start: reopen rather than trust a seek to the first packet.
            with contextlib.suppress(Exception):
                self.container.close()
            self._open()
        self.pos = -1
        self.frames = self.container.decode(self.stream)
        return self._decoded()


def _prepend(head: tuple[int, Any], rest: Iterator[tuple[int, Any]]) -> Iterator[tuple[int, Any]]:
    yield head
    yield from rest


class FrameSource:
    """Random access and streaming over one local video file (see the module docstring).

    ``limits``: the media policy to refuse the file by (its header checks); ``cache_frames`` and
    ``cache_bytes`` bound the LRU of decoded frames; ``block`` bounds a backward block. `frame` is safe to
    call from several threads (one at a time); each `iter_frames` opens its own decoder.
    """

    def __init__(self, path: Path | str, *, limits: MediaLimits | None = None,
                 cache_frames: int = DEFAULT_CACHE_FRAMES, cache_bytes: int = DEFAULT_CACHE_BYTES,
                 block: int = DEFAULT_BLOCK) -> None:
        self.path = Path(path)
        self.info, self._seek_pts, self._stream_index = _probe(self.path, limits)
        self.block = max(1, int(block))
        per = max(1, self.info.frame_bytes())
        self._cache_cap = max(1, min(int(cache_frames), int(cache_bytes) // per))
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self._decoder: _Decoder | None = None
        self.decoded = 0  # frames decoded so far by `frame` (for tests and metrics)

    # ------------------------------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        with self._lock:
            if self._decoder is not None:
                self._decoder.close()
                self._decoder = None
            self._cache.clear()

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return self.info.frame_count

    # ------------------------------------------------------------------------------------------ access
    def rgb(self, frame: Any) -> np.ndarray:
        """A decoded PyAV frame as the RGB picture shown (rotation applied)."""
        return rotate(frame.to_ndarray(format="rgb24"), self.info.rotation)

    def frame(self, n: int) -> np.ndarray:
        """Frame ``n`` (0-based, in presentation order) as RGB uint8 (H, W, 3), rotation applied. The array is
        shared with the cache: do not write into it."""
        if not isinstance(n, int) or not 0 <= n < self.info.frame_count:
            raise errors.ValidationFailed(f"Frame {n} is outside the video (0..{self.info.frame_count - 1})",
                                          code="frame_out_of_range", frame_count=self.info.frame_count)
        with self._lock:
            hit = self._cache.get(n)
            if hit is not None:
                self._cache.move_to_end(n)
                return hit
            if self._decoder is None:
                self._decoder = _Decoder(self.path, self.info, self._seek_pts, self._stream_index)
            dec = self._decoder
            for i, frame in dec.seek_to(n):
                self.decoded += 1
                if i == n:
                    rgb = self.rgb(frame)
                    rgb.setflags(write=False)
                    self._cache[n] = rgb
                    while len(self._cache) > self._cache_cap:
                        self._cache.popitem(last=False)
                    return rgb
                if i > n:
                    break
            dec.close()
            self._decoder = None
            raise FrameError(f"The video gives no frame {n} (it holds fewer frames than its packets promise)",
                             code="frame_count_mismatch")

    def iter_frames(self, start: int | None = None, stop: int | None = None,
                    step: int = 1) -> Iterator[tuple[int, np.ndarray]]:
        """``(index, rgb)`` for the frames of ``range(start, stop, step)``, decoded as they are needed.

        Forwards: one pass from the keyframe before ``start``. Backwards: blocks of at most one GOP (or
        ``block`` frames) decoded forwards and yielded in reverse. Memory: one block of frames at most.
        """
        wanted = check_range(self.info, start, stop, step)
        if not wanted:
            return
        dec = _Decoder(self.path, self.info, self._seek_pts, self._stream_index)
        try:
            if step > 0:
                yield from self._forward(dec, wanted)
            else:
                yield from self._backward(dec, wanted)
        finally:
            dec.close()

    def _forward(self, dec: _Decoder, wanted: range) -> Iterator[tuple[int, np.ndarray]]:
        first, last, step = wanted[0], wanted[-1], wanted.step
        expected = first
        for i, frame in dec.seek_to(first):
            if i < expected:
                continue
            if i > expected:
                raise FrameError(f"The video skips from frame {expected - step} to {i}", code="frame_count_mismatch")
            yield i, self.rgb(frame)
            if i >= last:
                return
            expected = i + step
        raise FrameError(f"The video ends before frame {expected}", code="frame_count_mismatch")

    def _backward(self, dec: _Decoder, wanted: range) -> Iterator[tuple[int, np.ndarray]]:
        hi, lo, stride = wanted[0], wanted[-1], -wanted.step
        while hi >= lo:
            begin = max(self.info.keyframe_before(hi), hi - self.block + 1, lo)
            held: list[tuple[int, np.ndarray]] = []
            for i, frame in dec.seek_to(begin):
                if i < begin:
                    continue
                if (wanted[0] - i) % stride == 0:
                    held.append((i, self.rgb(frame)))
                if i >= hi:
                    break
            got = [i for i, _ in held]
            need = [i for i in range(hi, begin - 1, -1) if (wanted[0] - i) % stride == 0]
            if sorted(got) != sorted(need):
                raise FrameError(f"The video gives other frames than expected between {begin} and {hi}",
                                 code="frame_count_mismatch")
            while held:
                yield held.pop()
            hi = begin - 1
            # continuing forward from here never helps a backward walk: the next block starts earlier
            dec._drop()
            dec.pos = -1


def open_frames(path: Path | str, *, limits: MediaLimits | None = None, **kwargs: Any) -> FrameSource:
    """A `FrameSource` over ``path`` (refusals are ValidationFailed with the media policy's codes)."""
    return FrameSource(path, limits=limits, **kwargs)
