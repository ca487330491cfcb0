"""Scene pictures, rendered at the output size and generated one frame at a time.

- :func:`ken_burns`: a camera move over a still (zoom in or out, pan in four directions) with easing. The still
  is scaled once so the move never samples it below about one source pixel per output pixel, then each frame
  is one affine warp (OpenCV ``warpAffine``, bilinear, sub-pixel positions: no stepping in slow moves).
- :func:`title_card`: a title (and an optional line under it) drawn with Pillow over a darkened, blurred still
  or a gradient, fading in and out.
- :func:`sample_photo`: the natural photos that scikit-image ships, for scenes without a picture of their own.

Frames are RGB ``uint8`` arrays of shape (height, width, 3). A :class:`Clip` carries a single-pass frame
iterator with its frame count, rate and size, which is what :mod:`compose` consumes.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from reelforge import errors
from reelforge.domain.media import MediaLimits

ASPECTS = {"16:9": (1280, 720), "9:16": (720, 1280)}
MOVES = ("zoom_in", "zoom_out", "pan_left", "pan_right", "pan_up", "pan_down")
SAMPLE_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry",
                 "motorcycle", "camera", "moon", "coins", "clock", "retina")
FONT_FILES = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Bold.ttf",
)
MAX_SOURCE_SIDE = 4096  # the prepared still's longest side


@dataclass
class Clip:
    """A stream of frames: iterate ``frames`` once. ``method`` says how they were made."""

    frames: Iterable[np.ndarray]
    n_frames: int
    fps: float
    size: tuple[int, int]  # (width, height)
    method: str = ""

    @property
    def duration_s(self) -> float:
        return self.n_frames / self.fps


def frame_size(aspect: str = "16:9", height: int | None = None) -> tuple[int, int]:
    """(width, height) for ``16:9`` or ``9:16``; ``height`` scales the default 1280x720 (even sizes)."""
    if aspect not in ASPECTS:
        raise errors.ValidationFailed(f"aspect must be one of {', '.join(ASPECTS)}")
    w, h = ASPECTS[aspect]
    if height:
        short = height if aspect == "16:9" else round(height * 9 / 16)
        scale = short / 720
        w, h = round(w * scale / 2) * 2, round(h * scale / 2) * 2
    return w, h


def sample_photo(name: str = "astronaut") -> np.ndarray:
    """An RGB photo that ships inside scikit-image (offline): one of :data:`SAMPLE_PHOTOS`."""
    if name not in SAMPLE_PHOTOS:
        raise errors.ValidationFailed(f"no sample photo {name!r}; one of {', '.join(SAMPLE_PHOTOS)}")
    import skimage.data

    img: Any = getattr(skimage.data, "stereo_motorcycle" if name == "motorcycle" else name)()
    if isinstance(img, tuple):
        img = img[0]
    return as_rgb(img)


def as_rgb(image: np.ndarray) -> np.ndarray:
    """RGB uint8 (H, W, 3) from grey, RGBA or float images."""
    img = np.asarray(image)
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    img = img[..., :3]
    if img.dtype != np.uint8:
        scale = 255.0 if float(np.max(img, initial=0)) <= 1.0 else 1.0
        img = np.clip(img.astype(np.float32) * scale, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(img)


def load_image(source: Path | str | bytes, limits: MediaLimits | None = None) -> np.ndarray:
    """A project image (a file or its bytes) as RGB, through the platform's media policy
    (``adapters.media.inputs.decode_image``): formats, sizes and frame counts from the header are checked
    before a pixel is decoded, markup and appended archives are refused (``not_an_image``,
    ``image_too_large``, ``active_content``, ``polyglot_file``)."""
    from reelforge.adapters.media.inputs import decode_image

    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    img = decode_image(data, limits or MediaLimits())
    try:
        return as_rgb(np.asarray(img.convert("RGB")))
    finally:
        img.close()


# Easing -----------------------------------------------------------------------------------------------------

EASINGS: dict[str, Callable[[float], float]] = {
    "linear": lambda p: p,
    "ease_in_out": lambda p: 0.5 - 0.5 * math.cos(math.pi * p),
    "ease_out": lambda p: math.sin(p * math.pi / 2),
    "ease_in": lambda p: 1 - math.cos(p * math.pi / 2),
}


def pick_move(seed: int) -> str:
    """A camera move chosen by ``seed`` (scenes of one film get varied moves)."""
    return MOVES[int(np.random.default_rng(seed).integers(0, len(MOVES)))]


# Ken Burns --------------------------------------------------------------------------------------------------


def _rects(src_w: int, src_h: int, size: tuple[int, int], move: str, zoom: float,
           focus: tuple[float, float]) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """Start and end views (centre x, centre y, width) in source pixels for a move."""
    w, h = size
    aspect = w / h
    full_w = min(src_w, src_h * aspect)  # the largest view of the output's aspect inside the still
    fx, fy = focus[0] * src_w, focus[1] * src_h

    def clamp(cx: float, cy: float, vw: float) -> tuple[float, float, float]:
        vh = vw / aspect
        return (min(max(cx, vw / 2), src_w - vw / 2), min(max(cy, vh / 2), src_h - vh / 2), vw)

    if move in ("zoom_in", "zoom_out"):
        wide = clamp(src_w / 2, src_h / 2, full_w)
        close = clamp(fx, fy, full_w / zoom)
        return (wide, close) if move == "zoom_in" else (close, wide)
    vw = full_w / zoom  # a pan needs room: a slightly closer view moving across the still
    vh = vw / aspect
    if move in ("pan_left", "pan_right"):
        left, right = clamp(0, fy, vw), clamp(src_w, fy, vw)
        return (right, left) if move == "pan_left" else (left, right)
    if move in ("pan_up", "pan_down"):
        top, bottom = clamp(fx, 0, vw), clamp(fx, src_h, vw)
        if abs(bottom[1] - top[1]) < 1e-6:  # a landscape still has no vertical room: gain some by zooming
            top, bottom = clamp(fx, 0, vw / 1.15), clamp(fx, src_h, vw / 1.15)
        del vh
        return (bottom, top) if move == "pan_up" else (top, bottom)
    raise errors.ValidationFailed(f"unknown camera move {move!r}; one of {', '.join(MOVES)}")


def ken_burns(image: np.ndarray, duration_s: float, *, size: tuple[int, int] = ASPECTS["16:9"], fps: float = 24.0,
              move: str = "zoom_in", zoom: float = 1.25, focus: tuple[float, float] = (0.5, 0.45),
              easing: str = "ease_in_out") -> Clip:
    """A camera move over ``image`` (see the module docstring). ``zoom``: how much closer the close view is
    than the widest view. ``focus``: where a zoom heads, as fractions of the still's width and height."""
    if duration_s <= 0 or fps <= 0:
        raise errors.ValidationFailed("a clip needs a positive duration and frame rate")
    if easing not in EASINGS:
        raise errors.ValidationFailed(f"unknown easing {easing!r}; one of {', '.join(EASINGS)}")
    if not 1.0 <= zoom <= 4.0:
        raise errors.ValidationFailed("zoom must be between 1 and 4")
    import cv2

    src = as_rgb(image)
    w, h = size
    (cx0, cy0, vw0), (cx1, cy1, vw1) = _rects(src.shape[1], src.shape[0], size, move, zoom, focus)
    # Scale the still once so that the closest view is about one still pixel per output pixel (upscaling
    # bicubically once beats bilinear upscaling every frame; downscaling by area avoids aliasing).
    pre = w / min(vw0, vw1)
    pre = min(pre, MAX_SOURCE_SIDE / max(src.shape[:2]))
    if abs(pre - 1.0) > 0.05:
        interp = cv2.INTER_CUBIC if pre > 1 else cv2.INTER_AREA
        src = cv2.resize(src, (max(1, round(src.shape[1] * pre)), max(1, round(src.shape[0] * pre))),
                         interpolation=interp)
        cx0, cy0, vw0, cx1, cy1, vw1 = (v * pre for v in (cx0, cy0, vw0, cx1, cy1, vw1))
    n = max(1, round(duration_s * fps))
    ease = EASINGS[easing]

    def frames() -> Iterator[np.ndarray]:
        for i in range(n):
            p = ease(i / (n - 1)) if n > 1 else 0.0
            vw = vw0 * (vw1 / vw0) ** p  # zoom geometrically: constant apparent speed
            cx, cy = cx0 + (cx1 - cx0) * p, cy0 + (cy1 - cy0) * p
            s = vw / w
            x0, y0 = cx - vw / 2, cy - (h * s) / 2
            # output pixel centre (u + .5) -> still position, pixel centres at +.5
            m = np.array([[s, 0.0, x0 + 0.5 * s - 0.5], [0.0, s, y0 + 0.5 * s - 0.5]], np.float64)
            yield cv2.warpAffine(src, m, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                 borderMode=cv2.BORDER_REFLECT)

    return Clip(frames(), n, float(fps), (w, h), f"ken-burns {move} x{zoom:g} {easing}")


# Title cards ------------------------------------------------------------------------------------------------


@lru_cache(maxsize=16)
def font(size: int, bold: bool = True) -> Any:
    """A TrueType font: DejaVu Sans (or Liberation Sans) where the system has it, else the font that ships
    inside Pillow (``ImageFont.load_default(size)``)."""
    from PIL import ImageFont

    for path in FONT_FILES if bold else FONT_FILES[1:]:
        if Path(path).is_file():
            return ImageFont.truetype(path, size)
    return ImageFont.load_default(size=size)


def _gradient(size: tuple[int, int], top: tuple[int, int, int], bottom: tuple[int, int, int]) -> np.ndarray:
    w, h = size
    t = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
    img = np.asarray(top, np.float32) * (1 - t) + np.asarray(bottom, np.float32) * t
    return np.broadcast_to(img, (h, w, 3)).astype(np.uint8)


def _wrap_to(draw: Any, text: str, fnt: Any, max_w: float) -> list[str]:
    words = text.split()
    for width in range(max(8, len(text)), 4, -1):
        lines = textwrap.wrap(" ".join(words), width=width) or [""]
        if all(draw.textlength(line, font=fnt) <= max_w for line in lines):
            return lines
    return textwrap.wrap(text, width=5) or [""]


def render_title(title: str, subtitle: str | None = None, *, size: tuple[int, int] = ASPECTS["16:9"],
                 background: np.ndarray | tuple[int, int, int] | None = None) -> np.ndarray:
    """One title-card picture: the title centred (wrapped to 84 % of the width), the subtitle under it,
    over a darkened blurred ``background`` still, a solid colour, or a dark gradient."""
    from PIL import Image, ImageDraw, ImageFilter

    w, h = size
    if isinstance(background, np.ndarray):
        import cv2

        bg = as_rgb(background)
        scale = max(w / bg.shape[1], h / bg.shape[0])
        bg = cv2.resize(bg, (max(w, round(bg.shape[1] * scale)), max(h, round(bg.shape[0] * scale))),
                        interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        y0, x0 = (bg.shape[0] - h) // 2, (bg.shape[1] - w) // 2
        base = Image.fromarray(bg[y0:y0 + h, x0:x0 + w]).filter(ImageFilter.GaussianBlur(radius=max(2, w // 120)))
        base = Image.fromarray((np.asarray(base, np.float32) * 0.45).astype(np.uint8))
    elif background is not None:
        base = Image.new("RGB", (w, h), tuple(int(c) for c in background))
    else:
        base = Image.fromarray(_gradient(size, (18, 22, 38), (4, 4, 8)))
    draw = ImageDraw.Draw(base)
    short = min(w, h)
    title_font = font(max(12, int(short * 0.085)))
    sub_font = font(max(10, int(short * 0.042)), bold=False)
    title_lines = _wrap_to(draw, title, title_font, 0.84 * w)
    sub_lines = _wrap_to(draw, subtitle, sub_font, 0.84 * w) if subtitle else []
    line_h = int(title_font.size * 1.2)
    sub_h = int(sub_font.size * 1.35)
    gap = int(short * 0.035) if sub_lines else 0
    total = line_h * len(title_lines) + gap + sub_h * len(sub_lines)
    y = (h - total) / 2
    shadow = max(1, short // 240)
    for line in title_lines:
        x = (w - draw.textlength(line, font=title_font)) / 2
        draw.text((x + shadow, y + shadow), line, font=title_font, fill=(0, 0, 0))
        draw.text((x, y), line, font=title_font, fill=(245, 240, 228))
        y += line_h
    y += gap
    for line in sub_lines:
        x = (w - draw.textlength(line, font=sub_font)) / 2
        draw.text((x, y), line, font=sub_font, fill=(200, 200, 205))
        y += sub_h
    return np.asarray(base, np.uint8).copy()


def title_card(title: str, duration_s: float, *, subtitle: str | None = None,
               size: tuple[int, int] = ASPECTS["16:9"], fps: float = 24.0,
               background: np.ndarray | tuple[int, int, int] | None = None, fade_s: float = 0.6) -> Clip:
    """A title card that fades in from black and out to black over ``fade_s`` each."""
    if duration_s <= 0 or fps <= 0:
        raise errors.ValidationFailed("a clip needs a positive duration and frame rate")
    import cv2

    card = render_title(title, subtitle, size=size, background=background)
    n = max(1, round(duration_s * fps))
    k = min(round(fade_s * fps), n // 2)

    def frames() -> Iterator[np.ndarray]:
        for i in range(n):
            a = min(1.0, (i + 1) / (k + 1), (n - i) / (k + 1)) if k else 1.0
            yield card.copy() if a >= 1.0 else cv2.convertScaleAbs(card, alpha=a)

    return Clip(frames(), n, float(fps), (size[0], size[1]), "title card (Pillow text)")


def still_clip(image: np.ndarray, duration_s: float, *, size: tuple[int, int] = ASPECTS["16:9"],
               fps: float = 24.0) -> Clip:
    """A still held for ``duration_s`` (cover-fitted once)."""
    return ken_burns(image, duration_s, size=size, fps=fps, move="zoom_in", zoom=1.0, focus=(0.5, 0.5),
                     easing="linear")
