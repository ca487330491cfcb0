"""The media policy on real files: header limits before decoding, truncated files, playlists and concat lists
that must never make FFmpeg open another file, image bombs and active content (adapters/media/inputs.py,
domain/media.py)."""

from __future__ import annotations

import resource
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from reelforge import errors
from reelforge.adapters.media.ffmpeg import run_ffmpeg
from reelforge.adapters.media.inputs import ffmpeg_input_args, inspect_image, open_input
from reelforge.adapters.media.probe import probe
from reelforge.domain.media import MediaLimits, check_decode_memory, decode_memory
from tests.fixtures import hostile as h
from tests.fixtures import videos as v

LIMITS = MediaLimits()


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("policy")
    return {
        "clip": v.make_testsrc(d / "clip.mp4", seconds=2.0),
        "truncated": h.make_truncated_mp4(d / "cut.mp4", keep=0.3),
        "truncated90": h.make_truncated_mp4(d / "cut90.mp4", keep=0.9),
        "wide": h.make_huge_video(d / "wide.mp4", size=(4096, 64)),
    }


class _Hits(BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self) -> None:
        _Hits.hits.append(self.path)
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def http_target() -> Any:
    """A local HTTP server that records every request (nothing may ever reach it)."""
    _Hits.hits = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hits)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _Hits.hits
    server.shutdown()


def test_truncated_mp4_is_refused(media: dict[str, Path]) -> None:
    """An MP4 cut at 30 % with its index first still claims 4 s; probing finds 1.2 s and refuses it."""
    for name in ("truncated", "truncated90"):
        with pytest.raises(errors.ValidationFailed) as exc:
            probe(media[name], limits=LIMITS)
        assert exc.value.code == "media_truncated", name
        assert "cut short" in exc.value.message and not errors.has_path(exc.value.message)
    assert probe(media["clip"], limits=LIMITS).frames == 48


def test_header_limits_come_before_decoding(media: dict[str, Path]) -> None:
    tight = LIMITS.tightened(max_width=1920, max_height=1080, max_pixels=1920 * 1080)
    with pytest.raises(errors.ValidationFailed) as exc:
        probe(media["wide"], limits=tight)
    assert exc.value.code == "video_too_large" and "4096x64" in exc.value.message
    assert probe(media["wide"], limits=LIMITS).width == 4096
    with pytest.raises(errors.ValidationFailed) as exc:
        probe(media["clip"], limits=LIMITS.tightened(max_duration_s=1.0))
    assert exc.value.code == "video_too_long"
    with pytest.raises(errors.ValidationFailed) as exc:
        probe(media["clip"], limits=LIMITS.tightened(max_fps=12.0))
    assert exc.value.code == "frame_rate_too_high"
    from dataclasses import replace

    with pytest.raises(errors.ValidationFailed) as exc:
        probe(media["clip"], limits=replace(LIMITS, video_codecs=frozenset({"hevc"})))
    assert exc.value.code == "unsupported_codec"


def test_huge_video_is_refused_without_decoding_a_frame(tmp_path: Path) -> None:
    """16384x16128: refused from the header; opening it does not allocate its pictures (400 MB each)."""
    path = h.make_huge_video(tmp_path / "huge.mp4")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(errors.ValidationFailed) as exc:
        probe(path, limits=LIMITS)
    assert exc.value.code == "video_too_large" and "16384x16128" in exc.value.message
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 150, grown_mb


@pytest.mark.parametrize("name", ["list.m3u8", "list.mp4", "list.txt", "concat.ffconcat", "concat.mp4"])
def test_playlists_and_concat_lists_open_nothing(media: dict[str, Path], tmp_path: Path, http_target: Any,
                                                 name: str) -> None:
    url, hits = http_target
    targets = [str(media["clip"]), f"file://{media['clip']}", f"{url}/segment.ts"]
    path = tmp_path / name
    if "concat" in name:
        h.make_ffconcat(path, targets)
    else:
        h.make_hls_playlist(path, targets)
    with pytest.raises(errors.ValidationFailed) as exc:
        probe(path, limits=LIMITS)
    assert exc.value.code in ("unsupported_format", "not_a_video")
    assert not errors.has_path(exc.value.message)
    with pytest.raises(errors.ValidationFailed):
        open_input(path)
    # The ffmpeg command line reads inputs with the same whitelists.
    with pytest.raises(errors.ReelforgeError):
        run_ffmpeg([*ffmpeg_input_args(), "-i", str(path), "-f", "null", "-"])
    assert hits == []


def test_decode_memory_rule() -> None:
    need = decode_memory(16384, 16128, "yuv420p", threads=2, held_rgb=2)
    assert need > 2048 * 1024**2
    with pytest.raises(errors.MemoryLimitExceeded) as exc:
        check_decode_memory(need, 2048)
    assert exc.value.code == "memory_limit_exceeded" and exc.value.status == 422
    check_decode_memory(decode_memory(1920, 1080, threads=8, held_rgb=8), 2048)


def test_image_bomb_is_refused_from_its_header(tmp_path: Path) -> None:
    bomb = h.make_png_bomb(tmp_path / "bomb.png").read_bytes()
    assert len(bomb) < 2 * 1024**2
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(errors.ValidationFailed) as exc:
        inspect_image(bomb, LIMITS)
    assert exc.value.code == "image_too_large"
    # Below Pillow's own bomb threshold but over the policy: refused from the header too.
    mid = h.make_png_bomb(tmp_path / "mid.png", 9000, 9000).read_bytes()
    with pytest.raises(errors.ValidationFailed) as exc:
        inspect_image(mid, LIMITS)
    assert exc.value.code == "image_too_large" and "9000x9000" in exc.value.message
    assert (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024 < 100
    ok = v.make_png(tmp_path / "ok.png").read_bytes()
    facts = inspect_image(ok, LIMITS)
    assert (facts.format, facts.width, facts.height) == ("PNG", 64, 48)


@pytest.mark.parametrize(("maker", "code"), [
    (h.make_png_zip_polyglot, "polyglot_file"),
    (h.make_png_html_polyglot, "active_content"),
    (h.make_svg_with_script, "active_content"),
    (h.make_html, "active_content"),
])
def test_active_content_and_polyglots(tmp_path: Path, maker: Any, code: str) -> None:
    data = maker(tmp_path / "x.png").read_bytes()
    with pytest.raises(errors.ValidationFailed) as exc:
        inspect_image(data, LIMITS)
    assert exc.value.code == code


def test_metadata_urls_are_only_text(tmp_path: Path, http_target: Any) -> None:
    url, hits = http_target
    path = h.make_video_with_url_metadata(tmp_path / "tagged.mp4", f"{url}/track")
    info = probe(path, limits=LIMITS)
    assert info.metadata.get("title") == f"{url}/track"
    png = h.make_png_with_text(tmp_path / "tagged.png", "Source", f"{url}/image").read_bytes()
    assert inspect_image(png, LIMITS).width == 64
    assert hits == []
