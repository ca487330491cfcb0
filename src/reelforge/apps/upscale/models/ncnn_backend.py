"""Running the Real-ESRGAN ncnn files on the CPU with the `ncnn` package (no Vulkan).

The networks take RGB scaled to 0..1 (ncnn's blob "data") and give RGB in 0..1 (blob "output"), the same
convention as Real-ESRGAN's own ncnn runner, which normalises by 1/255 and multiplies the output by 255.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

_NORM = [1.0 / 255.0] * 3
_MEAN = [0.0, 0.0, 0.0]
# ncnn layers return -100 when an allocation fails; it is reported as MemoryError so the tiler halves the tile.
_NCNN_ALLOC_FAILED = -100


class NcnnUpscaler:
    """One ncnn network. Loading happens once (thread-safe); extractors are per call, so concurrent calls from
    several threads are safe, as ncnn allows."""

    def __init__(self, param_path: Path, bin_path: Path, scale: int, *, threads: int = 2) -> None:
        self.param_path = param_path
        self.bin_path = bin_path
        self.scale = scale
        self.threads = max(1, threads)
        self._net: Any = None
        self._lock = threading.Lock()

    def load(self) -> None:
        if self._net is not None:
            return
        with self._lock:
            if self._net is not None:
                return
            import ncnn

            net = ncnn.Net()
            net.opt.use_vulkan_compute = False
            net.opt.num_threads = self.threads
            if net.load_param(str(self.param_path)) != 0 or net.load_model(str(self.bin_path)) != 0:
                raise RuntimeError(f"ncnn could not load {self.param_path.name}")
            self._net = net

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """uint8 (N, h, w, 3) -> float32 (N, h*scale, w*scale, 3), RGB in 0..1, unclipped."""
        import ncnn

        self.load()
        count, height, width, _ = batch.shape
        out = np.empty((count, height * self.scale, width * self.scale, 3), dtype=np.float32)
        for i in range(count):
            mat = ncnn.Mat.from_pixels(np.ascontiguousarray(batch[i]), ncnn.Mat.PixelType.PIXEL_RGB, width, height)
            mat.substract_mean_normalize(_MEAN, _NORM)
            extractor = self._net.create_extractor()
            extractor.input("data", mat)
            status, result = extractor.extract("output")
            if status == _NCNN_ALLOC_FAILED:
                raise MemoryError(f"ncnn could not allocate memory for a {width}x{height} tile")
            if status != 0:
                raise RuntimeError(f"ncnn extract failed with status {status}")
            out[i] = np.asarray(result).transpose(1, 2, 0)
        return out
