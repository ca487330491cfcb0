"""The video-understanding console pages in a real browser: feed with mob chips and infinite scroll, video
page with scores and reasons, mobs, upload with progress, admin videos (delete) and statistics.

Videos are seeded the way the pipeline writes them (results built here, real PNG thumbnails); the upload
test sends a real generated video through the signed URL and lands on its page."""

from __future__ import annotations

import hashlib
import io
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from reelforge.domain.types import Principal, Role
from tests.e2e.conftest import Live, shot, sign_in

pytestmark = pytest.mark.e2e


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as _expect

    return _expect(locator)


def png(color: tuple[int, int, int]) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (160, 90), color).save(buf, format="PNG")
    return buf.getvalue()


def seed(live: Live, tokens: dict[str, Any], vec: np.ndarray, tag: str, color: tuple[int, int, int],
         status: str = "validated") -> str:
    c = live.container
    me = live.api("GET", "/v1/auth/me", tokens["access_token"]).json()
    p = Principal(me["id"], me["email"], Role.user)
    v, _ = c.app("mobs").uploads.submit(p, filename=f"{tag}.mp4", content_type="video/mp4", size=1000, caption=f"#{tag} clip")
    thumb = c.assets.store_output(owner_id=p.user_id, job_id=None, data=png(color), content_type="image/png",
                                  filename="thumbnail.png", category="thumbnails")
    analysis = {"ocr_text": [f"{tag.upper()} TIME"], "transcript": f"this is the {tag} challenge",
                "words": [], "hashtags": [tag], "mentions": [], "terms": [tag, "challenge"],
                "activity": {"coherence": 0.9, "contrast": 0.2}, "components": {}, "score": 0.7,
                "model": "seeded", "notes": []}
    c.app("mobs").analysis.store_results(v.id, analysis=analysis, vector=vec, model_version="e2e", participation_model="local",
                         embed_model="local", thumbnail_asset_id=thumb.id)
    score = 0.8 if status == "validated" else 0.2
    c.app("mobs").analysis.apply_validation(v.id, {"status": status, "score": score, "components": {"visual": score},
                                   "reasons": [f"visual {score:.2f}: seeded", f"score {score:.2f} vs 0.50"],
                                   "threshold": 0.5})
    c.app("mobs").grouping.assign(v.id)
    return str(v.id)


def scroll_to_end(page: Any) -> None:
    """Scroll like a reader: to the bottom, wait for the next page (or the end), again."""
    for _ in range(20):
        if page.locator("#feed-end").is_visible():
            return
        n = page.locator("#feed-grid .video-card").count()
        page.locator("#feed-sentinel").scroll_into_view_if_needed()
        page.wait_for_function(
            "(n) => document.querySelectorAll('#feed-grid .video-card').length > n"
            " || !document.querySelector('#feed-end').hidden", arg=n)
    raise AssertionError("the feed did not reach its end")


@pytest.fixture(scope="module")
def seeded(live: Live) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    ann = live.user("ann@example.com")
    centers = {"dance": rng.normal(size=256), "cooking": rng.normal(size=256)}
    colors = {"dance": (200, 60, 90), "cooking": (60, 160, 90)}
    ids: dict[str, list[str]] = {}
    for tag, c in centers.items():
        for _ in range(14):
            v = c + 0.2 * rng.normal(size=256)
            ids.setdefault(tag, []).append(seed(live, ann, (v / np.linalg.norm(v)).astype(np.float32), tag,
                                                colors[tag]))
    hidden = seed(live, ann, centers["dance"].astype(np.float32), "noise", (0, 0, 0), status="rejected")
    return {"user": ann, "ids": ids, "rejected": hidden}


def test_feed_chips_scroll_and_video_page(page: Any, live: Live, seeded: dict[str, Any]) -> None:
    viewer = live.user("viewer@example.com")
    live.container.settings.mobs.feed_page_size = 12
    sign_in(page, live, viewer, "/mobs/feed")
    cards = page.locator("#feed-grid .video-card")
    expect(cards.first).to_be_visible()
    expect(page.locator("#mob-chips .chip")).to_have_count(3)  # All + two mobs
    scroll_to_end(page)
    expect(cards).to_have_count(28)  # every validated video, over three pages
    expect(page.locator("#feed-end")).to_be_visible()
    assert not page.locator(f"a[href='/mobs/videos/{seeded['rejected']}']").count()
    shot(page, "mobs-feed")
    page.locator("#mob-chips .chip", has_text="#cooking").click()
    expect(cards.first).to_contain_text("#cooking")
    scroll_to_end(page)
    expect(cards).to_have_count(14)
    cards.first.click()
    expect(page.locator("#video-status")).to_have_text("validated")
    expect(page.locator("#video-reasons li").first).to_contain_text("visual")
    expect(page.locator("#video-ocr")).to_contain_text("COOKING TIME")
    expect(page.locator("#similar-grid .video-card")).to_have_count(8)
    shot(page, "mobs-video")


def test_mobs_page(page: Any, live: Live, seeded: dict[str, Any]) -> None:
    sign_in(page, live, live.user("viewer@example.com"), "/mobs")
    expect(page.locator("#mob-grid .mob-card")).to_have_count(2)
    expect(page.locator("#mob-grid")).to_contain_text("14 videos")
    shot(page, "mobs-list")


def test_upload_with_progress(page: Any, live: Live, tmp_path: Path) -> None:
    from tests.fixtures.mob_corpus import make_noise_video

    clip = make_noise_video(tmp_path / "clip.mp4", 0, seconds=1.0)
    sign_in(page, live, live.user("uploader@example.com"), "/mobs/upload")
    page.set_input_files("#video-file", str(clip.path))
    page.fill("#video-caption", "my first #clip")
    page.click("#video-upload-form button[type=submit]")
    page.wait_for_url("**/mobs/videos/*")
    expect(page.locator("#video-status")).to_have_text(
        __import__("re").compile("processing|validated|rejected|failed"))
    vid = page.url.rsplit("/", 1)[1]
    v = live.api("GET", f"/v1/videos/{vid}", live.user("uploader@example.com")["access_token"]).json()
    assert v["job_id"] and v["caption"] == "my first #clip"


def test_admin_videos_and_stats(page: Any, live: Live, seeded: dict[str, Any]) -> None:
    sign_in(page, live, live.admin(), "/admin/videos")
    rows = page.locator("#admin-videos tr")
    expect(rows.first).to_be_visible()
    before = rows.count()
    rows.first.locator("button", has_text="Delete").click()
    expect(rows).to_have_count(before - 1)
    shot(page, "mobs-admin-videos")
    page.goto(live.url + "/admin/video-stats")
    expect(page.locator("#video-stats")).to_contain_text("validated")
    # the worker's scheduled run at start, and quick re-clusters when new mobs appeared while the videos came in
    expect(page.locator("#recluster-rows tr").first).to_be_visible()
    runs = page.locator("#recluster-rows tr").count()
    page.click("#recluster-now")
    expect(page.locator("#recluster-rows tr")).to_have_count(runs + 1)
    expect(page.locator("#recluster-rows tr").first).to_contain_text("succeeded")
    cells = page.locator("#recluster-rows tr").first.locator("td")
    assert cells.nth(2).inner_text() in ("27", "28")  # the validated videos (the deleted one may be one)
    assert cells.nth(3).inner_text() == "2"  # k: the two seeded trends
    expect(page.locator("#usage-chart svg, #usage-chart .chart-empty")).to_be_visible()
    shot(page, "mobs-admin-stats")


def test_upload_larger_than_multipart_threshold_intact_with_progress(page: Any, live: Live, tmp_path: Path) -> None:
    """A 7 MiB video (a real clip, padded) goes up through the video routes and the console's shared upload; the
    stored bytes are the file's and the page reported the upload's progress."""
    from tests.e2e.conftest import MULTIPART_THRESHOLD
    from tests.fixtures.mob_corpus import make_noise_video

    clip = make_noise_video(tmp_path / "clip.mp4", 0, seconds=1.0)
    data = clip.path.read_bytes()
    data += bytes(7 * 1024 * 1024 - len(data))
    assert len(data) > MULTIPART_THRESHOLD
    big = tmp_path / "long.mp4"
    big.write_bytes(data)
    user = live.user("bigclip@example.com")
    states: list[str] = []
    # Exposed functions outlive the navigation to the video page that ends the upload.
    page.expose_function("recordUploadState", lambda text: states.append(text))
    sign_in(page, live, user, "/mobs/upload")
    page.evaluate("""() => {
        const state = document.querySelector('#video-upload-state');
        new MutationObserver(() => window.recordUploadState(state.textContent))
            .observe(state, {childList: true, characterData: true, subtree: true});
    }""")
    page.set_input_files("#video-file", str(big))
    page.click("#video-upload-form button[type=submit]")
    page.wait_for_url("**/mobs/videos/*")

    pcts = [int(m.group(1)) for s in states if (m := re.fullmatch(r"Uploading… (\d+)%", s))]
    assert pcts and pcts[-1] == 100 and pcts == sorted(pcts), states
    assert "Uploaded; the analysis has started." in states, states
    vid = page.url.rsplit("/", 1)[1]
    v = live.api("GET", f"/v1/videos/{vid}", user["access_token"]).json()
    assert v["job_id"] and v["playback_url"], v
    with live.client() as c:
        r = c.get(v["playback_url"])
        assert r.status_code == 200
    assert hashlib.sha256(r.content).hexdigest() == hashlib.sha256(data).hexdigest()
