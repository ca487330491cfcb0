"""The media policy applied to stored assets: every application checks its inputs here, at submit or at upload
completion, before any job is queued (the rules: domain/media.py; the settings: section `media`)."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from reelforge import errors
from reelforge.config import Settings
from reelforge.domain.media import MediaLimits
from reelforge.domain.records import Asset
from reelforge.ports.media import MediaInspector
from reelforge.ports.storage import ObjectStore

# Images are read whole; larger ones are refused before they are fetched.
MAX_IMAGE_BYTES = 64 * 1024**2


class MediaService:
    def __init__(self, objects: ObjectStore, settings: Settings, inspector: MediaInspector) -> None:
        self.objects = objects
        self.settings = settings
        self.inspector = inspector

    def limits(self, **tighter: Any) -> MediaLimits:
        """The platform's policy, with an application's own stricter caps (e.g. ``max_pixels=1920*1080``)."""
        return self.settings.media.limits().tightened(**tighter)

    @contextlib.contextmanager
    def local_copy(self, asset: Asset) -> Iterator[Path]:
        """The asset's bytes as a local file while the block runs: the local store's own file, else a download
        into a temporary folder under the data directory (deleted afterwards)."""
        path_for = getattr(self.objects, "path_for", None)
        if getattr(self.objects, "name", "") == "local" and callable(path_for):
            yield Path(path_for(asset.key))
            return
        tmp_root = Path(self.settings.data_dir) / "tmp"
        tmp_root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=tmp_root, prefix="media-") as tmp:
            path = Path(tmp) / ("input" + Path(asset.key).suffix[:11])
            self.objects.download_to(asset.key, path)
            yield path

    def check_video(self, asset: Asset, limits: MediaLimits | None = None) -> dict[str, Any]:
        """The video's facts (size, duration, frames, streams...) when the policy accepts it; a 422 with the
        documented code otherwise."""
        with self.local_copy(asset) as path:
            return self.inspector.video(path, limits or self.limits())

    def check_image(self, asset: Asset, limits: MediaLimits | None = None) -> dict[str, Any]:
        """The image's facts (format, width, height) from its header when the policy accepts it; 422 otherwise."""
        if asset.size > MAX_IMAGE_BYTES:
            raise errors.ValidationFailed(f"Images are limited to {MAX_IMAGE_BYTES} bytes", code="image_too_large",
                                          field="asset_id", limit=MAX_IMAGE_BYTES)
        data = self.objects.get_bytes(asset.key)
        return self.inspector.image(data, limits or self.limits())
