"""Visual activity measures, each a plain image statistic (no learned model):

- ``motion``: mean absolute grey-level change (0..1) between consecutive scan frames (64x48, area-averaged,
  ~6 per second): 0 for a still image, about 0.01-0.03 for a slow pan, about 0.03 for random noise (the
  downscaling averages it out), 0.1 and more for fast movement or flashes;
- ``scene_cuts``: consecutive scan frames whose 16-bin grey histograms differ by more than half their
  mass (L1/2 > 0.5) while the pixels also change (mean change > 0.12); ``cuts_per_min`` scales it;
- ``subject_presence``: fraction of sampled frames showing a frontal face (scikit-image's LBP cascade,
  ``lbpcascade_frontalface_opencv.xml``) or skin tones over 4% of a coherent frame (YCbCr box rule); both
  fail closed on textures: a frame less coherent than 0.6 at the pixel or at a coarse scale (`_structure`:
  grain averages out), or a face box less coherent than 0.7, has none;
- ``faces``: fraction of sampled frames with a detected face;
- ``coherence``: correlation between horizontally adjacent pixels (natural images 0.8-1, random noise ~0,
  flat frames 0 because nothing varies);
- ``contrast``, ``brightness``: grey standard deviation and mean (0..1);
- ``black_fraction``: fraction of sampled frames that are black or flat;
- ``colorfulness``: Hasler-Suesstrunk colourfulness / 100.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from reelforge.apps.mobs.models.frames import VideoSamples, frame_quality, is_black
from reelforge.apps.mobs.models.runtime import cached

_face_lock = threading.Lock()


def _cascade() -> Any:
    def load() -> Any:
        from pathlib import Path

        import skimage
        from skimage.feature import Cascade

        return Cascade(str(Path(skimage.__file__).parent / "data" / "lbpcascade_frontalface_opencv.xml"))

    return cached("lbp-face-cascade", load)


# Fail closed on textures: a detection counts only in a coherent picture (natural images 0.8-1, random or
# fine textures well below) and when the face box itself is coherent, not a patch of grain.
MIN_FRAME_COHERENCE = 0.6
MIN_FACE_COHERENCE = 0.7


def _structure(rgb: np.ndarray, side: int = 48) -> float:
    """Coherence at a coarse scale: the picture area-averaged down to about `side` pixels across, then the
    correlation of adjacent pixels. A picture keeps its shapes (0.7-1); grain, noise and fine textures
    average out (near 0), however smooth they are up close."""
    h, w = rgb.shape[:2]
    f = max(1, min(h, w) // side)
    if f <= 1:
        return _coherence(rgb)
    hh, ww = (h // f) * f, (w // f) * f
    small = rgb[:hh, :ww].astype(np.float32).reshape(hh // f, f, ww // f, f, -1).mean(axis=(1, 3))
    return _coherence(small)


def _faces(rgb: np.ndarray) -> int:
    """Frontal faces in the frame, 0 for a frame (or a detection) that is texture rather than a picture."""
    if _coherence(rgb) < MIN_FRAME_COHERENCE or _structure(rgb) < MIN_FRAME_COHERENCE:
        return 0
    grey = rgb.astype(np.float32).mean(axis=2) / 255.0
    h, w = grey.shape
    with _face_lock:  # the cascade object keeps scratch state
        found = _cascade().detect_multi_scale(img=grey, scale_factor=1.25, step_ratio=1.0,
                                              min_size=(max(24, h // 10), max(24, h // 10)),
                                              max_size=(h, w), min_neighbor_number=2)
    kept = 0
    for box in found:
        r, c, bh, bw = int(box["r"]), int(box["c"]), int(box["height"]), int(box["width"])
        patch = rgb[max(0, r):r + bh, max(0, c):c + bw]
        if patch.size and _coherence(patch) >= MIN_FACE_COHERENCE and _structure(patch, 12) >= MIN_FACE_COHERENCE:
            kept += 1
    return kept


def _skin_fraction(rgb: np.ndarray) -> float:
    x = rgb.astype(np.float32)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = 128 - 0.168736 * r - 0.331264 * g + 0.5 * b
    cr = 128 + 0.5 * r - 0.418688 * g - 0.081312 * b
    mask = (y > 60) & (cb >= 85) & (cb <= 130) & (cr >= 138) & (cr <= 175)
    return float(mask.mean())


def _coherence(rgb: np.ndarray) -> float:
    grey = rgb.astype(np.float32).mean(axis=2)
    a, b = grey[:, :-1].ravel(), grey[:, 1:].ravel()
    if a.std() < 1e-3 or b.std() < 1e-3:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def _colorfulness(rgb: np.ndarray) -> float:
    x = rgb.astype(np.float32)
    rg = x[..., 0] - x[..., 1]
    yb = 0.5 * (x[..., 0] + x[..., 1]) - x[..., 2]
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean())) / 100.0


def measure(samples: VideoSamples, *, face_frames: int = 4) -> dict[str, float]:
    """The activity measures of one video (see the module docstring for what each one is)."""
    scan = samples.scan
    motion, cuts = 0.0, 0
    if len(scan) >= 2:
        diffs = np.abs(np.diff(scan, axis=0)).mean(axis=(1, 2))
        motion = float(diffs.mean())
        hists = np.stack([np.histogram(f, bins=16, range=(0.0, 1.0))[0] / f.size for f in scan])
        hist_dist = 0.5 * np.abs(np.diff(hists, axis=0)).sum(axis=1)
        cuts = int(((hist_dist > 0.5) & (diffs > 0.12)).sum())
    frames = samples.frames
    qualities = [frame_quality(f) for f in frames]
    pick = np.unique(np.linspace(0, len(frames) - 1, num=min(face_frames, len(frames))).round().astype(int))
    face_hits, subject_hits = 0, 0
    for i in pick:
        rgb = frames[int(i)]
        if is_black(qualities[int(i)]):
            continue
        has_face = _faces(rgb) > 0
        face_hits += has_face
        # Skin tone only counts in a coherent picture: random noise hits the colour box everywhere.
        subject_hits += has_face or (_skin_fraction(rgb) > 0.04 and _coherence(rgb) > 0.5
                                     and _structure(rgb) > MIN_FRAME_COHERENCE)
    duration = max(samples.info.duration_s, 1e-3)
    return {
        "motion": round(motion, 5),
        "scene_cuts": float(cuts),
        "cuts_per_min": round(cuts * 60.0 / duration, 3),
        "subject_presence": round(subject_hits / max(len(pick), 1), 4),
        "faces": round(face_hits / max(len(pick), 1), 4),
        "coherence": round(float(np.mean([_coherence(f) for f in frames])), 4),
        "contrast": round(float(np.mean([q["contrast"] for q in qualities])), 4),
        "brightness": round(float(np.mean([q["brightness"] for q in qualities])), 4),
        "black_fraction": round(float(np.mean([is_black(q) for q in qualities])), 4),
        "colorfulness": round(float(np.mean([_colorfulness(f) for f in frames])), 4),
        "duration_s": round(samples.info.duration_s, 3),
    }
