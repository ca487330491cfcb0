"""Frame sampling and thumbnails with PyAV.

Memory stays bounded: only the sampled frames (downscaled to `max_side`) and a small grey scan
(64x48 per frame, a few per second) are kept, whatever the video's length. Short videos are decoded
in one forward pass; long ones are reached by seeking to each sample time.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from reelforge.domain.media import check_decoded
from reelforge.errors import JobCancelled, ValidationFailed

SCAN_SIZE = (64, 48)  # (width, height) of the grey frames that activity measures use
# Decoders refuse pictures larger than this (the media policy has refused such files long before; this is the
# backstop for a stream whose picture grows after its header).
MAX_PICTURE = 7680 * 4320
_SEEK_ABOVE_S = 90.0  # longer videos are sampled by seeking instead of decoding every frame
CHECK_EVERY = 16  # decoded frames between two cancellation checks


def check(cancelled: Callable[[], bool] | None) -> None:
    """Raise JobCancelled when the job was cancelled (the step's probe); called between batches of work."""
    if cancelled is not None and cancelled():
        raise JobCancelled("analysis cancelled")


@dataclass(frozen=True)
class VideoInfo:
    duration_s: float
    width: int
    height: int
    fps: float
    has_audio: bool


@dataclass
class VideoSamples:
    info: VideoInfo
    times: list[float] = field(default_factory=list)
    frames: list[np.ndarray] = field(default_factory=list)  # RGB uint8, longest side <= max_side
    scan_times: list[float] = field(default_factory=list)
    scan: np.ndarray = field(default_factory=lambda: np.zeros((0, SCAN_SIZE[1], SCAN_SIZE[0]), np.float32))


def _open(path: Path):  # type: ignore[no-untyped-def]
    """The file through the platform's input opener: plain containers only (no playlist or file list may make
    FFmpeg read another file), the file protocol only, FFmpeg's probing decode capped."""
    from reelforge.adapters.media.inputs import open_input

    return open_input(path, max_pixels=MAX_PICTURE, unreadable="invalid_media", what="video")


def _info(container) -> VideoInfo:  # type: ignore[no-untyped-def]
    if not container.streams.video:
        raise ValidationFailed("the file has no video stream", code="invalid_media")
    vs = container.streams.video[0]
    duration = 0.0
    if vs.duration is not None and vs.time_base is not None:
        duration = float(vs.duration * vs.time_base)
    if duration <= 0 and container.duration is not None:
        duration = container.duration / 1_000_000
    fps = float(vs.average_rate) if vs.average_rate else 25.0
    return VideoInfo(duration_s=max(duration, 0.0), width=int(vs.codec_context.width),
                     height=int(vs.codec_context.height), fps=fps, has_audio=bool(container.streams.audio))


def probe(path: Path) -> VideoInfo:
    """Duration, size, frame rate and whether there is an audio stream."""
    with _open(path) as container:
        return _info(container)


def _resize(rgb: np.ndarray, max_side: int) -> np.ndarray:
    from PIL import Image

    h, w = rgb.shape[:2]
    scale = max_side / max(h, w)
    if scale >= 1.0:
        return rgb
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BILINEAR))


def _scan_frame(frame) -> np.ndarray:  # type: ignore[no-untyped-def]
    grey = frame.reformat(width=SCAN_SIZE[0], height=SCAN_SIZE[1], format="gray").to_ndarray()
    return grey.astype(np.float32) / 255.0


def _targets(duration: float, n: int) -> list[float]:
    # Centres of n equal slices: never the very first frame, never past the end.
    return [(i + 0.5) * duration / n for i in range(n)]


def sample(path: Path, n_frames: int = 8, *, max_side: int = 320, scan_fps: float = 6.0,
           extra_times: tuple[float, ...] = (), cancelled: Callable[[], bool] | None = None) -> VideoSamples:
    """`n_frames` RGB frames evenly spread over the video (plus the frames nearest `extra_times`) and a
    grey scan at about `scan_fps` for motion and cut measures. `cancelled()` is checked every CHECK_EVERY
    decoded frames (and before each seek of a long video), raising JobCancelled."""
    import av

    from reelforge.adapters.media.inputs import limit_decoder

    with _open(path) as container:
        info = _info(container)
        vs = container.streams.video[0]
        vs.thread_type = "AUTO"
        limit_decoder(vs, min(MAX_PICTURE, max(1, info.width * info.height)))
        # The video stream's own claims (MP4 keeps them; a container-wide duration may include longer audio).
        claimed_frames = int(vs.frames or 0)
        claimed_s = float(vs.duration * vs.time_base) if vs.duration and vs.time_base else 0.0
        duration = info.duration_s
        if duration <= 0:
            # No duration in the headers: count frames first (cheap for the short videos this is for).
            times = [float(f.time) for f in container.decode(vs) if f.time is not None]
            duration = (max(times) + 1.0 / info.fps) if times else 0.0
            container.seek(0)
            info = VideoInfo(duration, info.width, info.height, info.fps, info.has_audio)
        targets = sorted(set(_targets(duration, n_frames)) | set(extra_times)) if duration > 0 else [0.0]
        out = VideoSamples(info=info)
        try:
            if duration > _SEEK_ABOVE_S:
                _sample_seeking(container, vs, targets, out, max_side, scan_fps, duration, cancelled)
                # Every sample time the container promises must have a frame.
                check_decoded(expected_frames=len(targets), decoded=len(out.frames), expected_s=duration)
            else:
                decoded, end_s = _sample_forward(container, vs, targets, out, max_side, scan_fps, cancelled)
                # What was decoded must match what the container claims (a file cut short still claims it all).
                check_decoded(expected_frames=claimed_frames, decoded=decoded, expected_s=claimed_s,
                              decoded_s=end_s, frame_s=1.0 / max(info.fps, 1.0))
        except av.FFmpegError as exc:
            # Decoding broke off: short of what the container claims, the file was cut; else it is damaged.
            reached = max(out.scan_times, default=0.0)
            cut = claimed_s > 0 and reached < claimed_s - max(0.5, 0.02 * claimed_s)
            raise ValidationFailed(
                f"the video stops decoding at {reached:.2f} s of {claimed_s:.2f} s: the file is cut short" if cut
                else f"the video stops decoding part-way ({exc.strerror or type(exc).__name__})",
                code="media_truncated" if cut else "corrupt_video") from exc
    if not out.frames:
        raise ValidationFailed("no frame could be decoded from the video", code="invalid_media")
    return out


def _sample_forward(container, vs, targets, out, max_side, scan_fps, cancelled):  # type: ignore[no-untyped-def]
    """Decode every frame once, keeping the samples; (frames decoded, end time of the last one in seconds)."""
    half = 0.5 / max(out.info.fps, 1.0)
    next_scan = 0.0
    ti = 0
    scans: list[np.ndarray] = []
    decoded = 0
    end_s = 0.0
    for n, frame in enumerate(container.decode(vs)):
        if n % CHECK_EVERY == 0:
            check(cancelled)
        t = float(frame.time) if frame.time is not None else 0.0
        decoded += 1
        end_s = max(end_s, t + (float(frame.duration * frame.time_base) if frame.duration and frame.time_base
                                else 1.0 / max(out.info.fps, 1.0)))
        if t + 1e-6 >= next_scan:
            scans.append(_scan_frame(frame))
            out.scan_times.append(t)
            next_scan = t + 1.0 / scan_fps
        while ti < len(targets) and t + half >= targets[ti]:
            if not out.times or out.times[-1] != t:
                out.times.append(t)
                out.frames.append(_resize(frame.to_ndarray(format="rgb24"), max_side))
            ti += 1
    if scans:
        out.scan = np.stack(scans)
    start = float(vs.start_time * vs.time_base) if vs.start_time is not None and vs.time_base else 0.0
    return decoded, end_s - start


def _sample_seeking(container, vs, targets, out, max_side, scan_fps, duration,  # type: ignore[no-untyped-def]
                    cancelled):
    # Long video: a bounded number of scan points (at most 240) and one seek per target.
    scan_targets = list(np.linspace(0, duration, num=min(240, max(2, int(duration * scan_fps))), endpoint=False))
    wanted = sorted({*(("f", t) for t in targets), *(("s", float(t)) for t in scan_targets)}, key=lambda x: x[1])
    scans: list[np.ndarray] = []
    for kind, t in wanted:
        check(cancelled)
        container.seek(int(t / vs.time_base), stream=vs, backward=True, any_frame=False)
        for frame in container.decode(vs):
            ft = float(frame.time) if frame.time is not None else 0.0
            if ft + 0.5 / max(out.info.fps, 1.0) >= t:
                if kind == "f":
                    out.times.append(ft)
                    out.frames.append(_resize(frame.to_ndarray(format="rgb24"), max_side))
                else:
                    scans.append(_scan_frame(frame))
                    out.scan_times.append(ft)
                break
    if scans:
        out.scan = np.stack(scans)


# Thumbnails --------------------------------------------------------------------------------------------


def frame_quality(rgb: np.ndarray) -> dict[str, float]:
    """Brightness, contrast and sharpness (variance of a Laplacian) of one frame, on a 0..1 grey scale."""
    grey = rgb.astype(np.float32).mean(axis=2) / 255.0
    lap = (-4 * grey[1:-1, 1:-1] + grey[:-2, 1:-1] + grey[2:, 1:-1] + grey[1:-1, :-2] + grey[1:-1, 2:])
    return {"brightness": float(grey.mean()), "contrast": float(grey.std()), "sharpness": float(lap.var())}


def is_black(q: dict[str, float]) -> bool:
    """Black or nearly flat: a fade, a slate, a lens cap."""
    return q["brightness"] < 0.06 or q["contrast"] < 0.02


def choose_thumbnail(times: list[float], frames: list[np.ndarray]) -> int:
    """Index of the most representative frame: not black or flat, sharp, well exposed; early wins a tie."""
    best, best_score = 0, -1.0
    for i, rgb in enumerate(frames):
        q = frame_quality(rgb)
        if is_black(q):
            continue
        exposure = 1.0 - abs(q["brightness"] - 0.5) * 1.2
        score = (min(q["sharpness"] / 0.01, 1.0) * 0.6 + min(q["contrast"] / 0.25, 1.0) * 0.3 + exposure * 0.1)
        if score > best_score + 1e-6:
            best, best_score = i, score
    if best_score < 0:
        # Every candidate is black: the middle one is as honest as any.
        best = len(frames) // 2
    return best


def thumbnail(path: Path, *, width: int = 320, candidates: int = 12) -> tuple[bytes, float]:
    """A PNG of a representative frame (never a black first frame when better ones exist), `width`
    pixels wide, and the frame's time in seconds."""
    from PIL import Image

    s = sample(path, candidates, max_side=max(width, 64) * 2, scan_fps=1.0)
    i = choose_thumbnail(s.times, s.frames)
    img = Image.fromarray(s.frames[i])
    height = max(1, round(img.height * width / img.width))
    img = img.resize((width, height), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.getvalue(), float(s.times[i])
