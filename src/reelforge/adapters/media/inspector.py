"""The MediaInspector port on PyAV and Pillow (ports/media.py)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from reelforge.adapters.media.inputs import check_content, inspect_image
from reelforge.adapters.media.probe import probe
from reelforge.domain.media import MediaLimits


class LocalMediaInspector:
    """Probes files on this machine: headers under the limits, the packets against the container's claims,
    the first frame decoded (capped), and no markup, script or appended archive."""

    def video(self, path: Path, limits: MediaLimits) -> dict[str, Any]:
        """See :meth:`reelforge.ports.media.MediaInspector.video`."""
        info = probe(Path(path), limits=limits)
        check_content(Path(path))
        return info.to_dict()

    def image(self, data: bytes, limits: MediaLimits) -> dict[str, Any]:
        """See :meth:`reelforge.ports.media.MediaInspector.image`."""
        return asdict(inspect_image(data, limits))
