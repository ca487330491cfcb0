"""The documented error codes: docs/errors.md, `errors.CODES` + the applications' `error_codes`, and every code the
source raises are the same set; messages lose filesystem paths and raw errno values; unknown codes fall back to
documented ones."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from reelforge import errors
from reelforge.applications import discover

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "reelforge"


def registry() -> set[str]:
    return set(errors.CODES).union(*(a.error_codes for a in discover()))


def documented() -> set[str]:
    text = (ROOT / "docs" / "errors.md").read_text(encoding="utf-8")
    return set(re.findall(r"^\| `([A-Za-z_.]+)` \|", text, flags=re.MULTILINE))


def raised_in_source() -> dict[str, list[str]]:
    """Codes written in the server's source: `code="..."` arguments, error classes' `code` attributes and the
    `<what>_not_found` codes of the ownership helpers. The Python client's own codes are not server errors."""
    found: dict[str, list[str]] = {}
    literal = re.compile(r"""code="([A-Za-z_.]+)\"""")
    attribute = re.compile(r"""\bcode\b(?:, title)?[^=\n]*= *(?:\d+, *)?"([A-Za-z_.]+)\"""")
    for path in SRC.rglob("*.py"):
        if "client" in path.relative_to(SRC).parts[:1]:
            continue
        text = path.read_text(encoding="utf-8")
        for rx in (literal, attribute):
            for code in rx.findall(text):
                found.setdefault(code, []).append(str(path.relative_to(ROOT)))
        for what in re.findall(r"""owned\([^"]*?, "([A-Za-z ]+)"\)""", text):
            found.setdefault(f"{what.lower().replace(' ', '_')}_not_found", []).append(str(path.relative_to(ROOT)))
        for what in re.findall(r"""check_id\([^)]*?"([a-z]+)"\)""", text):
            found.setdefault(f"{what}_not_found", []).append(str(path.relative_to(ROOT)))
    return found


def test_docs_list_every_code_and_only_those() -> None:
    assert documented() == registry(), (sorted(registry() - documented()), sorted(documented() - registry()))


def test_every_code_in_the_source_is_documented() -> None:
    known = registry()
    undocumented = {code: where for code, where in raised_in_source().items() if code not in known}
    assert not undocumented, undocumented


@pytest.mark.parametrize(("raw", "clean"), [
    ("cannot open the video: [Errno 1094995529] Invalid data found when processing input: "
     "'/srv/reelforge/var/cache/mobs/3f2a.mp4'",
     "cannot open the video: Invalid data found when processing input: '3f2a.mp4'"),
    ("ffmpeg exited with 1: Error opening input file /tmp/pytest-7/x/pl.m3u8.", "ffmpeg exited with 1: Error opening "
                                                                                 "input file pl.m3u8."),
    ("see file:///etc/passwd", "see passwd"),
    ("C:\\Users\\ada\\clip.mp4 failed", "clip.mp4 failed"),
    ("var/cache/mobs/a.mp4 vanished", "a.mp4 vanished"),
    ("u1/uploads/2025/01/ab.mp4", "ab.mp4"),
])
def test_scrub_removes_paths_and_errno(raw: str, clean: str) -> None:
    assert errors.has_path(raw)
    assert errors.scrub(raw) == clean
    assert not errors.has_path(errors.scrub(raw))


@pytest.mark.parametrize("text", [
    "Idempotency-Key is not supported on /v1/jobs/batch; submit jobs one by one",
    "The asset is video/mp4, not an image",
    "a 16/9 picture, 1/2/3 of them",
    "fetch http://example.com/a/b/c.m3u8 later",
    "The video is 16384x16128 (264241152 pixels); the limit is 33177600 pixels",
])
def test_scrub_keeps_what_is_not_a_path(text: str) -> None:
    assert errors.scrub(text) == text and not errors.has_path(text)


def test_unknown_codes_become_documented_ones() -> None:
    known = registry()
    assert errors.public_code("video_not_found", known) == "video_not_found"
    assert errors.public_code("InvalidDataError", known) == "invalid_media"
    assert errors.public_code("RuntimeError", known) == "internal_error"
    assert errors.public_code("boom", known, status=422) == "validation_error"
    assert errors.public_code("account_suspended", known, status=403) == "forbidden"
    assert errors.public_error("x", "at /a/b/c.py", known) == ("internal_error", "at c.py")
