"""The film studio's client namespace: ``rf.film``.

Found by `reelforge.client` through the ``reelforge.client`` entry-point group; built on the client's core only
(standard library, httpx, `reelforge.client`), so the blocking and the asyncio client run every method::

    rf = Client(url, api_key=...)
    project = rf.film.create_project("The Storm", script=open("storm.fountain").read())
    breakdown = rf.film.analyze(project.id).analysis
    job = rf.film.render(project.id, aspect="9:16").wait()
    rf.assets.download(job.outputs["video_asset_id"], "out/")
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from reelforge.client.core import Call, Flow, Namespace, R, call, clean, nothing, one, seg
from reelforge.client.namespaces import JobHandle, submit_job
from reelforge.client.records import Record

KIND = "film.render"


@dataclass
class FilmProject(Record):
    """A project: its script, characters, backgrounds and music, and its last analysis (`analysis`)."""

    id: str
    owner_id: str
    role: str  # owner | viewer (shared with you read-only)
    title: str
    description: str
    script_format: str
    script_bytes: int
    counts: dict[str, int]
    revision: int
    analyzed_at: str | None
    analysis_stale: bool
    created_at: str | None
    updated_at: str | None
    script: str
    characters: builtins.list[dict[str, Any]]
    backgrounds: builtins.list[dict[str, Any]]
    music: builtins.list[dict[str, Any]]
    asset_urls: dict[str, str]
    analysis: dict[str, Any] | None
    last_render_job_id: str | None = None


class Film(Namespace[R]):
    """Film projects (script to film) and their renders."""

    @call
    def create_project(self, title: str, *, script: str = "", script_format: str = "auto",
                       characters: Sequence[Mapping[str, Any]] = (), description: str = "") -> Call[FilmProject]:
        body = {"title": title, "script": script, "script_format": script_format, "description": description,
                "characters": [dict(c) for c in characters]}
        return Call("POST", "/v1/projects", one(FilmProject), json=body, repeatable=False)

    @call
    def get_project(self, project_id: str) -> Call[FilmProject]:
        return Call("GET", f"/v1/projects/{seg(project_id)}", one(FilmProject))

    @call
    def update_project(self, project_id: str, **fields: Any) -> Call[FilmProject]:
        """Change fields (``script``, ``characters``, ...): a list replaces the list."""
        return Call("PATCH", f"/v1/projects/{seg(project_id)}", one(FilmProject), json=dict(fields))

    @call
    def delete_project(self, project_id: str) -> Call[None]:
        return Call("DELETE", f"/v1/projects/{seg(project_id)}", nothing)

    @call
    def analyze(self, project_id: str) -> Call[FilmProject]:
        """Parse the script into scenes, characters, dialogue and estimated durations (``.analysis``)."""
        return Call("POST", f"/v1/projects/{seg(project_id)}/analyze", one(FilmProject), repeatable=False)

    @call
    def render(self, project_id: str, *, aspect: str = "16:9", height: int | None = None,
               subtitles: str | None = None, languages: Sequence[str] = (), music: bool | None = None,
               image_model: str | None = None, callback_url: str | None = None, priority: int = 0,
               idempotency_key: str | None = None) -> Flow[JobHandle[R]]:
        """A ``film.render`` job for the project; ``.wait()`` follows it. Its ``outputs`` name the film
        (``video_asset_id``), the thumbnail, the subtitles per language and each scene."""
        body: dict[str, Any] = clean({"project_id": project_id, "aspect": aspect, "height": height,
                                      "subtitles": subtitles, "music": music, "image_model": image_model})
        if languages:
            body["languages"] = list(languages)
        return submit_job(self.client, KIND, body, callback_url=callback_url, priority=priority,
                          idempotency_key=idempotency_key)
