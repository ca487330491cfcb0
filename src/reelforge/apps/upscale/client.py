"""The upscaling application's client namespace: ``rf.upscale``.

Found by `reelforge.client` through the ``reelforge.client`` entry-point group; built on the client's core
only (standard library, httpx, `reelforge.client`), so both faces run every method.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from typing import Any

from reelforge.client.core import Call, Flow, Namespace, R, call, clean, data
from reelforge.client.namespaces import JobHandle, submit_job
from reelforge.client.records import Model

VIDEO_KIND = "video.upscale"
IMAGE_KIND = "image.upscale"


class Upscale(Namespace[R]):
    """Upscale a stored video or image (``rf.assets.upload`` first); the answer is the job's handle."""

    @call
    def video(self, asset_id: str, *, model: str = "realesr-animevideov3", scale: int = 2,
              output: Mapping[str, Any] | None = None, chunk_seconds: float | None = None,
              denoise: float | None = None, callback_url: str | None = None,
              priority: int = 0) -> Flow[JobHandle[R]]:
        """A ``video.upscale`` job: every stream kept; ``output`` sets container, video_codec, crf, preset."""
        body = clean({"asset_id": asset_id, "model": model, "scale": scale,
                      "output": dict(output) if output else None, "chunk_seconds": chunk_seconds,
                      "denoise": denoise})
        return submit_job(self.client, VIDEO_KIND, body, callback_url=callback_url, priority=priority)

    @call
    def image(self, asset_id: str, *, model: str = "realesr-animevideov3", scale: int = 2,
              format: str | None = None, denoise: float | None = None, callback_url: str | None = None,
              priority: int = 0) -> Flow[JobHandle[R]]:
        """An ``image.upscale`` job; ``format`` is png, jpeg or webp."""
        body = clean({"asset_id": asset_id, "model": model, "scale": scale, "format": format, "denoise": denoise})
        return submit_job(self.client, IMAGE_KIND, body, callback_url=callback_url, priority=priority)

    @call
    def models(self) -> Call[builtins.list[Model]]:
        """The upscaling models on the server, and whether each can run there."""
        return Call("GET", "/v1/models", data(Model), params={"task": IMAGE_KIND})
