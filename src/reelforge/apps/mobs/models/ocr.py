"""On-screen text with rapidocr 3 (PP-OCR det + rec ONNX models shipped in its wheel), deduplicated across frames."""

from __future__ import annotations

import difflib
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from reelforge.apps.mobs.models.runtime import cached

MIN_SCORE = 0.6
_lock = threading.Lock()  # one onnxruntime session pair shared by the process; calls are serialised


@dataclass(frozen=True)
class TextLine:
    text: str
    score: float
    time_s: float


def _engine() -> Any:
    def load() -> Any:
        from rapidocr import RapidOCR

        return RapidOCR(params={
            "Global.log_level": "error",
            "Global.use_cls": False,  # overlay text is horizontal; the angle classifier only costs time
            # Frames arrive at most 480 px on their long side; the default ("min" side up to 736) upscales
            # them about three times over and costs 3-4x the time for no better reading.
            "Det.limit_type": "max",
            "Det.limit_side_len": 480,
            "EngineConfig.onnxruntime.intra_op_num_threads": 2,
            "EngineConfig.onnxruntime.inter_op_num_threads": 1,
        })

    return cached("rapidocr", load)


def available() -> str | None:
    """None when rapidocr can run, else why not."""
    import importlib.util

    # find_spec, not import: listing models must not load OpenCV and onnxruntime.
    return None if importlib.util.find_spec("rapidocr") else "rapidocr is not installed (the mobs extra)"


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[^\w#@ ]+", " ", text.casefold())).strip()


def read_frame(rgb: np.ndarray) -> list[tuple[str, float]]:
    """Text lines found in one RGB frame with their confidence, top to bottom."""
    engine = _engine()
    with _lock:
        result = engine(np.ascontiguousarray(rgb[:, :, ::-1]))  # rapidocr wants BGR like OpenCV
    txts = getattr(result, "txts", None) or ()
    scores = getattr(result, "scores", None) or ()
    return [(str(t).strip(), float(s)) for t, s in zip(txts, scores, strict=False) if str(t).strip()]


def _similar_frame(a: np.ndarray, b: np.ndarray) -> bool:
    if a.shape != b.shape:
        return False
    step = max(1, min(a.shape[:2]) // 48)
    diff = np.abs(a[::step, ::step].astype(np.int16) - b[::step, ::step].astype(np.int16)).mean()
    return bool(diff < 6.0)


def read_video_text(times: list[float], frames: list[np.ndarray], max_frames: int = 3, *,
                    cancelled: Callable[[], bool] | None = None) -> list[TextLine]:
    """OCR on up to `max_frames` frames spread over the video (skipping near-duplicates of the last one
    read) and the distinct lines found, in order of first appearance. Lines that differ only by case,
    punctuation or a misread letter or two count as one; the most confident reading is kept.
    `cancelled()` is checked before each frame is read, raising JobCancelled."""
    from reelforge.apps.mobs.models.frames import check

    if max_frames <= 0 or not frames:
        return []
    idx = np.unique(np.linspace(0, len(frames) - 1, num=min(max_frames, len(frames))).round().astype(int))
    lines: list[TextLine] = []
    last: np.ndarray | None = None
    for i in idx:
        check(cancelled)
        rgb = frames[int(i)]
        if last is not None and _similar_frame(last, rgb):
            continue
        last = rgb
        for text, score in read_frame(rgb):
            if score < MIN_SCORE:
                continue
            key = _norm(text)
            if not key:
                continue
            for j, seen in enumerate(lines):
                if difflib.SequenceMatcher(None, _norm(seen.text), key).ratio() >= 0.85:
                    if score > seen.score:
                        lines[j] = TextLine(text, score, seen.time_s)
                    break
            else:
                lines.append(TextLine(text, score, float(times[int(i)])))
    return lines
