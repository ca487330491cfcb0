"""Hostile uploads through every application's real upload and submit path, with a real worker.

Image bombs, videos of huge dimensions, truncated videos, polyglots (a PNG that is also a ZIP, a PNG that is also
an HTML page), HLS playlists and ffconcat lists pointing at other files and URLs, markup (SVG with a script, HTML),
and metadata holding URLs. Each one gets a 4xx with a documented code at submit or upload completion, or a job
that ends cleanly; never a 5xx. Every problem, job error and history cause is checked: documented code, no
filesystem path. Playlists and metadata never make the server open another file or fetch a URL (a local HTTP
server counts requests), and where a job decodes a hostile file the worker's memory stays under what the steps
declare. Image generation takes no media input (prompts only), so it has no upload path to attack.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from reelforge.errors import has_path
from tests.conftest import UserHandle, documented_codes, make_settings, register, wait_for
from tests.fixtures import hostile as h
from tests.fixtures.hashing import fast_password_hashing  # noqa: F401
from tests.fixtures.videos import make_png, make_testsrc

TERMINAL = ("succeeded", "failed", "cancelled", "dead")
PROBLEM = "application/problem+json"
# What a file that is not a video at all may be refused as (which one depends on what FFmpeg recognises it as).
NOT_VIDEO = {"not_a_video", "unsupported_format", "active_content"}


@pytest.fixture(scope="module")
def target() -> Iterator[tuple[str, list[str]]]:
    """A local HTTP server that records every request made to it: nothing in this suite may ever reach it."""
    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", hits
    server.shutdown()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, target: tuple[str, list[str]]) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("hostile")
    url, _ = target
    clip = make_testsrc(d / "clip.mp4", seconds=1.0, size=(96, 64), fps=12, gop=12)
    secret = d / "secret.mp4"  # a file of the server's that no playlist may make it read
    secret.write_bytes(clip.read_bytes())
    refs = [str(secret), f"file://{secret}", f"{url}/segment.ts"]
    return {
        "clip": clip,
        "bomb": h.make_png_bomb(d / "bomb.png"),
        "bomb_mid": h.make_png_bomb(d / "mid.png", 9000, 9000),
        "png_zip": h.make_png_zip_polyglot(d / "polyglot.png"),
        "png_html": h.make_png_html_polyglot(d / "page.png"),
        "svg": h.make_svg_with_script(d / "image.svg"),
        "html": h.make_html(d / "page.html"),
        "png_url": h.make_png_with_text(d / "tagged.png", "Source", f"{url}/image-source"),
        "huge": h.make_huge_video(d / "huge.mp4"),
        "truncated": h.make_truncated_mp4(d / "cut.mp4", keep=0.3),
        "m3u8": h.make_hls_playlist(d / "list.m3u8", refs),
        "m3u8_as_mp4": h.make_hls_playlist(d / "playlist.mp4", refs),
        "ffconcat": h.make_ffconcat(d / "list.ffconcat", refs),
        "video_url": h.make_video_with_url_metadata(d / "tagged.mp4", f"{url}/video-source"),
        "video_script": h.make_video_with_url_metadata(d / "scripted.mp4", "<script>alert(1)</script>"),
    }


@dataclass
class Env:
    container: Any
    client: Any
    worker: Any
    seen: list[tuple[str, int, dict[str, Any]]] = field(default_factory=list)  # (what, status, body)

    def http(self, method: str, url: str, **kw: Any) -> Any:
        parts = urlsplit(url)
        return self.client.request(method, parts.path + ("?" + parts.query if parts.query else ""), **kw)

    def record(self, what: str, r: Any) -> Any:
        body = r.json() if r.headers.get("content-type", "").startswith(("application/json", PROBLEM)) else {}
        self.seen.append((what, r.status_code, body))
        assert r.status_code < 500, (what, r.status_code, r.text)
        return r


@pytest.fixture
def env(tmp_path: Path, sqlite_url: str) -> Iterator[Env]:
    from fastapi.testclient import TestClient

    from reelforge.api.app import create_app
    from reelforge.container import Container
    from reelforge.runtime.worker import Worker

    settings = make_settings(tmp_path, sqlite_url, upscale={"chunk_seconds": 1.0},
                             rate_limit={"writes_per_window_ip": 100_000, "writes_per_window_account": 100_000,
                                         "reads_per_window_ip": 1_000_000, "reads_per_window_account": 1_000_000})
    c = Container(settings)
    w = Worker(c, concurrency=2)
    w.start()
    try:
        with TestClient(create_app(container=c)) as client:
            yield Env(c, client, w)
    finally:
        w.stop(grace_s=5)
        c.close()


def upload(env: Env, user: UserHandle, path: Path, content_type: str, filename: str | None = None) -> str:
    """The generic upload path (signed PUT, then completion): stores any bytes, returns the asset id."""
    data = path.read_bytes()
    r = env.record("upload", user.post("/v1/uploads", json={"filename": filename or path.name,
                                                            "content_type": content_type, "size": len(data)}))
    assert r.status_code == 201, r.text
    put = r.json()["put"]
    assert env.http(put["method"], put["url"], content=data, headers=put["headers"]).status_code == 200
    done = env.record("complete", user.post(f"/v1/uploads/{r.json()['id']}/complete", json={}))
    assert done.status_code == 200, done.text
    return str(done.json()["id"])


def upload_video(env: Env, user: UserHandle, path: Path, filename: str | None = None) -> tuple[str, Any]:
    """The video-analysis path: submit, PUT, complete; (video id, the completion's answer)."""
    data = path.read_bytes()
    r = env.record("video submit", user.post("/v1/videos/submit", json={
        "filename": filename or path.name, "content_type": "video/mp4", "size": len(data), "caption": "#hostile"}))
    assert r.status_code == 201, r.text
    up = r.json()["upload"]
    assert env.http("PUT", up["url"], content=data, headers=up["headers"]).status_code == 200
    vid = str(r.json()["video"]["id"])
    return vid, env.record("video complete", user.post(f"/v1/videos/{vid}/complete", json={}))


def wait_job(user: UserHandle, job_id: str, timeout: float = 180) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        job = user.get(f"/v1/jobs/{job_id}").json()
        return job if job["status"] in TERMINAL else None

    return dict(wait_for(done, timeout=timeout, interval=0.1))


def assert_refused(env: Env, r: Any, codes: set[str]) -> dict[str, Any]:
    assert 400 <= r.status_code < 500 and r.headers["content-type"].startswith(PROBLEM), r.text
    body = dict(r.json())
    assert body["code"] in codes, body
    return body


def audit(env: Env, user: UserHandle) -> None:
    """Every answer recorded, every job of the user and its history: documented codes, no paths, no 5xx."""
    known = documented_codes()
    for what, status, body in env.seen:
        assert status < 500, (what, status, body)
        if status >= 400:
            assert body.get("code") in known, (what, body)
            assert not has_path(str(body.get("detail", ""))), (what, body)
    for job in user.get("/v1/jobs?limit=100").json()["data"]:
        assert job["status"] in (*TERMINAL, "queued", "running"), job
        if job.get("error"):
            assert job["error"]["code"] in known, job
            assert not has_path(job["error"]["message"] or ""), job
        for event in user.get(f"/v1/jobs/{job['id']}/history").json()["events"]:
            text = " ".join(str(v) for v in (event.get("details") or {}).values())
            assert not has_path(text), event


class PeakMemory:
    """The process's resident memory, sampled every few milliseconds while a job runs (the worker runs in this
    process): the growth over the baseline is what decoding the hostile file cost."""

    def __init__(self) -> None:
        self.baseline = self._rss()
        self.peak = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as f:
            import os

            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(0.005)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def grown_mb(self) -> float:
        return (self.peak - self.baseline) / 1024**2


# --- upscaling: images ---------------------------------------------------------------------------------------------

IMAGE_CASES = [
    ("bomb", "image/png", {"image_too_large"}),
    ("bomb_mid", "image/png", {"image_too_large"}),
    ("png_zip", "image/png", {"polyglot_file"}),
    ("png_html", "image/png", {"active_content"}),
    ("svg", "image/svg+xml", {"active_content", "not_an_image"}),
    ("html", "image/png", {"active_content", "not_an_image"}),
]


def test_image_upscale_refuses_hostile_images(env: Env, files: dict[str, Path], target: Any) -> None:
    alice = register(env.client, "alice@example.com")
    before = alice.get("/v1/credits").json()["balance"]
    for name, content_type, codes in IMAGE_CASES:
        asset = upload(env, alice, files[name], content_type)
        r = env.record(name, alice.post("/v1/jobs", json={"kind": "image.upscale", "input": {
            "asset_id": asset, "model": "lanczos", "scale": 2}}))
        assert_refused(env, r, codes)
    assert alice.get("/v1/jobs").json()["data"] == []
    assert alice.get("/v1/credits").json()["balance"] == before
    # Metadata holding a URL is only text: the image is upscaled and nothing is fetched.
    asset = upload(env, alice, files["png_url"], "image/png")
    r = env.record("png_url", alice.post("/v1/jobs", json={"kind": "image.upscale", "input": {
        "asset_id": asset, "model": "lanczos", "scale": 2}}))
    assert r.status_code == 202, r.text
    assert wait_job(alice, r.json()["id"])["status"] == "succeeded"
    assert target[1] == []
    audit(env, alice)


# --- upscaling: videos ---------------------------------------------------------------------------------------------

VIDEO_CASES = [
    ("huge", None, {"video_too_large"}),
    ("truncated", None, {"media_truncated"}),
    ("m3u8", "list.m3u8", {"unsupported_format"}),
    ("m3u8_as_mp4", "clip.mp4", {"not_a_video", "unsupported_format"}),
    ("ffconcat", "list.ffconcat", {"unsupported_format", "not_a_video"}),
    ("png_zip", "clip.mp4", NOT_VIDEO | {"polyglot_file"}),
    ("html", "clip.mp4", NOT_VIDEO),
    ("video_script", None, {"active_content"}),
]


def test_video_upscale_refuses_hostile_videos(env: Env, files: dict[str, Path], target: Any) -> None:
    alice = register(env.client, "alice@example.com")
    before = alice.get("/v1/credits").json()["balance"]
    for name, filename, codes in VIDEO_CASES:
        asset = upload(env, alice, files[name], "video/mp4", filename)
        r = env.record(name, alice.post("/v1/jobs", json={"kind": "video.upscale", "input": {
            "asset_id": asset, "model": "lanczos", "scale": 2}}))
        assert_refused(env, r, codes)
    assert alice.get("/v1/jobs").json()["data"] == []
    assert alice.get("/v1/credits").json()["balance"] == before
    assert target[1] == []
    # URLs in the metadata are carried as text (remuxed into the output) and never fetched.
    asset = upload(env, alice, files["video_url"], "video/mp4")
    r = env.record("video_url", alice.post("/v1/jobs", json={"kind": "video.upscale", "input": {
        "asset_id": asset, "model": "lanczos", "scale": 2}}))
    assert r.status_code == 202, r.text
    with PeakMemory() as mem:
        job = wait_job(alice, r.json()["id"])
    assert job["status"] == "succeeded", job
    assert mem.grown_mb < 4096, mem.grown_mb  # the chunk step declares 4096 MB
    assert target[1] == []
    audit(env, alice)


# --- video analysis (mobs) -----------------------------------------------------------------------------------------

MOBS_CASES = [
    ("huge", None, {"video_too_large"}),
    ("truncated", None, {"media_truncated"}),
    ("m3u8", "list.m3u8", {"unsupported_format"}),
    ("m3u8_as_mp4", "clip.mp4", {"not_a_video", "unsupported_format"}),
    ("ffconcat", "list.ffconcat", {"unsupported_format", "not_a_video"}),
    ("png_zip", "clip.mp4", NOT_VIDEO | {"polyglot_file"}),
    ("png_html", "clip.mp4", NOT_VIDEO),
    ("svg", "clip.mp4", NOT_VIDEO),
    ("html", "clip.mp4", NOT_VIDEO),
    ("video_script", None, {"active_content"}),
]


def test_video_analysis_refuses_hostile_uploads_at_completion(env: Env, files: dict[str, Path], target: Any) -> None:
    alice = register(env.client, "alice@example.com")
    before = alice.get("/v1/credits").json()["balance"]
    for name, filename, codes in MOBS_CASES:
        vid, r = upload_video(env, alice, files[name], filename)
        body = assert_refused(env, r, codes)
        v = alice.get(f"/v1/videos/{vid}").json()
        assert v["status"] == "failed" and v["error"]["code"] == body["code"] and v["job_id"] is None, (name, v)
        assert v["playback_url"] is None and not has_path(v["error"]["message"]), v
    assert alice.get("/v1/jobs").json()["data"] == []
    assert alice.get("/v1/credits").json()["balance"] == before
    assert target[1] == []
    audit(env, alice)


def test_video_analysis_with_url_metadata_fetches_nothing(env: Env, files: dict[str, Path], target: Any) -> None:
    alice = register(env.client, "alice@example.com")
    vid, r = upload_video(env, alice, files["video_url"])
    assert r.status_code == 202, r.text
    job = wait_job(alice, r.json()["job_id"], timeout=300)
    v = alice.get(f"/v1/videos/{vid}").json()
    # Analysed like any video (validated or rejected), or failed cleanly where the local models cannot run here.
    assert v["status"] in ("validated", "rejected", "failed"), v
    assert job["status"] in ("succeeded", "failed"), job
    assert target[1] == []
    audit(env, alice)


def test_video_analysis_fails_cleanly_within_its_declared_memory(env: Env, files: dict[str, Path]) -> None:
    """With the size limits opened wide, a 16384x16128 video passes completion; the analysis steps then refuse to
    decode it (each picture is 400 MB) instead of growing the worker past what they declare."""
    cfg = env.container.settings
    cfg.media.max_width = cfg.media.max_height = 20000
    cfg.media.max_pixels = 20000 * 20000
    cfg.mobs.max_side, cfg.mobs.max_pixels = 20000, 20000 * 20000
    alice = register(env.client, "alice@example.com")
    vid, r = upload_video(env, alice, files["huge"])
    assert r.status_code == 202, r.text
    with PeakMemory() as mem:
        job = wait_job(alice, r.json()["job_id"])
    assert job["status"] == "failed" and job["error"]["code"] == "memory_limit_exceeded", job
    v = alice.get(f"/v1/videos/{vid}").json()
    assert v["status"] == "failed" and v["error"]["code"] == "memory_limit_exceeded", v
    # The smallest declaration among the steps that opened the file: the thumbnail's 512 MB.
    assert mem.grown_mb < 512, mem.grown_mb
    audit(env, alice)


# --- the platform's own storage --------------------------------------------------------------------------------------

def test_stored_markup_is_served_inert(env: Env, files: dict[str, Path]) -> None:
    """Generic storage keeps any bytes, but serves them so that no browser runs them on the API's origin."""
    alice = register(env.client, "alice@example.com")
    for name, content_type in (("html", "text/html"), ("svg", "image/svg+xml"), ("png_html", "image/png")):
        asset = upload(env, alice, files[name], content_type)
        url = alice.get(f"/v1/assets/{asset}").json()["download"]["url"]
        r = env.http("GET", url)
        assert r.status_code == 200
        assert r.headers["x-content-type-options"] == "nosniff"
        assert "sandbox" in r.headers["content-security-policy"]
        assert r.headers["content-disposition"].startswith("attachment")
    audit(env, alice)


def test_png_fixture_is_real(tmp_path: Path) -> None:
    """The generators make real media: the clean files decode (so every refusal above is for the hostility)."""
    from PIL import Image

    png = make_png(tmp_path / "ok.png")
    assert Image.open(png).size == (64, 48)
