"""Storage class, lifecycle tag and server-side encryption on every S3 write, checked on a server that records
them as AWS does (moto's ThreadedMotoServer over HTTP): PutObject, the transfer manager's single and multipart
uploads, streams, presigned PUTs sent by plain httpx with the ticket's headers, multipart uploads with presigned
parts, and the copy that records a sha256."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from reelforge.adapters.storage.s3 import S3ObjectStore
from reelforge.domain.cloud import LIFECYCLE_TAG, STORAGE_CLASS
from reelforge.ports.storage import CompletedPart
from tests.fixtures.moto_server import ACCESS_KEY, REGION, SECRET_KEY, MotoServer, moto_server  # noqa: F401

MiB = 1024 * 1024
pytestmark = pytest.mark.timeout(120)


def make_store(moto: MotoServer, **kwargs: Any) -> S3ObjectStore:
    return S3ObjectStore(bucket=f"rf-{uuid.uuid4().hex[:12]}", endpoint_url=moto.endpoint_url, region=REGION,
                         access_key=ACCESS_KEY, secret_key=SECRET_KEY, addressing_style="path",
                         multipart_threshold=5 * MiB, part_size=5 * MiB, **kwargs)


@pytest.fixture(scope="module")
def kms_key(moto_server: MotoServer) -> str:  # noqa: F811
    return str(moto_server.client("kms").create_key(Description="reelforge objects")["KeyMetadata"]["Arn"])


@pytest.fixture
def kms_store(moto_server: MotoServer, kms_key: str) -> Iterator[S3ObjectStore]:  # noqa: F811
    yield make_store(moto_server, sse="aws:kms", kms_key_id=kms_key)


def written(store: S3ObjectStore, key: str) -> tuple[str, str | None, str | None, dict[str, str]]:
    """What the server recorded: storage class, encryption, KMS key and tags."""
    head = store.client.head_object(Bucket=store.bucket, Key=key)
    tags = store.client.get_object_tagging(Bucket=store.bucket, Key=key)["TagSet"]
    return (head.get("StorageClass", "STANDARD"), head.get("ServerSideEncryption"), head.get("SSEKMSKeyId"),
            {t["Key"]: t["Value"] for t in tags})


def expect(lifecycle: str, sse: str | None, key_id: str | None) -> tuple[str, str | None, str | None,
                                                                        dict[str, str]]:
    return STORAGE_CLASS[lifecycle], sse, key_id, {LIFECYCLE_TAG: lifecycle}


def test_every_put_path_writes_class_tag_and_kms(kms_store: S3ObjectStore, kms_key: str, tmp_path: Path) -> None:
    store = kms_store
    store.put_bytes("w/bytes", b"bytes", lifecycle="archive")
    small = tmp_path / "small.bin"
    small.write_bytes(b"s" * 1000)
    store.put_file("w/file", small, lifecycle="infrequent")
    big = tmp_path / "big.bin"
    big.write_bytes(b"b" * (6 * MiB))  # above the threshold: the transfer manager's multipart upload
    store.put_file("w/big", big, lifecycle="archive")
    with open(small, "rb") as f:
        store.put_stream("w/stream", f, lifecycle="temporary")
    store.put_bytes("w/default", b"d")
    for key, lifecycle in (("w/bytes", "archive"), ("w/file", "infrequent"), ("w/big", "archive"),
                           ("w/stream", "temporary"), ("w/default", "hot")):
        assert written(store, key) == expect(lifecycle, "aws:kms", kms_key), key
        assert store.head(key).lifecycle == lifecycle  # type: ignore[union-attr]
    assert store.get_bytes("w/big") == big.read_bytes()


def test_presigned_put_sends_the_signed_headers(kms_store: S3ObjectStore, kms_key: str) -> None:
    store = kms_store
    data = b"uploaded by a client " * 100
    ticket = store.presign_put("w/signed", "application/octet-stream", len(data), 300, lifecycle="infrequent")
    assert ticket.headers == {
        "Content-Type": "application/octet-stream", "x-amz-storage-class": "STANDARD_IA",
        "x-amz-tagging": f"{LIFECYCLE_TAG}=infrequent", "x-amz-server-side-encryption": "aws:kms",
        "x-amz-server-side-encryption-aws-kms-key-id": kms_key, "x-amz-meta-lifecycle": "infrequent"}
    signed = ticket.url.split("X-Amz-SignedHeaders=", 1)[1].split("&", 1)[0].replace("%3B", ";").split(";")
    assert {h.lower() for h in ticket.headers} <= set(signed)  # every header is part of the signature
    r = httpx.put(ticket.url, content=data, headers=ticket.headers, timeout=30)
    assert r.status_code == 200, r.text
    assert written(store, "w/signed") == expect("infrequent", "aws:kms", kms_key)
    # Recording the sha256 copies the object onto itself: the class, tag and key must survive the copy.
    info = store.verify("w/signed")
    assert info.sha256 == hashlib.sha256(data).hexdigest() and info.lifecycle == "infrequent"
    assert written(store, "w/signed") == expect("infrequent", "aws:kms", kms_key)


def test_multipart_with_presigned_parts(kms_store: S3ObjectStore, kms_key: str) -> None:
    store = kms_store
    chunks = [b"a" * (5 * MiB), b"tail"]
    upload_id = store.create_multipart("w/parts", "video/mp4", lifecycle="archive")
    parts = []
    for number, chunk in enumerate(chunks, start=1):
        ticket = store.presign_part("w/parts", upload_id, number, 300, max_size=len(chunk))
        r = httpx.put(ticket.url, content=chunk, headers=ticket.headers, timeout=30)
        assert r.status_code == 200, r.text
        parts.append(CompletedPart(number, r.headers["etag"]))
    info = store.complete_multipart("w/parts", upload_id, parts)
    assert info.lifecycle == "archive" and info.sha256 == hashlib.sha256(b"".join(chunks)).hexdigest()
    assert written(store, "w/parts") == expect("archive", "aws:kms", kms_key)


def test_sse_s3_and_classes_off(moto_server: MotoServer) -> None:  # noqa: F811
    aes = make_store(moto_server, sse="AES256")
    aes.put_bytes("w/aes", b"x", lifecycle="archive")
    assert written(aes, "w/aes") == expect("archive", "AES256", None)
    plain = make_store(moto_server, storage_classes=False)
    plain.put_bytes("w/plain", b"x", lifecycle="archive")
    ticket = plain.presign_put("w/plain-signed", "text/plain", 1, 60, lifecycle="archive")
    assert "x-amz-storage-class" not in ticket.headers and "x-amz-server-side-encryption" not in ticket.headers
    assert httpx.put(ticket.url, content=b"y", headers=ticket.headers, timeout=30).status_code == 200
    for key in ("w/plain", "w/plain-signed"):
        # No class asked for (the bucket's default), no encryption asked for; the tag is written either way.
        assert written(plain, key) == ("STANDARD", None, None, {LIFECYCLE_TAG: "archive"})


def test_settings_reach_the_adapter(tmp_path: Path) -> None:
    from reelforge.adapters.storage import build_object_store
    from reelforge.config import Settings

    base = {"data_dir": tmp_path, "auth": {"jwt_secret": "x" * 40}}
    store = build_object_store(Settings(**base, storage={"backend": "s3", "s3_sse": "aws:kms",
                                                         "s3_kms_key_id": "alias/rf", "s3_storage_classes": False}))
    assert isinstance(store, S3ObjectStore)
    assert store.write_args("temporary") == {"Tagging": f"{LIFECYCLE_TAG}=temporary",
                                             "ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "alias/rf"}
    defaults = build_object_store(Settings(**base, storage={"backend": "s3"}))
    assert defaults.write_args("archive") == {"Tagging": f"{LIFECYCLE_TAG}=archive",  # type: ignore[attr-defined]
                                              "StorageClass": "GLACIER_IR"}
    with pytest.raises(ValueError, match="s3_kms_key_id"):
        Settings(**base, storage={"backend": "s3", "s3_sse": "AES256", "s3_kms_key_id": "alias/rf"})
