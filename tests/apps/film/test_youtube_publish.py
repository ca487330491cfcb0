"""`film.publish` through the real API and a real worker against the local fake of YouTube: the resumable upload
(bytes compared by SHA-256), metadata, thumbnail and captions; a connection dropped in the middle of a chunk and
a 5xx resumed from the server's offset in the same session; a new try of the step continuing the stored session;
quota and revoked grants surfaced with their codes; the checks at submit. SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.apps.film.fake_youtube import QUANTUM, FakeYoutube
from tests.apps.film.helpers import assert_problem, image_asset, make_project
from tests.apps.film.youtube_helpers import (  # noqa: F401
    captions_asset,
    connect,
    fake,
    jpeg,
    sha256,
    thumbnail_asset,
    video_asset,
    video_bytes,
    wait_job,
)
from tests.conftest import UserHandle, make_settings

UPLOAD = ("PUT", "/upload/youtube/v3/videos")
START = ("POST", "/upload/youtube/v3/videos")


@pytest.fixture
def settings(tmp_path: Path, db_url: str, fake: FakeYoutube) -> Any:  # noqa: F811
    return make_settings(tmp_path, db_url, film={"youtube": fake.settings()})


def publish(user: UserHandle, project_id: str, **body: Any) -> dict[str, Any]:
    r = user.post(f"/v1/projects/{project_id}/publish", json={"title": "The Lighthouse", **body})
    assert r.status_code == 202, r.text
    assert r.headers["location"] == f"/v1/jobs/{r.json()['id']}"
    assert r.json()["kind"] == "film.publish"
    return dict(r.json())


def balance(user: UserHandle) -> int:
    return int(user.get("/v1/credits").json()["balance"])


def upload_row(container: Any, job_id: str) -> Any:
    with container.db.engine.connect() as conn:
        return conn.execute(sa.text("SELECT * FROM film_youtube_uploads WHERE job_id = :j"), {"j": job_id}).one()


def test_publish_end_to_end(client: Any, container: Any, worker: Any, alice: UserHandle,
                            fake: FakeYoutube) -> None:  # noqa: F811
    connect(client, alice, fake)
    data = video_bytes()
    project = make_project(alice)
    video = video_asset(container, alice.id, data)
    thumb = thumbnail_asset(container, alice.id)
    subs = captions_asset(container, alice.id)
    credits = balance(alice)
    job = publish(alice, project["id"], video_asset_id=video, thumbnail_asset_id=thumb, captions_asset_id=subs,
                  description="A keeper waits for a ship.", tags=["short film", "lighthouse"], privacy="unlisted")
    done = wait_job(alice, job["id"])
    assert done["status"] == "succeeded", done
    out = done["outputs"]
    assert out["video_id"] in fake.videos and out["url"] == f"https://www.youtube.com/watch?v={out['video_id']}"
    assert out["thumbnail_set"] is True and out["captions_set"] is True
    assert out["project_id"] == project["id"] and out["bytes"] == len(data) and out["sessions"] == 1
    assert out["interruptions"] == 0
    uploaded = fake.videos[out["video_id"]]
    assert uploaded.sha256 == sha256(data) and uploaded.content_type == "video/mp4"
    assert uploaded.metadata["snippet"] == {"title": "The Lighthouse", "description": "A keeper waits for a ship.",
                                            "categoryId": "1", "tags": ["short film", "lighthouse"]}
    assert uploaded.metadata["status"] == {"privacyStatus": "unlisted", "selfDeclaredMadeForKids": False}
    assert uploaded.thumbnail == jpeg() and uploaded.thumbnail_type == "image/jpeg"
    assert uploaded.captions[0]["language"] == "en" and uploaded.captions[0]["data"].startswith(b"WEBVTT")
    # chunks of 256 KiB: 5 full ones and the rest
    assert fake.count(*START) == 1 and fake.count(*UPLOAD) == 6
    assert balance(alice) == credits - done["credits"]
    history = alice.get(f"/v1/jobs/{job['id']}/history").json()["events"]
    steps = [e["path"] for e in history if e["type"] == "TaskSucceeded"]
    assert steps == ["upload", "thumbnail", "captions"]
    row = upload_row(container, job["id"])
    assert row.video_id == out["video_id"] and row.session_uri is None and row.confirmed_bytes == len(data)


def test_a_connection_dropped_mid_chunk_and_a_5xx_resume_the_same_session(
        client: Any, container: Any, worker: Any, alice: UserHandle, fake: FakeYoutube) -> None:  # noqa: F811
    connect(client, alice, fake)
    data = video_bytes()
    project = make_project(alice)
    video = video_asset(container, alice.id, data)
    fake.drops = [100_000]  # the first chunk: 100 000 bytes arrive, then the connection drops
    fake.server_errors = 1  # and the next PUT answers 503
    job = publish(alice, project["id"], video_asset_id=video)
    done = wait_job(alice, job["id"])
    assert done["status"] == "succeeded", done
    out = done["outputs"]
    assert fake.videos[out["video_id"]].sha256 == sha256(data)
    assert out["interruptions"] == 2 and out["sessions"] == 1 and fake.count(*START) == 1
    # after the drop the client asked where to go on (100 000 bytes held: not a chunk boundary) and went on there
    assert fake.count(*UPLOAD) >= 6 + 2


def test_a_new_try_of_the_step_continues_the_stored_session(tmp_path: Path, db_url: str,
                                                            fake: FakeYoutube) -> None:  # noqa: F811
    from fastapi.testclient import TestClient

    from reelforge.api.app import create_app
    from reelforge.container import Container
    from reelforge.runtime.worker import Worker
    from tests.conftest import register

    # No retry inside the step: the first drop fails it, the step's retry must go on in the stored session.
    c = Container(make_settings(tmp_path, db_url, film={"youtube": fake.settings(max_retries=0)}))
    w = Worker(c, concurrency=1)
    try:
        with TestClient(create_app(container=c)) as client:
            alice = register(client, "alice@example.com")
            connect(client, alice, fake)
            data = video_bytes(9 * QUANTUM + 7)
            video = video_asset(c, alice.id, data)
            project = make_project(alice)
            fake.drops = [QUANTUM // 2, 1000]
            w.start()
            job = publish(alice, project["id"], video_asset_id=video)
            done = wait_job(alice, job["id"])
            assert done["status"] == "succeeded", done
            out = done["outputs"]
            assert fake.videos[out["video_id"]].sha256 == sha256(data)
            assert fake.count(*START) == 1 and out["sessions"] == 1 and out["interruptions"] >= 2
            history = alice.get(f"/v1/jobs/{job['id']}/history").json()["events"]
            failed = [e for e in history if e["type"] == "TaskFailed" and e["path"] == "upload"]
            assert [e["details"]["error"] for e in failed] == ["youtube_unavailable", "youtube_unavailable"]
    finally:
        w.stop(grace_s=5)
        c.close()


def test_a_session_the_server_dropped_is_started_again(client: Any, container: Any, worker: Any, alice: UserHandle,
                                                       fake: FakeYoutube) -> None:  # noqa: F811
    connect(client, alice, fake)
    data = video_bytes(4 * QUANTUM)
    project = make_project(alice)
    video = video_asset(container, alice.id, data)
    fake.drops, fake.expire_on_drop = [QUANTUM // 3], True
    done = wait_job(alice, publish(alice, project["id"], video_asset_id=video)["id"])
    assert done["status"] == "succeeded", done
    assert done["outputs"]["sessions"] == 2 and fake.count(*START) == 2
    assert fake.videos[done["outputs"]["video_id"]].sha256 == sha256(data)


def test_a_session_uri_on_another_host_is_refused(client: Any, container: Any, worker: Any, alice: UserHandle,
                                                  fake: FakeYoutube) -> None:  # noqa: F811
    connect(client, alice, fake)
    project = make_project(alice)
    video = video_asset(container, alice.id, video_bytes(1000))
    fake.location_base = "http://127.0.0.2:9"  # the access token must not travel there
    done = wait_job(alice, publish(alice, project["id"], video_asset_id=video)["id"])
    assert done["status"] == "failed" and done["error"]["code"] == "youtube_rejected", done
    assert fake.count(*UPLOAD) == 0


def test_quota_exceeded_fails_the_job_with_its_code_and_refunds(client: Any, container: Any, worker: Any,
                                                                alice: UserHandle, fake: FakeYoutube  # noqa: F811
                                                                ) -> None:
    connect(client, alice, fake)
    project = make_project(alice)
    video = video_asset(container, alice.id, video_bytes(1000))
    credits = balance(alice)
    fake.quota_reason = "quotaExceeded"
    done = wait_job(alice, publish(alice, project["id"], video_asset_id=video)["id"])
    assert done["status"] == "failed" and done["error"]["code"] == "youtube_quota_exceeded", done
    assert "quota" in done["error"]["message"]
    assert balance(alice) == credits
    fake.quota_reason = "uploadLimitExceeded"
    done = wait_job(alice, publish(alice, project["id"], video_asset_id=video)["id"])
    assert done["error"]["code"] == "youtube_quota_exceeded"


def test_a_revoked_grant_fails_with_youtube_auth_failed_and_asks_to_reconnect(
        client: Any, container: Any, worker: Any, alice: UserHandle, fake: FakeYoutube) -> None:  # noqa: F811
    connect(client, alice, fake)
    project = make_project(alice)
    video = video_asset(container, alice.id, video_bytes(1000))
    fake.revoke_all()  # the user removed the app's access in their Google account
    done = wait_job(alice, publish(alice, project["id"], video_asset_id=video)["id"])
    assert done["status"] == "failed" and done["error"]["code"] == "youtube_auth_failed", done
    status = alice.get("/v1/film/youtube").json()
    assert status["connected"] is False and status["reason"] == "youtube_auth_failed"
    # refused at submit from now on, until the channel is connected again
    r = alice.post(f"/v1/projects/{project['id']}/publish", json={"video_asset_id": video, "title": "Again"})
    assert_problem(r, 403, "youtube_auth_failed")
    connect(client, alice, fake)
    done = wait_job(alice, publish(alice, project["id"], video_asset_id=video)["id"])
    assert done["status"] == "succeeded", done


def test_an_expired_access_token_is_refreshed(client: Any, container: Any, worker: Any, alice: UserHandle,
                                              fake: FakeYoutube) -> None:  # noqa: F811
    connect(client, alice, fake)
    project = make_project(alice)
    data = video_bytes(3 * QUANTUM)
    video = video_asset(container, alice.id, data)
    fake.expire_access_tokens()  # the stored access token is refused (401): a refresh gives a new one
    refreshes = fake.count("POST", "/token")
    done = wait_job(alice, publish(alice, project["id"], video_asset_id=video)["id"])
    assert done["status"] == "succeeded", done
    assert fake.count("POST", "/token") == refreshes + 1
    assert fake.videos[done["outputs"]["video_id"]].sha256 == sha256(data)


def test_a_refused_thumbnail_is_noted_and_the_video_stays_published(
        client: Any, container: Any, worker: Any, alice: UserHandle, fake: FakeYoutube) -> None:  # noqa: F811
    connect(client, alice, fake)
    project = make_project(alice)
    video = video_asset(container, alice.id, video_bytes(1000))
    fake.thumbnail_forbidden = True
    done = wait_job(alice, publish(alice, project["id"], video_asset_id=video,
                                   thumbnail_asset_id=thumbnail_asset(container, alice.id))["id"])
    assert done["status"] == "succeeded", done
    out = done["outputs"]
    assert out["thumbnail_set"] is False and out["thumbnail_error"]["code"] == "youtube_forbidden"
    assert out["captions_set"] is False and out["video_id"] in fake.videos


def test_publish_checks_at_submit(client: Any, container: Any, alice: UserHandle, bob: UserHandle,
                                  fake: FakeYoutube) -> None:  # noqa: F811
    project = make_project(alice)
    video = video_asset(container, alice.id, video_bytes(1000))
    url = f"/v1/projects/{project['id']}/publish"
    body = {"video_asset_id": video, "title": "The Lighthouse"}
    assert_problem(alice.post(url, json=body), 409, "youtube_not_connected")
    connect(client, alice, fake)
    connect(client, bob, fake)
    # another user's project is not found, through either route
    assert_problem(bob.post(url, json={**body, "video_asset_id": video_asset(container, bob.id, b"x" * 10)}), 404,
                   "project_not_found")
    r = bob.post("/v1/jobs", json={"kind": "film.publish", "input": {"project_id": project["id"], **body}})
    assert_problem(r, 404, "project_not_found")
    assert_problem(alice.post("/v1/projects/0123456789abcdef0123456789abcdef/publish", json=body), 404,
                   "project_not_found")
    assert_problem(alice.post("/v1/projects/not-an-id/publish", json=body), 404, "project_not_found")
    # shared read-only: may not publish
    assert alice.post(f"/v1/projects/{project['id']}/shares", json={"user_id": bob.id}).status_code == 201
    assert_problem(bob.post(url, json={**body, "video_asset_id": video_asset(container, bob.id, b"x" * 10)}), 403,
                   "read_only_share")
    # assets: the caller's, of the right kind
    assert_problem(alice.post(url, json={**body, "video_asset_id": video_asset(container, bob.id, b"x" * 10)}), 422,
                   "asset_not_found")
    assert_problem(alice.post(url, json={**body, "video_asset_id": image_asset(container, alice.id)}), 422,
                   "invalid_asset_type")
    assert_problem(alice.post(url, json={**body, "thumbnail_asset_id": video}), 422, "invalid_asset_type")
    assert_problem(alice.post(url, json={**body, "captions_asset_id": video}), 422, "invalid_asset_type")
    big = container.assets.store_output(owner_id=alice.id, job_id=None, data=b"\xff\xd8" + b"0" * (2 * 1024 * 1024),
                                        content_type="image/jpeg", filename="big.jpg").id
    assert_problem(alice.post(url, json={**body, "thumbnail_asset_id": big}), 422, "thumbnail_too_large")
    # metadata YouTube would refuse
    for bad in [{"title": ""}, {"title": "a <b>"}, {"title": "x" * 101}, {"privacy": "secret"},
                {"tags": ["a,b"]}, {"tags": ["x" * 60] * 9}, {"category_id": "film"}, {"surprise": 1},
                {"description": "é" * 2501}]:
        assert_problem(alice.post(url, json={**body, **bad}), 422, "validation_error")
    # nothing was queued
    assert alice.get("/v1/jobs").json()["data"] == []
