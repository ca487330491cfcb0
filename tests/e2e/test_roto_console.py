"""The rotoscoping editor in a real browser, against a real server and worker: a generated clip (a textured blob
panning over a photo, exact ground truth per frame) goes up through the page, clicks make and refine the object's
mask (left click, right click, Alt+click, a dragged box for a second object), objects and prompts are deleted from
their lists, the scrubber and the keyboard move through the frames, propagation runs with live progress, the
result plays with its overlay, and the export links download the job's files. Every step is checked against
the API's own answers. Timing-tolerant: waits for states, never sleeps a fixed time."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.e2e.conftest import Live, shot, sign_in

pytestmark = pytest.mark.e2e

JOB_TIMEOUT = 120_000  # ms
FRAMES = 16
SIZE = (320, 180)


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as _expect

    return _expect(locator)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    from tests.apps.roto.roto_env import clip_named, encode_clip

    c = clip_named("pan_blob", size=SIZE, frames=FRAMES)
    return c, encode_clip(tmp_path_factory.mktemp("roto-e2e") / "blob.mp4", c, frames=FRAMES)


def workers_answer_calls(live: Live) -> None:
    from tests.apps.roto.roto_env import _live
    from tests.conftest import wait_for

    wait_for(lambda: _live(live.container), timeout=20)


def page_point(page: Any, x: float, y: float) -> tuple[float, float]:
    """Where frame pixel (x, y) is on the page (the frame is scaled to the card's width)."""
    box = page.locator("#marks").bounding_box()
    return box["x"] + (x + 0.5) * box["width"] / SIZE[0], box["y"] + (y + 0.5) * box["height"] / SIZE[1]


def session_of(live: Live, token: str, session_id: str) -> dict[str, Any]:
    r = live.api("GET", f"/v1/roto/sessions/{session_id}", token)
    assert r.status_code == 200, r.text
    return dict(r.json())


def shown_pixels(page: Any) -> np.ndarray:
    """The picture the page shows now, read back from the <img> through a canvas."""
    data = page.evaluate("""() => {
        const img = document.querySelector('#frame-img');
        const c = document.createElement('canvas');
        c.width = img.naturalWidth; c.height = img.naturalHeight;
        const ctx = c.getContext('2d');
        ctx.drawImage(img, 0, 0);
        return Array.from(ctx.getImageData(0, 0, c.width, c.height).data);
    }""")
    return np.array(data, dtype=np.uint8).reshape(SIZE[1], SIZE[0], 4)[..., :3]


def overlay_from_api(live: Live, token: str, session_id: str, frame: int) -> np.ndarray:
    r = live.api("GET", f"/v1/roto/sessions/{session_id}/frames/{frame}", token)
    assert r.status_code == 200 and r.headers["content-type"] == "image/png", r.text
    return np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB"))


def mask_from_api(live: Live, token: str, session_id: str, frame: int, object_id: int = 1) -> np.ndarray:
    from reelforge.apps.roto import masks

    r = live.api("GET", f"/v1/roto/sessions/{session_id}/frames/{frame}/masks", token)
    assert r.status_code == 200, r.text
    found = [m for m in r.json()["masks"] if m["object_id"] == object_id]
    return masks.decode(found[0]["rle"]) if found else np.zeros((SIZE[1], SIZE[0]), bool)


def wait_frame(page: Any, n: int) -> None:
    expect(page.locator("#frame-img")).to_have_attribute("data-frame", str(n))
    expect(page.locator("#frame-state")).to_have_text("ready")


# Records every value of the progress bar while the job runs, and every frame the player shows.
RECORD = """() => {
    window.__pcts = [];
    window.__frames = [];
    const bar = document.querySelector('#run-bar');
    new MutationObserver(() => window.__pcts.push(Number(bar.getAttribute('aria-valuenow'))))
        .observe(bar, {attributes: true, attributeFilter: ['aria-valuenow']});
    const img = document.querySelector('#frame-img');
    new MutationObserver(() => window.__frames.push(Number(img.dataset.frame)))
        .observe(img, {attributes: true, attributeFilter: ['data-frame']});
}"""


def test_roto_editor(page: Any, live: Live, clip: tuple[Any, Path], tmp_path: Path) -> None:
    from tests.apps.roto.roto_env import iou, truth

    synthetic, path = clip
    workers_answer_calls(live)
    user = live.user("rita@example.com")
    token = user["access_token"]
    sign_in(page, live, user, "/roto")
    expect(page.locator("nav [data-nav=roto]")).to_have_attribute("aria-current", "page")
    expect(page.locator("#session-pick")).to_contain_text("No session yet")

    # A file that is no video goes up, and the session it would open is refused next to the form.
    bad = tmp_path / "notes.mp4"
    bad.write_bytes(b"this is not a video at all\n" * 40)
    page.set_input_files("#file", str(bad))
    expect(page.locator("#open-form .form-error")).to_be_visible()
    expect(page.locator("#open-form .form-error")).to_contain_text("Not a readable media file")
    expect(page.locator("#editor")).to_be_hidden()

    # The clip: uploaded through the page, opened as a session at frame 0.
    page.set_input_files("#file", str(path))
    expect(page.locator("#editor")).to_be_visible()
    wait_frame(page, 0)
    expect(page.locator("#frame-label")).to_have_text(f"Frame 0 / {FRAMES - 1} · 0.00 s")
    expect(page.locator("#fact-size")).to_have_text("320\N{MULTIPLICATION SIGN}180")
    session_id = re.search(r"session=([0-9a-f]+)", page.url).group(1)  # type: ignore[union-attr]
    assert page.evaluate("document.querySelector('#frame-img').naturalWidth") == SIZE[0]
    expect(page.locator("#propagate")).to_be_disabled()

    # Left click inside the blob: a new object, its mask on this frame, shown at once.
    target = truth(synthetic, 0)
    ys, xs = np.nonzero(target)
    cx, cy = float(np.median(xs)), float(np.median(ys))
    if not target[int(cy), int(cx)]:
        from tests.apps.roto.synthetic import click_inside

        cx, cy = click_inside(target)  # type: ignore[misc]
    page.mouse.click(*page_point(page, cx, cy))
    expect(page.locator("#objects li")).to_have_count(1)
    expect(page.locator("#objects li").first).to_have_attribute("aria-selected", "true")
    expect(page.locator("#objects li .area").first).to_have_text(re.compile(r"^[\d,]+ px$"))
    wait_frame(page, 0)
    s = session_of(live, token, session_id)
    assert [(p["frame"], p["object_id"], p["box"]) for p in s["prompts"]] == [(0, 1, None)]
    (pt,) = s["prompts"][0]["points"]
    assert pt["label"] == 1 and abs(pt["x"] - cx) <= 1.5 and abs(pt["y"] - cy) <= 1.5
    mask = mask_from_api(live, token, session_id, 0)
    assert iou(mask, target) > 0.6
    area = int(page.locator("#objects li .area").first.inner_text().replace(",", "").split()[0])
    assert area == int(mask.sum())
    # The page shows the worker's overlay of this frame: the object tinted in its colour.
    shown = shown_pixels(page).astype(int)
    api = overlay_from_api(live, token, session_id, 0).astype(int)
    assert np.abs(shown - api).mean() < 2.0
    raw = synthetic.frame(0)[0].astype(int)
    inside = mask & target
    assert np.abs(shown[inside] - raw[inside]).mean() > 15  # tinted where the mask is
    assert np.abs(shown[~mask] - raw[~mask]).mean() < 8  # untouched elsewhere (up to the video's coding)

    # Right click and Alt+click outside it: negative points of the same object.
    bg = np.argwhere(~np.pad(target, 12)[12:-12, 12:-12] & ~target)
    (by, bx), (ay, ax) = bg[len(bg) // 3], bg[2 * len(bg) // 3]
    page.mouse.click(*page_point(page, float(bx), float(by)), button="right")
    expect(page.locator("#prompts li")).to_have_count(2)
    x, y = page_point(page, float(ax), float(ay))
    page.keyboard.down("Alt")
    page.mouse.click(x, y)
    page.keyboard.up("Alt")
    expect(page.locator("#prompts li")).to_have_count(3)
    wait_frame(page, 0)
    s = session_of(live, token, session_id)
    assert [[q["label"] for q in p["points"]] for p in s["prompts"]] == [[1], [0], [0]]
    assert {p["object_id"] for p in s["prompts"]} == {1}

    # A second object from a dragged box, then deleted from the list.
    page.click("#add-object")
    expect(page.locator("#objects li")).to_have_count(2)
    expect(page.locator("#objects li").nth(1)).to_have_attribute("aria-selected", "true")
    x0, y0 = page_point(page, 200, 20)
    x1, y1 = page_point(page, 300, 90)
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move((x0 + x1) / 2, (y0 + y1) / 2, steps=4)
    page.mouse.move(x1, y1, steps=4)
    page.mouse.up()
    expect(page.locator("#prompts li")).to_have_count(4)
    wait_frame(page, 0)
    s = session_of(live, token, session_id)
    boxed = [p for p in s["prompts"] if p["box"] is not None]
    assert len(boxed) == 1 and boxed[0]["object_id"] == 2 and boxed[0]["points"] == []
    assert np.allclose(boxed[0]["box"], [200.5, 20.5, 300.5, 90.5], atol=1.5)
    page.locator("#objects li").nth(1).locator(".delete-object").click()
    expect(page.locator("#objects li")).to_have_count(1)
    expect(page.locator("#prompts li")).to_have_count(3)
    assert [o["object_id"] for o in session_of(live, token, session_id)["objects"]] == [1]

    # The Alt+click prompt removed from the prompt list.
    page.locator("#prompts li").nth(2).locator(".delete-prompt").click()
    expect(page.locator("#prompts li")).to_have_count(2)
    assert len(session_of(live, token, session_id)["prompts"]) == 2

    # The scrubber, the buttons and the keyboard move through the frames.
    page.locator("#scrubber").fill("8")
    wait_frame(page, 8)
    expect(page.locator("#frame-label")).to_have_text(re.compile(rf"^Frame 8 / {FRAMES - 1} · "))
    expect(page.locator("#prompts-empty")).to_be_visible()
    page.click("#next")
    wait_frame(page, 9)
    page.locator("#frame-label").click()  # focus off the controls
    page.keyboard.press("ArrowLeft")
    wait_frame(page, 8)
    expect(page.locator("#objects li .area").first).to_have_text("no mask here")  # not propagated yet

    # Propagation with live progress, then the export links.
    expect(page.locator("#propagate")).to_be_enabled()
    page.check("#export-kinds input[value=greenscreen]")
    page.evaluate(RECORD)
    page.click("#propagate")
    expect(page.locator("#run-status")).to_have_text("succeeded", timeout=JOB_TIMEOUT)
    expect(page.locator("#run-bar")).to_have_attribute("aria-valuenow", "100")
    expect(page.locator("#run-message")).to_have_text(f"Done: {FRAMES} frames, 1 object(s).")
    pcts = page.evaluate("window.__pcts")
    assert pcts[-1] == 100 and pcts == sorted(pcts), pcts
    links = page.locator("#exports li")
    expect(links).to_have_count(3)
    assert sorted(links.evaluate_all("(els) => els.map((e) => e.dataset.kind)")) == ["alpha_webm", "coco", "greenscreen"]
    for i in range(3):
        href = links.nth(i).locator("a").get_attribute("href")
        assert href
        r = httpx.get(href if href.startswith("http") else live.url + href, timeout=30)
        assert r.status_code == 200 and len(r.content) > 0
    webm = links.locator("a[download$='.webm']")
    expect(webm).to_have_count(1)

    # The propagated masks are on the frames now.
    wait_frame(page, 8)
    expect(page.locator("#objects li .area").first).to_have_text(re.compile(r"^[\d,]+ px$"))
    assert iou(mask_from_api(live, token, session_id, 8), truth(synthetic, 8)) > 0.5

    # Play: every frame from here to the end, each with its overlay.
    page.evaluate("window.__frames = []")
    page.click("#play")
    expect(page.locator("#play")).to_have_text("Pause")
    expect(page.locator("#play-note")).to_have_text(re.compile(rf"^Played {FRAMES - 8} frames at [\d.]+ frames per second"),
                                                    timeout=60_000)
    expect(page.locator("#play")).to_have_text("Play")
    played = [f for i, f in enumerate(page.evaluate("window.__frames")) if i == 0 or f != page.evaluate("window.__frames")[i - 1]]
    assert played[: FRAMES - 8] == list(range(8, FRAMES)), played
    wait_frame(page, FRAMES - 1)
    shown = shown_pixels(page).astype(int)
    assert np.abs(shown - overlay_from_api(live, token, session_id, FRAMES - 1).astype(int)).mean() < 2.0

    # The session reopens from its address, with the last propagation's exports.
    page.goto(live.url + f"/roto?session={session_id}")
    wait_frame(page, 0)
    expect(page.locator("#objects li")).to_have_count(1)
    expect(page.locator("#exports li")).to_have_count(3)
    expect(page.locator("#run-status")).to_have_text("succeeded")
    expect(page.locator("#session-pick option")).to_have_count(2)  # the placeholder and this session
    expect(page.locator("#prompts li")).to_have_count(2)
    page.evaluate("window.scrollTo(0, 0)")
    shot(page, "roto")

    # And from its job ("Reuse settings" on the job page leads to /roto?reuse=<job id>).
    job_id = page.locator("#run-open").get_attribute("href").rsplit("/", 1)[1]  # type: ignore[union-attr]
    page.goto(live.url + f"/roto?reuse={job_id}")
    wait_frame(page, 0)
    assert f"session={session_id}" in page.url
    expect(page.locator("#exports li")).to_have_count(3)
