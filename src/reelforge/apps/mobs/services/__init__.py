"""Video understanding ("mobs") use cases, one part per concern, sharing one `MobsContext`:

- `uploads`: submit and upload, the submit-time check of `video.analyze` jobs, stalled uploads;
- `analysis`: the pipeline's writes, validation and the `video.analyzed` event;
- `grouping`: assignment to mobs, re-clustering and the projection refit;
- `reads`: videos, the feed, mobs, similar search, history and URLs (visibility applied);
- `admin`: every user's videos, deletion, statistics and usage.

The platform builds one `MobService` (`container.app("mobs")`); callers name the part:
`container.app("mobs").uploads.submit(...)`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from reelforge.apps.mobs.services.admin import Admin
from reelforge.apps.mobs.services.analysis import Analysis
from reelforge.apps.mobs.services.base import MobsContext
from reelforge.apps.mobs.services.cursors import Page
from reelforge.apps.mobs.services.grouping import Grouping
from reelforge.apps.mobs.services.reads import Reads
from reelforge.apps.mobs.services.uploads import Uploads
from reelforge.config import Settings
from reelforge.ports.repositories import Store


class MobService:
    """The application's service: its parts, built once over one shared context."""

    def __init__(self, store: Store, settings: Settings, *, assets: Any, objects: Any, jobs: Any,
                 vectors: Callable[[], Any], media: Any = None, links: Any = None) -> None:
        self.ctx = MobsContext(store, settings, assets=assets, objects=objects, jobs=jobs, vectors=vectors,
                               media=media, links=links)
        self.grouping = Grouping(self.ctx)
        self.uploads = Uploads(self.ctx)
        self.analysis = Analysis(self.ctx, self.grouping)
        self.reads = Reads(self.ctx)
        self.admin = Admin(self.ctx, self.grouping)


__all__ = ["Admin", "Analysis", "Grouping", "MobService", "MobsContext", "Page", "Reads", "Uploads"]
