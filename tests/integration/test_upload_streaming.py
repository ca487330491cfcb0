"""Signed uploads to the local store over a real socket: bodies are streamed to disk, never held in memory, and
a body past its signed size is refused as soon as it passes it, the rest unread."""

from __future__ import annotations

import hashlib
import os
import socket
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from reelforge.container import Container
from tests.fixtures.hashing import fast_password_hashing  # noqa: F401
from tests.integration.live_server import bind_socket, live_settings, serve

pytestmark = pytest.mark.timeout(180)

MIB = 1024 * 1024
BIG = 64 * MIB


@pytest.fixture
def live(tmp_path: Path, sqlite_url: str) -> Iterator[tuple[str, Container]]:
    # Parts of 64 MiB, so that one part of a 64 MiB upload is the whole file.
    sock = bind_socket()
    c = Container(live_settings(tmp_path, sqlite_url, sock, storage={"part_size": BIG, "multipart_threshold": BIG}))
    try:
        with serve(c, sock) as url:
            yield url, c
    finally:
        c.close()


def token(base: str) -> dict[str, str]:
    email, pw = f"u{time.monotonic_ns()}@example.com", "correct horse battery"
    assert httpx.post(f"{base}/v1/auth/register", json={"email": email, "password": pw}).status_code == 202
    t = httpx.post(f"{base}/v1/auth/token", json={"email": email, "password": pw}).json()["access_token"]
    return {"Authorization": f"Bearer {t}"}


def create(base: str, headers: dict[str, str], size: int, multipart: bool) -> dict[str, Any]:
    r = httpx.post(f"{base}/v1/uploads", headers=headers,
                   json={"content_type": "application/octet-stream", "size": size, "multipart": multipart})
    assert r.status_code == 201, r.text
    return dict(r.json())


def repeated(total: int, block: bytes, digest: Any) -> Iterator[bytes]:
    """``total`` bytes of one repeated block: the sender itself holds one block."""
    left = total
    while left:
        out = block[:min(left, len(block))]
        digest.update(out)
        left -= len(out)
        yield out


@pytest.mark.parametrize("multipart", [True, False], ids=["part", "put"])
def test_a_large_upload_is_streamed_not_buffered(live: tuple[str, Container], multipart: bool) -> None:
    base, _ = live
    headers = token(base)
    up = create(base, headers, BIG, multipart)
    signed = up["parts"][0] if multipart else up["put"]
    assert (signed["size"] if multipart else BIG) == BIG
    digest = hashlib.md5() if multipart else hashlib.sha256()
    send_headers = {**signed["headers"], "Content-Length": str(BIG)}
    tracemalloc.start()
    try:
        r = httpx.put(signed["url"], content=repeated(BIG, os.urandom(MIB), digest), headers=send_headers,
                      timeout=120)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert r.status_code == 200, r.text
    assert r.headers["etag"] == f'"{digest.hexdigest()}"'
    # Client and server share this process: together they held a few MiB of a 64 MiB body.
    assert peak < 8 * MIB, f"peak {peak / MIB:.1f} MiB while uploading {BIG // MIB} MiB"
    body: dict[str, Any] = {"parts": [{"part_number": 1, "etag": r.headers["etag"]}]} if multipart else {}
    done = httpx.post(f"{base}/v1/uploads/{up['id']}/complete", headers=headers, json=body, timeout=60)
    assert done.status_code == 200, done.text
    assert done.json()["size"] == BIG


def _raw_put(url: str, head: dict[str, str]) -> socket.socket:
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout=20)
    lines = [f"PUT {parts.path}?{parts.query} HTTP/1.1", f"Host: {parts.netloc}",
             *(f"{k}: {v}" for k, v in head.items()), "", ""]
    sock.sendall("\r\n".join(lines).encode())
    return sock


def _status(sock: socket.socket) -> tuple[int, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        block = sock.recv(65536)
        if not block:
            break
        data += block
    status = int(data.split(b" ", 2)[1])
    return status, data


def test_a_part_past_its_size_is_refused_as_soon_as_it_passes(live: tuple[str, Container]) -> None:
    base, c = live
    headers = token(base)
    size = 6 * MIB
    up = create(base, headers, size, multipart=True)
    url = up["parts"][0]["url"]

    # Declared too large: refused before a byte of the body is sent.
    sock = _raw_put(url, {"Content-Length": str(5 * 1024 * MIB)})
    status, raw = _status(sock)
    sock.close()
    assert status == 413 and b"part_too_large" in raw

    # No length declared: the server answers once the body passes the part's size, though the client has
    # far more to send (and never ends the chunked body).
    sock = _raw_put(url, {"Transfer-Encoding": "chunked"})
    block = os.urandom(256 * 1024)
    chunk = f"{len(block):x}\r\n".encode() + block + b"\r\n"
    sent = 0
    while sent <= size:
        sock.sendall(chunk)
        sent += len(block)
    status, raw = _status(sock)
    sock.close()
    assert status == 413 and b"part_too_large" in raw
    assert sent < size + MIB

    multipart = c.objects.root / ".multipart"
    assert sorted(p.name for d in multipart.iterdir() for p in d.iterdir()) == ["upload.json"]


def test_job_output_file_goes_up_part_by_part(live: tuple[str, Container], tmp_path: Path) -> None:
    _, c = live
    user = c.auth.register(f"out{time.monotonic_ns()}@example.com", "correct horse battery")
    src = tmp_path / "out.bin"
    data = os.urandom(11 * MIB + 7)
    src.write_bytes(data)
    asset = c.assets.store_output_file(src, owner_id=user.id, job_id=None, content_type="application/octet-stream",
                                       multipart_threshold=5 * MIB, part_size=5 * MIB)
    assert asset.meta["multipart_parts"] == 3
    assert (asset.size, asset.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert c.objects.get_bytes(asset.key) == data
