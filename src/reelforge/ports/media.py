"""Reading what an input media file is, under the media policy (domain/media.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from reelforge.domain.media import MediaLimits


class MediaInspector(Protocol):
    """Measures input files from their headers and refuses what the policy does not accept.

    Each method returns the facts it read (JSON-able) or raises a ReelforgeError whose code is documented
    (``not_a_video``, ``video_too_large``, ``media_truncated``, ``unsupported_format``, ``image_too_large``,
    ``active_content``, ...). Nothing is decoded beyond what proves the file readable.
    """

    def video(self, path: Path, limits: MediaLimits) -> dict[str, Any]:
        """A video file: size, duration, frame rate, codec, frames, streams."""
        ...

    def image(self, data: bytes, limits: MediaLimits) -> dict[str, Any]:
        """An image: format, width, height, mode, frames."""
        ...
