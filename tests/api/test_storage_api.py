"""/v1/uploads, /v1/assets and the local store's signed URLs (/v1/storage/objects/...)."""

from __future__ import annotations

import hashlib
import os
import time
import types
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest

from tests.conftest import UserHandle, make_settings
from tests.fixtures.hashing import fast_password_hashing  # noqa: F401

PROBLEM = "application/problem+json"
MIB = 1024 * 1024


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Any:
    # The smallest part size S3 allows, so a multipart upload of a little over 5 MiB has two parts.
    return make_settings(tmp_path, db_url, storage={"part_size": 5 * MIB})


def assert_problem(r: Any, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM), r.headers
    body = r.json()
    assert body["status"] == status and body["code"] == code, body
    return body


def local(url: str) -> str:
    """Signed URLs are absolute (public_url is http://testserver); the TestClient wants the path."""
    assert url.startswith("http://testserver/v1/storage/objects/"), url
    return url.removeprefix("http://testserver")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def create(user: UserHandle, data: bytes, **over: Any) -> dict[str, Any]:
    body = {"filename": "clip.bin", "content_type": "application/octet-stream", "size": len(data), **over}
    r = user.post("/v1/uploads", json=body)
    assert r.status_code == 201, r.text
    return r.json()


def put(client: Any, up: dict[str, Any], data: bytes, content_type: str | None = None) -> Any:
    headers = dict(up["put"]["headers"])
    if content_type is not None:
        headers["Content-Type"] = content_type
    return client.put(local(up["put"]["url"]), content=data, headers=headers)


def upload(client: Any, user: UserHandle, data: bytes, **over: Any) -> dict[str, Any]:
    up = create(user, data, **over)
    assert put(client, up, data).status_code == 200
    r = user.post(f"/v1/uploads/{up['id']}/complete", json={"sha256": sha(data)})
    assert r.status_code == 200, r.text
    return r.json()


def tamper(url: str, **params: str) -> str:
    parts = urlsplit(url)
    q = dict(parse_qsl(parts.query))
    q.update(params)
    return f"{parts.path}?{urlencode(q)}"


# --- single PUT ------------------------------------------------------------------------------------
def test_upload_roundtrip(client: Any, alice: UserHandle) -> None:
    data = os.urandom(3000)
    up = create(alice, data, content_type="Video/MP4", filename="../../etc/My Clip.mp4")
    assert up["status"] == "pending" and up["multipart"] is False and up["parts"] is None
    assert up["content_type"] == "video/mp4" and up["size"] == 3000 and up["lifecycle"] == "hot"
    assert up["filename"] == "My Clip.mp4"
    assert up["put"]["method"] == "PUT" and up["put"]["headers"] == {"Content-Type": "video/mp4"}
    assert up["put"]["expires_at"].endswith("Z")
    # The key is generated under the owner's prefix; nothing of the client's filename path leaks in.
    assert f"/v1/storage/objects/{alice.id}/uploads/" in up["put"]["url"] and ".." not in up["put"]["url"]

    r = put(client, up, data)
    assert r.status_code == 200, r.text
    assert r.headers["etag"] == f'"{sha(data)}"'
    assert alice.get(f"/v1/uploads/{up['id']}").json()["status"] == "pending"

    r = alice.post(f"/v1/uploads/{up['id']}/complete", json={"sha256": sha(data).upper()})
    assert r.status_code == 200, r.text
    asset = r.json()
    assert asset["sha256"] == sha(data) and asset["size"] == 3000 and asset["content_type"] == "video/mp4"
    assert asset["filename"] == "My Clip.mp4" and asset["job_id"] is None
    got = alice.get(f"/v1/uploads/{up['id']}").json()
    assert got["status"] == "completed" and got["asset_id"] == asset["id"]

    dl = client.get(local(asset["download"]["url"]))
    assert dl.status_code == 200
    assert dl.content == data
    assert dl.headers["content-type"] == "video/mp4"
    assert dl.headers["etag"] == f'"{sha(data)}"'
    assert dl.headers["content-disposition"].startswith('attachment; filename="My Clip.mp4"')

    # Completing again answers the same asset.
    again = alice.post(f"/v1/uploads/{up['id']}/complete", json={})
    assert again.status_code == 200 and again.json()["id"] == asset["id"]


def test_upload_checksum_declared_at_create(client: Any, alice: UserHandle) -> None:
    data = b"declared checksum" * 10
    up = create(alice, data, sha256=sha(data))
    assert put(client, up, data).status_code == 200
    r = alice.post(f"/v1/uploads/{up['id']}/complete", json={})
    assert r.status_code == 200 and r.json()["sha256"] == sha(data)


def test_wrong_sha256_then_retry(client: Any, alice: UserHandle) -> None:
    data = b"the real bytes" * 100
    up = create(alice, data)
    assert put(client, up, data[:-1] + b"X").status_code == 200
    body = assert_problem(alice.post(f"/v1/uploads/{up['id']}/complete", json={"sha256": sha(data)}), 422,
                          "checksum_mismatch")
    assert body["expected"] == sha(data) and body["received"] == sha(data[:-1] + b"X")
    # Still pending: the same signed URL takes the right bytes before it expires.
    assert alice.get(f"/v1/uploads/{up['id']}").json()["status"] == "pending"
    assert put(client, up, data).status_code == 200
    r = alice.post(f"/v1/uploads/{up['id']}/complete", json={"sha256": sha(data)})
    assert r.status_code == 200 and r.json()["sha256"] == sha(data)


def test_size_mismatch(client: Any, alice: UserHandle) -> None:
    data = b"x" * 100
    up = create(alice, data)
    # Fewer bytes than declared: refused at completion, and retryable.
    assert put(client, up, data[:50]).status_code == 200
    body = assert_problem(alice.post(f"/v1/uploads/{up['id']}/complete", json={}), 422, "size_mismatch")
    assert body["received"] == 50 and body["declared"] == 100
    assert alice.get(f"/v1/uploads/{up['id']}").json()["status"] == "pending"
    # More bytes than declared: refused while uploading, with and without Content-Length.
    assert_problem(put(client, up, data + b"y"), 413, "payload_too_large")

    def chunks() -> Any:
        yield data
        yield b"more"

    r = client.put(local(up["put"]["url"]), content=chunks(), headers=up["put"]["headers"])
    assert_problem(r, 413, "payload_too_large")
    assert put(client, up, data).status_code == 200
    assert alice.post(f"/v1/uploads/{up['id']}/complete", json={}).status_code == 200


def test_complete_before_upload_and_content_type_mismatch(client: Any, alice: UserHandle) -> None:
    data = b"{}"
    up = create(alice, data, content_type="application/json")
    assert_problem(alice.post(f"/v1/uploads/{up['id']}/complete", json={}), 409, "upload_missing")
    assert_problem(put(client, up, data, content_type="text/html"), 403, "content_type_mismatch")
    r = client.put(local(up["put"]["url"]), content=data)  # no Content-Type at all
    assert_problem(r, 403, "content_type_mismatch")
    assert put(client, up, data, content_type="application/json").status_code == 200


def test_create_upload_validation(client: Any, alice: UserHandle) -> None:
    for body, code in [
        ({"content_type": "video/mp4", "size": 0}, "validation_error"),
        ({"content_type": "video/mp4", "size": -1}, "validation_error"),
        ({"content_type": "video/mp4"}, "validation_error"),
        ({"content_type": "video/mp4", "size": 10, "sha256": "abc"}, "validation_error"),
        ({"content_type": "video/mp4", "size": 10, "lifecycle": "forever"}, "validation_error"),
        ({"content_type": "video/mp4", "size": 10, "key": "someone-else/file"}, "validation_error"),
        ({"content_type": "not a type", "size": 10}, "invalid_content_type"),
        ({"content_type": "text/html\r\nX-Evil: 1", "size": 10}, "invalid_content_type"),
    ]:
        assert_problem(alice.post("/v1/uploads", json=body), 422, code)
    r = alice.post("/v1/uploads", json={"content_type": "video/mp4", "size": 6 * 1024**3})
    assert_problem(r, 413, "upload_too_large")


def test_complete_validation(client: Any, alice: UserHandle) -> None:
    up = create(alice, b"abc")
    for body in [{"sha256": "xyz"}, {"etag": "1"}, {"parts": [{"part_number": 0, "etag": "a"}]}]:
        assert_problem(alice.post(f"/v1/uploads/{up['id']}/complete", json=body), 422, "validation_error")


def test_temporary_lifecycle_expires(client: Any, alice: UserHandle) -> None:
    asset = upload(client, alice, b"scratch", lifecycle="temporary")
    assert asset["lifecycle"] == "temporary" and asset["expires_at"] is not None
    assert upload(client, alice, b"keep")["expires_at"] is None


# --- multipart ---------------------------------------------------------------------------------------
def test_multipart_upload(client: Any, alice: UserHandle) -> None:
    data = os.urandom(5 * MIB + 1000)
    up = create(alice, data, multipart=True, content_type="video/mp4")
    assert up["multipart"] is True and up["put"] is None and up["part_size"] == 5 * MIB
    parts = up["parts"]
    assert [p["part_number"] for p in parts] == [1, 2] and [p["size"] for p in parts] == [5 * MIB, 1000]
    done = []
    offset = 0
    for p in parts:
        chunk = data[offset:offset + p["size"]]
        offset += p["size"]
        r = client.put(local(p["url"]), content=chunk, headers=p["headers"])
        assert r.status_code == 200, r.text
        done.append({"part_number": p["part_number"], "etag": r.headers["etag"]})
    assert_problem(alice.post(f"/v1/uploads/{up['id']}/complete", json={}), 422, "parts_required")
    bad = [done[0], {"part_number": 2, "etag": '"' + "0" * 32 + '"'}]
    assert_problem(alice.post(f"/v1/uploads/{up['id']}/complete", json={"parts": bad}), 409, "invalid_part")
    r = alice.post(f"/v1/uploads/{up['id']}/complete", json={"parts": done, "sha256": sha(data)})
    assert r.status_code == 200, r.text
    asset = r.json()
    assert asset["size"] == len(data) and asset["sha256"] == sha(data)
    assert client.get(local(asset["download"]["url"])).content == data
    again = alice.post(f"/v1/uploads/{up['id']}/complete", json={"parts": done})
    assert again.status_code == 200 and again.json()["id"] == asset["id"]


def test_multipart_part_is_bound_to_its_signed_size(client: Any, alice: UserHandle, container: Any) -> None:
    data = os.urandom(5 * MIB + 1000)
    up = create(alice, data, multipart=True)
    first, last = up["parts"]
    multipart_dir = container.objects.root / ".multipart"

    def stored_parts() -> list[str]:
        return sorted(p.name for d in multipart_dir.iterdir() for p in d.iterdir() if p.name != "upload.json")

    # A body past the part's size is refused, whether the length is declared or streamed without one.
    over = data[:5 * MIB] + b"x"
    body = assert_problem(client.put(local(first["url"]), content=over), 413, "part_too_large")
    assert body["limit"] == 5 * MIB
    chunks = iter([over[:MIB]] * 5 + [over[-1:]])  # a generator: sent chunked, no Content-Length
    assert_problem(client.put(local(first["url"]), content=chunks), 413, "part_too_large")
    assert_problem(client.put(local(last["url"]), content=b"z" * 1001), 413, "part_too_large")
    assert stored_parts() == []
    # The limit is part of the signature.
    assert_problem(client.put(tamper(local(first["url"]), max=str(300 * MIB)), content=over), 403,
                   "invalid_signature")
    assert stored_parts() == []

    etags = []
    for p, chunk in ((first, data[:5 * MIB]), (last, data[5 * MIB:])):
        r = client.put(local(p["url"]), content=chunk)
        assert r.status_code == 200, r.text
        etags.append({"part_number": p["part_number"], "etag": r.headers["etag"]})
    assert stored_parts() == ["1", "2"]
    r = alice.post(f"/v1/uploads/{up['id']}/complete", json={"parts": etags, "sha256": sha(data)})
    assert r.status_code == 200, r.text


def test_multipart_small_file_is_one_part(client: Any, alice: UserHandle) -> None:
    data = b"tiny" * 10
    up = create(alice, data, multipart=True)
    assert len(up["parts"]) == 1 and up["parts"][0]["size"] == len(data)
    r = client.put(local(up["parts"][0]["url"]), content=data)
    etag = r.headers["etag"]
    r = alice.post(f"/v1/uploads/{up['id']}/complete", json={"parts": [{"part_number": 1, "etag": etag}]})
    assert r.status_code == 200 and r.json()["sha256"] == sha(data)


def test_abort(client: Any, alice: UserHandle) -> None:
    data = b"abandoned" * 10
    up = create(alice, data, multipart=True)
    r = alice.post(f"/v1/uploads/{up['id']}/abort")
    assert r.status_code == 200 and r.json()["status"] == "aborted"
    assert_problem(alice.post(f"/v1/uploads/{up['id']}/abort"), 409, "upload_not_pending")
    assert_problem(alice.post(f"/v1/uploads/{up['id']}/complete", json={"parts": [{"part_number": 1, "etag": "x"}]}),
                   409, "upload_not_pending")
    single = create(alice, data)
    assert alice.post(f"/v1/uploads/{single['id']}/abort").json()["status"] == "aborted"
    assert_problem(alice.post(f"/v1/uploads/{single['id']}/complete", json={}), 409, "upload_not_pending")


def test_expired_upload_cannot_complete(client: Any, alice: UserHandle, container: Any) -> None:
    data = b"late"
    up = create(alice, data)
    assert put(client, up, data).status_code == 200
    with container.store.tx() as tx:
        tx.assets.update_upload(up["id"], expires_at=tx.now() - 1)
    assert_problem(alice.post(f"/v1/uploads/{up['id']}/complete", json={}), 410, "upload_expired")


# --- signed URLs -----------------------------------------------------------------------------------
def test_signed_url_tampering(client: Any, alice: UserHandle) -> None:
    data = b"signed bytes"
    asset = upload(client, alice, data)
    url = local(asset["download"]["url"])
    sig = dict(parse_qsl(urlsplit(url).query))["sig"]
    flipped = ("0" if sig[0] != "0" else "1") + sig[1:]
    for bad in [
        tamper(url, sig=flipped),
        tamper(url, exp=str(int(time.time()) + 10**6)),
        tamper(url, filename="evil.html"),
        urlsplit(url).path,  # no query at all
        tamper(url, op="put"),
    ]:
        assert_problem(client.get(bad), 403, "invalid_signature")
    # The same signature for another key of the same owner.
    other = upload(client, alice, b"other object")
    other_path = urlsplit(local(other["download"]["url"])).path
    assert_problem(client.get(f"{other_path}?{urlsplit(url).query}"), 403, "invalid_signature")
    # A GET URL is not a PUT URL.
    assert_problem(client.put(url, content=b"overwrite", headers={"Content-Type": "application/octet-stream"}),
                   403, "invalid_signature")
    assert client.get(url).content == data


def test_put_url_cannot_raise_its_own_limit(client: Any, alice: UserHandle) -> None:
    up = create(alice, b"1234")
    url = local(up["put"]["url"])
    assert_problem(client.put(tamper(url, max="999999"), content=b"12345678", headers=up["put"]["headers"]), 403,
                   "invalid_signature")
    assert_problem(client.put(tamper(url, ct="text/html"), content=b"1234", headers={"Content-Type": "text/html"}),
                   403, "invalid_signature")


def test_expired_signed_urls(client: Any, alice: UserHandle, monkeypatch: Any) -> None:
    from reelforge.adapters.storage import local as local_store

    asset = upload(client, alice, b"soon gone")
    up = create(alice, b"later")
    later = types.SimpleNamespace(time=lambda: time.time() + 2 * 3600)
    monkeypatch.setattr(local_store, "time", later)
    assert_problem(client.get(local(asset["download"]["url"])), 410, "url_expired")
    assert_problem(put(client, up, b"later"), 410, "url_expired")
    monkeypatch.undo()
    assert client.get(local(asset["download"]["url"])).content == b"soon gone"


def test_storage_key_traversal_is_refused(client: Any, alice: UserHandle) -> None:
    for path in ["/v1/storage/objects/..%2F..%2Fetc%2Fpasswd?op=get&exp=9999999999&sig=x",
                 "/v1/storage/objects/.meta/x.json?op=get&exp=9999999999&sig=x",
                 "/v1/storage/objects/a//b?op=get&exp=9999999999&sig=x"]:
        r = client.get(path)
        assert r.status_code in (400, 403, 404), (path, r.status_code, r.text)
        assert r.headers["content-type"].startswith(PROBLEM)


# --- assets ------------------------------------------------------------------------------------------
def test_assets_list_get_delete(client: Any, alice: UserHandle) -> None:
    a1 = upload(client, alice, b"first")
    a2 = upload(client, alice, b"second", filename="two.txt", content_type="text/plain")
    listed = alice.get("/v1/assets").json()["data"]
    assert {a["id"] for a in listed} == {a1["id"], a2["id"]}
    assert all(a["download"] is None for a in listed)  # signing is per asset, on GET
    assert len(alice.get("/v1/assets", params={"limit": 1}).json()["data"]) == 1
    assert alice.get("/v1/assets", params={"job_id": "nope"}).json()["data"] == []
    assert_problem(alice.get("/v1/assets", params={"limit": 0}), 422, "validation_error")

    got = alice.get(f"/v1/assets/{a2['id']}").json()
    assert got["filename"] == "two.txt" and got["size"] == 6 and got["sha256"] == sha(b"second")
    assert client.get(local(got["download"]["url"])).content == b"second"

    r = alice.delete(f"/v1/assets/{a2['id']}")
    assert r.status_code == 204 and r.content == b""
    assert_problem(alice.get(f"/v1/assets/{a2['id']}"), 404, "asset_not_found")
    assert_problem(alice.delete(f"/v1/assets/{a2['id']}"), 404, "asset_not_found")
    # The signed URL handed out before the delete finds no object.
    assert_problem(client.get(local(got["download"]["url"])), 404, "object_not_found")
    assert [a["id"] for a in alice.get("/v1/assets").json()["data"]] == [a1["id"]]


def test_storage_objects_of_other_users(client: Any, alice: UserHandle, bob: UserHandle) -> None:
    asset = upload(client, alice, b"alice's")
    up = create(alice, b"pending")
    assert_problem(bob.get(f"/v1/assets/{asset['id']}"), 404, "asset_not_found")
    assert_problem(bob.delete(f"/v1/assets/{asset['id']}"), 404, "asset_not_found")
    assert_problem(bob.get(f"/v1/uploads/{up['id']}"), 404, "upload_not_found")
    assert_problem(bob.post(f"/v1/uploads/{up['id']}/complete", json={}), 404, "upload_not_found")
    assert_problem(bob.post(f"/v1/uploads/{up['id']}/abort"), 404, "upload_not_found")
    assert bob.get("/v1/assets").json()["data"] == []
    assert alice.get(f"/v1/assets/{asset['id']}").status_code == 200
    assert alice.get(f"/v1/uploads/{up['id']}").json()["status"] == "pending"


def test_unknown_ids(client: Any, alice: UserHandle) -> None:
    assert_problem(alice.get("/v1/assets/nope"), 404, "asset_not_found")
    assert_problem(alice.get("/v1/uploads/nope"), 404, "upload_not_found")
    assert_problem(alice.post("/v1/uploads/nope/complete", json={}), 404, "upload_not_found")


def test_storage_routes_require_auth(client: Any) -> None:
    for method, path in [("POST", "/v1/uploads"), ("GET", "/v1/uploads/x"), ("POST", "/v1/uploads/x/complete"),
                         ("POST", "/v1/uploads/x/abort"), ("GET", "/v1/assets"), ("GET", "/v1/assets/x"),
                         ("DELETE", "/v1/assets/x")]:
        r = client.request(method, path, json={} if method == "POST" else None)
        assert_problem(r, 401, "missing_credentials")


def test_signed_put_is_closed_once_the_upload_completes(client: Any, alice: UserHandle) -> None:
    data = b"final bytes"
    up = create(alice, data)
    assert put(client, up, data).status_code == 200
    asset = alice.post(f"/v1/uploads/{up['id']}/complete", json={}).json()
    r = put(client, up, b"changed after!")
    assert_problem(r, 409, "upload_closed")
    got = client.get(local(alice.get(f"/v1/assets/{asset['id']}").json()["download"]["url"]))
    assert got.content == data


def test_local_upload_records_its_lifecycle_class(client: Any, alice: UserHandle, container: Any) -> None:
    """The class is signed into the local PUT URL (``lc``) and recorded by the route; changing it breaks the
    signature."""
    data = b"kept a long time"
    up = create(alice, data, lifecycle="archive")
    assert dict(parse_qsl(urlsplit(up["put"]["url"]).query))["lc"] == "archive"
    forged = client.put(tamper(up["put"]["url"], lc="temporary"), content=data, headers=up["put"]["headers"])
    assert_problem(forged, 403, "invalid_signature")
    asset = upload(client, alice, data, lifecycle="infrequent")
    assert put(client, up, data).status_code == 200
    with container.store.tx(write=False) as tx:
        keys = {a.lifecycle: a.key for a in tx.assets.assets(owner_id=alice.id, limit=10)}
    assert keys.keys() == {"infrequent"} and asset["lifecycle"] == "infrequent"
    assert container.objects.head(keys["infrequent"]).lifecycle == "infrequent"
    key = up["put"]["url"].split("/v1/storage/objects/", 1)[1].split("?", 1)[0]
    assert container.objects.head(key).lifecycle == "archive"
