"""The ObjectStore contract: every adapter (local disk, S3 on SeaweedFS) must pass it unchanged.

Adapter-specific checks (the local store's URL signatures and path safety, S3's own enforcement of
presigned URLs) come after the shared suite.
"""

from __future__ import annotations

import hashlib
import io
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO, cast
from urllib.parse import parse_qsl, urlsplit

import pytest

from reelforge.adapters.storage import LocalObjectStore, check_put_headers
from reelforge.adapters.storage.s3 import S3ObjectStore
from reelforge.errors import (
    BadRequest,
    ChecksumMismatch,
    Conflict,
    Forbidden,
    Gone,
    InvalidKey,
    NotFound,
    ObjectNotFound,
    PayloadTooLarge,
    StorageError,
    ValidationFailed,
)
from reelforge.ports.storage import CompletedPart, ObjectInfo, ObjectStore

from .conftest import THRESHOLD, Corrupt, MiB, Send, make_local_store

pytestmark = pytest.mark.timeout(120)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ShortReads(io.RawIOBase):
    """A stream that hands out at most ``step`` bytes per read, like a socket."""

    def __init__(self, data: bytes, step: int = 777) -> None:
        self._buf = io.BytesIO(data)
        self._step = step

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        return self._buf.read(min(self._step, size if size and size > 0 else self._step))


# -- shared contract ---------------------------------------------------------------------------


def test_is_an_object_store(store: ObjectStore) -> None:
    assert isinstance(store, ObjectStore)
    assert store.name in {"local", "s3"}
    store.ping()


def test_put_get_roundtrip(store: ObjectStore) -> None:
    data = b"hello, object store\n" * 100
    info = store.put_bytes("media/a/hello.txt", data, content_type="text/plain; charset=utf-8",
                           metadata={"owner": "u1", "source-name": "clip 1.mp4"})
    assert info == ObjectInfo(key="media/a/hello.txt", size=len(data), sha256=sha(data),
                              content_type="text/plain; charset=utf-8",
                              metadata={"owner": "u1", "source-name": "clip 1.mp4"})
    assert store.head("media/a/hello.txt") == info
    assert store.get_bytes("media/a/hello.txt") == data
    assert store.verify("media/a/hello.txt") == info


def test_default_content_type_and_overwrite(store: ObjectStore) -> None:
    store.put_bytes("k/x.bin", b"first")
    info = store.put_bytes("k/x.bin", b"second, longer")
    assert info.content_type == "application/octet-stream"
    assert store.get_bytes("k/x.bin") == b"second, longer"
    head = store.head("k/x.bin")
    assert head is not None and head.sha256 == sha(b"second, longer") and head.size == 14


@pytest.mark.parametrize(
    "data",
    [
        b"",
        bytes(range(256)) * 64,
        "héllo wörld ✓ 你好 🎬\n".encode(),
        b"\x00\xff\r\n\x1b" * 1000,
    ],
    ids=["empty", "all-bytes", "unicode", "control"],
)
def test_binary_and_unicode_content(store: ObjectStore, data: bytes) -> None:
    info = store.put_bytes("bin/blob", data)
    assert (info.size, info.sha256) == (len(data), sha(data))
    assert store.get_bytes("bin/blob") == data
    with store.open("bin/blob") as f:
        assert f.read() == data


def test_head_missing_is_none(store: ObjectStore) -> None:
    assert store.head("nope/missing.bin") is None


def test_missing_object_raises(store: ObjectStore, tmp_path: Path) -> None:
    with pytest.raises(ObjectNotFound):
        store.get_bytes("nope/missing.bin")
    with pytest.raises(ObjectNotFound):
        store.open("nope/missing.bin")
    with pytest.raises(ObjectNotFound):
        store.download_to("nope/missing.bin", tmp_path / "out.bin")
    with pytest.raises(ObjectNotFound):
        store.verify("nope/missing.bin")
    assert not (tmp_path / "out.bin").exists()


def test_delete_is_idempotent(store: ObjectStore) -> None:
    store.delete("never/existed")
    store.put_bytes("d/one", b"1")
    store.put_bytes("d/two", b"2")
    store.delete("d/one")
    store.delete("d/one")
    assert store.head("d/one") is None
    assert store.get_bytes("d/two") == b"2"
    assert list(store.list()) == ["d/two"]
    # The key is free for reuse after a delete.
    store.put_bytes("d/one", b"again")
    assert store.get_bytes("d/one") == b"again"


def test_list_by_prefix(store: ObjectStore) -> None:
    keys = ["a/1", "a/2.txt", "a/b/3", "a-b/4", "ab/5", "c/6", "a.txt"]
    for key in keys:
        store.put_bytes(key, key.encode())

    # Order is not part of the contract: AWS lists lexicographically, SeaweedFS directory by directory.
    def listed(prefix: str = "") -> list[str]:
        return sorted(store.list(prefix))

    assert listed() == sorted(keys)
    assert listed("a/") == ["a/1", "a/2.txt", "a/b/3"]
    assert listed("a") == sorted(k for k in keys if k.startswith("a"))
    assert listed("a/b") == ["a/b/3"]
    assert listed("a/b/") == ["a/b/3"]
    assert listed("zzz/") == []
    assert listed("c/6") == ["c/6"]


def test_local_lists_in_lexicographic_order(local_store: LocalObjectStore) -> None:
    keys = ["a/1", "a/2.txt", "a/b/3", "a-b/4", "ab/5", "c/6", "a.txt"]
    for key in keys:
        local_store.put_bytes(key, key.encode())
    assert list(local_store.list()) == sorted(keys)
    assert list(local_store.list("a")) == sorted(k for k in keys if k.startswith("a"))


def test_put_file_above_multipart_threshold(store: ObjectStore, tmp_path: Path) -> None:
    data = os.urandom(12 * MiB + 123)
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    info = store.put_file("big/file.bin", src, content_type="video/mp4", metadata={"kind": "test"})
    assert (info.size, info.sha256, info.content_type) == (len(data), sha(data), "video/mp4")
    assert store.head("big/file.bin") == info
    if isinstance(store, S3ObjectStore):
        # A multipart object's ETag ends in -<parts>: the threshold really sent it in parts.
        etag = store.client.head_object(Bucket=store.bucket, Key="big/file.bin")["ETag"]
        assert etag.strip('"').endswith("-3"), etag
    out = tmp_path / "out" / "copy.bin"
    assert store.download_to("big/file.bin", out) == info
    assert out.read_bytes() == data
    assert store.get_bytes("big/file.bin") == data


def test_put_file_small(store: ObjectStore, tmp_path: Path) -> None:
    src = tmp_path / "small.png"
    src.write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 100)
    info = store.put_file("img/small.png", src, content_type="image/png")
    assert info.sha256 == sha(src.read_bytes())
    assert store.get_bytes("img/small.png") == src.read_bytes()


@pytest.mark.parametrize("size", [0, 1000, THRESHOLD + 4321], ids=["empty", "small", "above-threshold"])
def test_put_stream_within_limit(store: ObjectStore, size: int) -> None:
    data = os.urandom(size)
    stream = cast(BinaryIO, ShortReads(data))
    info = store.put_stream("s/stream.bin", stream, content_type="application/x-test", max_size=size)
    assert (info.size, info.sha256) == (size, sha(data))
    assert store.get_bytes("s/stream.bin") == data


@pytest.mark.parametrize("size", [1001, THRESHOLD + 1], ids=["small", "above-threshold"])
def test_put_stream_over_max_size_leaves_nothing(store: ObjectStore, size: int, tmp_path: Path) -> None:
    with pytest.raises(PayloadTooLarge):
        store.put_stream("s/too-big.bin", io.BytesIO(b"x" * size), max_size=size - 1)
    assert store.head("s/too-big.bin") is None
    assert list(store.list()) == []
    if isinstance(store, LocalObjectStore):
        leftovers = [p for p in store.root.rglob("*") if p.is_file()]
        assert leftovers == []
    if isinstance(store, S3ObjectStore):
        assert not store.client.list_multipart_uploads(Bucket=store.bucket).get("Uploads")
    # An over-limit upload does not disturb the object already stored under the key.
    store.put_bytes("s/too-big.bin", b"old")
    with pytest.raises(PayloadTooLarge):
        store.put_stream("s/too-big.bin", io.BytesIO(b"x" * size), max_size=size - 1)
    assert store.get_bytes("s/too-big.bin") == b"old"


def test_open_streams_in_chunks(store: ObjectStore) -> None:
    data = os.urandom(3 * MiB + 17)
    store.put_bytes("o/stream", data)
    chunks = []
    with store.open("o/stream") as f:
        while chunk := f.read(64 * 1024):
            chunks.append(chunk)
    assert b"".join(chunks) == data


def test_download_to_verifies_and_is_atomic(store: ObjectStore, corrupt: Corrupt, tmp_path: Path) -> None:
    data = os.urandom(100_000)
    info = store.put_bytes("dl/file", data, content_type="image/jpeg")
    out = tmp_path / "nested" / "dir" / "file.jpg"
    assert store.download_to("dl/file", out) == info
    assert out.read_bytes() == data

    corrupt(store, "dl/file", b"Y" + data[1:])
    target = tmp_path / "second.jpg"
    with pytest.raises(ChecksumMismatch):
        store.download_to("dl/file", target)
    assert not target.exists()
    # A failed download never replaces what is already there, nor leaves temp files beside it.
    with pytest.raises(ChecksumMismatch):
        store.download_to("dl/file", out)
    assert out.read_bytes() == data
    assert sorted(p.name for p in out.parent.iterdir()) == ["file.jpg"]


@pytest.mark.parametrize("replacement", [b"tampered same length!", b"short", b""], ids=["same-size", "shorter", "empty"])
def test_corruption_is_detected(store: ObjectStore, corrupt: Corrupt, replacement: bytes) -> None:
    store.put_bytes("c/obj", b"original content, 21b")
    corrupt(store, "c/obj", replacement)
    with pytest.raises(ChecksumMismatch):
        store.get_bytes("c/obj")
    with pytest.raises(ChecksumMismatch):
        store.verify("c/obj")
    with pytest.raises(ChecksumMismatch), store.open("c/obj") as f:
        f.read()


BAD_KEYS = ["../x", "/abs", "a//b", "a/../b", ".hidden", "a/.hidden", "", "a/", "k/" * 256 + "k", "a" * 201,
            "a b", "a\\b",
            "é", "a/./b", "x\x00y"]


def _key_calls(store: ObjectStore, key: str, tmp_path: Path) -> list[Callable[[], Any]]:
    src = tmp_path / "src.bin"
    src.write_bytes(b"data")
    part = CompletedPart(1, "0" * 32)
    return [
        lambda: store.put_bytes(key, b"data"),
        lambda: store.put_file(key, src),
        lambda: store.put_stream(key, io.BytesIO(b"data")),
        lambda: store.get_bytes(key),
        lambda: store.open(key),
        lambda: store.download_to(key, tmp_path / "dl.bin"),
        lambda: store.head(key),
        lambda: store.verify(key),
        lambda: store.delete(key),
        lambda: store.presign_get(key, 60),
        lambda: store.presign_get(key, 60, filename="x.txt"),
        lambda: store.presign_put(key, "text/plain", 10, 60),
        lambda: store.create_multipart(key, "text/plain"),
        lambda: store.presign_part(key, "0" * 32, 1, 60, max_size=4),
        lambda: store.upload_part(key, "0" * 32, 1, b"data"),
        lambda: store.complete_multipart(key, "0" * 32, [part]),
        lambda: store.abort_multipart(key, "0" * 32),
    ]


@pytest.mark.parametrize("key", BAD_KEYS, ids=lambda k: repr(k)[:20])
def test_invalid_keys_are_refused_everywhere(store: ObjectStore, key: str, tmp_path: Path) -> None:
    for call in _key_calls(store, key, tmp_path):
        with pytest.raises(InvalidKey):
            call()
    assert list(store.list()) == []
    assert not (tmp_path / "dl.bin").exists()


@pytest.mark.parametrize("prefix", ["../", "/abs", "a//", ".meta/", ".multipart", "a/../"])
def test_invalid_list_prefixes(store: ObjectStore, prefix: str) -> None:
    with pytest.raises(InvalidKey):
        store.list(prefix)


def test_key_limits(store: ObjectStore) -> None:
    longest = "k/" + "/".join(["x" * 200, "y" * 200, "z" * 108])
    assert len(longest) == 512
    store.put_bytes(longest, b"ok")
    assert store.get_bytes(longest) == b"ok"
    assert list(store.list("k/")) == [longest]
    with pytest.raises(InvalidKey):
        store.put_bytes("k/" + "x" * 201, b"segment too long")


@pytest.mark.parametrize(
    ("content_type", "metadata"),
    [
        ("text/plain\r\nX-Injected: 1", None),
        ("not a type", None),
        ("text/plain", {"Upper": "x"}),
        ("text/plain", {"sha256": "x"}),
        ("text/plain", {"k": "line\nbreak"}),
        ("text/plain", {"k": "ünïcode"}),
        ("text/plain", {"k": "x" * 3000}),
    ],
)
def test_invalid_content_type_or_metadata(store: ObjectStore, content_type: str,
                                          metadata: dict[str, str] | None) -> None:
    with pytest.raises(ValidationFailed):
        store.put_bytes("m/obj", b"x", content_type=content_type, metadata=metadata)
    assert store.head("m/obj") is None


def test_presigned_put_then_verify(store: ObjectStore, send: Send) -> None:
    data = b'{"hello": "world"}' * 100
    request = store.presign_put("up/doc.json", "application/json", max_size=len(data), expires_s=300)
    assert request.method == "PUT"
    # Content-Type, and on S3 the signed storage class, tag and encryption headers (the client sends them all).
    assert request.headers["Content-Type"] == "application/json"
    assert request.expires_at == pytest.approx(time.time() + 300, abs=5)
    response = send(store, request, data)
    assert response.status_code == 200, response.text
    info = store.verify("up/doc.json")
    assert (info.size, info.sha256, info.content_type) == (len(data), sha(data), "application/json")
    # verify() recorded the sha256, so head() and later reads have it.
    head = store.head("up/doc.json")
    assert head is not None and head.sha256 == sha(data)
    assert store.get_bytes("up/doc.json") == data


def test_presigned_put_refuses_another_content_type(store: ObjectStore, send: Send) -> None:
    request = store.presign_put("up/img.png", "image/png", max_size=1000, expires_s=300)
    response = send(store, request, b"<html>", headers={"Content-Type": "text/html"})
    assert response.status_code == 403, response.text
    assert store.head("up/img.png") is None


def test_presigned_get(store: ObjectStore, send: Send) -> None:
    data = "subtitles — ünïcode\n".encode()
    store.put_bytes("down/subs.vtt", data, content_type="text/vtt")
    response = send(store, store.presign_get("down/subs.vtt", 300))
    assert response.status_code == 200
    assert response.content == data
    assert response.headers["content-type"].startswith("text/vtt")

    response = send(store, store.presign_get("down/subs.vtt", 300, filename="my film (1).vtt"))
    assert response.status_code == 200
    assert response.content == data
    disposition = response.headers["content-disposition"]
    assert disposition.startswith("attachment;") and 'filename="my film (1).vtt"' in disposition


def test_presigned_get_never_serves_active_content_inline(store: ObjectStore, send: Send) -> None:
    """HTML, SVG and other active types download as attachments whoever opens the URL; inert media stays inline."""
    for key, content_type in [("down/page.html", "text/html"), ("down/logo.svg", "image/svg+xml"),
                              ("down/blob", "application/octet-stream")]:
        store.put_bytes(key, b"<script>alert(1)</script>", content_type=content_type)
        response = send(store, store.presign_get(key, 300, content_type=content_type))
        assert response.status_code == 200, response.text
        assert response.headers["content-disposition"].startswith("attachment"), (content_type, response.headers)
    store.put_bytes("down/frame.png", b"\x89PNG\r\n\x1a\n", content_type="image/png")
    response = send(store, store.presign_get("down/frame.png", 300, content_type="image/png"))
    assert response.status_code == 200 and "content-disposition" not in response.headers
    response = send(store, store.presign_get("down/frame.png", 300, filename="f.png", content_type="image/png"))
    assert response.headers["content-disposition"].startswith('attachment; filename="f.png"')


def test_presigned_urls_expire(store: ObjectStore, send: Send) -> None:
    store.put_bytes("exp/obj", b"data")
    get = store.presign_get("exp/obj", 1)
    put = store.presign_put("exp/new", "text/plain", 10, 1)
    time.sleep(2.2)
    assert send(store, get).status_code in {403, 410}
    assert send(store, put, b"hi").status_code in {403, 410}
    assert store.head("exp/new") is None


def test_presign_refuses_bad_expiry(store: ObjectStore) -> None:
    for expires in (0, -5, 8 * 24 * 3600):
        with pytest.raises(ValueError):
            store.presign_get("x/y", expires)


def _parts(size: int) -> list[bytes]:
    data = os.urandom(size)
    return [data[i : i + 5 * MiB] for i in range(0, size, 5 * MiB)]


def test_multipart_with_presigned_parts(store: ObjectStore, send: Send) -> None:
    chunks = _parts(10 * MiB + 999)  # 5 MiB, 5 MiB, 999 B
    upload_id = store.create_multipart("mp/video.mp4", "video/mp4")
    completed: list[CompletedPart] = []
    # Parts may arrive in any order; only the list given to complete decides the order.
    for number in (3, 1):
        request = store.presign_part("mp/video.mp4", upload_id, number, 300,
                                     max_size=len(chunks[number - 1]))
        assert request.method == "PUT"
        response = send(store, request, chunks[number - 1])
        assert response.status_code == 200, response.text
        completed.append(CompletedPart(number, response.headers["etag"]))
    completed.append(store.upload_part("mp/video.mp4", upload_id, 2, chunks[1]))
    completed.sort(key=lambda p: p.part_number)
    for part, chunk in zip(completed, chunks, strict=True):
        assert part.etag.strip('"') == hashlib.md5(chunk).hexdigest()

    assert store.head("mp/video.mp4") is None  # nothing visible before completion
    assert list(store.list()) == []
    info = store.complete_multipart("mp/video.mp4", upload_id, completed)
    data = b"".join(chunks)
    assert (info.size, info.sha256, info.content_type) == (len(data), sha(data), "video/mp4")
    assert store.get_bytes("mp/video.mp4") == data
    head = store.head("mp/video.mp4")
    assert head is not None and head.sha256 == sha(data)
    assert list(store.list()) == ["mp/video.mp4"]
    if isinstance(store, LocalObjectStore):
        assert list((store.root / ".multipart").iterdir()) == []


def test_multipart_single_small_part(store: ObjectStore) -> None:
    upload_id = store.create_multipart("mp/one", "text/plain")
    part = store.upload_part("mp/one", upload_id, 1, b"just one part")
    info = store.complete_multipart("mp/one", upload_id, [part])
    assert info.sha256 == sha(b"just one part")
    assert store.get_bytes("mp/one") == b"just one part"


def test_multipart_abort_removes_parts(store: ObjectStore) -> None:
    upload_id = store.create_multipart("mp/aborted", "video/mp4")
    part = store.upload_part("mp/aborted", upload_id, 1, b"x" * 1000)
    store.abort_multipart("mp/aborted", upload_id)
    store.abort_multipart("mp/aborted", upload_id)  # idempotent
    with pytest.raises(NotFound):
        store.complete_multipart("mp/aborted", upload_id, [part])
    assert store.head("mp/aborted") is None
    assert list(store.list()) == []
    if isinstance(store, LocalObjectStore):
        assert not any((store.root / ".multipart").iterdir())
    if isinstance(store, S3ObjectStore):
        assert not store.client.list_multipart_uploads(Bucket=store.bucket).get("Uploads")


def test_multipart_refuses_bad_parts(store: ObjectStore) -> None:
    key = "mp/bad"
    upload_id = store.create_multipart(key, "application/octet-stream")
    for number in (0, 10_001, -1):
        with pytest.raises(BadRequest):
            store.upload_part(key, upload_id, number, b"x")
        with pytest.raises(BadRequest):
            store.presign_part(key, upload_id, number, 60, max_size=1)
    first = store.upload_part(key, upload_id, 1, b"a" * (5 * MiB))
    second = store.upload_part(key, upload_id, 2, b"b" * 10)
    with pytest.raises(BadRequest):
        store.complete_multipart(key, upload_id, [])
    with pytest.raises(BadRequest):
        store.complete_multipart(key, upload_id, [second, first])  # out of order
    with pytest.raises(Conflict):
        store.complete_multipart(key, upload_id, [first, CompletedPart(2, "0" * 32)])  # wrong etag
    with pytest.raises(Conflict):
        store.complete_multipart(key, upload_id, [first, CompletedPart(3, second.etag)])  # never uploaded
    assert store.head(key) is None
    # The upload survives refused completions and can still finish.
    info = store.complete_multipart(key, upload_id, [first, second])
    assert info.sha256 == sha(b"a" * (5 * MiB) + b"b" * 10)


def test_multipart_parts_but_the_last_need_5_mib(store: ObjectStore) -> None:
    upload_id = store.create_multipart("mp/small", "application/octet-stream")
    parts = [store.upload_part("mp/small", upload_id, n, b"z" * 1024) for n in (1, 2)]
    with pytest.raises(BadRequest) as exc_info:
        store.complete_multipart("mp/small", upload_id, parts)
    assert exc_info.value.code == "part_too_small"
    assert store.head("mp/small") is None


class Repeating(io.RawIOBase):
    """``total`` bytes made of one repeated block, read like a socket: the stream itself holds one block."""

    def __init__(self, total: int, block: bytes) -> None:
        self._left = total
        self._block = block
        self.md5 = hashlib.md5()
        self.sha = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        n = min(self._left, len(self._block), size if size and size > 0 else len(self._block))
        self._left -= n
        out = self._block[:n]
        self.md5.update(out)
        self.sha.update(out)
        return out


def test_upload_part_from_a_stream(store: ObjectStore) -> None:
    first, last = os.urandom(5 * MiB), os.urandom(1234)
    upload_id = store.create_multipart("mp/streamed", "application/octet-stream")
    one = store.upload_part("mp/streamed", upload_id, 1, cast(BinaryIO, ShortReads(first, step=64 * 1024)),
                            max_size=len(first))
    two = store.upload_part("mp/streamed", upload_id, 2, cast(BinaryIO, ShortReads(last)), max_size=len(last))
    assert one.etag == hashlib.md5(first).hexdigest() and two.etag == hashlib.md5(last).hexdigest()
    info = store.complete_multipart("mp/streamed", upload_id, [one, two])
    assert info.sha256 == sha(first + last)


def test_upload_part_over_its_size_keeps_nothing(store: ObjectStore) -> None:
    upload_id = store.create_multipart("mp/over", "application/octet-stream")
    for data in (b"y" * 101, cast(BinaryIO, ShortReads(b"y" * (2 * MiB + 1)))):
        with pytest.raises(PayloadTooLarge) as exc_info:
            store.upload_part("mp/over", upload_id, 1, data, max_size=100 if isinstance(data, bytes) else 2 * MiB)
        assert exc_info.value.code == "part_too_large"
    if isinstance(store, LocalObjectStore):  # the refused part was never stored
        assert [p.name for p in (store.root / ".multipart" / upload_id).iterdir()] == ["upload.json"]
    if isinstance(store, S3ObjectStore):
        listed = store.client.list_parts(Bucket=store.bucket, Key="mp/over", UploadId=upload_id)
        assert not listed.get("Parts")
    part = store.upload_part("mp/over", upload_id, 1, b"y" * 100, max_size=100)
    assert store.complete_multipart("mp/over", upload_id, [part]).sha256 == sha(b"y" * 100)


def test_presigned_part_is_bound_to_its_size(store: ObjectStore, send: Send) -> None:
    data = os.urandom(1000)
    upload_id = store.create_multipart("mp/bound", "application/octet-stream")
    request = store.presign_part("mp/bound", upload_id, 1, 300, max_size=len(data))
    refused = send(store, request, data + b"more")
    if isinstance(store, LocalObjectStore):
        assert refused.status_code == 413 and refused.json()["code"] == "part_too_large"
        assert [p.name for p in (store.root / ".multipart" / upload_id).iterdir()] == ["upload.json"]
    else:  # S3 signs Content-Length: another length is another signature
        assert refused.status_code == 403, refused.text
    answer = send(store, request, data)
    assert answer.status_code == 200, answer.text
    info = store.complete_multipart("mp/bound", upload_id, [CompletedPart(1, answer.headers["etag"])])
    assert info.sha256 == sha(data)


def test_upload_part_memory_stays_flat(store: ObjectStore) -> None:
    """A 24 MiB part streamed in costs the process a few chunks of memory, not the part."""
    import tracemalloc

    size = 24 * MiB
    upload_id = store.create_multipart("mp/big", "application/octet-stream")
    stream = Repeating(size, os.urandom(256 * 1024))
    tracemalloc.start()
    try:
        part = store.upload_part("mp/big", upload_id, 1, cast(BinaryIO, stream), max_size=size)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert part.etag == stream.md5.hexdigest()
    assert peak < 6 * MiB, f"peak {peak / MiB:.1f} MiB while storing a {size // MiB} MiB part"
    info = store.complete_multipart("mp/big", upload_id, [part])
    assert (info.size, info.sha256) == (size, stream.sha.hexdigest())


def test_put_stream_memory_stays_flat(store: ObjectStore) -> None:
    """Above the multipart threshold too: a stream is spooled to disk, never held whole."""
    import tracemalloc

    size = 4 * THRESHOLD + 123
    stream = Repeating(size, os.urandom(256 * 1024))
    tracemalloc.start()
    try:
        info = store.put_stream("s/big.bin", cast(BinaryIO, stream), max_size=size)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (info.size, info.sha256) == (size, stream.sha.hexdigest())
    assert peak < 8 * MiB, f"peak {peak / MiB:.1f} MiB while storing a {size // MiB} MiB stream"


def test_multipart_unknown_upload(store: ObjectStore) -> None:
    with pytest.raises(NotFound):
        store.upload_part("mp/x", "f" * 32, 1, b"data")
    with pytest.raises(NotFound):
        store.complete_multipart("mp/x", "f" * 32, [CompletedPart(1, "0" * 32)])
    store.abort_multipart("mp/x", "f" * 32)


def test_concurrent_puts_to_different_keys(store: ObjectStore) -> None:
    payloads = {f"conc/{i:03d}.bin": os.urandom(20_000 + i) for i in range(32)}

    def put(item: tuple[str, bytes]) -> ObjectInfo:
        return store.put_bytes(item[0], item[1])

    with ThreadPoolExecutor(max_workers=8) as pool:
        infos = list(pool.map(put, payloads.items()))
    assert [i.sha256 for i in infos] == [sha(d) for d in payloads.values()]
    assert sorted(store.list("conc/")) == sorted(payloads)
    for key, data in payloads.items():
        assert store.get_bytes(key) == data


def test_concurrent_puts_to_one_key_stay_consistent(store: ObjectStore) -> None:
    payloads = [bytes([i]) * (10_000 + i) for i in range(16)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda d: store.put_bytes("race/key", d), payloads))
    data = store.get_bytes("race/key")  # raises ChecksumMismatch if bytes and checksum came apart
    assert data in payloads
    assert store.verify("race/key").sha256 == sha(data)


def test_ping_fails_when_unreachable(store: ObjectStore, tmp_path: Path) -> None:
    broken: ObjectStore
    if isinstance(store, LocalObjectStore):
        broken = make_local_store(tmp_path / "gone")
        (tmp_path / "gone").rmdir()
        (tmp_path / "gone").write_text("a file where the root should be")
    else:
        assert isinstance(store, S3ObjectStore)
        broken = S3ObjectStore(bucket=store.bucket, endpoint_url="http://127.0.0.1:9", access_key="k",
                               secret_key="s", addressing_style="path")
    with pytest.raises(StorageError):
        broken.ping()


def test_lifecycle_class_is_recorded_on_every_write_path(store: ObjectStore, send: Send, tmp_path: Path) -> None:
    """Each way of writing keeps the object's lifecycle class, which head() reads back (S3: storage class, tag
    and metadata; local: the sidecar). The class is not part of ObjectInfo equality."""
    assert store.put_bytes("lc/bytes", b"b", lifecycle="archive").lifecycle == "archive"
    source = tmp_path / "file.bin"
    source.write_bytes(b"f" * 1000)
    assert store.put_file("lc/file", source, lifecycle="infrequent").lifecycle == "infrequent"
    assert store.put_stream("lc/stream", ShortReads(b"s" * 3000), lifecycle="temporary").lifecycle == "temporary"
    request = store.presign_put("lc/signed", "text/plain", max_size=5, expires_s=300, lifecycle="archive")
    assert send(store, request, b"hello").status_code == 200
    assert store.verify("lc/signed").lifecycle == "archive"
    upload_id = store.create_multipart("lc/parts", "text/plain", lifecycle="infrequent")
    part = store.upload_part("lc/parts", upload_id, 1, b"one part")
    assert store.complete_multipart("lc/parts", upload_id, [part]).lifecycle == "infrequent"
    store.put_bytes("lc/default", b"d")
    expected = {"lc/bytes": "archive", "lc/file": "infrequent", "lc/stream": "temporary", "lc/signed": "archive",
                "lc/parts": "infrequent", "lc/default": "hot"}
    for key, lifecycle in expected.items():
        head = store.head(key)
        assert head is not None and head.lifecycle == lifecycle, key
        assert head.metadata == {}, key  # kept apart from the user's metadata
        assert store.verify(key).lifecycle == lifecycle, key


@pytest.mark.parametrize("lifecycle", ["cold", "", "HOT"])
def test_unknown_lifecycle_is_refused(store: ObjectStore, lifecycle: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        store.put_bytes("lc/bad", b"x", lifecycle=lifecycle)
    assert caught.value.code == "invalid_lifecycle"
    with pytest.raises(ValidationFailed):
        store.presign_put("lc/bad", "text/plain", max_size=1, expires_s=60, lifecycle=lifecycle)
    with pytest.raises(ValidationFailed):
        store.create_multipart("lc/bad", "text/plain", lifecycle=lifecycle)
    assert store.head("lc/bad") is None


def test_lifecycle_is_reserved_metadata(store: ObjectStore) -> None:
    with pytest.raises(ValidationFailed):
        store.put_bytes("lc/meta", b"x", metadata={"lifecycle": "archive"})


# -- local store only --------------------------------------------------------------------------


def _query(url: str) -> tuple[str, dict[str, str]]:
    parsed = urlsplit(url)
    return parsed.path, dict(parse_qsl(parsed.query, keep_blank_values=True))


def test_local_signed_url_shape(local_store: LocalObjectStore) -> None:
    get = local_store.presign_get("a/b.png", 60, filename="b.png")
    path, params = _query(get.url)
    assert get.url.startswith("http://reelforge.test/v1/storage/objects/a/b.png?")
    assert path == "/v1/storage/objects/a/b.png"
    assert params["op"] == "get" and params["filename"] == "b.png" and len(params["sig"]) == 64
    assert int(params["exp"]) == int(get.expires_at)

    put = local_store.presign_put("a/b.png", "image/png", 1234, 60)
    _, params = _query(put.url)
    assert (params["op"], params["ct"], params["max"]) == ("put", "image/png", "1234")
    assert put.headers == {"Content-Type": "image/png"}

    upload_id = local_store.create_multipart("a/c.mp4", "video/mp4")
    part = local_store.presign_part("a/c.mp4", upload_id, 7, 60, max_size=5 * MiB)
    _, params = _query(part.url)
    assert (params["op"], params["upload_id"], params["part"], params["max"]) == ("part", upload_id, "7",
                                                                                 str(5 * MiB))


def test_local_verify_signed(local_store: LocalObjectStore) -> None:
    request = local_store.presign_put("a/b.png", "image/png", 1234, 60)
    _, params = _query(request.url)
    verified = local_store.verify_signed("PUT", "a/b.png", params)
    assert verified == {k: v for k, v in params.items() if k != "sig"}

    forbidden = [
        ("PUT", "a/c.png", params),  # another key
        ("GET", "a/b.png", params),  # another method
        ("PUT", "a/b.png", {**params, "max": "999999999"}),  # raised limit
        ("PUT", "a/b.png", {**params, "ct": "text/html"}),  # other content type
        ("PUT", "a/b.png", {**params, "exp": str(int(params["exp"]) + 3600)}),  # longer life
        ("PUT", "a/b.png", {**params, "extra": "1"}),  # added parameter
        ("PUT", "a/b.png", {k: v for k, v in params.items() if k != "sig"}),  # no signature
        ("PUT", "a/b.png", {**params, "sig": "0" * 64}),
        ("PUT", "a/b.png", {**params, "sig": "é"}),
        ("PUT", "a/b.png", {**params, "sig": params["sig"].upper()}),
    ]
    for method, key, query in forbidden:
        with pytest.raises(Forbidden) as exc_info:
            local_store.verify_signed(method, key, query)
        assert exc_info.value.code == "invalid_signature"

    other_secret = LocalObjectStore(local_store.root, "another-secret", local_store.public_url)
    with pytest.raises(Forbidden):
        other_secret.verify_signed("PUT", "a/b.png", params)

    with pytest.raises(Gone) as gone:
        local_store.verify_signed("PUT", "a/b.png", params, now=time.time() + 61)
    assert gone.value.code == "url_expired"
    # An expired URL with a bad signature says "invalid", not "expired": nothing is revealed unsigned.
    with pytest.raises(Forbidden):
        local_store.verify_signed("PUT", "a/b.png", {**params, "sig": "0" * 64}, now=time.time() + 61)


def test_local_verify_signed_get_and_head(local_store: LocalObjectStore) -> None:
    _, params = _query(local_store.presign_get("a/b.png", 60).url)
    assert local_store.verify_signed("GET", "a/b.png", params)["op"] == "get"
    assert local_store.verify_signed("head", "a/b.png", params)["op"] == "get"
    with pytest.raises(Forbidden):
        local_store.verify_signed("PUT", "a/b.png", params)
    with pytest.raises(InvalidKey):
        local_store.verify_signed("GET", "../b.png", params)


def test_local_check_put_headers(local_store: LocalObjectStore) -> None:
    _, params = _query(local_store.presign_put("a/b.txt", "text/plain; charset=utf-8", 100, 60).url)
    verified = local_store.verify_signed("PUT", "a/b.txt", params)
    check_put_headers(verified, "text/plain; charset=utf-8")
    local_store.check_put_headers(verified, "Text/Plain;charset=UTF-8", content_length=100)
    for header in (None, "", "text/html", "text/plain", "text/plain; charset=latin-1"):
        with pytest.raises(Forbidden) as exc_info:
            check_put_headers(verified, header)
        assert exc_info.value.code == "content_type_mismatch"
    with pytest.raises(PayloadTooLarge):
        check_put_headers(verified, "text/plain; charset=utf-8", content_length=101)


def test_local_presigned_put_enforces_max_size(local_store: LocalObjectStore, send: Send) -> None:
    request = local_store.presign_put("a/limited.bin", "application/octet-stream", 10, 60)
    assert send(local_store, request, b"x" * 11).status_code == 413
    assert local_store.head("a/limited.bin") is None
    assert send(local_store, request, b"x" * 10).status_code == 200


def test_local_layout_and_internals_hidden(local_store: LocalObjectStore) -> None:
    info = local_store.put_bytes("v/2026/11/clip.mp4", b"clip", content_type="video/mp4")
    assert local_store.path_for("v/2026/11/clip.mp4") == local_store.root / "v/2026/11/clip.mp4"
    assert (local_store.root / "v/2026/11/clip.mp4").read_bytes() == b"clip"
    sidecars = list((local_store.root / ".meta").rglob("*.json"))
    assert len(sidecars) == 1 and info.sha256 in sidecars[0].read_text()
    local_store.create_multipart("v/2026/11/other.mp4", "video/mp4")
    assert list(local_store.list()) == ["v/2026/11/clip.mp4"]
    local_store.delete("v/2026/11/clip.mp4")
    # Deletes prune the directories they empty, in the data tree and the sidecar tree.
    assert not (local_store.root / "v").exists()
    assert not any((local_store.root / ".meta").iterdir())


def test_local_refuses_symlink_escapes(local_store: LocalObjectStore, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    (local_store.root / "evil").symlink_to(outside)
    (local_store.root / "link.txt").symlink_to(outside / "secret.txt")
    with pytest.raises(InvalidKey):
        local_store.get_bytes("evil/secret.txt")
    with pytest.raises(InvalidKey):
        local_store.put_bytes("evil/new.txt", b"x")
    with pytest.raises(InvalidKey):
        local_store.get_bytes("link.txt")
    with pytest.raises(InvalidKey):
        local_store.head("evil/secret.txt")
    with pytest.raises(InvalidKey):
        local_store.delete("link.txt")
    assert not (outside / "new.txt").exists()
    assert (outside / "secret.txt").read_text() == "secret"
    assert list(local_store.list()) == []
    assert list(local_store.list("evil/")) == []


def test_local_key_prefix_conflicts(local_store: LocalObjectStore) -> None:
    # A file cannot also be a directory on disk; S3 allows both, the local store refuses clearly.
    local_store.put_bytes("a/b", b"file")
    with pytest.raises(Conflict):
        local_store.put_bytes("a/b/c", b"under a file")
    local_store.put_bytes("x/y/z", b"deep")
    with pytest.raises(Conflict):
        local_store.put_bytes("x/y", b"over a directory")
    assert local_store.head("x/y") is None
    assert local_store.get_bytes("a/b") == b"file"


def test_local_missing_sidecar_is_recorded_by_verify(local_store: LocalObjectStore) -> None:
    local_store.put_bytes("s/obj", b"payload", content_type="text/plain")
    for sidecar in (local_store.root / ".meta").rglob("*.json"):
        sidecar.unlink()
    head = local_store.head("s/obj")
    assert head is not None and head.sha256 == "" and head.size == 7
    assert local_store.get_bytes("s/obj") == b"payload"
    assert local_store.verify("s/obj").sha256 == sha(b"payload")
    head = local_store.head("s/obj")
    assert head is not None and head.sha256 == sha(b"payload")


def test_local_ping_and_sweep(local_store: LocalObjectStore) -> None:
    local_store.ping()
    upload_id = local_store.create_multipart("a/b", "text/plain")
    local_store.upload_part("a/b", upload_id, 1, b"part")
    (local_store.root / "a").mkdir()
    (local_store.root / "a" / ".deadbeef.tmp").write_bytes(b"crashed write")
    assert local_store.sweep(older_than_s=3600) == 0
    assert local_store.sweep(older_than_s=-1) == 2
    with pytest.raises(NotFound):
        local_store.upload_part("a/b", upload_id, 2, b"late")
    assert list(local_store.list()) == []


def test_local_upload_id_and_key_must_match(local_store: LocalObjectStore) -> None:
    upload_id = local_store.create_multipart("a/one", "text/plain")
    with pytest.raises(NotFound):
        local_store.upload_part("a/other", upload_id, 1, b"x")
    for bad in ("../../etc", "ABC", "g" * 32, ""):
        with pytest.raises(NotFound):
            local_store.upload_part("a/one", bad, 1, b"x")


def test_local_rejects_empty_secret(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        LocalObjectStore(tmp_path, "", "http://x")


def test_build_object_store_from_settings(tmp_path: Path) -> None:
    from reelforge.adapters.storage import build_object_store
    from reelforge.config import Settings

    local = build_object_store(Settings(data_dir=tmp_path, public_url="http://api.test/"))
    assert isinstance(local, LocalObjectStore)
    assert local.root == tmp_path / "objects" and local.public_url == "http://api.test"
    assert local.presign_get("a/b", 60).url.startswith("http://api.test/v1/storage/objects/a/b?")

    s3 = build_object_store(Settings(data_dir=tmp_path, storage={"backend": "s3", "s3_bucket": "media",
                                                                 "s3_endpoint_url": "http://127.0.0.1:9",
                                                                 "part_size": 8 * MiB}))
    assert isinstance(s3, S3ObjectStore)
    assert (s3.bucket, s3.part_size) == ("media", 8 * MiB)


# -- S3 only -----------------------------------------------------------------------------------


def test_s3_presigned_urls_are_s3_urls(s3_store: S3ObjectStore) -> None:
    put = s3_store.presign_put("a/b.png", "image/png", 100, 60)
    path, params = _query(put.url)
    assert path == f"/{s3_store.bucket}/a/b.png"
    assert params["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256"
    assert "content-type" in params["X-Amz-SignedHeaders"].split(";")
    get = s3_store.presign_get("a/b.png", 60, filename="b.png")
    assert "response-content-disposition" in _query(get.url)[1]


def test_s3_verify_records_sha256_of_client_upload(s3_store: S3ObjectStore) -> None:
    s3_store.put_bytes("warm/up", b"x")  # the bucket exists
    s3_store.client.put_object(Bucket=s3_store.bucket, Key="raw/obj", Body=b"uploaded by a client",
                               ContentType="text/plain", Metadata={"owner": "u9"})
    head = s3_store.head("raw/obj")
    assert head is not None and head.sha256 == "" and head.metadata == {"owner": "u9"}
    info = s3_store.verify("raw/obj")
    assert info.sha256 == sha(b"uploaded by a client")
    raw = s3_store.client.head_object(Bucket=s3_store.bucket, Key="raw/obj")
    # An object written without a lifecycle class reads as hot; the copy that records the sha256 writes it so.
    assert raw["Metadata"] == {"owner": "u9", "sha256": info.sha256, "lifecycle": "hot"}
    assert raw["ContentType"] == "text/plain"


def test_s3_missing_bucket_without_create(seaweed: Any) -> None:
    from .conftest import make_s3_store

    store = make_s3_store(seaweed, bucket="rf-never-created-bucket", create_bucket=False)
    with pytest.raises(StorageError):
        store.ping()
    with pytest.raises(StorageError):
        store.put_bytes("a/b", b"x")
