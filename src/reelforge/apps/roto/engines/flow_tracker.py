"""Mask propagation by DIS optical flow, for the offline engine (`OfflineSegmenter.tracker`).

Per frame pair, one backward flow field (new frame -> previous frame) at `flow_scale` serves every object:

1. Visible masks are warped by the flow (linear interpolation, border pixels replicated so that an object
   entering at the edge grows in).
2. Each object also has a shape template (its whole mask when last seen unoccluded) and a similarity transform
   placing it in the frame, updated by a robust fit (RANSAC) of the flow inside the object. The placed template
   (the "amodal" mask) bounds the warped mask, which stops trails where flow drags background along, and
   gives back the parts that come out from behind an occluder, where their colour fits the object's colour
   model. The template is renewed whenever the object is seen whole again.
3. Overlaps between objects go to the one whose colour model explains the overlapping pixels better (the
   occluder); the order seen is kept unless the evidence is clear.
4. Every `reanchor_every` frames each mask's edge is snapped to the frame (GrabCut in a band around it).
5. An object that has left (empty mask) is looked for again: components of pixels that its colour model claims,
   at the frame's edges or as large as the object, not taken by another object; one that holds for two
   frames brings it back.

Memory: the tracker holds at most `window` downscaled grey frames, the last masks and per object a template and
two colour histograms, whatever the video's length.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from reelforge.errors import ValidationFailed

from . import refine
from .checks import check_frame, check_mask

if TYPE_CHECKING:
    from .config import RotoEngineSettings

QUANT = 16  # colour histogram bins per channel
_IDENTITY = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


def colour_index(small_rgb: np.ndarray) -> np.ndarray:
    """Each pixel's bin in the QUANT^3 colour cube."""
    q = (small_rgb >> 4).astype(np.int32) if QUANT == 16 else (small_rgb // (256 // QUANT)).astype(np.int32)
    return (q[..., 0] * QUANT + q[..., 1]) * QUANT + q[..., 2]


def _compose(m: np.ndarray, a: np.ndarray) -> np.ndarray:
    """The 2x3 affine m after a."""
    m3 = np.vstack([m, [0.0, 0.0, 1.0]])
    a3 = np.vstack([a, [0.0, 0.0, 1.0]])
    return np.asarray((m3 @ a3)[:2])


@dataclass
class TrackedObject:
    """What the tracker knows of one object besides its visible mask."""

    fg_hist: np.ndarray
    bg_hist: np.ndarray
    area: float  # visible pixels at the last anchor, at flow scale
    template: np.ndarray | None = None  # whole shape when last seen unoccluded (bool crop, full resolution)
    transform: np.ndarray | None = None  # template -> frame (2x3)
    velocity: np.ndarray | None = None  # last frame-to-frame motion (2x3)
    lost_since: int | None = None
    candidate: np.ndarray | None = None  # a re-detection seen on the previous frame (flow scale)

    def probability(self, index_map: np.ndarray) -> np.ndarray:
        """P(object | colour) for every pixel of a quantised frame."""
        fg = self.fg_hist[index_map]
        bg = self.bg_hist[index_map]
        return np.asarray(fg / (fg + bg), dtype=np.float32)

    def set_template(self, mask: np.ndarray) -> None:
        box = refine.mask_box(mask)
        if box is None:
            return
        x0, y0, x1, y1 = box
        self.template = mask[y0:y1, x0:x1].copy()
        self.transform = np.array([[1.0, 0.0, x0], [0.0, 1.0, y0]])

    def placed(self, shape: tuple[int, int]) -> np.ndarray | None:
        """The template placed in the frame by its transform (None without a template)."""
        if self.template is None or self.transform is None:
            return None
        h, w = shape
        th, tw = self.template.shape
        corners = np.array([[0, 0, 1], [tw, 0, 1], [0, th, 1], [tw, th, 1]], dtype=np.float64) @ self.transform.T
        x0, y0 = np.floor(corners.min(axis=0)).astype(int)
        x1, y1 = np.ceil(corners.max(axis=0)).astype(int)
        out = np.zeros((h, w), dtype=bool)
        bx0, by0, bx1, by1 = max(0, x0), max(0, y0), min(w, x1 + 1), min(h, y1 + 1)
        if bx1 <= bx0 or by1 <= by0:
            return out
        t = self.transform.copy()
        t[:, 2] -= (bx0, by0)
        warped = cv2.warpAffine(self.template.view(np.uint8), t, (bx1 - bx0, by1 - by0), flags=cv2.INTER_NEAREST)
        out[by0:by1, bx0:bx1] = warped > 0
        return out


def colour_model(index_map: np.ndarray, mask_small: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Foreground and background colour histograms (normalised, lightly smoothed): the background is the
    ring around the object and the rest of the frame, weighted equally."""
    bins = QUANT**3
    fg = np.bincount(index_map[mask_small], minlength=bins).astype(np.float32)
    size = max(3, int(0.25 * math.sqrt(max(1, int(mask_small.sum())))))
    ring = cv2.dilate(mask_small.view(np.uint8), np.ones((2 * size + 1, 2 * size + 1), np.uint8)) > 0
    ring &= ~mask_small
    near = np.bincount(index_map[ring], minlength=bins).astype(np.float32)
    every = np.bincount(index_map[~mask_small], minlength=bins).astype(np.float32)
    bg = 0.5 * (near / max(1.0, near.sum()) + every / max(1.0, every.sum()))
    fg_n = fg / max(1.0, fg.sum())
    fg_n = cv2.GaussianBlur(fg_n.reshape(QUANT, QUANT * QUANT), (3, 3), 0).ravel()
    bg = cv2.GaussianBlur(bg.reshape(QUANT, QUANT * QUANT), (3, 3), 0).ravel()
    return fg_n + 1e-6, bg + 1e-6


class FlowTracker:
    """DIS-flow propagation of several objects at once (see the module docstring)."""

    def __init__(self, settings: RotoEngineSettings, window: int = 8, grabcut_pixels: int = 12_000) -> None:
        self.settings = settings
        self.window = max(1, int(window))
        preset = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
                  "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}[settings.flow_preset]
        self._dis = cv2.DISOpticalFlow.create(preset)
        self._frames: deque[tuple[int, np.ndarray]] = deque(maxlen=self.window)
        self._masks: dict[int, np.ndarray] = {}
        self._objects: dict[int, TrackedObject] = {}
        self._shape: tuple[int, int] | None = None
        self._grid: tuple[np.ndarray, np.ndarray] | None = None
        self._last: int | None = None
        self._since_snap = 0
        self._order: list[int] = []  # front to back, as far as overlaps have shown
        self._pixels = grabcut_pixels
        self.stats = {"steps": 0, "snaps": 0, "redetections": 0, "overlaps": 0, "template_updates": 0,
                      "template_resets": 0}

    @property
    def held_frames(self) -> int:
        """Frames this tracker holds now (at most `window`)."""
        return len(self._frames)

    @property
    def depth_order(self) -> list[int]:
        """Object ids front to back, as far as overlaps have shown."""
        return list(self._order)

    def _small(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h, w = frame.shape[:2]
        # flow_scale, but never below about 400 pixels across: small frames keep their detail.
        s = max(self.settings.flow_scale, min(1.0, 400.0 / max(h, w)))
        size = (max(8, round(w * s)), max(8, round(h * s)))
        small = cv2.resize(frame, size, interpolation=cv2.INTER_AREA) if s < 1 else frame
        return small, cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)

    def _to_small(self, mask: np.ndarray, small_shape: tuple[int, int]) -> np.ndarray:
        sh, sw = small_shape
        return cv2.resize(mask.view(np.uint8), (sw, sh), interpolation=cv2.INTER_NEAREST) > 0

    # Anchoring -----------------------------------------------------------------------------------------------

    def anchor(self, index: int, frame: np.ndarray, masks: Mapping[int, np.ndarray]) -> None:
        h, w = check_frame(frame)
        if self._shape != (h, w):
            self._shape = (h, w)
            self._grid = None
            self._frames.clear()
        small, grey = self._small(frame)
        index_map = colour_index(small)
        new_masks: dict[int, np.ndarray] = {}
        objects: dict[int, TrackedObject] = {}
        for oid, m in masks.items():
            key = int(oid)
            mask = check_mask(m, (h, w), f"mask of object {oid}").copy()
            new_masks[key] = mask
            mask_small = self._to_small(mask, grey.shape)
            previous = self._objects.get(key)
            if mask_small.sum() >= 16:
                fg, bg = colour_model(index_map, mask_small)
                obj = TrackedObject(fg_hist=fg, bg_hist=bg, area=float(mask_small.sum()))
                if self._unoccluded(key, mask, new_masks, masks):
                    obj.set_template(mask)
                elif previous is not None and previous.template is not None:
                    obj.template, obj.transform = previous.template, previous.transform
                else:
                    obj.set_template(mask)
            elif previous is not None:
                obj = previous
                obj.candidate = None
            else:
                uniform = np.full(QUANT**3, 1.0 / QUANT**3, np.float32)
                obj = TrackedObject(fg_hist=uniform, bg_hist=uniform.copy(), area=0.0)
            obj.velocity = None
            obj.lost_since = None if mask.any() else index
            objects[key] = obj
        self._masks = new_masks
        self._objects = objects
        self._order = [o for o in self._order if o in new_masks] + [o for o in new_masks if o not in self._order]
        self._frames.append((index, grey))
        self._last = index
        self._since_snap = 0

    def _unoccluded(self, oid: int, mask: np.ndarray, *groups: Mapping[int, np.ndarray]) -> bool:
        """Whether a mask looks whole: it does not touch the frame's edge nor another object."""
        if not mask.any():
            return False
        if mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any():
            return False
        box = refine.mask_box(mask)
        assert box is not None
        h, w = mask.shape
        x0, y0, x1, y1 = refine.expand_box(box, 3, w, h)
        near = cv2.dilate(mask[y0:y1, x0:x1].view(np.uint8), np.ones((5, 5), np.uint8)) > 0
        for group in groups:
            for other, m in group.items():
                if int(other) != oid and (np.asarray(m[y0:y1, x0:x1], dtype=bool) & near).any():
                    return False
        return True

    # Stepping ------------------------------------------------------------------------------------------------

    def step(self, index: int, frame: np.ndarray) -> dict[int, np.ndarray]:
        if self._last is None or not self._frames:
            raise ValidationFailed("anchor the tracker on a frame with known masks before stepping",
                                   code="tracker_not_anchored")
        h, w = check_frame(frame)
        if (h, w) != self._shape:
            raise ValidationFailed(f"frame is {(h, w)}, the anchor was {self._shape}", code="invalid_frame")
        small, grey = self._small(frame)
        prev = self._frames[-1][1]
        flow = self._dis.calc(grey, prev, None)  # type: ignore[call-overload]  # grey(x) ~ prev(x + flow(x))
        sh, sw = grey.shape
        sx, sy = w / float(sw), h / float(sh)
        if self._grid is None:
            gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
            self._grid = (gx, gy)
        full = cv2.resize(flow, (w, h), interpolation=cv2.INTER_LINEAR)
        map_x = self._grid[0] + full[..., 0] * sx
        map_y = self._grid[1] + full[..., 1] * sy
        warped = self._warp_all(map_x, map_y, (h, w))
        index_map = colour_index(small)
        self._enter(warped, map_x, map_y, index_map)
        # Overlaps first, so that each object's motion is fitted on its own pixels, not on its occluder's.
        self._resolve_overlaps(warped, index_map, flow, (sx, sy))
        camera = self._background_motion(warped, flow, (sx, sy))
        for oid, obj in self._objects.items():
            if obj.lost_since is not None:
                continue
            others = [m for o2, m in warped.items() if o2 != oid and m.any()]
            self._move_template(obj, warped[oid], flow, (sx, sy), (h, w), others)
            placed = obj.placed((h, w))
            if placed is None:
                continue
            assert obj.template is not None
            if placed.sum() < 0.03 * obj.template.sum():
                # The template has moved out of the frame: the object has left; what the flow left at the edge
                # is background.
                warped[oid] = np.zeros((h, w), dtype=bool)
                continue
            bounded = self._bound(warped[oid], placed, self._probability(oid, index_map), flow, obj.velocity,
                                  camera, (sx, sy))
            if warped[oid].sum() > 64 and bounded.sum() < 0.5 * warped[oid].sum():
                obj.template = obj.transform = None  # the template has lost the object: trust the flow
                self.stats["template_resets"] += 1
                continue
            warped[oid] = bounded
        self._resolve_overlaps(warped, index_map, flow, (sx, sy))
        self._since_snap += 1
        if self.settings.reanchor_every and self._since_snap >= self.settings.reanchor_every:
            self._since_snap = 0
            for oid in list(warped):
                if warped[oid].any():
                    rest = np.zeros((h, w), dtype=bool)
                    for o2, m2 in warped.items():
                        if o2 != oid:
                            rest |= m2
                    warped[oid] = self.snap(frame, warped[oid], rest)
                    self.stats["snaps"] += 1
            self._resolve_overlaps(warped, index_map, flow, (sx, sy))
        self._presence(index, frame, warped, index_map)
        for oid, obj in self._objects.items():
            if warped[oid].any() and self._unoccluded(oid, warped[oid], warped):
                placed = obj.placed((h, w))
                if placed is None or self._covers(warped[oid], placed):
                    obj.set_template(warped[oid])
                    self.stats["template_updates"] += 1
        self._masks = warped
        self._frames.append((index, grey))
        self._last = index
        self.stats["steps"] += 1
        return {oid: m.copy() for oid, m in warped.items()}

    def _enter(self, warped: dict[int, np.ndarray], map_x: np.ndarray, map_y: np.ndarray,
               index_map: np.ndarray) -> None:
        """New content at the frame's edge (pixels whose source lies outside the previous frame) joins an object
        that touched that edge there, where it has the object's colours: objects come in."""
        h, w = map_x.shape
        outside = (map_x < 0) | (map_x > w - 1) | (map_y < 0) | (map_y > h - 1)
        if not outside.any():
            return
        ys, xs = np.nonzero(outside)
        cx = np.clip(np.rint(map_x[ys, xs]), 0, w - 1).astype(np.intp)
        cy = np.clip(np.rint(map_y[ys, xs]), 0, h - 1).astype(np.intp)
        sh, sw = index_map.shape
        colours = index_map[(ys * sh) // h, (xs * sw) // w]
        for oid, prev in self._masks.items():
            came = prev[cy, cx]
            if not came.any():
                continue
            obj = self._objects.get(oid)
            if obj is None:
                continue
            p = obj.fg_hist[colours[came]] / (obj.fg_hist[colours[came]] + obj.bg_hist[colours[came]])
            keep = p > 0.5
            warped[oid][ys[came][keep], xs[came][keep]] = True

    @staticmethod
    def _covers(visible: np.ndarray, placed: np.ndarray) -> bool:
        """Whether the visible mask is the whole placed template (so it may replace it): an occluder that does
        not take part in tracking (a pole, a door frame) shows only as part of the template going missing, and
        renewing the template then would wear it away frame after frame."""
        area = int(placed.sum())
        if area == 0:
            return True
        covered = int((visible & placed).sum())
        return covered >= 0.97 * area and int(visible.sum()) <= 1.15 * area

    def _warp_all(self, map_x: np.ndarray, map_y: np.ndarray, shape: tuple[int, int]) -> dict[int, np.ndarray]:
        """Every visible mask warped by the flow: up to four per remap, as channels."""
        ids = list(self._masks)
        warped: dict[int, np.ndarray] = {}
        for start in range(0, len(ids), 4):
            chunk = ids[start:start + 4]
            if not any(self._masks[o].any() for o in chunk):
                for o in chunk:
                    warped[o] = np.zeros(shape, dtype=bool)
                continue
            planes = [self._masks[o].view(np.uint8) * 255 for o in chunk]
            while len(planes) not in (1, 3, 4):
                planes.append(np.zeros(shape, np.uint8))
            stacked = planes[0] if len(planes) == 1 else cv2.merge(planes)
            out = cv2.remap(stacked, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
            if out.ndim == 2:
                out = out[..., None]
            for k, o in enumerate(chunk):
                warped[o] = out[..., k] > 127
        return warped

    @staticmethod
    def _fit_motion(xs: np.ndarray, ys: np.ndarray, flow: np.ndarray, scale: tuple[float, float], *,
                    similarity: bool = True) -> np.ndarray | None:
        """The motion previous -> new frame (2x3, full-resolution pixels) of the flow at small-frame pixels:
        a similarity transform fitted with RANSAC, or (similarity=False) the median translation."""
        if xs.size < 24:
            return None
        if xs.size > 400:
            pick = np.linspace(0, xs.size - 1, 400).astype(int)
            xs, ys = xs[pick], ys[pick]
        sx, sy = scale
        f = flow[ys, xs]
        if not similarity:
            return np.array([[1.0, 0.0, -float(np.median(f[:, 0])) * sx], [0.0, 1.0, -float(np.median(f[:, 1])) * sy]])
        dst = np.stack([(xs + 0.5) * sx, (ys + 0.5) * sy], axis=1).astype(np.float32)
        src = np.stack([(xs + 0.5 + f[:, 0]) * sx, (ys + 0.5 + f[:, 1]) * sy], axis=1).astype(np.float32)
        fit, inliers = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=1.5 * sx,
                                                   maxIters=200, refineIters=5)
        if fit is None or inliers is None or int(inliers.sum()) < 12:
            return None
        return np.asarray(fit, dtype=np.float64)

    def _background_motion(self, masks: dict[int, np.ndarray], flow: np.ndarray,
                           scale: tuple[float, float]) -> np.ndarray:
        """The camera's motion: a similarity fitted to the flow outside every object (identity if none fits)."""
        sh, sw = flow.shape[:2]
        taken = np.zeros((sh, sw), dtype=np.uint8)
        for m in masks.values():
            if m.any():
                taken |= self._to_small(m, (sh, sw)).view(np.uint8)
        grown = cv2.dilate(taken, np.ones((7, 7), np.uint8))
        ys, xs = np.nonzero(grown[::4, ::4] == 0)
        fit = self._fit_motion(xs * 4, ys * 4, flow, scale)
        return fit if fit is not None else _IDENTITY

    def _move_template(self, obj: TrackedObject, visible: np.ndarray, flow: np.ndarray,
                       scale: tuple[float, float], shape: tuple[int, int], others: list[np.ndarray]) -> None:
        """Moves the object's template by the motion of the flow inside its visible part: a similarity when most
        of it is visible, only a translation when little is (scale and rotation are then poorly measured);
        with too little visible, by its last motion."""
        if obj.transform is None or obj.template is None:
            return
        sh, sw = flow.shape[:2]
        inner = cv2.erode(self._to_small(visible, (sh, sw)).view(np.uint8), np.ones((3, 3), np.uint8)) > 0
        if others:
            # The flow next to an occluder follows the occluder: leave a margin round the other objects.
            near = np.zeros((sh, sw), np.uint8)
            for m in others:
                near |= self._to_small(m, (sh, sw)).view(np.uint8)
            margin = cv2.dilate(near, np.ones((9, 9), np.uint8)) > 0
            if int((inner & ~margin).sum()) >= 24:
                inner &= ~margin
        ys, xs = np.nonzero(inner)
        placed = obj.placed(shape)
        whole = float(obj.template.sum()) * abs(float(np.linalg.det(obj.transform[:, :2])))
        seen = 1.0 if placed is None else int((visible & placed).sum()) / max(1.0, whole)
        leaving = placed is not None and int(placed.sum()) < 0.9 * whole
        # Mostly out of the frame, the flow of what is left is not the object's motion (at the edge it is mostly
        # the background's): it keeps its last motion.
        motion = None if leaving and seen < 0.3 else self._fit_motion(xs, ys, flow, scale, similarity=seen >= 0.6)
        if motion is None:
            motion = obj.velocity if obj.velocity is not None else _IDENTITY
        obj.velocity = motion
        obj.transform = _compose(motion, obj.transform)

    def _bound(self, visible: np.ndarray, placed: np.ndarray, prob_small: np.ndarray, flow: np.ndarray,
               motion: np.ndarray | None, camera: np.ndarray, scale: tuple[float, float]) -> np.ndarray:
        """The warped mask kept within the placed template (plus a margin), and the template's pixels that are
        not visible yet but move with the object, or look like it without moving with the background, added
        (parts coming out from behind an occluder)."""
        h, w = visible.shape
        box = refine.union_box([refine.mask_box(visible), refine.mask_box(placed)])
        if box is None:
            return visible
        area = float(placed.sum())
        if area < 16:
            return visible
        margin = max(3, round(0.05 * math.sqrt(area)))
        x0, y0, x1, y1 = refine.expand_box(box, margin + 2, w, h)
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * margin + 1, 2 * margin + 1))
        near = cv2.dilate(placed[y0:y1, x0:x1].view(np.uint8), kernel) > 0
        sh, sw = prob_small.shape
        sx0, sy0 = int(x0 * sw / w), int(y0 * sh / h)
        sx1, sy1 = min(sw, max(sx0 + 1, math.ceil(x1 * sw / w))), min(sh, max(sy0 + 1, math.ceil(y1 * sh / h)))
        size = (x1 - x0, y1 - y0)
        prob = cv2.resize(prob_small[sy0:sy1, sx0:sx1], size, interpolation=cv2.INTER_LINEAR)
        # Which pixels move with the object, which with the background (small frame, then brought up).
        moves_obj = np.zeros((sy1 - sy0, sx1 - sx0), np.uint8)
        moves_bg = np.zeros_like(moves_obj)
        if motion is not None:
            sx, sy = scale
            gy, gx = np.mgrid[sy0:sy1, sx0:sx1]
            pts = np.stack([(gx + 0.5) * sx, (gy + 0.5) * sy, np.ones(gx.shape)], axis=-1)
            f = flow[sy0:sy1, sx0:sx1]
            seen = np.stack([pts[..., 0] + f[..., 0] * sx, pts[..., 1] + f[..., 1] * sy], axis=-1)
            pred_o = pts @ cv2.invertAffineTransform(motion).T
            pred_b = pts @ cv2.invertAffineTransform(camera).T
            apart = np.linalg.norm(pred_o - pred_b, axis=-1) > 1.0 * sx
            r_o = np.linalg.norm(seen - pred_o, axis=-1)
            r_b = np.linalg.norm(seen - pred_b, axis=-1)
            moves_obj = (apart & (r_o < r_b) & (r_o < 1.0 * sx)).astype(np.uint8)
            moves_bg = (apart & (r_b < r_o)).astype(np.uint8)
        moves_o = cv2.resize(moves_obj, size, interpolation=cv2.INTER_NEAREST) > 0
        moves_b = cv2.resize(moves_bg, size, interpolation=cv2.INTER_NEAREST) > 0
        vis = visible[y0:y1, x0:x1]
        placed_roi = placed[y0:y1, x0:x1]
        out = visible.copy()
        # Pixels dragged outside the shape by the flow go; so do those that clearly are not the object.
        region = vis & near
        region &= ~(~placed_roi & (prob < 0.25))
        # Hidden parts that show again: inside the shape, moving with the object or of its colours.
        revealed = placed_roi & ~vis & ((moves_o & (prob > 0.3)) | ((prob > 0.6) & ~moves_b))
        revealed = cv2.morphologyEx(revealed.view(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8)) > 0
        out[y0:y1, x0:x1] = region | revealed
        return out

    def _probability(self, oid: int, index_map: np.ndarray) -> np.ndarray:
        """P(object | colour), against the background and every other tracked object's colours."""
        obj = self._objects[oid]
        bg = obj.bg_hist.copy()
        for other, o in self._objects.items():
            if other != oid and o.area > 0:
                bg += o.fg_hist
        return np.asarray(obj.fg_hist[index_map] / (obj.fg_hist[index_map] + bg[index_map]), dtype=np.float32)

    # Overlaps: the occluder keeps the pixels -----------------------------------------------------------------

    def _resolve_overlaps(self, masks: dict[int, np.ndarray], index_map: np.ndarray, flow: np.ndarray,
                          scale: tuple[float, float]) -> None:
        ids = [o for o in masks if masks[o].any()]
        if len(ids) < 2:
            return
        for i, a in enumerate(ids):
            for b in ids[i + 1:]:
                both = masks[a] & masks[b]
                if not both.any():
                    continue
                both_small = self._to_small(both, flow.shape[:2])
                ys, xs = np.nonzero(both_small)
                front = self._front(a, b, index_map[ys, xs], xs, ys, flow, scale)
                masks[b if front == a else a] &= ~both
                self.stats["overlaps"] += 1

    def _front(self, a: int, b: int, colours: np.ndarray, xs: np.ndarray, ys: np.ndarray, flow: np.ndarray,
               scale: tuple[float, float]) -> int:
        """Which of two overlapping objects is in front. Motion first: the overlap's pixels move with the
        occluder, so the object whose fitted motion predicts their flow better is in front (when the two
        motions differ there by more than a pixel). Else colour: the object whose colour model explains them
        better. The order seen before stands unless the evidence is clear."""
        order = self._order
        before = a if a in order and (b not in order or order.index(a) < order.index(b)) else b
        oa, ob = self._objects.get(a), self._objects.get(b)
        front = before
        if oa is not None and ob is not None and xs.size >= 4:
            decided = False
            if oa.velocity is not None and ob.velocity is not None:
                sx, sy = scale
                pts = np.stack([(xs + 0.5) * sx, (ys + 0.5) * sy, np.ones(xs.size)], axis=1)
                f = flow[ys, xs]
                seen = np.stack([pts[:, 0] + f[:, 0] * sx, pts[:, 1] + f[:, 1] * sy], axis=1)

                def predicted(motion: np.ndarray) -> np.ndarray:
                    inverse = cv2.invertAffineTransform(motion)
                    return np.asarray(pts @ inverse.T)

                pa, pb = predicted(oa.velocity), predicted(ob.velocity)
                if float(np.mean(np.linalg.norm(pa - pb, axis=1))) > 1.0 * sx:
                    ra = np.linalg.norm(seen - pa, axis=1)
                    rb = np.linalg.norm(seen - pb, axis=1)
                    vote = float(np.mean(ra < rb) - 0.5)
                    if abs(vote) > 0.1:
                        front, decided = (a if vote > 0 else b), True
            if not decided:
                score = float(np.mean(np.log(oa.fg_hist[colours]) - np.log(ob.fg_hist[colours])))
                front = a if score > 0.5 else b if score < -0.5 else before
        if front != before or a not in order or b not in order:
            back = b if front == a else a
            rest = [o for o in order if o not in (a, b)]
            at = min([order.index(o) for o in (a, b) if o in order], default=len(rest))
            rest[at:at] = [front, back]
            self._order = rest
        return front

    # Snapping an edge to the frame ---------------------------------------------------------------------------

    def snap(self, frame: np.ndarray, mask: np.ndarray, others: np.ndarray) -> np.ndarray:
        """The mask's edge re-decided by GrabCut within a band around it (other objects' pixels excluded)."""
        h, w = mask.shape
        area = float(mask.sum())
        if area < 64:
            return mask & ~others
        band = max(2, round(0.06 * math.sqrt(area)))
        box = refine.mask_box(mask)
        assert box is not None
        roi = refine.expand_box(box, 2 * band + 4, w, h)
        x0, y0, x1, y1 = roi
        crop = refine.make_crop(frame, roi, self._pixels)
        cw, ch = crop.size
        m = crop.resize_in(mask[y0:y1, x0:x1].view(np.uint8) * 255, cv2.INTER_LINEAR) > 127
        o = crop.resize_in(others[y0:y1, x0:x1].view(np.uint8) * 255, cv2.INTER_LINEAR) > 127
        b = max(1, round(band * crop.scale))
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * b + 1, 2 * b + 1))
        inner = cv2.erode(m.view(np.uint8), kernel) > 0
        outer = cv2.dilate(m.view(np.uint8), kernel) > 0
        if not inner.any():
            return mask & ~others
        labels = np.full((ch, cw), cv2.GC_BGD, np.uint8)
        labels[outer & ~m] = cv2.GC_PR_BGD
        labels[m] = cv2.GC_PR_FGD
        labels[inner] = cv2.GC_FGD
        labels[o] = cv2.GC_BGD
        fg = refine.grabcut(crop.small, labels, 1)
        refined = refine.upsample_refine(frame, crop, fg)
        out = mask.copy()
        # Only the band moves: pixels deep inside stay, pixels far outside stay out.
        inner_full = cv2.resize(inner.view(np.uint8), (x1 - x0, y1 - y0), interpolation=cv2.INTER_NEAREST) > 0
        outer_full = cv2.resize(outer.view(np.uint8), (x1 - x0, y1 - y0), interpolation=cv2.INTER_NEAREST) > 0
        out[y0:y1, x0:x1] = (refined & outer_full) | inner_full
        return out & ~others

    # Leaving and coming back ---------------------------------------------------------------------------------

    def _presence(self, index: int, frame: np.ndarray, masks: dict[int, np.ndarray],
                  index_map: np.ndarray) -> None:
        h, w = frame.shape[:2]
        _sh, _sw = index_map.shape
        for oid, mask in masks.items():
            obj = self._objects[oid]
            if mask.any():
                obj.lost_since = None
                obj.candidate = None
                continue
            if obj.area <= 0:
                continue
            if obj.lost_since is None:
                obj.lost_since = index
                obj.template = obj.transform = None  # where it went is unknown; it is re-learned on return
                continue
            if abs(index - obj.lost_since) > self.settings.redetect_frames:
                continue
            found = self._redetect(obj, masks, oid, index_map)
            if found is None:
                obj.candidate = None
                continue
            near = cv2.dilate(found.view(np.uint8), np.ones((9, 9), np.uint8)) > 0
            if obj.candidate is None or not (obj.candidate & near).any():
                obj.candidate = found
                continue
            # Held for two frames: it is back.
            full = cv2.resize(found.view(np.uint8), (w, h), interpolation=cv2.INTER_LINEAR) > 0
            others = np.zeros((h, w), dtype=bool)
            for o2, m2 in masks.items():
                if o2 != oid:
                    others |= m2
            masks[oid] = self.snap(frame, full, others)
            obj.lost_since = None
            obj.candidate = None
            obj.velocity = None
            self.stats["redetections"] += 1

    def _redetect(self, obj: TrackedObject, masks: dict[int, np.ndarray], oid: int,
                  index_map: np.ndarray) -> np.ndarray | None:
        """The best candidate for a lost object at flow scale: a component of pixels its colour model claims,
        touching the frame's edge (coming in) or nearly as large as it was, not another object's."""
        sh, sw = index_map.shape
        prob = self._probability(oid, index_map)
        cand = prob > 0.7
        for o2, m2 in masks.items():
            if o2 != oid and m2.any():
                cand &= ~self._to_small(m2, (sh, sw))
        opened = cv2.morphologyEx(cand.view(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
        n, labels, stats, _ = cv2.connectedComponentsWithStats(opened, connectivity=8)
        best: tuple[int, int] | None = None
        min_area = max(12.0, 0.02 * obj.area)
        for k in range(1, n):
            x, y, bw, bh, a = (int(v) for v in stats[k])
            at_edge = x <= 1 or y <= 1 or x + bw >= sw - 1 or y + bh >= sh - 1
            if a < min_area or (not at_edge and a < 0.3 * obj.area) or a > 2.5 * obj.area:
                continue
            if float(prob[labels == k].mean()) < 0.8:
                continue
            if best is None or a > best[1]:
                best = (k, a)
        return None if best is None else labels == best[0]
