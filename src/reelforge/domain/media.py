"""The media policy's rules: what every application accepts as an input video or image, whether a file holds
what its container claims, and whether decoding it fits in a step's declared memory.

Pure functions over numbers a probe read from headers (adapters/media does the reading); each refusal is a
:class:`~reelforge.errors.ReelforgeError` with a documented code. The limits come from the `media` settings
section (`MediaSettings.limits()`); an application may tighten them for itself (`MediaLimits.tightened`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from reelforge import errors


@dataclass(frozen=True)
class MediaLimits:
    """What an input may be. Sizes are of the coded picture (before rotation)."""

    max_width: int = 7680
    max_height: int = 7680
    max_pixels: int = 7680 * 4320
    max_duration_s: float = 3600.0
    max_fps: float = 240.0
    # Decoder names (PyAV/FFmpeg `codec_context.name`) accepted for video streams; empty accepts any decodable one.
    video_codecs: frozenset[str] = frozenset()
    image_max_width: int = 16384
    image_max_height: int = 16384
    image_max_pixels: int = 8192 * 8192
    # Pillow format names accepted for images.
    image_formats: frozenset[str] = frozenset({"PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF"})
    image_max_frames: int = 1000

    def tightened(self, **limits: Any) -> MediaLimits:
        """These limits with some made stricter (an application's own caps); a looser or None value is ignored."""
        changes = {k: min(getattr(self, k), v) for k, v in limits.items() if v is not None}
        return replace(self, **changes)


def refuse(code: str, message: str, **details: Any) -> errors.ValidationFailed:
    """A 422 refusal of an input with its documented code."""
    return errors.ValidationFailed(message, code=code, **details)


def check_video(limits: MediaLimits, *, width: int, height: int, duration_s: float, fps: float,
                codec: str) -> None:
    """Refuse a video whose header says it is over the limits: checked before any frame is decoded."""
    if width <= 0 or height <= 0:
        raise refuse("not_a_video", "The video stream has no picture size")
    if width > limits.max_width or height > limits.max_height or width * height > limits.max_pixels:
        raise refuse("video_too_large",
                     f"The video is {width}x{height} ({width * height} pixels); the limits are "
                     f"{limits.max_width}x{limits.max_height} and {limits.max_pixels} pixels",
                     width=width, height=height, max_width=limits.max_width, max_height=limits.max_height,
                     max_pixels=limits.max_pixels)
    if duration_s > limits.max_duration_s:
        raise refuse("video_too_long", f"The video lasts {duration_s:.2f} s; the limit is {limits.max_duration_s:g} s",
                     duration_s=round(duration_s, 3), max_duration_s=limits.max_duration_s)
    if fps > limits.max_fps:
        raise refuse("frame_rate_too_high", f"The video runs at {fps:.2f} frames per second; the limit is "
                     f"{limits.max_fps:g}", fps=round(fps, 3), max_fps=limits.max_fps)
    if limits.video_codecs and codec not in limits.video_codecs:
        raise refuse("unsupported_codec", f"The video codec {codec!r} is not accepted; accepted: "
                     f"{', '.join(sorted(limits.video_codecs))}", codec=codec)


def check_image(limits: MediaLimits, *, width: int, height: int, format: str, frames: int = 1) -> None:
    """Refuse an image whose header says it is over the limits, before Pillow decodes a pixel."""
    if limits.image_formats and format not in limits.image_formats:
        raise refuse("not_an_image", f"{format} images are not accepted; accepted: "
                     f"{', '.join(sorted(limits.image_formats))}", format=format)
    if (width > limits.image_max_width or height > limits.image_max_height
            or width * height > limits.image_max_pixels):
        raise refuse("image_too_large",
                     f"The image is {width}x{height} ({width * height} pixels); the limits are "
                     f"{limits.image_max_width}x{limits.image_max_height} and {limits.image_max_pixels} pixels",
                     width=width, height=height, max_pixels=limits.image_max_pixels)
    if frames > limits.image_max_frames or width * height * max(1, frames) > limits.image_max_pixels * 4:
        raise refuse("image_too_large", f"The image has {frames} frames of {width}x{height}",
                     frames=frames, max_frames=limits.image_max_frames)


def check_complete(*, claimed_frames: int, frames: int, claimed_s: float, present_s: float,
                   frame_s: float, cut: bool = False) -> None:
    """Refuse a file that holds less than its container claims (a cut upload: an MP4 whose index came first
    still promises every frame). ``claimed_*`` come from the headers, ``frames``/``present_s`` from the packets
    actually there; ``cut`` is a packet read short. A few frames of slack cover edit lists and rounding."""
    slack_s = max(0.5, 3 * frame_s, 0.02 * claimed_s)
    if cut or (claimed_frames > 0 and frames < claimed_frames - max(2, claimed_frames // 50)) \
            or (claimed_s > 0 and present_s < claimed_s - slack_s):
        raise refuse("media_truncated",
                     f"The file is cut short: it holds {frames} frames ({present_s:.2f} s) of the "
                     f"{claimed_frames or '?'} frames ({claimed_s:.2f} s) its container claims",
                     frames=frames, claimed_frames=claimed_frames, seconds=round(present_s, 3),
                     claimed_s=round(claimed_s, 3))


def check_decoded(*, expected_frames: int, decoded: int, expected_s: float = 0.0, decoded_s: float | None = None,
                  frame_s: float = 0.04) -> None:
    """Refuse what decoded to less than the probe promised (frames or time)."""
    short_frames = expected_frames > 0 and decoded < expected_frames - max(2, expected_frames // 50)
    short_time = decoded_s is not None and expected_s > 0 and \
        decoded_s < expected_s - max(0.5, 3 * frame_s, 0.02 * expected_s)
    if short_frames or short_time:
        shown = f"{decoded_s:.2f} s" if decoded_s is not None else f"{decoded} frames"
        raise refuse("media_truncated", f"The video decodes to {decoded} frames ({shown}); its container claims "
                     f"{expected_frames} frames ({expected_s:.2f} s)", decoded=decoded,
                     expected_frames=expected_frames)


# Bytes per pixel of a decoded picture, by chroma layout and bit depth (planar YUV).
def frame_bytes(width: int, height: int, pix_fmt: str = "yuv420p") -> int:
    """Bytes of one decoded frame in ``pix_fmt`` (padding left out)."""
    fmt = pix_fmt or "yuv420p"
    deep = any(t in fmt for t in ("10", "12", "16", "p010", "p016"))
    if "444" in fmt or fmt.startswith(("rgb", "bgr", "gbr")):
        per = 3.0
    elif "422" in fmt:
        per = 2.0
    elif fmt.startswith("gray"):
        per = 1.0
    else:
        per = 1.5
    return int(width * height * per * (2 if deep else 1))


def reference_frames(width: int, height: int) -> int:
    """Pictures a decoder keeps for reference and reordering at this size: H.264/HEVC allow up to 16, fewer as
    pictures grow (the largest level's decoded picture buffer holds 696320 macroblocks); never fewer than 2."""
    return max(2, min(16, (696320 * 256) // max(1, width * height)))


def decode_memory(width: int, height: int, pix_fmt: str = "yuv420p", *, threads: int = 1,
                  references: int | None = None, held_rgb: int = 0, rgb_scale: int = 1) -> int:
    """Bytes a decode of this picture size needs at its peak: the decoder's reference and reordering pictures
    (:func:`reference_frames` unless given) plus one per decoding thread, plus ``held_rgb`` RGB frames the caller
    keeps (a batch, converted frames; ``rgb_scale`` times larger each side when a model enlarges them)."""
    refs = reference_frames(width, height) if references is None else references
    decoded = frame_bytes(width, height, pix_fmt) * (refs + max(1, threads) + 1)
    return decoded + held_rgb * width * height * 3 * rgb_scale * rgb_scale


def check_decode_memory(need_bytes: int, memory_mb: int, *, what: str = "decoding this video") -> None:
    """Fail cleanly, before decoding, when the step's declared memory cannot hold what decoding needs."""
    if memory_mb > 0 and need_bytes > memory_mb * 1024 * 1024:
        raise errors.MemoryLimitExceeded(
            f"{what.capitalize()} needs about {need_bytes / 1024**2:.0f} MiB; the step may use {memory_mb} MiB",
            need_mb=round(need_bytes / 1024**2), memory_mb=memory_mb)
