"""Classical resampling baselines (Pillow's Lanczos and bicubic) and the optional denoise pre-filter."""

from __future__ import annotations

import numpy as np

FILTERS = ("lanczos", "bicubic")


def pillow_resize(image: np.ndarray, scale: int, method: str) -> np.ndarray:
    """RGB uint8 HxWx3 -> (H*scale)x(W*scale)x3 with Pillow's filter `method` ("lanczos" or "bicubic")."""
    from PIL import Image

    resample = {"lanczos": Image.Resampling.LANCZOS, "bicubic": Image.Resampling.BICUBIC}[method]
    height, width = image.shape[:2]
    with Image.fromarray(np.ascontiguousarray(image), mode="RGB") as img:
        return np.asarray(img.resize((width * scale, height * scale), resample=resample), dtype=np.uint8)


def denoise(image: np.ndarray, strength: float) -> np.ndarray:
    """Non-local-means colour denoising (OpenCV) before upscaling; `strength` 0..1 maps to a filter strength
    h of 0..15 (OpenCV's usual range is 3..10 for light to strong noise). 0 returns the image unchanged."""
    if strength <= 0:
        return image
    import cv2

    h = float(15.0 * min(strength, 1.0))
    return np.asarray(cv2.fastNlMeansDenoisingColored(np.ascontiguousarray(image), None, h, h, 7, 21))
