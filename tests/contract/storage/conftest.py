"""Fixtures for the ObjectStore contract suite: one ``store`` per adapter, plus per-adapter helpers.

The ``s3`` adapter runs against a real SeaweedFS server (one per test session, a fresh bucket per
test). Without the ``weed`` binary the s3 cases are skipped, except under ``CI=true`` where they fail.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

import httpx
import pytest

from reelforge.adapters.storage import LocalObjectStore
from reelforge.adapters.storage.common import object_headers
from reelforge.adapters.storage.s3 import S3ObjectStore
from reelforge.errors import ReelforgeError
from reelforge.ports.storage import ObjectStore, SignedRequest
from tests.fixtures.seaweed import SeaweedServer

MiB = 1024 * 1024
SIGNING_SECRET = "contract-test-signing-secret"
PUBLIC_URL = "http://reelforge.test"
# Small thresholds so that multipart paths run with files of a few MiB (5 MiB is S3's part minimum).
THRESHOLD = 5 * MiB
PART_SIZE = 5 * MiB

Send = Callable[..., httpx.Response]
Corrupt = Callable[[ObjectStore, str, bytes], None]


def make_local_store(root: Path) -> LocalObjectStore:
    return LocalObjectStore(root, SIGNING_SECRET, PUBLIC_URL, multipart_threshold=THRESHOLD, part_size=PART_SIZE)


def make_s3_store(server: SeaweedServer, bucket: str | None = None, **kwargs: object) -> S3ObjectStore:
    return S3ObjectStore(
        bucket=bucket or f"rf-test-{uuid.uuid4().hex[:16]}",
        endpoint_url=server.endpoint_url,
        region="us-east-1",
        access_key=server.access_key,
        secret_key=server.secret_key,
        addressing_style="path",
        multipart_threshold=THRESHOLD,
        part_size=PART_SIZE,
        **kwargs,  # type: ignore[arg-type]
    )


def empty_bucket(store: S3ObjectStore) -> None:
    """Remove every object and unfinished multipart upload from the store's bucket."""
    client = store.client
    for upload in client.list_multipart_uploads(Bucket=store.bucket).get("Uploads") or []:
        client.abort_multipart_upload(Bucket=store.bucket, Key=upload["Key"], UploadId=upload["UploadId"])
    for key in list(store.list()):
        client.delete_object(Bucket=store.bucket, Key=key)


@pytest.fixture
def local_store(tmp_path: Path) -> LocalObjectStore:
    return make_local_store(tmp_path / "objects")


@pytest.fixture(scope="session")
def _s3_session_store(seaweed: SeaweedServer) -> Iterator[S3ObjectStore]:
    store = make_s3_store(seaweed)
    store.ping()
    yield store
    try:
        empty_bucket(store)
        store.client.delete_bucket(Bucket=store.bucket)
    except Exception:
        pass  # the server and its data dir go away with the session anyway


@pytest.fixture
def s3_store(_s3_session_store: S3ObjectStore) -> Iterator[S3ObjectStore]:
    """One bucket for the session, emptied after every test.

    A fresh bucket per test costs about 0.4 s on SeaweedFS (client set-up, and the first write to a
    new bucket waits ~0.2 s); emptying a bucket takes a few milliseconds.
    """
    assert list(_s3_session_store.list()) == [], "the previous test left objects behind"
    yield _s3_session_store
    empty_bucket(_s3_session_store)


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def store(request: pytest.FixtureRequest) -> ObjectStore:
    """Every ObjectStore adapter, each empty and private to the test."""
    fixture: ObjectStore = request.getfixturevalue(f"{request.param}_store")
    return fixture


@pytest.fixture
def corrupt() -> Corrupt:
    """Overwrite an object's bytes behind the adapter's back, keeping the recorded sha256 stale."""

    def _corrupt(store: ObjectStore, key: str, data: bytes) -> None:
        if isinstance(store, LocalObjectStore):
            store.path_for(key).write_bytes(data)
        elif isinstance(store, S3ObjectStore):
            head = store.client.head_object(Bucket=store.bucket, Key=key)
            store.client.put_object(Bucket=store.bucket, Key=key, Body=data, ContentType=head["ContentType"],
                                    Metadata=head["Metadata"])
        else:  # pragma: no cover - a new adapter must say how to corrupt its objects
            raise NotImplementedError(type(store).__name__)

    return _corrupt


def _local_route(store: LocalObjectStore, method: str, url: str, body: bytes,
                 headers: dict[str, str]) -> httpx.Response:
    """What the API's storage route does with a signed URL, without the HTTP server around it."""
    parsed = urlsplit(url)
    prefix = "/v1/storage/objects/"
    assert url.startswith(PUBLIC_URL) and parsed.path.startswith(prefix), url
    key = unquote(parsed.path[len(prefix):])
    params = dict(parse_qsl(parsed.query, keep_blank_values=True))
    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        verified = store.verify_signed(method, key, params)
        op = verified["op"]
        if op == "put":
            store.check_put_headers(verified, lowered.get("content-type"), len(body))
            store.put_stream(key, io.BytesIO(body), content_type=verified["ct"], max_size=int(verified["max"]),
                             lifecycle=verified.get("lc", "hot"))
            return httpx.Response(200)
        if op == "part":
            part = store.upload_part(key, verified["upload_id"], int(verified["part"]), io.BytesIO(body),
                                     max_size=int(verified["max"]))
            return httpx.Response(200, headers={"ETag": f'"{part.etag}"'})
        info = store.head(key)
        with store.open(key) as f:
            data = f.read()
        content_type = info.content_type if info else "application/octet-stream"
        out = {"Content-Type": content_type, **object_headers(content_type, verified.get("filename"))}
        return httpx.Response(200, content=data, headers=out)
    except ReelforgeError as exc:
        return httpx.Response(exc.status, json=exc.to_dict())


@pytest.fixture
def send() -> Send:
    """Perform a SignedRequest as a client would: real HTTP for S3, the API route's logic for local."""

    def _send(store: ObjectStore, request: SignedRequest, body: bytes = b"",
              headers: dict[str, str] | None = None, method: str | None = None) -> httpx.Response:
        sent_headers = dict(request.headers if headers is None else headers)
        verb = method or request.method
        if isinstance(store, LocalObjectStore):
            return _local_route(store, verb, request.url, body, sent_headers)
        return httpx.request(verb, request.url, content=body if verb == "PUT" else None,
                             headers=sent_headers, timeout=30)

    return _send
