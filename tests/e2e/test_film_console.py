"""The film studio page in a real browser, against a real server and worker: a project is created from the list,
its script typed into the editor is saved and broken down live (scenes, speakers, estimated length), a speaker the
project does not define shows `unknown_character`, the proposed speakers become characters, a portrait goes up by
signed upload, voices are previewed (the WAV spoken by the worker plays in the page; a rate out of range shows
`voice_out_of_range`); then a two-scene film renders with per-scene progress from the job's events, the scenes
show their posters, the player has the subtitles track and the downloads, and the publish dialog tells whether
YouTube publishing is available. Every step is checked against the API's own answers. Timing-tolerant: waits
for states, never sleeps a fixed time."""

from __future__ import annotations

import io
import re
from typing import Any

import httpx
import pytest
from PIL import Image, ImageDraw

from tests.e2e.conftest import Live, shot, sign_in

pytestmark = pytest.mark.e2e

RENDER_TIMEOUT = 120_000  # ms

SCRIPT = """Title: Two Rooms

INT. KITCHEN - NIGHT

Rain taps the window.

ANNA
Are you awake?

EXT. GARDEN - DAWN

TOM
I am now.
"""
STRANGER = "\nMARK\nWho is there?\n"


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as _expect

    return _expect(locator)


def workers_answer_calls(live: Live) -> None:
    from tests.apps.roto.roto_env import _live
    from tests.conftest import wait_for

    wait_for(lambda: _live(live.container), timeout=20)


def portrait_png() -> bytes:
    img = Image.new("RGB", (96, 96), (70, 90, 140))
    d = ImageDraw.Draw(img)
    d.ellipse((24, 16, 72, 76), fill=(224, 182, 150))
    d.ellipse((36, 36, 44, 44), fill=(30, 30, 30))
    d.ellipse((52, 36, 60, 44), fill=(30, 30, 30))
    d.rectangle((40, 58, 56, 62), fill=(150, 60, 60))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def project_of(live: Live, token: str, project_id: str) -> dict[str, Any]:
    r = live.api("GET", f"/v1/projects/{project_id}", token)
    assert r.status_code == 200, r.text
    return dict(r.json())


def project_id_of(page: Any) -> str:
    m = re.search(r"[?&]project=([^&]+)", page.url)
    assert m, page.url
    return m.group(1)


def test_projects_editor_breakdown_characters_and_voice_preview(page: Any, live: Live, tmp_path: Any) -> None:
    tokens = live.user("writer@example.com")
    token = tokens["access_token"]
    workers_answer_calls(live)
    sign_in(page, live, tokens, "/film")
    expect(page.locator("nav [data-nav=film]")).to_have_attribute("aria-current", "page")
    expect(page.locator("#projects-empty")).to_be_visible()

    # create from the list: the project page opens
    page.fill("#new-title", "Two Rooms")
    page.select_option("#new-format", "fountain")
    page.click("#create")
    page.wait_for_url(re.compile(r"/film\?project="))
    pid = project_id_of(page)
    expect(page.locator("#project-title")).to_have_text("Two Rooms")
    assert project_of(live, token, pid)["script_format"] == "fountain"

    # typing saves the script and the breakdown follows
    page.fill("#script", SCRIPT)
    expect(page.locator("#save-state")).to_have_text("saved")
    expect(page.locator("#total-scenes")).to_have_text("2")
    expect(page.locator("#scenes li")).to_have_count(2)
    stored = project_of(live, token, pid)
    assert stored["script"] == SCRIPT and stored["analysis"] is not None and not stored["analysis_stale"]
    analysis = stored["analysis"]
    assert [s["heading"] for s in analysis["scenes"]] == ["INT. KITCHEN - NIGHT", "EXT. GARDEN - DAWN"]
    expect(page.locator("#total-lines")).to_have_text(str(analysis["totals"]["dialogue_lines"]))
    expect(page.locator("#scenes li").first).to_contain_text("INT. KITCHEN - NIGHT")
    expect(page.locator("#scenes li").first).to_contain_text("ANNA")  # as the cue writes it, until defined
    expect(page.locator("#proposed-names")).to_have_text("ANNA, TOM")

    # the proposed speakers become characters (saved), each with a voice of the catalogue
    page.click("#add-proposed")
    expect(page.locator("#characters li")).to_have_count(2)
    expect(page.locator("#proposed")).to_be_hidden()
    chars = project_of(live, token, pid)["characters"]
    assert [c["name"] for c in chars] == ["Anna", "Tom"]  # named as in prose; cues match without case
    expect(page.locator("#scenes li").first).to_contain_text("Anna")
    voices = {v["id"] for v in live.api("GET", "/v1/film/voices", token).json()["data"]}
    assert all(c["voice"]["id"] in voices for c in chars)

    # a speaker the project does not define: the breakdown shows the code and the name
    page.locator("#script").press("End")
    page.locator("#script").press("Control+End")
    page.keyboard.type(STRANGER)
    expect(page.locator("#analysis-error-code")).to_have_text("unknown_character")
    expect(page.locator("#analysis-error-message")).to_contain_text("MARK")
    expect(page.locator("#analysis-state")).to_have_text("error")
    shot(page, "film-breakdown-error")
    page.fill("#script", SCRIPT)
    expect(page.locator("#analysis-error")).to_be_hidden()
    expect(page.locator("#analysis-state")).to_have_text("current")

    # a portrait by signed upload: stored on the character, shown on the page
    png = tmp_path / "anna.png"
    png.write_bytes(portrait_png())
    anna = page.locator('#characters li[data-name="Anna"]')
    anna.locator("input[type=file]").set_input_files(str(png))
    expect(page.locator('#characters li[data-name="Anna"] img.portrait')).to_be_visible()
    from tests.conftest import wait_for

    portrait = wait_for(lambda: project_of(live, token, pid)["characters"][0]["portrait_asset_id"], timeout=15)
    asset = live.api("GET", f"/v1/assets/{portrait}", token).json()
    assert asset["content_type"] == "image/png" and asset["lifecycle"] == "hot"

    # a voice preview: the worker's WAV plays in the page
    anna = page.locator('#characters li[data-name="Anna"]')
    anna.locator("select[name=voice]").select_option("warm-female")
    anna.locator("input[name=pitch]").fill("2")
    anna.locator("[data-preview]").click()
    note = anna.locator("[data-note]")
    expect(note).to_have_attribute("data-state", "played")
    expect(note).to_contain_text("warm-female")
    page.wait_for_function("() => { const a = document.querySelector('#preview-audio'); "
                           "return a.src.startsWith('blob:') && a.readyState >= 1 && a.duration > 0.5; }")
    audio = page.evaluate("() => { const a = document.querySelector('#preview-audio'); "
                          "return {duration: a.duration, voice: a.dataset.voice, engine: a.dataset.engine}; }")
    assert audio["voice"] == "warm-female" and audio["engine"] in ("piper", "espeak-ng")
    assert 0.8 < audio["duration"] < 8.0, audio
    shot(page, "film-project")

    # out of range: the preview and the save both say why, with the code
    anna.locator("input[name=rate]").fill("5")
    anna.locator("[data-preview]").click()
    expect(note).to_have_attribute("data-state", "error")
    expect(note).to_contain_text("voice_out_of_range")
    page.click("#save-characters")
    expect(page.locator("#characters-form .form-error")).to_contain_text("voice_out_of_range")
    anna.locator("input[name=rate]").fill("1.1")
    page.click("#save-characters")
    expect(page.locator("#characters-form .form-error")).to_be_hidden()
    saved = wait_for(lambda: (lambda c: c if c["voice"]["rate"] == 1.1 else None)(
        project_of(live, token, pid)["characters"][0]), timeout=15)
    assert saved["voice"] == {"id": "warm-female", "rate": 1.1, "pitch": 2.0}

    # back to the list: the project is there
    page.goto(live.url + "/film")
    expect(page.locator(f'#projects li[data-project="{pid}"]')).to_contain_text("Two Rooms")
    shot(page, "film-projects")


def test_render_with_scene_progress_player_and_publish_dialog(page: Any, live: Live) -> None:
    tokens = live.user("director@example.com")
    token = tokens["access_token"]
    workers_answer_calls(live)
    r = live.api("POST", "/v1/projects", token, json={
        "title": "Two Rooms", "script": SCRIPT, "script_format": "fountain",
        "characters": [{"name": "Anna", "voice": {"id": "warm-female"}},
                       {"name": "Tom", "voice": {"id": "warm-male", "rate": 1.1}}]})
    assert r.status_code == 201, r.text
    pid = r.json()["id"]
    sign_in(page, live, tokens, f"/film?project={pid}")
    expect(page.locator("#total-scenes")).to_have_text("2")
    expect(page.locator("#characters li")).to_have_count(2)

    # Record every progress message shown (the render may be quick).
    page.evaluate("""() => {
        window.__messages = new Set();
        new MutationObserver(() => window.__messages.add(document.querySelector('#run-message').textContent))
            .observe(document.querySelector('#run-message'), {subtree: true, childList: true, characterData: true});
    }""")
    page.select_option("#height", "180")
    page.select_option("#subtitles", "soft")
    page.uncheck("#music")
    page.click("#render")
    expect(page.locator("#run-status")).to_have_text("succeeded", timeout=RENDER_TIMEOUT)
    # each scene went waiting -> running -> done, through its three steps, from the job's history events
    tiles = page.locator("#scenes li")
    expect(tiles).to_have_count(2)
    for i in (0, 1):
        expect(tiles.nth(i)).to_have_attribute("data-state", "done")
        expect(tiles.nth(i)).to_have_attribute("data-seen", "waiting running done")
        expect(tiles.nth(i).locator(".steps")).to_have_text("voices ✓  visuals ✓  sound ✓")
    messages = page.evaluate("() => [...window.__messages]")
    # the job's progress messages were shown as they came (each one the latest at the time: a quick render may
    # skip past "scene i/n: step" between two looks)
    live_messages = [m for m in messages if m not in ("Not rendered yet.", "Waiting for a worker…")]
    assert len(live_messages) >= 2 and live_messages[-1].startswith("done: "), messages
    assert all(re.match(r"^(reading the script|\d+ scene|scene [12]/2: \w+|composing|composed: |storing|done: )", m)
               for m in live_messages), messages

    project = project_of(live, token, pid)
    job = live.api("GET", f"/v1/jobs/{project['last_render_job_id']}", token).json()
    assert job["status"] == "succeeded" and job["kind"] == "film.render"
    out = job["outputs"]
    assert out["size"] == [320, 180] and len(out["scenes"]) == 2

    # the scenes show their posters, the player the film with its subtitles track
    expect(page.locator("#scenes li img[data-kind=poster]")).to_have_count(2)
    page.wait_for_function("() => [...document.querySelectorAll('#scenes img[data-kind=poster]')]"
                           ".every((i) => i.complete && i.naturalWidth > 0)")
    expect(page.locator("#player-card")).to_be_visible()
    page.wait_for_function("() => document.querySelector('#player').readyState >= 1")
    video = page.evaluate("""() => { const v = document.querySelector('#player');
        const t = v.querySelector('track');
        return {duration: v.duration, width: v.videoWidth, height: v.videoHeight, track: t && t.src,
                kind: t && t.kind, lang: t && t.srclang}; }""")
    assert abs(video["duration"] - out["duration_s"]) < 0.5, (video, out["duration_s"])
    assert (video["width"], video["height"]) == (320, 180)
    assert video["kind"] == "subtitles" and video["lang"] == "en"
    page.wait_for_function("() => { const t = document.querySelector('#player').textTracks[0]; "
                           "return t && t.cues && t.cues.length > 0; }")
    cues = page.evaluate("() => [...document.querySelector('#player').textTracks[0].cues].map((c) => c.text)")
    assert any("awake" in c for c in cues) and any("now" in c for c in cues), cues
    expect(page.locator("#player-facts")).to_contain_text("320\N{MULTIPLICATION SIGN}180")

    # the downloads are the job's files
    links = {a["label"]: a["href"] for a in page.evaluate(
        "() => [...document.querySelectorAll('#downloads a')].map((a) => ({label: a.dataset.download, href: a.href}))")}
    assert set(links) == {"MP4", "SRT", "VTT", "Thumbnail"}
    with httpx.Client(timeout=30) as http:
        mp4 = http.get(links["MP4"])
        assert mp4.status_code == 200 and mp4.content[4:8] == b"ftyp"
        assert http.get(links["VTT"]).text.startswith("WEBVTT")
        assert "-->" in http.get(links["SRT"]).text
    shot(page, "film-render")

    # a reload shows the last render again
    page.reload()
    expect(page.locator("#run-status")).to_have_text("succeeded")
    expect(page.locator("#scenes li img[data-kind=poster]")).to_have_count(2)

    # the publish dialog: what GET /v1/film/youtube says (not configured on this test server)
    yt = live.api("GET", "/v1/film/youtube", token)
    page.click("#open-publish")
    dialog = page.locator("#publish-dialog")
    expect(dialog).to_be_visible()
    if yt.status_code in (404, 503) or not yt.json().get("configured"):
        expect(dialog).to_have_attribute("data-state", "not-configured")
        expect(page.locator("#yt-state")).to_contain_text("not configured")
        expect(page.locator("#publish-form")).to_be_hidden()
        expect(page.locator("#yt-connect")).to_be_hidden()
    else:
        expect(dialog).to_have_attribute("data-state", "connected" if yt.json()["connected"] else "not-connected")
    shot(page, "film-publish")
    page.click("#close-publish")
    expect(dialog).to_be_hidden()


def test_another_users_project_is_not_found(page: Any, live: Live) -> None:
    owner = live.user("owner@example.com")["access_token"]
    r = live.api("POST", "/v1/projects", owner, json={"title": "Private"})
    assert r.status_code == 201
    tokens = live.user("other@example.com")
    sign_in(page, live, tokens, f"/film?project={r.json()['id']}")
    expect(page.locator(".toast")).to_contain_text("project_not_found")
    expect(page.locator("#list-view")).to_be_visible()
    expect(page.locator("#project-view")).to_be_hidden()


def test_a_shared_project_opens_read_only(page: Any, live: Live) -> None:
    owner = live.user("lender@example.com")["access_token"]
    r = live.api("POST", "/v1/projects", owner, json={"title": "Lent", "script": SCRIPT, "script_format": "fountain"})
    assert r.status_code == 201
    pid = r.json()["id"]
    assert live.api("POST", f"/v1/projects/{pid}/analyze", owner).status_code == 200
    assert live.api("POST", f"/v1/projects/{pid}/shares", owner, json={"email": "reader@example.com"}).status_code \
        == 201
    sign_in(page, live, live.user("reader@example.com"), "/film")
    expect(page.locator(f'#projects li[data-project="{pid}"]')).to_contain_text("viewer")
    page.click(f'#projects li[data-project="{pid}"] a')
    expect(page.locator("#role-badge")).to_be_visible()
    expect(page.locator("#total-scenes")).to_have_text("2")
    assert page.locator("#script").evaluate("(t) => t.readOnly")
    for sel in ("#render", "#open-publish", "#add-character", "#save-characters"):
        expect(page.locator(sel)).to_be_disabled()
    expect(page.locator("#save-state")).to_have_text("saved")


def test_a_failed_render_says_why(page: Any, live: Live) -> None:
    """The run panel shows how a render ended and the job's error code (the portrait went away after the project
    named it, so the visuals step cannot read it)."""
    tokens = live.user("unlucky@example.com")
    token = tokens["access_token"]
    owner = live.api("GET", "/v1/auth/me", token).json()["id"]
    portrait = live.container.assets.store_output(owner_id=owner, job_id=None, data=portrait_png(),
                                                  content_type="image/png", filename="anna.png").id
    r = live.api("POST", "/v1/projects", token, json={
        "title": "Lost face", "script": SCRIPT, "script_format": "fountain",
        "characters": [{"name": "Anna", "portrait_asset_id": portrait}, {"name": "Tom"}]})
    assert r.status_code == 201, r.text
    live.container.assets.delete_owned(owner, [portrait])
    sign_in(page, live, tokens, f"/film?project={r.json()['id']}")
    expect(page.locator("#total-scenes")).to_have_text("2")
    page.select_option("#height", "180")
    page.click("#render")
    expect(page.locator("#run-status")).to_have_text(re.compile("^(failed|dead)$"), timeout=RENDER_TIMEOUT)
    expect(page.locator("#run-message")).to_have_text(re.compile(r"^The render ended (failed|dead)\.$"))
    expect(page.locator("#run-error")).to_be_visible()
    expect(page.locator("#run-error-code")).to_have_text("asset_not_found")
