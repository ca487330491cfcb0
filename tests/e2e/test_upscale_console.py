"""The upscale page in a real browser: a generated video goes up through the page's file control, lanczos x2 runs
in chunks with live progress (per chunk, frames per second), then the before/after players play in sync and the
split slider compares a paused frame. Timing-tolerant: waits for states, never sleeps a fixed time."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Live, shot, sign_in
from tests.fixtures.videos import make_testsrc

pytestmark = pytest.mark.e2e

JOB_TIMEOUT = 60_000  # ms


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as _expect

    return _expect(locator)


# Records, while the job runs, every value of the progress bar and every state each chunk square goes through.
RECORD = """() => {
    window.__pcts = [];
    window.__chunks = {};
    window.__fps = [];
    const bar = document.querySelector('#run-bar');
    const fps = document.querySelector('#run-fps');
    new MutationObserver(() => window.__fps.push(fps.textContent))
        .observe(fps, {childList: true, characterData: true, subtree: true});
    new MutationObserver(() => window.__pcts.push(Number(bar.getAttribute('aria-valuenow'))))
        .observe(bar, {attributes: true, attributeFilter: ['aria-valuenow']});
    // Several changes may land in one batch of records: each record's old value is a state the square left.
    const box = document.querySelector('#chunks');
    new MutationObserver((records) => {
        for (const r of records) {
            const i = Array.prototype.indexOf.call(box.children, r.target);
            const seen = (window.__chunks[i] = window.__chunks[i] || []);
            if (seen[seen.length - 1] !== r.oldValue) seen.push(r.oldValue);
        }
    }).observe(box, {subtree: true, attributes: true, attributeFilter: ['data-state'], attributeOldValue: true});
}"""
# Each chunk square's states, in order: the ones it left, then the one it shows now.
CHUNK_STATES = """() => Array.from(document.querySelectorAll('#chunks > span'), (el, i) => {
    const seen = (window.__chunks[i] || []).concat([el.dataset.state]);
    return seen.filter((s, k) => k === 0 || s !== seen[k - 1]);
})"""


def video_state(page: Any, sel: str) -> dict[str, Any]:
    return dict(page.evaluate("""(sel) => {
        const v = document.querySelector(sel);
        return {src: v.currentSrc, ready: v.readyState, width: v.videoWidth, height: v.videoHeight,
                time: v.currentTime, duration: v.duration, paused: v.paused};
    }""", sel))


# True when each split-view canvas holds the frame its player shows now (drawn again here to compare).
SHOWS_CURRENT_FRAME = """() => [['#cv-before', '#before'], ['#cv-after', '#after']].every(([cs, vs]) => {
    const c = document.querySelector(cs), v = document.querySelector(vs);
    if (v.seeking || v.readyState < 2 || !c.width) return false;
    const fresh = document.createElement('canvas');
    fresh.width = c.width;
    fresh.height = c.height;
    const ctx = fresh.getContext('2d');
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(v, 0, 0, c.width, c.height);
    const a = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    const b = ctx.getImageData(0, 0, c.width, c.height).data;
    let diff = 0;
    for (let i = 0; i < a.length; i++) diff += Math.abs(a[i] - b[i]);
    return diff / a.length < 1;
})"""


def test_upscale_video_in_chunks_and_compare(page: Any, live: Live, tmp_path: Path) -> None:
    # 2 s at 60 fps (120 frames), a keyframe every 0.25 s; enough frames that the run lasts several of the page's
    # 0.25 s event polls, so the running rate shows before the final one
    clip = make_testsrc(tmp_path / "clip.mp4", seconds=2.0, size=(480, 360), fps=60, gop=15)
    user = live.user("uma@example.com")
    sign_in(page, live, user, "/upscale")
    expect(page.locator("#model option[value=lanczos]")).to_have_count(1)
    page.select_option("#model", "lanczos")
    page.select_option("#scale", "2")
    page.set_input_files("#file", str(clip))
    page.click("#advanced summary")
    page.fill("#chunk_seconds", "0.5")
    page.select_option("#preset", "veryfast")
    page.evaluate(RECORD)
    page.click("#upscale-form button[type=submit]")

    expect(page.locator("#run")).to_be_visible()
    expect(page.locator("#run-title")).to_have_text("clip.mp4 · lanczos x2")
    expect(page.locator("#run-bar")).to_have_attribute("aria-valuenow", "100", timeout=JOB_TIMEOUT)
    expect(page.locator("#run-status")).to_have_text("succeeded")
    expect(page.locator("#run-message")).to_have_text("Done: 960x720, 120 frames")
    expect(page.locator("#run-fps")).to_have_text(re.compile(r"^\d+(\.\d+)? frames per second"))
    cells = page.locator("#chunks > span")
    expect(cells).to_have_count(4)  # 2 s cut at keyframes into 0.5 s chunks
    for i in range(4):
        expect(cells.nth(i)).to_have_attribute("data-state", "done")
    # Every square showed its chunk running, then done (from the job's history events, as they came).
    assert page.evaluate(CHUNK_STATES) == [["waiting", "running", "done"]] * 4
    pcts = page.evaluate("window.__pcts")
    assert pcts[-1] == 100 and pcts == sorted(pcts) and any(0 < p < 100 for p in pcts), pcts
    # The readout followed the run (from the workers' progress messages), then gave the whole job's rate.
    readouts = page.evaluate("window.__fps")
    assert any(re.fullmatch(r"\d+(\.\d+)? frames per second", r) for r in readouts[:-1]), readouts
    assert re.fullmatch(r"\d+(\.\d+)? frames per second over the whole job", readouts[-1]), readouts

    # The comparison: two players with sources, of the source's size and twice it.
    expect(page.locator("#compare")).to_be_visible()
    page.wait_for_function("() => ['#before', '#after'].every((s) => document.querySelector(s).readyState >= 2)")
    before, after = video_state(page, "#before"), video_state(page, "#after")
    assert before["src"].startswith("blob:") and after["src"], (before, after)
    assert (before["width"], before["height"]) == (480, 360) and (after["width"], after["height"]) == (960, 720)
    assert after["duration"] == pytest.approx(2.0, abs=0.1)

    # Seeking the result (the position slider drives it) moves the source to the same time, and back.
    page.locator("#seek").fill("600")
    page.wait_for_function("""() => {
        const b = document.querySelector('#before'), a = document.querySelector('#after');
        return !a.seeking && !b.seeking && Math.abs(a.currentTime - 1.2) < 0.1 && Math.abs(b.currentTime - a.currentTime) < 0.05;
    }""")
    expect(page.locator("#time")).to_have_text("0:01 / 0:02")
    page.evaluate("document.querySelector('#before').currentTime = 0.5")
    page.wait_for_function("""() => {
        const b = document.querySelector('#before'), a = document.querySelector('#after');
        return !a.seeking && !b.seeking && Math.abs(b.currentTime - 0.5) < 0.05 && Math.abs(a.currentTime - 0.5) < 0.05;
    }""")

    # The split view shows the paused frame: both canvases hold it at the result's size, and the slider moves
    # the line and the clip of the upscaled side.
    assert video_state(page, "#after")["paused"]
    page.wait_for_function("""() => ['#cv-before', '#cv-after'].every((s) => {
        const c = document.querySelector(s);
        if (c.width !== 960 || c.height !== 720) return false;
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let lit = 0;
        for (let i = 0; i < d.length; i += 4 * 97) lit += d[i] + d[i + 1] + d[i + 2] > 60;
        return lit > 50;
    })""")
    page.wait_for_function(SHOWS_CURRENT_FRAME)
    assert page.locator("#cv-after").evaluate("(c) => c.style.clipPath") == "inset(0px 0px 0px 50%)"
    page.locator("#split").scroll_into_view_if_needed()
    box = page.locator("#split").bounding_box()
    assert box
    page.mouse.click(box["x"] + box["width"] * 0.2, box["y"] + box["height"] / 2)
    value = int(page.locator("#split").input_value())
    assert 10 <= value <= 30, value
    expect(page.locator("#cv-after")).to_have_attribute("style", re.compile(rf"clip-path: inset\(0px 0px 0px {value}%\)"))
    expect(page.locator("#divider")).to_have_attribute("style", re.compile(rf"left: {value}%"))
    page.evaluate("window.scrollTo(0, 0)")
    shot(page, "upscale")

    # Play: both run; pause stops both on the same frame, and the split view shows that frame.
    page.click("#play")
    expect(page.locator("#play")).to_have_text("Pause")
    page.wait_for_function("""() => {
        const b = document.querySelector('#before'), a = document.querySelector('#after');
        return !a.paused && !b.paused && a.currentTime > 0.8;
    }""")
    page.click("#play")
    expect(page.locator("#play")).to_have_text("Play")
    page.wait_for_function("""() => {
        const b = document.querySelector('#before'), a = document.querySelector('#after');
        return a.paused && b.paused && !a.seeking && !b.seeking && Math.abs(b.currentTime - a.currentTime) <= 0.04;
    }""")
    assert video_state(page, "#after")["time"] > 0.8
    page.wait_for_function(SHOWS_CURRENT_FRAME)


def test_upscale_image_uploaded_in_parts(page: Any, live: Live, tmp_path: Path) -> None:
    """A noise picture over the multipart threshold goes up in two parts with the upload's progress in the run's
    message; the job reads the very bytes that were chosen."""
    import numpy as np
    from PIL import Image

    from tests.e2e.conftest import MULTIPART_THRESHOLD

    picture = tmp_path / "noise.png"
    # RGBA noise hardly compresses: 6.4 MiB of PNG, and x2 stays under the output pixel cap (2800x2400).
    pixels = np.random.default_rng(7).integers(0, 256, (1200, 1400, 4), dtype=np.uint8)
    Image.fromarray(pixels).save(picture, compress_level=1)
    data = picture.read_bytes()
    assert MULTIPART_THRESHOLD < len(data) < 10 * 1024 * 1024
    user = live.user("ivy@example.com")
    sign_in(page, live, user, "/upscale")
    expect(page.locator("#model option[value=lanczos]")).to_have_count(1)
    page.select_option("#model", "lanczos")
    page.select_option("#scale", "2")
    parts: list[str] = []
    page.on("request", lambda r: parts.append(r.url) if r.method == "PUT" and "op=part" in r.url else None)
    page.evaluate("""() => {
        window.__messages = [];
        const m = document.querySelector('#run-message');
        new MutationObserver(() => window.__messages.push(m.textContent))
            .observe(m, {childList: true, characterData: true, subtree: true});
    }""")
    page.set_input_files("#file", str(picture))
    page.click("#upscale-form button[type=submit]")

    expect(page.locator("#run-status")).to_have_text("succeeded", timeout=JOB_TIMEOUT)
    expect(page.locator("#run-message")).to_have_text("Done: 2800x2400")
    assert len(parts) == 2, parts
    messages = page.evaluate("window.__messages")
    pcts = [int(m.group(1)) for s in messages if (m := re.fullmatch(r"Uploading… (\d+)%", s))]
    assert pcts[-1] == 100 and any(0 < p < 100 for p in pcts), messages
    href = page.locator("#run-open").get_attribute("href")
    assert href and href.startswith("/jobs/")
    job_id = href.rsplit("/", 1)[1]
    job = live.api("GET", f"/v1/jobs/{job_id}", user["access_token"]).json()
    asset = live.api("GET", f"/v1/assets/{job['input']['asset_id']}", user["access_token"]).json()
    assert asset["size"] == len(data) and asset["sha256"] == hashlib.sha256(data).hexdigest()
    with live.client() as c:
        stored = c.get(asset["download"]["url"]).content
    assert hashlib.sha256(stored).hexdigest() == asset["sha256"]
