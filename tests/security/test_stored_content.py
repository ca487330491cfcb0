"""Stored objects never run as a page of the API's origin, which is also the console's (where the tokens live).

A user may upload any content type; the signed download URL serves HTML, SVG, XML, JavaScript, PDF and every
other active type as an attachment, and every object with a sandboxing Content-Security-Policy and `nosniff`.
Inert media (PNG, JPEG, MP4, plain text, ...) may still show inline, so that the console can display them.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from tests.conftest import UserHandle
from tests.fixtures.hashing import fast_password_hashing  # noqa: F401

HTML = b"<!doctype html><script>fetch('/v1/auth/me')</script>"
SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(document.domain)</script></svg>'
PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082")


def stored(client: Any, user: UserHandle, data: bytes, content_type: str, filename: str | None = None) -> Any:
    """Upload through a signed URL (no filename unless given), then GET the asset's signed download URL."""
    body: dict[str, Any] = {"content_type": content_type, "size": len(data)}
    if filename:
        body["filename"] = filename
    up = user.post("/v1/uploads", json=body)
    assert up.status_code == 201, up.text
    put = up.json()["put"]
    assert client.put(put["url"].removeprefix("http://testserver"), content=data, headers=put["headers"]).status_code == 200
    done = user.post(f"/v1/uploads/{up.json()['id']}/complete", json={"sha256": hashlib.sha256(data).hexdigest()})
    assert done.status_code == 200, done.text
    r = client.get(done.json()["download"]["url"].removeprefix("http://testserver"))
    assert r.status_code == 200 and r.content == data
    return r


def assert_sandboxed(r: Any) -> None:
    assert r.headers["x-content-type-options"] == "nosniff"
    csp = [d.strip() for d in r.headers["content-security-policy"].split(";")]
    assert "sandbox" in csp and "default-src 'none'" in csp


@pytest.mark.parametrize(("data", "content_type"), [
    (HTML, "text/html"), (SVG, "image/svg+xml"), (SVG, "application/xml"),
    (HTML, "application/xhtml+xml"), (b"alert(1)", "text/javascript"), (b"%PDF-1.4", "application/pdf"),
    (HTML, "application/octet-stream"), (HTML, "TEXT/HTML"),
])
def test_active_content_is_an_attachment(client: Any, alice: UserHandle, data: bytes, content_type: str) -> None:
    r = stored(client, alice, data, content_type)
    assert r.headers["content-disposition"].startswith("attachment"), r.headers
    assert_sandboxed(r)


def test_active_content_with_a_filename_is_a_named_attachment(client: Any, alice: UserHandle) -> None:
    r = stored(client, alice, SVG, "image/svg+xml", filename="logo.svg")
    assert r.headers["content-disposition"].startswith('attachment; filename="logo.svg"')
    assert_sandboxed(r)


def test_an_inert_image_stays_inline(client: Any, alice: UserHandle) -> None:
    r = stored(client, alice, PNG, "image/png")
    assert r.headers["content-type"] == "image/png"
    assert not r.headers.get("content-disposition", "inline").startswith("attachment")
    assert_sandboxed(r)


def test_plain_text_stays_inline_but_never_sniffed(client: Any, alice: UserHandle) -> None:
    r = stored(client, alice, HTML, "text/plain")
    assert not r.headers.get("content-disposition", "inline").startswith("attachment")
    assert_sandboxed(r)


def test_a_named_inert_file_still_downloads_under_its_name(client: Any, alice: UserHandle) -> None:
    r = stored(client, alice, PNG, "image/png", filename="frame.png")
    assert r.headers["content-disposition"].startswith('attachment; filename="frame.png"')
    assert_sandboxed(r)

