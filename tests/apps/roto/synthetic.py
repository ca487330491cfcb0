"""Synthetic rotoscoping clips with exact ground truth, deterministic from a seed.

Textured sprites (patches of scikit-image's sample photos cut to smooth random blobs or star polygons) move,
scale and rotate over a photographic background that pans slowly (camera motion), with mild sensor noise.
Each frame's ground truth is the visible mask of each object, exactly as rasterised when the frame was drawn
(later sprites occlude earlier ones; a static foreground bar occludes everything in the `behind_bar` clip).

Clips (`standard_set`): `pan_blob` (one object moving, growing, turning), `scale_star` (a star polygon scaling
down and up while rotating), `crossing` (two objects crossing, the front one occluding the other),
`leave_reenter` (an object leaving on the right and coming back), `behind_bar` (an object passing behind a
static occluder). Frames are generated on the fly (`clip.frame(i)`), so any length costs no memory: the
benchmark uses this for 10 s and 120 s clips.

Also here, the DAVIS measures: `iou` (J) and `boundary_f` (F, boundary precision/recall within a tolerance of
0.8 % of the image diagonal).

Importable by the tests and by bench/roto.py; needs numpy, OpenCV and scikit-image.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache

import cv2
import numpy as np

from reelforge.apps.roto.ports import ObjectPrompt, Point

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field")
BACKGROUNDS = ("rocket", "coffee", "astronaut", "hubble_deep_field")
TEXTURES = ("chelsea", "coffee", "astronaut", "immunohistochemistry")


@lru_cache(maxsize=16)
def photo(name: str) -> np.ndarray:
    """One of scikit-image's bundled colour photos (RGB uint8)."""
    from skimage import data

    image = getattr(data, name)()
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    return np.ascontiguousarray(image[..., :3], dtype=np.uint8)


def blob_shape(rng: np.random.Generator, points: int = 64, bumps: int = 4, roughness: float = 0.22) -> np.ndarray:
    """A smooth random closed shape of radius about 1: (points, 2) in unit coordinates."""
    theta = np.linspace(0, 2 * math.pi, points, endpoint=False)
    radius = np.ones_like(theta)
    for k in range(2, 2 + bumps):
        radius += rng.uniform(-roughness, roughness) / (k - 1) * np.cos(k * theta + rng.uniform(0, 2 * math.pi))
    return np.stack([radius * np.cos(theta), radius * np.sin(theta)], axis=1)


def star_shape(arms: int = 5, inner: float = 0.5) -> np.ndarray:
    theta = np.linspace(0, 2 * math.pi, 2 * arms, endpoint=False) - math.pi / 2
    radius = np.where(np.arange(2 * arms) % 2 == 0, 1.0, inner)
    return np.stack([radius * np.cos(theta), radius * np.sin(theta)], axis=1)


@dataclass(frozen=True)
class Keyframe:
    t: float  # frame index (fractions allowed)
    x: float  # centre, as a fraction of the frame's width (may be outside [0, 1])
    y: float  # centre, fraction of the height
    r: float  # radius, fraction of the height
    angle: float  # radians


@dataclass(frozen=True)
class Sprite:
    object_id: int
    shape: np.ndarray
    texture: str
    keys: tuple[Keyframe, ...]
    tint: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def at(self, t: float) -> tuple[float, float, float, float]:
        ts = [k.t for k in self.keys]
        return tuple(float(np.interp(t, ts, [getattr(k, f) for k in self.keys])) for f in ("x", "y", "r", "angle"))  # type: ignore[return-value]


@dataclass
class Clip:
    """A clip of `frames` frames of `size` (w, h); frame(i) draws frame i and its ground truth."""

    name: str
    size: tuple[int, int]
    frames: int
    sprites: tuple[Sprite, ...]
    background: str
    seed: int
    pan: tuple[float, float] = (0.6, 0.25)  # background movement over the clip, fractions of the frame
    bar: tuple[float, float] | None = None  # a static vertical occluder: (x centre, width) as fractions
    noise: float = 2.0
    _bg: np.ndarray | None = field(default=None, repr=False)
    _tex: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def object_ids(self) -> tuple[int, ...]:
        return tuple(s.object_id for s in self.sprites)

    def _background_canvas(self) -> np.ndarray:
        if self._bg is None:
            w, h = self.size
            src = photo(self.background)
            # A canvas larger than the frame by the pan, scaled to cover it.
            cw, ch = int(w * (1 + abs(self.pan[0]))) + 2, int(h * (1 + abs(self.pan[1]))) + 2
            scale = max(cw / src.shape[1], ch / src.shape[0])
            big = cv2.resize(src, (math.ceil(src.shape[1] * scale), math.ceil(src.shape[0] * scale)),
                             interpolation=cv2.INTER_LINEAR)
            self._bg = np.ascontiguousarray(big[:ch, :cw])
        return self._bg

    def _texture(self, name: str) -> np.ndarray:
        if name not in self._tex:
            src = photo(name)
            side = min(src.shape[:2])
            y0, x0 = (src.shape[0] - side) // 2, (src.shape[1] - side) // 2
            self._tex[name] = cv2.resize(src[y0:y0 + side, x0:x0 + side], (256, 256), interpolation=cv2.INTER_AREA)
        return self._tex[name]

    def frame(self, i: int) -> tuple[np.ndarray, dict[int, np.ndarray]]:
        """Frame i (RGB uint8, (h, w, 3)) and each object's visible mask (boolean, (h, w))."""
        w, h = self.size
        canvas = self._background_canvas()
        u = i / max(1, self.frames - 1)
        ox = round(u * abs(self.pan[0]) * w) if self.pan[0] >= 0 else round((1 - u) * abs(self.pan[0]) * w)
        oy = round(u * abs(self.pan[1]) * h)
        out = canvas[oy:oy + h, ox:ox + w].copy()
        masks: dict[int, np.ndarray] = {}
        for sprite in self.sprites:
            cx, cy, r, angle = sprite.at(i)
            cx, cy, rad = cx * w, cy * h, r * h
            c, s = math.cos(angle), math.sin(angle)
            pts = sprite.shape @ np.array([[c, s], [-s, c]]) * rad + (cx, cy)
            mask = np.zeros((h, w), np.uint8)
            cv2.fillPoly(mask, [np.round(pts * 16).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=4)
            m = mask.astype(bool)
            if m.any():
                tex = self._texture(sprite.texture)
                # texture centre -> sprite centre, texture half-side -> radius, rotated with the sprite
                k = rad / 128.0
                mat = np.array([[k * c, -k * s, cx - k * (c * 128 - s * 128)],
                                [k * s, k * c, cy - k * (s * 128 + c * 128)]], dtype=np.float64)
                ys, xs = np.nonzero(m)
                x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
                mat[:, 2] -= (x0, y0)
                patch = cv2.warpAffine(tex, mat, (int(x1 - x0), int(y1 - y0)), flags=cv2.INTER_LINEAR,
                                       borderMode=cv2.BORDER_REFLECT)
                if sprite.tint != (1.0, 1.0, 1.0):
                    patch = np.clip(patch * np.array(sprite.tint), 0, 255).astype(np.uint8)
                region = out[y0:y1, x0:x1]
                sub = m[y0:y1, x0:x1]
                region[sub] = patch[sub]
                for other in masks.values():  # this sprite occludes the ones drawn before it
                    other &= ~m
            masks[sprite.object_id] = m
        if self.bar is not None:
            bx, bw = self.bar
            x0, x1 = int((bx - bw / 2) * w), int((bx + bw / 2) * w)
            out[:, x0:x1] = (np.linspace(60, 110, x1 - x0)[None, :, None] * np.array([1.0, 0.9, 0.7])).astype(np.uint8)
            for m in masks.values():
                m[:, x0:x1] = False
        if self.noise > 0:
            rng = np.random.default_rng((self.seed, i))
            noise = rng.normal(0, self.noise, (h, w, 1)).astype(np.float32)
            out = np.clip(out.astype(np.float32) + noise, 0, 255).astype(np.uint8)
        return out, masks

    def __iter__(self) -> Iterator[tuple[np.ndarray, dict[int, np.ndarray]]]:
        for i in range(self.frames):
            yield self.frame(i)


def click_inside(mask: np.ndarray) -> tuple[float, float] | None:
    """The point deepest inside a mask (largest distance to its edge), or None when empty."""
    if not mask.any():
        return None
    dist = cv2.distanceTransform(np.pad(mask.astype(np.uint8), 1), cv2.DIST_L2, 5)[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return float(x), float(y)


def prompt_for(mask: np.ndarray, object_id: int, *, box: bool = False) -> ObjectPrompt:
    """A positive click at the deepest point of the object (and its bounding box when `box`)."""
    point = click_inside(mask)
    if point is None:
        return ObjectPrompt(object_id)
    b = None
    if box:
        ys, xs = np.nonzero(mask)
        b = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
    return ObjectPrompt(object_id, points=(Point(point[0], point[1], 1),), box=b)


def _blob_sprite(rng: np.random.Generator, object_id: int, texture: str, keys: list[Keyframe],
                 tint: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> Sprite:
    return Sprite(object_id, blob_shape(rng), texture, tuple(keys), tint)


def standard_set(size: tuple[int, int] = (854, 480), frames: int = 48, seed: int = 0) -> list[Clip]:
    """The five clips (see the module docstring), `frames` long each, deterministic from `seed`."""
    rng = np.random.default_rng(seed)
    n = frames - 1

    def j(scale: float = 0.03) -> float:
        return float(rng.uniform(-scale, scale))

    clips = [
        Clip("pan_blob", size, frames, (
            _blob_sprite(rng, 1, "chelsea", [Keyframe(0, 0.3 + j(), 0.45 + j(), 0.22, 0.0),
                                             Keyframe(n, 0.65 + j(), 0.55 + j(), 0.28, 0.5)]),
        ), background="rocket", seed=seed),
        Clip("scale_star", size, frames, (
            Sprite(1, star_shape(5, 0.55), "coffee", (Keyframe(0, 0.5 + j(), 0.5, 0.3, 0.0),
                                                       Keyframe(n / 2, 0.45, 0.48, 0.18, 0.6),
                                                       Keyframe(n, 0.55 + j(), 0.52, 0.32, 1.2))),
        ), background="astronaut", seed=seed + 1, pan=(-0.3, 0.1)),
        Clip("crossing", size, frames, (
            _blob_sprite(rng, 1, "immunohistochemistry", [Keyframe(0, 0.78, 0.5 + j(), 0.2, 0.0),
                                                          Keyframe(n, 0.22, 0.5 + j(), 0.2, -0.3)]),
            _blob_sprite(rng, 2, "chelsea", [Keyframe(0, 0.2, 0.45 + j(), 0.2, 0.0),
                                             Keyframe(n, 0.8, 0.55 + j(), 0.22, 0.4)]),
        ), background="coffee", seed=seed + 2, pan=(0.2, 0.05)),
        Clip("leave_reenter", size, frames, (
            _blob_sprite(rng, 1, "astronaut", [Keyframe(0, 0.55, 0.5 + j(), 0.2, 0.0),
                                               Keyframe(n * 0.35, 1.35, 0.45, 0.2, 0.3),
                                               Keyframe(n * 0.55, 1.35, 0.55, 0.2, 0.3),
                                               Keyframe(n, 0.6, 0.5 + j(), 0.22, 0.0)],
                         tint=(1.1, 1.0, 0.8)),
        ), background="hubble_deep_field", seed=seed + 3, pan=(0.15, 0.1)),
        Clip("behind_bar", size, frames, (
            _blob_sprite(rng, 1, "coffee", [Keyframe(0, 0.2, 0.5 + j(), 0.2, 0.0),
                                            Keyframe(n, 0.8, 0.5 + j(), 0.2, 0.8)]),
        ), background="rocket", seed=seed + 4, pan=(0.0, 0.0), bar=(0.5, 0.08)),
    ]
    return clips


def long_clip(size: tuple[int, int], frames: int, seed: int = 0) -> Clip:
    """One object going back and forth for `frames` frames (for memory over length)."""
    rng = np.random.default_rng(seed)
    keys = [Keyframe(t, 0.3 + 0.4 * ((t // 50) % 2), 0.5 + 0.1 * math.sin(t / 40), 0.2, 0.01 * t)
            for t in range(0, frames + 50, 50)]
    return Clip("long", size, frames, (_blob_sprite(rng, 1, "chelsea", keys),), background="rocket",
                seed=seed, pan=(0.3, 0.1))


# DAVIS measures ---------------------------------------------------------------------------------------------


def iou(pred: np.ndarray, truth: np.ndarray) -> float:
    """Region similarity J: intersection over union (1.0 when both are empty)."""
    union = np.logical_or(pred, truth).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(pred, truth).sum() / union)


def _boundary(mask: np.ndarray) -> np.ndarray:
    m = mask.astype(np.uint8)
    return (m - cv2.erode(m, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=0)) > 0


def boundary_f(pred: np.ndarray, truth: np.ndarray, tolerance: float = 0.008) -> float:
    """Contour accuracy F (DAVIS): the F-measure of boundary precision and recall, a boundary pixel counting
    as matched within `tolerance` x the image diagonal of the other mask's boundary (1.0 when both are
    empty, 0.0 when only one is)."""
    bp, bt = _boundary(pred), _boundary(truth)
    if not bp.any() and not bt.any():
        return 1.0
    if not bp.any() or not bt.any():
        return 0.0
    h, w = pred.shape
    tol = max(1.0, tolerance * math.hypot(h, w))
    dt = cv2.distanceTransform((~bt).astype(np.uint8), cv2.DIST_L2, 3)
    dp = cv2.distanceTransform((~bp).astype(np.uint8), cv2.DIST_L2, 3)
    precision = float((dt[bp] <= tol).mean())
    recall = float((dp[bt] <= tol).mean())
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)
