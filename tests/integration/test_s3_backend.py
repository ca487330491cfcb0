"""The whole platform on a real S3 API (SeaweedFS): signed uploads straight to S3, jobs, downloads."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import make_settings, register, wait_for


@pytest.fixture
def s3_client(tmp_path: Path, db_url: str, seaweed: Any) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from reelforge.api.app import create_app
    from reelforge.container import Container
    from reelforge.runtime.worker import Worker

    settings = make_settings(tmp_path, db_url, storage={
        "backend": "s3", "s3_bucket": f"rf-{uuid.uuid4().hex[:12]}", "s3_endpoint_url": seaweed.endpoint_url,
        "s3_access_key": seaweed.access_key, "s3_secret_key": seaweed.secret_key, "s3_addressing_style": "path",
        "multipart_threshold": 6 * 1024 * 1024, "part_size": 5 * 1024 * 1024})
    c = Container(settings)
    worker = Worker(c, concurrency=1)
    worker.start()
    with TestClient(create_app(container=c)) as client:
        yield client
    worker.stop(grace_s=5)
    c.close()


def test_presigned_upload_to_s3_then_download(s3_client: Any) -> None:
    user = register(s3_client, "s3user@example.com")
    data = b"frame data " * 5000
    digest = hashlib.sha256(data).hexdigest()
    up = user.post("/v1/uploads", json={"filename": "clip.bin", "content_type": "application/octet-stream",
                                        "size": len(data), "sha256": digest}).json()
    put = up["put"]
    assert put["url"].startswith("http://127.0.0.1:")  # a real presigned S3 URL, not the API
    r = httpx.put(put["url"], content=data, headers=put["headers"])
    assert r.status_code == 200, r.text
    asset = user.post(f"/v1/uploads/{up['id']}/complete", json={}).json()
    assert asset["sha256"] == digest and asset["size"] == len(data)
    got = httpx.get(asset["download"]["url"])
    assert got.status_code == 200 and got.content == data


def test_multipart_upload_to_s3(s3_client: Any) -> None:
    user = register(s3_client, "s3multi@example.com")
    data = bytes(range(256)) * (48 * 1024)  # 12 MiB -> 3 parts of 5 MiB max
    up = user.post("/v1/uploads", json={"filename": "big.bin", "content_type": "application/octet-stream",
                                        "size": len(data)}).json()
    assert up["multipart"] and len(up["parts"]) == 3
    parts = []
    offset = 0
    for part in up["parts"]:
        chunk = data[offset: offset + part["size"]]
        offset += part["size"]
        r = httpx.put(part["url"], content=chunk)
        assert r.status_code == 200, r.text
        parts.append({"part_number": part["part_number"], "etag": r.headers["etag"]})
    asset = user.post(f"/v1/uploads/{up['id']}/complete", json={"parts": parts}).json()
    assert asset["size"] == len(data) and asset["sha256"] == hashlib.sha256(data).hexdigest()


def test_wrong_bytes_are_refused_and_removed(s3_client: Any) -> None:
    user = register(s3_client, "s3bad@example.com")
    data = b"expected content"
    up = user.post("/v1/uploads", json={"content_type": "text/plain", "size": len(data),
                                        "sha256": hashlib.sha256(data).hexdigest()}).json()
    httpx.put(up["put"]["url"], content=b"something else!", headers=up["put"]["headers"])
    r = user.post(f"/v1/uploads/{up['id']}/complete", json={})
    assert r.status_code == 422 and r.json()["code"] in ("checksum_mismatch", "size_mismatch")
    # the upload stays usable until it expires: send the right bytes and complete
    httpx.put(up["put"]["url"], content=data, headers=up["put"]["headers"])
    assert user.post(f"/v1/uploads/{up['id']}/complete", json={}).status_code == 200


def test_image_job_outputs_land_in_s3(s3_client: Any) -> None:
    user = register(s3_client, "s3img@example.com")
    body = {"kind": "image.generate", "input": {"prompt": "s3", "width": 64, "height": 64, "steps": 1,
                                                 "guidance_scale": 1.0, "seed": 1, "num_images": 1,
                                                 "model": "tiny-sd"}}
    job = user.post("/v1/jobs", json=body).json()
    job = wait_for(lambda: (j := user.get(f"/v1/jobs/{job['id']}").json())["status"] == "succeeded" and j, 90)
    asset = user.get(f"/v1/assets/{job['outputs']['images'][0]['asset_id']}").json()
    png = httpx.get(asset["download"]["url"]).content
    assert png[:4] == b"\x89PNG" and hashlib.sha256(png).hexdigest() == asset["sha256"]


def test_lifecycle_class_and_tag_with_default_settings(s3_client: Any) -> None:
    """SeaweedFS keeps storage classes and tags: the default settings write both, and a presigned PUT is accepted
    only with every header of the ticket (they are signed)."""
    from reelforge.domain.cloud import LIFECYCLE_TAG

    c = s3_client.app.state.container
    objects = c.objects
    user = register(s3_client, "s3classes@example.com")

    def recorded(key: str) -> tuple[str, dict[str, str]]:
        head = objects.client.head_object(Bucket=objects.bucket, Key=key)
        tags = objects.client.get_object_tagging(Bucket=objects.bucket, Key=key)["TagSet"]
        return head.get("StorageClass", "STANDARD"), {t["Key"]: t["Value"] for t in tags}

    data = b"archived upload " * 1000
    up = user.post("/v1/uploads", json={"content_type": "application/octet-stream", "size": len(data),
                                        "lifecycle": "archive"}).json()
    put = up["put"]
    assert put["headers"]["x-amz-storage-class"] == "GLACIER_IR"
    only_type = {"Content-Type": put["headers"]["Content-Type"]}
    assert httpx.put(put["url"], content=data, headers=only_type).status_code == 403
    assert httpx.put(put["url"], content=data, headers=put["headers"]).status_code == 200
    asset = user.post(f"/v1/uploads/{up['id']}/complete", json={}).json()
    assert asset["lifecycle"] == "archive"
    key = objects.client.list_objects_v2(Bucket=objects.bucket)["Contents"][0]["Key"]
    assert recorded(key) == ("GLACIER_IR", {LIFECYCLE_TAG: "archive"})

    up = user.post("/v1/uploads", json={"content_type": "text/plain", "size": 5, "lifecycle": "infrequent",
                                        "multipart": True}).json()
    r = httpx.put(up["parts"][0]["url"], content=b"parts", headers=up["parts"][0]["headers"])
    assert r.status_code == 200, r.text
    done = user.post(f"/v1/uploads/{up['id']}/complete",
                     json={"parts": [{"part_number": 1, "etag": r.headers["etag"]}]}).json()
    with c.store.tx(write=False) as tx:
        part_key = tx.assets.asset(done["id"]).key
    assert recorded(part_key) == ("STANDARD_IA", {LIFECYCLE_TAG: "infrequent"})

    scratch = c.assets.store_output(owner_id=user.id, job_id=None, data=b"scratch", content_type="text/plain",
                                    lifecycle="temporary")
    output = c.assets.store_output(owner_id=user.id, job_id=None, data=b"output", content_type="text/plain")
    assert recorded(scratch.key) == ("STANDARD", {LIFECYCLE_TAG: "temporary"})
    assert recorded(output.key) == ("STANDARD", {LIFECYCLE_TAG: "hot"})


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_python_client_sends_every_signed_header(tmp_path: Path, db_url: str, seaweed: Any) -> None:
    """The Python client sends all of a ticket's headers: SeaweedFS refuses the presigned PUT otherwise, since the
    storage class, tag and lifecycle metadata are signed headers."""
    from reelforge.client import Client
    from reelforge.container import Container
    from reelforge.domain.cloud import LIFECYCLE_TAG
    from tests.integration.live_server import bind_socket, live_settings, serve

    sock = bind_socket()
    settings = live_settings(tmp_path, db_url, sock, storage={
        "backend": "s3", "s3_bucket": f"rf-{uuid.uuid4().hex[:12]}", "s3_endpoint_url": seaweed.endpoint_url,
        "s3_access_key": seaweed.access_key, "s3_secret_key": seaweed.secret_key, "s3_addressing_style": "path"})
    c = Container(settings)
    c.migrate()
    small = tmp_path / "small.bin"
    small.write_bytes(b"kept for years " * 200)
    try:
        with serve(c, sock) as url:
            client = Client(url, api_key="")
            client.auth.register("s3client@example.com", "correct horse battery")
            client.auth.login("s3client@example.com", "correct horse battery")
            single = client.assets.upload(small, "application/octet-stream", lifecycle="archive", multipart=False)
            parts = client.assets.upload(small, "application/octet-stream", lifecycle="infrequent", multipart=True)
        for asset, storage_class, lifecycle in ((single, "GLACIER_IR", "archive"), (parts, "STANDARD_IA", "infrequent")):
            with c.store.tx(write=False) as tx:
                key = tx.assets.asset(asset.id).key
            head = c.objects.client.head_object(Bucket=c.objects.bucket, Key=key)
            tags = c.objects.client.get_object_tagging(Bucket=c.objects.bucket, Key=key)["TagSet"]
            assert head["StorageClass"] == storage_class
            assert tags == [{"Key": LIFECYCLE_TAG, "Value": lifecycle}]
    finally:
        c.close()
        sock.close()
