"""Mask operations the engines share: GrabCut on a downscaled region, edge refinement with a guided filter,
connected components, disks and boxes. Pure numpy + OpenCV (opencv-python-headless), no model."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import cv2
import numpy as np

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive), integer pixels


def clip_box(box: tuple[float, float, float, float], w: int, h: int) -> Box:
    """A box in pixels, ordered and clipped to a (w, h) frame; x1/y1 exclusive."""
    x0, y0, x1, y1 = box
    x0, x1 = sorted((x0, x1))
    y0, y1 = sorted((y0, y1))
    bx0 = max(0, min(w - 1, math.floor(x0)))
    by0 = max(0, min(h - 1, math.floor(y0)))
    bx1 = max(bx0 + 1, min(w, math.ceil(x1)))
    by1 = max(by0 + 1, min(h, math.ceil(y1)))
    return bx0, by0, bx1, by1


def expand_box(box: Box, margin: float, w: int, h: int) -> Box:
    x0, y0, x1, y1 = box
    m = round(margin)
    return max(0, x0 - m), max(0, y0 - m), min(w, x1 + m), min(h, y1 + m)


def union_box(boxes: Iterable[Box | None]) -> Box | None:
    found = [b for b in boxes if b is not None]
    if not found:
        return None
    return (min(b[0] for b in found), min(b[1] for b in found), max(b[2] for b in found), max(b[3] for b in found))


def mask_box(mask: np.ndarray) -> Box | None:
    """(x0, y0, x1, y1) of a mask's pixels (exclusive ends), or None when empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def disks(shape: tuple[int, int], centres: Iterable[tuple[float, float]], radius: float) -> np.ndarray:
    """A boolean mask of filled disks of `radius` around (x, y) centres."""
    out = np.zeros(shape, dtype=np.uint8)
    r = max(1, round(radius))
    for x, y in centres:
        cv2.circle(out, (round(x), round(y)), r, 1, -1)
    return out.astype(bool)


def guided_filter(guide: np.ndarray, src: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """He et al.'s guided filter (grey guide in [0, 1], float32 source): the source smoothed so that its edges
    follow the guide's. O(pixels), box filters only."""
    r = (2 * radius + 1, 2 * radius + 1)

    def box(a: np.ndarray) -> np.ndarray:
        return cv2.boxFilter(a, -1, r, borderType=cv2.BORDER_REFLECT)

    mean_i = box(guide)
    mean_p = box(src)
    cov_ip = box(guide * src) - mean_i * mean_p
    var_i = box(guide * guide) - mean_i * mean_i
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    return np.asarray(box(a) * guide + box(b), dtype=np.float32)


def keep_components(mask: np.ndarray, *, seeds: Iterable[tuple[int, int]] = (), min_fraction: float = 0.0,
                    required: np.ndarray | None = None) -> np.ndarray:
    """The connected components (8-connected) of `mask` that contain a seed (x, y), or overlap `required`, or
    (when neither is given or matches) are at least `min_fraction` of the largest one."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 2:
        return mask.astype(bool)
    h, w = mask.shape
    keep = np.zeros(n, dtype=bool)
    for x, y in seeds:
        if 0 <= x < w and 0 <= y < h and labels[y, x] > 0:
            keep[labels[y, x]] = True
    if required is not None:
        keep[np.unique(labels[required & (labels > 0)])] = True
    if not keep.any():
        areas = stats[1:, cv2.CC_STAT_AREA]
        keep[1:] = areas >= max(1.0, min_fraction * float(areas.max()))
    keep[0] = False
    return keep[labels]


def fill_small_holes(mask: np.ndarray, max_area: int) -> np.ndarray:
    """Fills holes (background components not touching the border) of at most `max_area` pixels."""
    inv = (~mask).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(inv, connectivity=4)
    if n <= 1:
        return mask
    h, w = mask.shape
    x, y, bw, bh, area = (stats[:, i] for i in range(5))
    inner = (x > 0) & (y > 0) & (x + bw < w) & (y + bh < h) & (area <= max_area)
    inner[0] = False
    return mask | inner[labels]


@dataclass
class Crop:
    """A region of the frame and its downscaled copy for GrabCut."""

    box: Box
    scale: float  # small = full * scale
    small: np.ndarray  # RGB uint8

    @property
    def size(self) -> tuple[int, int]:
        return self.small.shape[1], self.small.shape[0]

    def to_small(self, x: float, y: float) -> tuple[int, int]:
        w, h = self.size
        return (min(w - 1, max(0, int((x - self.box[0]) * self.scale))),
                min(h - 1, max(0, int((y - self.box[1]) * self.scale))))

    def resize_in(self, full_region: np.ndarray, interpolation: int = cv2.INTER_AREA) -> np.ndarray:
        """A full-resolution array of this crop's region, at the crop's small size."""
        return cv2.resize(full_region, self.size, interpolation=interpolation)


def make_crop(frame: np.ndarray, box: Box, pixels: int) -> Crop:
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    scale = min(1.0, math.sqrt(pixels / float(max(1, w * h))))
    sw, sh = max(8, round(w * scale)), max(8, round(h * scale))
    small = cv2.resize(frame[y0:y1, x0:x1], (sw, sh), interpolation=cv2.INTER_AREA)
    return Crop(box=box, scale=sw / float(w), small=small)


def grabcut(small: np.ndarray, labels: np.ndarray, iterations: int) -> np.ndarray:
    """GrabCut (GC_INIT_WITH_MASK) on an RGB uint8 image with initial labels (cv2.GC_*); the foreground
    (definite or probable). With too few samples of either side for its colour models, the labels stand."""
    fg = (labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)
    n_fg = int(fg.sum())
    if n_fg < 16 or labels.size - n_fg < 16 or not ((labels == cv2.GC_PR_FGD) | (labels == cv2.GC_PR_BGD)).any():
        return fg
    work = labels.copy()
    bgd = np.zeros((1, 65), np.float64)
    fgd = np.zeros((1, 65), np.float64)
    try:
        cv2.grabCut(small, work, (0, 0, 1, 1), bgd, fgd, iterations, cv2.GC_INIT_WITH_MASK)
    except cv2.error:
        return fg
    return (work == cv2.GC_FGD) | (work == cv2.GC_PR_FGD)


def upsample_refine(frame: np.ndarray, crop: Crop, small_fg: np.ndarray, *, smooth: float = 1.0) -> np.ndarray:
    """The crop's small foreground brought back to full resolution, its edges snapped to the frame's with a
    guided filter on the grey crop (radius about one small pixel); boolean, the crop's full-res size."""
    x0, y0, x1, y1 = crop.box
    w, h = x1 - x0, y1 - y0
    soft = cv2.resize(small_fg.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    if crop.scale >= 0.999 and smooth <= 0:
        return soft > 0.5
    grey = cv2.cvtColor(np.ascontiguousarray(frame[y0:y1, x0:x1]), cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    radius = max(2, round(smooth / crop.scale) + 1)
    refined = guided_filter(grey, soft, radius, 1e-3)
    return np.asarray(refined > 0.5)
