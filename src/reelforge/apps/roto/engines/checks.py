"""Input checks shared by the engines: frames and masks as the port defines them."""

from __future__ import annotations

from typing import Any

import numpy as np

from reelforge.errors import ValidationFailed


def check_frame(frame: Any) -> tuple[int, int]:
    """(h, w) of an RGB uint8 (H, W, 3) frame; ValidationFailed(code="invalid_frame") otherwise."""
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValidationFailed("frames must be RGB uint8 arrays of shape (H, W, 3)", code="invalid_frame")
    h, w = frame.shape[:2]
    if h < 8 or w < 8:
        raise ValidationFailed("frames must be at least 8x8 pixels", code="invalid_frame")
    return int(h), int(w)


def check_mask(mask: Any, shape: tuple[int, int], what: str) -> np.ndarray:
    """A mask of the frame's (h, w) as booleans; ValidationFailed(code="invalid_mask") otherwise."""
    m = np.asarray(mask)
    if m.shape != shape:
        raise ValidationFailed(f"{what} has shape {m.shape}, the frame is {shape}", code="invalid_mask")
    return m.astype(bool, copy=False)
