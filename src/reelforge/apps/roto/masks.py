"""Masks as data and as pictures: COCO run-length encoding of boolean masks, and overlays of masks on a frame.

RLE is exactly pycocotools' format (`pycocotools.mask.encode` / `decode`), so any COCO tool reads what we store:
``{"size": [h, w], "counts": "<string>"}``. The counts are the lengths of alternating runs of 0s and 1s over the
mask flattened in column-major (Fortran) order, starting with a run of 0s (possibly of length 0). The string is
pycocotools' compact form: each count (after the third, as the difference from the count two before it) is cut
into 5-bit groups, least significant first, each written as ``chr(48 + group)`` with bit 0x20 set while more
groups follow; the last group's bit 0x10 is the sign.

Overlays: the frame with each object's mask blended in its colour and outlined, as an RGB array or PNG bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

# Distinct colours (RGB) for objects, by object id; chosen for contrast with each other and with skin and sky.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (255, 64, 64), (64, 160, 255), (64, 220, 96), (255, 200, 0), (200, 80, 255),
    (0, 220, 220), (255, 128, 0), (255, 96, 200), (150, 230, 60), (120, 120, 255),
    (255, 160, 120), (0, 150, 110),
)


def color_for(object_id: int) -> tuple[int, int, int]:
    """The overlay colour of an object: the palette entry for its id (ids wrap round the palette)."""
    return PALETTE[int(object_id) % len(PALETTE)]


# RLE -------------------------------------------------------------------------------------------------------


def run_lengths(mask: np.ndarray) -> np.ndarray:
    """The uncompressed COCO counts of a 2-D mask: run lengths in column-major order, starting with 0s."""
    if mask.ndim != 2:
        raise ValueError(f"a mask is 2-D (H, W), got shape {mask.shape}")
    flat = np.asarray(mask, dtype=bool).ravel(order="F")
    if flat.size == 0:
        return np.zeros(1, dtype=np.int64)  # pycocotools writes one empty run for an empty mask
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate(([0], change, [flat.size]))
    counts = np.diff(bounds)
    if flat[0]:
        counts = np.concatenate(([0], counts))
    return counts.astype(np.int64)


def counts_to_string(counts: np.ndarray | list[int]) -> str:
    """pycocotools' `rleToString`: the compact string of uncompressed counts."""
    out: list[str] = []
    values = [int(c) for c in counts]
    for i, value in enumerate(values):
        x = value - values[i - 2] if i > 2 else value
        more = True
        while more:
            c = x & 0x1F
            x >>= 5  # arithmetic shift: negative differences stay negative, as in C
            more = x != -1 if c & 0x10 else x != 0
            if more:
                c |= 0x20
            out.append(chr(c + 48))
    return "".join(out)


def string_to_counts(text: str | bytes) -> list[int]:
    """pycocotools' `rleFrString`: the uncompressed counts of a compact string."""
    data = text.encode("ascii") if isinstance(text, str) else bytes(text)
    counts: list[int] = []
    p = 0
    n = len(data)
    while p < n:
        x = 0
        k = 0
        more = True
        while more:
            if p >= n:
                raise ValueError("truncated RLE string")
            c = data[p] - 48
            if c < 0 or c > 63:
                raise ValueError(f"invalid character in RLE string at {p}")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def encode(mask: np.ndarray) -> dict[str, Any]:
    """COCO RLE of a boolean (H, W) mask: ``{"size": [h, w], "counts": str}`` (pycocotools' `encode`, with
    the counts as text rather than bytes so that it is JSON as is)."""
    h, w = mask.shape[:2] if mask.ndim >= 2 else (0, 0)
    return {"size": [int(h), int(w)], "counts": counts_to_string(run_lengths(mask))}


def decode(rle: Mapping[str, Any]) -> np.ndarray:
    """The boolean (H, W) mask of a COCO RLE; counts may be the compact string (str or bytes) or a list of
    uncompressed counts. Raises ValueError when the counts do not add up to h x w."""
    h, w = (int(v) for v in rle["size"])
    raw = rle["counts"]
    counts = list(raw) if isinstance(raw, list | tuple) else string_to_counts(raw)
    counts_arr = np.asarray(counts, dtype=np.int64)
    if (counts_arr < 0).any() or int(counts_arr.sum()) != h * w:
        raise ValueError(f"RLE counts add up to {int(counts_arr.sum())}, not {h} x {w}")
    values = np.zeros(len(counts_arr), dtype=bool)
    values[1::2] = True
    flat = np.repeat(values, counts_arr)
    return flat.reshape((h, w), order="F")


def area(rle: Mapping[str, Any]) -> int:
    """Pixels in the mask (the sum of the runs of 1s), without decoding it."""
    raw = rle["counts"]
    counts = list(raw) if isinstance(raw, list | tuple) else string_to_counts(raw)
    return int(sum(counts[1::2]))


def bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1) of the mask's pixels, x1/y1 exclusive, or None for an empty mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


# Overlays --------------------------------------------------------------------------------------------------


def overlay(frame: np.ndarray, masks: Mapping[int, np.ndarray], *, alpha: float = 0.45, outline: int = 2,
            colors: Mapping[int, tuple[int, int, int]] | None = None) -> np.ndarray:
    """The RGB frame with each object's mask blended in at `alpha` in its colour and outlined (`outline` px,
    opaque; 0 for none). Where masks overlap, the object later in `masks` is drawn on top."""
    import cv2

    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError("frame must be RGB uint8 of shape (H, W, 3)")
    h, w = frame.shape[:2]
    ids = list(masks)
    if not ids:
        return frame.copy()
    if len(ids) > 254:
        raise ValueError("at most 254 objects per overlay")
    label = np.zeros((h, w), dtype=np.uint8)
    lut = np.zeros((256, 3), dtype=np.uint8)
    for i, oid in enumerate(ids, start=1):
        m = masks[oid]
        if m.shape != (h, w):
            raise ValueError(f"mask of object {oid} is {m.shape}, the frame is {(h, w)}")
        label[np.asarray(m, dtype=bool)] = i
        lut[i] = (colors or {}).get(oid, color_for(oid))
    colour = cv2.LUT(cv2.merge((label, label, label)), lut.reshape(256, 1, 3))
    blended = cv2.addWeighted(frame, 1.0 - alpha, colour, alpha, 0.0)
    out = frame.copy()
    inside = label > 0
    cv2.copyTo(blended, inside.view(np.uint8), out)
    if outline > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * outline + 1, 2 * outline + 1))
        # A pixel is on an outline where the labels within `outline` px differ from its own, inside a mask.
        edge = (cv2.dilate(label, kernel) != label) | (cv2.erode(label, kernel) != label)
        edge &= inside
        cv2.copyTo(colour, edge.view(np.uint8), out)
    return out


def overlay_png(frame: np.ndarray, masks: Mapping[int, np.ndarray], *, alpha: float = 0.45, outline: int = 2,
                colors: Mapping[int, tuple[int, int, int]] | None = None) -> bytes:
    """`overlay(...)` as PNG bytes, encoded for speed (zlib level 1, run-length strategy, the "sub" row filter:
    about 12 ms for a photo at 854x480, within 5 % of the size of the default settings, which take twice as
    long)."""
    import cv2

    out = overlay(frame, masks, alpha=alpha, outline=outline, colors=colors)
    ok, buf = cv2.imencode(".png", cv2.cvtColor(out, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE,
                            cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_SUB])
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()
