"""Publishing a rendered film from the film studio page, in a real browser, against a real server and worker with
YouTube configured to a local fake of Google's OAuth and YouTube Data API servers (tests/apps/film/fake_youtube.py):
the dialog says no channel is connected, the connect button goes through Google's consent and the callback back to
the project with the dialog open and the channel named, and the publish form uploads the render's MP4 with its
thumbnail and captions, following the `film.publish` job to the video's URL. (test_film_console.py checks the
dialog on a server where YouTube is not configured.)"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.conftest import Live, shot, sign_in
from tests.e2e.test_film_console import SCRIPT, expect

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def fake_youtube() -> Iterator[Any]:
    from tests.apps.film.fake_youtube import FakeYoutube

    server = FakeYoutube().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def live_settings(fake_youtube: Any) -> dict[str, Any]:
    return {"film": {"youtube": fake_youtube.settings()}}


def rendered_project(live: Live, token: str) -> tuple[str, dict[str, Any]]:
    r = live.api("POST", "/v1/projects", token, json={
        "title": "Two Rooms", "description": "A short film.", "script": SCRIPT, "script_format": "fountain",
        "characters": [{"name": "Anna", "voice": {"id": "warm-female"}}, {"name": "Tom", "voice": {"id": "warm-male"}}]})
    assert r.status_code == 201, r.text
    pid = r.json()["id"]
    r = live.api("POST", f"/v1/projects/{pid}/render", token,
                 json={"height": 180, "subtitles": "soft", "music": False})
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        job = live.api("GET", f"/v1/jobs/{job_id}", token).json()
        if job["status"] in ("succeeded", "failed", "cancelled", "dead"):
            assert job["status"] == "succeeded", job
            return pid, dict(job["outputs"])
        time.sleep(0.2)
    raise AssertionError("the render did not finish")


def test_connect_a_channel_and_publish_the_render(page: Any, live: Live, fake_youtube: Any) -> None:
    tokens = live.user("publisher@example.com")
    token = tokens["access_token"]
    pid, out = rendered_project(live, token)
    sign_in(page, live, tokens, f"/film?project={pid}")
    expect(page.locator("#run-status")).to_have_text("succeeded")
    expect(page.locator("#player-card")).to_be_visible()

    # no channel yet: the dialog offers to connect one
    page.click("#open-publish")
    dialog = page.locator("#publish-dialog")
    expect(dialog).to_have_attribute("data-state", "not-connected")
    expect(page.locator("#publish-form")).to_be_hidden()
    page.click("#yt-connect")

    # Google's consent (immediate on the fake), its redirect to the callback, and back to this project's dialog
    page.wait_for_url(f"{live.url}/film?project={pid}")
    expect(page.locator(".toast")).to_contain_text("YouTube channel connected")
    expect(dialog).to_have_attribute("data-state", "connected")
    expect(page.locator("#yt-state")).to_contain_text(fake_youtube.channel["title"])
    status = live.api("GET", "/v1/film/youtube", token).json()
    assert status["connected"] and status["channel"]["title"] == fake_youtube.channel["title"]

    form = page.locator("#publish-form")
    expect(form.locator("[name=title]")).to_have_value("Two Rooms")
    expect(form.locator("[name=description]")).to_have_value("A short film.")
    form.locator("[name=tags]").fill("short film, drama")
    form.locator("[name=privacy]").select_option("unlisted")
    shot(page, "film-publish-connected")
    page.click("#publish")
    expect(page.locator("#publish-result")).to_be_visible(timeout=60_000)

    # the job's answer is what the page links to, and the fake holds the render's file with its metadata
    [video] = list(fake_youtube.videos.values())
    link = page.locator("#publish-url")
    expect(link).to_have_attribute("href", f"https://www.youtube.com/watch?v={video.id}")
    mp4 = live.api("GET", f"/v1/assets/{out['video_asset_id']}", token).json()
    assert len(video.data) == mp4["size"]
    snippet, st = video.metadata["snippet"], video.metadata["status"]
    assert snippet["title"] == "Two Rooms" and snippet["description"] == "A short film."
    assert snippet["tags"] == ["short film", "drama"] and st["privacyStatus"] == "unlisted"
    assert video.thumbnail and video.captions
