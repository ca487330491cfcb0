"""COCO RLE (exactly pycocotools' format) and overlays."""

from __future__ import annotations

import importlib.util
import json
import time

import cv2
import numpy as np
import pytest

from reelforge.apps.roto import masks as M

HAVE_PYCOCOTOOLS = importlib.util.find_spec("pycocotools") is not None


def _square(h: int, w: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    m = np.zeros((h, w), dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


# Vectors worked out by hand from the format (column-major runs starting with 0s; 5-bit groups + 48, 0x20 =
# more groups follow, 0x10 of the last group = sign; counts after the third as differences from two before).
HAND_VECTORS = [
    # 4x4 with the centre 2x2 set: columns 0000 0110 0110 0000 -> runs 5,2,2,2,5 -> diffs 5,2,2,0,3.
    (_square(4, 4, 1, 3, 1, 3), [5, 2, 2, 2, 5], "52203"),
    # all zeros, 100x100: one run of 10000 = 312*32 + 16 -> groups 16 (+0x20, more), 24 (+0x20), 9.
    (np.zeros((100, 100), dtype=bool), [10000], "`h9"),
    # first pixel set: a leading empty run of 0s.
    (_square(2, 2, 0, 1, 0, 1), [0, 1, 3], "013"),
    # all ones, 3x2: runs 0, 6.
    (np.ones((3, 2), dtype=bool), [0, 6], "06"),
    # 3x3, column 0 set then column 2 set: runs 0,3,3,3 -> 4th is 3-3=0.
    (np.array([[1, 0, 1]] * 3, dtype=bool), [0, 3, 3, 3], "0330"),
    # a negative difference: runs 0,40,3,1 -> 4th = 1-40 = -39 -> 5-bit groups of -39 (two's complement):
    # -39 & 31 = 25 (0x10 set, more since -39 >> 5 = -2 != -1) -> 25|32 = 57 -> 'i'; -2 & 31 = 30 (sign bit
    # set, -2 >> 5 = -1: last) -> 30 -> 'N'. 40 = 8 + 1*32 -> 8|32 = 40 -> 'X', then 1 -> '1'.
    (np.concatenate([np.ones(40, bool), np.zeros(3, bool), np.ones(1, bool)]).reshape((44, 1)),
     [0, 40, 3, 1], "0X13iN"),
]


@pytest.mark.parametrize(("mask", "counts", "text"), HAND_VECTORS)
def test_hand_vectors(mask: np.ndarray, counts: list[int], text: str) -> None:
    assert M.run_lengths(mask).tolist() == counts
    assert M.counts_to_string(counts) == text
    assert M.string_to_counts(text) == counts
    rle = M.encode(mask)
    assert rle == {"size": list(mask.shape), "counts": text}
    assert np.array_equal(M.decode(rle), mask)
    assert M.area(rle) == int(mask.sum())


def _random_masks(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        h, w = (int(v) for v in rng.integers(1, 60, 2))
        if i % 3 == 0:
            m = rng.random((h, w)) < rng.random()  # noise: many short runs
        else:
            m = np.zeros((h, w), np.uint8)
            cv2.circle(m, (int(rng.integers(0, w)), int(rng.integers(0, h))), int(rng.integers(1, 40)), 1, -1)
            m = m.astype(bool)
        out.append(m)
    out += [np.zeros((0, 5), bool), np.zeros((480, 854), bool), np.ones((480, 854), bool)]
    return out


def test_round_trip_random_masks() -> None:
    for m in _random_masks(200):
        rle = M.encode(m)
        json.dumps(rle)  # JSON as is
        back = M.decode(rle)
        assert back.dtype == bool and back.shape == m.shape
        assert np.array_equal(back, m)
        assert M.area(rle) == int(m.sum())
        # uncompressed counts decode too
        assert np.array_equal(M.decode({"size": rle["size"], "counts": M.run_lengths(m).tolist()}), m)


@pytest.mark.skipif(not HAVE_PYCOCOTOOLS, reason="pycocotools (dev extra) is not installed; the hand vectors "
                                                  "above still check the format")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_identical_to_pycocotools() -> None:
    from pycocotools import mask as coco

    for m in _random_masks(200, seed=1):
        ours = M.encode(m)
        ref = coco.encode(np.asfortranarray(m.astype(np.uint8)))
        assert ours["counts"].encode("ascii") == ref["counts"]
        assert ours["size"] == [int(v) for v in ref["size"]]
        assert np.array_equal(M.decode(ref), m)  # theirs (bytes) decodes with ours
        assert np.array_equal(coco.decode({"size": ours["size"], "counts": ours["counts"]}).astype(bool), m)
        assert M.area(ours) == int(coco.area(ref))


def test_decode_refuses_inconsistent_counts() -> None:
    with pytest.raises(ValueError):
        M.decode({"size": [4, 4], "counts": "52"})  # runs add up to 7, not 16
    with pytest.raises(ValueError):
        M.string_to_counts("5\x7f")
    with pytest.raises(ValueError):
        M.run_lengths(np.zeros((2, 2, 2), bool))


def test_bbox() -> None:
    assert M.bbox(np.zeros((5, 5), bool)) is None
    assert M.bbox(_square(10, 12, 2, 5, 3, 9)) == (3, 2, 9, 5)


def _frame() -> np.ndarray:
    from skimage import data

    return cv2.resize(data.astronaut(), (854, 480), interpolation=cv2.INTER_AREA)


def test_overlay_colours_outline_and_png() -> None:
    frame = _frame()
    a = np.zeros((480, 854), np.uint8)
    cv2.circle(a, (300, 240), 100, 1, -1)
    b = np.zeros((480, 854), np.uint8)
    cv2.rectangle(b, (350, 200), (600, 400), 1, -1)
    masks = {1: a.astype(bool), 7: b.astype(bool)}
    out = M.overlay(frame, masks, alpha=0.5, outline=2)
    assert out.shape == frame.shape and out.dtype == np.uint8
    # outside every mask: the frame untouched
    assert np.array_equal(out[10, 10], frame[10, 10])
    # deep inside object 1 only: half frame, half its colour
    expected = (frame[240, 250].astype(int) + np.array(M.color_for(1))) / 2
    assert np.abs(out[240, 250].astype(int) - expected).max() <= 1
    # where both overlap, the later object (7) is on top
    expected7 = (frame[240, 380].astype(int) + np.array(M.color_for(7))) / 2
    assert np.abs(out[240, 380].astype(int) - expected7).max() <= 1
    # the outline is the opaque colour: the circle's left edge, and the rectangle's bottom edge
    assert tuple(out[240, 201]) == M.color_for(1)
    assert tuple(out[399, 500]) == M.color_for(7)
    # PNG bytes decode to exactly the overlay
    png = M.overlay_png(frame, masks, alpha=0.5, outline=2)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    decoded = cv2.cvtColor(cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    assert np.array_equal(decoded, out)
    # no masks: the frame itself; custom colours win
    assert np.array_equal(M.overlay(frame, {}), frame)
    custom = M.overlay(frame, {1: masks[1]}, colors={1: (0, 0, 0)}, outline=0, alpha=1.0)
    assert tuple(custom[240, 300]) == (0, 0, 0)


def test_overlay_rejects_bad_input() -> None:
    frame = _frame()
    with pytest.raises(ValueError):
        M.overlay(frame, {1: np.zeros((10, 10), bool)})
    with pytest.raises(ValueError):
        M.overlay(frame[..., 0], {})


@pytest.mark.bench
def test_overlay_png_is_fast_at_480p() -> None:
    """Goal: under 20 ms for a PNG overlay at 854x480 (three objects). A speed goal, so it runs on purpose
    (`-m bench`), not in `make test`, where other test processes share the cores; the best of several runs counts."""
    frame = _frame()
    masks = {}
    for i, (x, y) in enumerate([(250, 200), (450, 260), (650, 300)], start=1):
        m = np.zeros((480, 854), np.uint8)
        cv2.circle(m, (x, y), 120, 1, -1)
        masks[i] = m.astype(bool)
    M.overlay_png(frame, masks)
    times = []
    for _ in range(9):
        started = time.perf_counter()
        M.overlay_png(frame, masks)
        times.append(time.perf_counter() - started)
    assert min(times) < 0.020, f"best {min(times) * 1000:.1f} ms"
