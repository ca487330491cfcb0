"""A server without `film.youtube.client_id`: the status says so, connecting and publishing answer 503
`youtube_not_configured` with a clear message, disconnecting still forgets what is stored."""

from __future__ import annotations

from typing import Any

from tests.apps.film.helpers import assert_problem, make_project
from tests.apps.film.youtube_helpers import video_asset, video_bytes
from tests.conftest import UserHandle


def test_not_configured(client: Any, container: Any, alice: UserHandle) -> None:
    assert alice.get("/v1/film/youtube").json() == {"configured": False, "connected": False,
                                                    "reason": "youtube_not_configured"}
    body = assert_problem(alice.post("/v1/film/youtube/connect"), 503, "youtube_not_configured")
    assert "film.youtube.client_id" in body["detail"]
    assert_problem(client.get("/v1/film/youtube/callback", params={"state": "x", "code": "y"}), 503,
                   "youtube_not_configured")
    project = make_project(alice)
    video = video_asset(container, alice.id, video_bytes(1000))
    assert_problem(alice.post(f"/v1/projects/{project['id']}/publish",
                              json={"video_asset_id": video, "title": "The Lighthouse"}), 503,
                   "youtube_not_configured")
    r = alice.post("/v1/jobs", json={"kind": "film.publish", "input": {"project_id": project["id"],
                                                                       "video_asset_id": video, "title": "T"}})
    assert_problem(r, 503, "youtube_not_configured")
    r = alice.delete("/v1/film/youtube")
    assert r.status_code == 200 and r.json()["was_connected"] is False and r.json()["revoked"] is False
