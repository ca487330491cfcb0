"""Lip-sync: a character portrait whose mouth opens and closes with its voice track.

1. **Face**: scikit-image's LBP frontal-face cascade (``lbpcascade_frontalface_opencv.xml``, shipped inside
   scikit-image) on a copy of the portrait at most 640 px wide; overlapping detections are grouped and the
   largest group wins. No face found (a profile, a drawing, an object) or scikit-image missing: a centred
   face is assumed and ``face.method`` says so.
2. **Opening per frame**: from the voice's phoneme timings when the engine gave them (visemes: open vowels
   open the jaw wide, rounded vowels less, m/b/p close the lips), scaled by the loudness of the voice at that
   frame; else from the RMS envelope alone. Smoothed over about 50 ms (coarticulation).
3. **Rendering**: the mouth region is warped (OpenCV ``remap``, sub-pixel): the lower lip and chin move down,
   the upper lip slightly up, with a smooth fall-off to the region's border, and the gap between the lips is
   shaded as the mouth's inside. Rendered mouth patches are cached per quantised opening, so a frame costs a
   copy of the still and one patch. Frames are generated one at a time.

:func:`measure_mouth_signal` measures how open the mouth looks in rendered frames (pixel change in the mouth
region against the still), and :func:`sync_correlation` correlates that with the voice's envelope.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from reelforge.apps.film.media import audio

log = logging.getLogger("reelforge.film.lipsync")

DETECT_WIDTH = 640
LEVELS = 48  # quantisation of the opening for the patch cache
_INSIDE = np.array([52.0, 18.0, 24.0], np.float32)  # the mouth's inside, RGB


@dataclass(frozen=True)
class FaceBox:
    x: int
    y: int
    w: int
    h: int
    score: float  # detections grouped into this face (0 for the heuristic)
    method: str  # "lbp-cascade" or "centred-heuristic: <why>"

    @property
    def detected(self) -> bool:
        return self.method == "lbp-cascade"


@dataclass(frozen=True)
class MouthBox:
    """The region warped around the mouth: ``x0:x1, y0:y1`` in the frame, the lip line at ``lip_y`` and the
    widest opening in pixels."""

    x0: int
    y0: int
    x1: int
    y1: int
    lip_y: float
    centre_x: float
    max_open_px: float


def _cover(image: np.ndarray, size: tuple[int, int],
           focus: tuple[float, float] | None = None) -> tuple[np.ndarray, float, int, int]:
    """``image`` scaled to fill ``size`` (width, height) and cropped around ``focus`` (a point of the image,
    default its centre); also the scale and the crop's offset, to map coordinates into the result."""
    import cv2

    w, h = size
    ih, iw = image.shape[:2]
    scale = max(w / iw, h / ih)
    nw, nh = max(w, round(iw * scale)), max(h, round(ih * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    resized = cv2.resize(image, (nw, nh), interpolation=interp)
    fx, fy = focus if focus is not None else (iw / 2, ih / 2)
    x0 = int(np.clip(round(fx * scale - w / 2), 0, nw - w))
    y0 = int(np.clip(round(fy * scale - h / 2), 0, nh - h))
    return np.ascontiguousarray(resized[y0:y0 + h, x0:x0 + w]), scale, x0, y0


def _rgb(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    img = img[..., :3]
    if img.dtype != np.uint8:
        img = np.clip(img * (255.0 if img.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(img)


_cascade: list[Any] = []


def _detector() -> Any:
    if not _cascade:
        from skimage.data import lbp_frontal_face_cascade_filename
        from skimage.feature import Cascade

        _cascade.append(Cascade(lbp_frontal_face_cascade_filename()))
    return _cascade[0]


def detect_face(image: np.ndarray) -> FaceBox:
    """The main face in an RGB image (see the module docstring); never fails."""
    img = _rgb(image)
    h, w = img.shape[:2]
    try:
        import cv2

        scale = min(1.0, DETECT_WIDTH / w)
        small = cv2.resize(img, (int(w * scale), int(h * scale)), interpolation=cv2.INTER_AREA) if scale < 1 else img
        gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).astype(np.float64) / 255.0
        side = min(gray.shape)
        found = _detector().detect_multi_scale(img=gray, scale_factor=1.15, step_ratio=1,
                                               min_size=(max(24, side // 12),) * 2,
                                               max_size=(int(side * 0.95),) * 2)
    except ImportError as exc:
        return _centred(w, h, f"scikit-image or OpenCV missing ({exc.name})")
    if not found:
        return _centred(w, h, "no face found by the LBP cascade")
    boxes = np.array([[d["c"], d["r"], d["width"], d["height"]] for d in found], float) / scale
    groups: list[list[int]] = []
    for i, b in enumerate(boxes):
        for g in groups:
            ref = boxes[g].mean(axis=0)
            if _iou(b, ref) > 0.3:
                g.append(i)
                break
        else:
            groups.append([i])
    best = max(groups, key=lambda g: (len(g), float(boxes[g][:, 2].mean())))
    x, y, bw, bh = boxes[best].mean(axis=0)
    return FaceBox(round(x), round(y), round(bw), round(bh), float(len(best)), "lbp-cascade")


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    ax1, ay1, bx1, by1 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = max(0.0, min(ax1, bx1) - max(a[0], b[0]))
    ih = max(0.0, min(ay1, by1) - max(a[1], b[1]))
    inter = iw * ih
    return float(inter / (a[2] * a[3] + b[2] * b[3] - inter)) if inter > 0 else 0.0


def _centred(w: int, h: int, why: str) -> FaceBox:
    side = int(0.42 * min(w, h))
    return FaceBox((w - side) // 2, int(0.40 * h - side / 2), side, side, 0.0, f"centred-heuristic: {why}")


def mouth_box(face: FaceBox, frame_size: tuple[int, int], image: np.ndarray | None = None) -> MouthBox:
    """The mouth region of a face box, clipped to the frame (width, height). The LBP box spans brows to chin:
    the lips meet at about 80 % of its height; with ``image`` that guess moves to the darkest row (the line
    between the lips) within 7 % of the box height of it, where that row is clearly darker."""
    fw, fh = frame_size
    cx = face.x + face.w / 2
    lip = face.y + 0.80 * face.h
    if image is not None:
        lip = _lip_line(image, cx, lip, face)
    x0 = int(max(0, cx - 0.30 * face.w))
    x1 = int(min(fw, cx + 0.30 * face.w))
    y0 = int(max(0, lip - 0.16 * face.h))
    y1 = int(min(fh, lip + 0.30 * face.h))
    return MouthBox(x0, y0, x1, y1, float(lip), float(cx), float(0.10 * face.h))


def _lip_line(image: np.ndarray, cx: float, guess: float, face: FaceBox) -> float:
    h, w = image.shape[:2]
    r = int(0.07 * face.h)
    y0, y1 = int(max(0, guess - r)), int(min(h, guess + r + 1))
    x0, x1 = int(max(0, cx - 0.15 * face.w)), int(min(w, cx + 0.15 * face.w))
    if y1 - y0 < 5 or x1 - x0 < 3:
        return guess
    rows = image[y0:y1, x0:x1].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    profile = np.convolve(rows.mean(axis=1), np.ones(3) / 3, mode="same")[1:-1]
    k = int(np.argmin(profile))
    if float(np.median(profile) - profile[k]) < 12.0:  # no clear line between the lips
        return guess
    return float(y0 + 1 + k)


# Opening signal ---------------------------------------------------------------------------------------------

# Jaw opening per sound: IPA (Piper) and espeak-ng's phoneme mnemonics share most first letters.
_OPEN = {
    **dict.fromkeys("aɑæʌɐAQ", 1.0), **dict.fromkeys("ɔoɒ0O", 0.8), **dict.fromkeys("eɛəɜɚɝ3E@V", 0.6),  # noqa: RUF001
    **dict.fromkeys("iɪjI", 0.4), **dict.fromkeys("uʊwU", 0.35), **dict.fromkeys("mbpMBP", 0.0),  # noqa: RUF001
    **dict.fromkeys("fvFʋ", 0.15), **dict.fromkeys("θðTD", 0.25),  # noqa: RUF001
}
_MARKS = "ˈˌː'',:;"


def viseme_opening(phoneme: str) -> float | None:
    """How far a phoneme opens the jaw (0 closed .. 1 wide); None for a stress or length mark."""
    core = phoneme.strip(_MARKS)
    if not core:
        return None
    return _OPEN.get(core[0], 0.25)


def mouth_opening(samples: np.ndarray, sample_rate: int, fps: float, n_frames: int | None = None,
                  phonemes: Sequence[tuple[str, float, float]] = ()) -> tuple[np.ndarray, str]:
    """The mouth opening (0..1) per video frame for a voice track, and the method used."""
    env = audio.rms_envelope(samples, sample_rate, fps)
    n = int(n_frames if n_frames is not None else env.size)
    env = np.pad(env, (0, max(0, n - env.size)))[:n]
    ref = float(np.percentile(env[env > 0], 95)) if np.any(env > 0) else 1.0
    loud = np.clip(env / max(ref, 1e-6), 0.0, 1.0)
    loud[loud < 0.06] = 0.0  # silence closes the mouth
    if phonemes:
        sub = 4  # samples per frame, averaged
        t = (np.arange(n * sub) + 0.5) / (fps * sub)
        target = np.zeros(t.size, np.float32)
        last = 0.25
        for name, start, end in phonemes:
            value = viseme_opening(name)
            value = last if value is None else value
            last = value
            a, b = np.searchsorted(t, [start, end])
            target[a:b] = value
        per_frame = target.reshape(n, sub).mean(axis=1) if n else target
        signal = per_frame * (0.35 + 0.65 * loud) * (loud > 0)
        method = "visemes from phoneme timings, scaled by the voice's RMS envelope"
    else:
        signal = loud ** 0.7
        method = "RMS envelope of the voice (no phoneme timings)"
    return _smooth(signal.astype(np.float32), fps), method


def _smooth(x: np.ndarray, fps: float, seconds: float = 0.05) -> np.ndarray:
    k = max(1, round(seconds * fps) * 2 + 1)
    if k == 1 or x.size < 2:
        return x
    kernel = np.hanning(k + 2)[1:-1]
    kernel /= kernel.sum()
    return np.clip(np.convolve(np.pad(x, k // 2, mode="edge"), kernel, mode="valid"), 0.0, 1.0).astype(np.float32)


# Rendering --------------------------------------------------------------------------------------------------


class LipSync:
    """Frames of ``portrait`` (RGB) speaking ``speech`` (a :class:`voices.Speech` or anything with ``samples``,
    ``sample_rate`` and optionally ``phonemes``): ``len(self)`` frames at ``fps`` covering ``duration_s``
    (default the speech's length), at ``size`` (width, height; default the portrait's) cover-fitted once."""

    def __init__(self, portrait: np.ndarray, speech: Any, *, fps: float = 24.0,
                 size: tuple[int, int] | None = None, duration_s: float | None = None,
                 face: FaceBox | None = None) -> None:
        img = _rgb(portrait)
        face = face or detect_face(img)
        if size and (img.shape[1], img.shape[0]) != tuple(size):
            # fill the frame, keeping the face in it (a little above the centre)
            focus = (face.x + face.w / 2, face.y + face.h * 0.75)
            self.still, scale, x0, y0 = _cover(img, size, focus)
            face = FaceBox(round(face.x * scale) - x0, round(face.y * scale) - y0,
                           round(face.w * scale), round(face.h * scale), face.score, face.method)
        else:
            self.still = img
        self.fps = float(fps)
        h, w = self.still.shape[:2]
        self.size = (w, h)
        self.face = face
        self.box = mouth_box(self.face, self.size, self.still)
        samples, rate = audio.as_mono(speech.samples), int(speech.sample_rate)
        duration = duration_s if duration_s is not None else samples.size / rate
        self.n_frames = max(1, round(duration * self.fps))
        phonemes = tuple(getattr(speech, "phonemes", ()) or ())
        self.opening, self.opening_method = mouth_opening(samples, rate, self.fps, self.n_frames, phonemes)
        self.method = f"face: {self.face.method}; mouth: {self.opening_method}; warp: remap of the mouth region"
        self._cache: dict[int, np.ndarray] = {}
        self._prepare()

    def __len__(self) -> int:
        return self.n_frames

    def _prepare(self) -> None:
        b = self.box
        h, w = b.y1 - b.y0, b.x1 - b.x0
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        self._xs, self._ys = xs + b.x0, ys + b.y0
        u = (xs + b.x0 - b.centre_x) / max(1.0, (b.x1 - b.x0) / 2)  # -1..1 across the region
        self._across = np.clip(np.cos(np.clip(u, -1, 1) * np.pi / 2), 0, 1) ** 1.5
        v = ys + b.y0 - b.lip_y  # pixels below (+) or above (-) the lip line
        below = max(1.0, b.y1 - b.lip_y)
        above = max(1.0, b.lip_y - b.y0)
        self._down = np.where(v >= 0, np.clip(1 - v / below, 0, 1) ** 0.8, 0.0).astype(np.float32)
        self._up = np.where(v < 0, np.clip(1 + v / above, 0, 1) ** 1.2, 0.0).astype(np.float32)
        self._v = v
        self._u = u

    def _patch(self, level: int) -> np.ndarray:
        patch = self._cache.get(level)
        if patch is not None:
            return patch
        import cv2

        b = self.box
        a = level / (LEVELS - 1)
        gap = a * b.max_open_px
        drop, lift = 0.8 * gap, 0.2 * gap
        # backward map: where each output pixel of the region comes from in the still
        map_y = self._ys - drop * self._down * self._across + lift * self._up * self._across
        patch = cv2.remap(self.still, self._xs, map_y.astype(np.float32), cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT)
        if gap > 0.5:
            # the inside of the mouth: an ellipse between the parted lips, soft-edged, darkest in its middle
            half_w = 0.46 * (b.x1 - b.x0) / 2 * (0.75 + 0.25 * a)
            cy = (drop - lift) / 2  # middle of the gap, relative to the lip line
            ry = max(0.5, 0.45 * (drop + lift))
            d = ((self._u * (b.x1 - b.x0) / 2) / half_w) ** 2 + ((self._v - cy) / ry) ** 2
            alpha = (np.clip(1.0 - d, 0.0, 1.0) ** 0.6)[..., None] * (0.55 + 0.35 * a)
            patch = (patch * (1 - alpha) + _INSIDE * alpha).astype(np.uint8)
        self._cache[level] = patch
        return patch

    def frame(self, index: int) -> np.ndarray:
        """Frame ``index`` as a new (H, W, 3) uint8 array."""
        b = self.box
        out = self.still.copy()
        level = round(float(self.opening[min(index, self.n_frames - 1)]) * (LEVELS - 1))
        if level > 0:
            out[b.y0:b.y1, b.x0:b.x1] = self._patch(level)
        return out

    def frames(self) -> Iterator[np.ndarray]:
        """Every frame in order, one at a time."""
        for i in range(self.n_frames):
            yield self.frame(i)


def measure_mouth_signal(frames: Iterable[np.ndarray], box: MouthBox, still: np.ndarray) -> np.ndarray:
    """How open the mouth looks in each frame: the mean absolute luminance change in the mouth region
    against the still portrait (closed mouth)."""
    weights = np.array([0.299, 0.587, 0.114], np.float32)
    ref = still[box.y0:box.y1, box.x0:box.x1].astype(np.float32) @ weights
    out = []
    for frame in frames:
        region = frame[box.y0:box.y1, box.x0:box.x1].astype(np.float32) @ weights
        out.append(float(np.abs(region - ref).mean()))
    return np.array(out, np.float32)


def sync_correlation(measured: np.ndarray, samples: np.ndarray, sample_rate: int, fps: float) -> float:
    """Pearson correlation between a measured mouth signal (one value per frame) and the voice's RMS envelope
    at the same frames; 0 when either is constant."""
    env = audio.rms_envelope(samples, sample_rate, fps)
    n = min(env.size, measured.size)
    a, b = measured[:n].astype(np.float64), env[:n].astype(np.float64)
    if n < 3 or a.std() == 0 or b.std() == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])
