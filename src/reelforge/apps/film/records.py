"""The film studio's records: plain, frozen snapshots of its rows (as `reelforge.domain.records` are for the
core's). Characters, backgrounds and music are JSON lists on the project; the breakdown is the analysis's
JSON document (see `script.breakdown`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Project:
    id: str
    owner_id: str
    title: str
    description: str
    script: str | None  # None when not read (lists leave the script and the breakdown out)
    script_format: str  # fountain | prose | auto
    script_bytes: int
    characters: list[dict[str, Any]]
    backgrounds: list[dict[str, Any]]
    music: list[dict[str, Any]]
    revision: int  # bumped by every change of the script, format or characters
    breakdown: dict[str, Any] | None
    analyzed_revision: int | None  # the revision the stored breakdown was made from
    analyzed_at: float | None
    last_render_job_id: str | None  # the film.render job that rendered it last (set when the render starts)
    created_at: float
    updated_at: float

    @property
    def analysis_stale(self) -> bool:
        """Whether the script, its format or the characters changed since the breakdown was made."""
        return self.analyzed_revision is not None and self.analyzed_revision != self.revision


@dataclass(frozen=True, slots=True)
class Share:
    id: str
    project_id: str
    owner_id: str  # the project's owner
    user_id: str | None  # the account it is shared with (when known)
    email: str | None  # or the address it is shared with (any account that has it, now or later)
    created_at: float
