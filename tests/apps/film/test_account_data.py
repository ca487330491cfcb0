"""The film studio's part of an account's export and deletion: projects, shares given and received, the YouTube
connection and uploads (metadata only, never a token or a session URI) in `GET /v1/account/export`; all of it gone
after `DELETE /v1/account` and the sweeper, another account's untouched; the hook safe to run twice. SQLite and
PostgreSQL."""

from __future__ import annotations

import io
import json
import threading
import zipfile
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from reelforge.domain.records import new_id
from reelforge.runtime.maintenance import Maintenance
from tests.apps.film.fake_youtube import FakeYoutube
from tests.apps.film.helpers import FOUNTAIN, make_project
from tests.apps.film.youtube_helpers import connect, fake, video_asset, video_bytes  # noqa: F401
from tests.conftest import UserHandle, make_settings, register


@pytest.fixture
def settings(tmp_path: Path, db_url: str, fake: FakeYoutube) -> Any:  # noqa: F811
    return make_settings(tmp_path, db_url, rate_limit={"enabled": False}, film={"youtube": fake.settings()})


def rows(container: Any, sql: str, **params: Any) -> list[Any]:
    with container.db.engine.connect() as conn:
        return list(conn.execute(sa.text(sql), params).all())


def _upload(container: Any, user: UserHandle, project_id: str) -> str:
    yt = container.app("film").youtube
    asset_id = video_asset(container, user.id, video_bytes(4096))
    with container.store.tx(write=False) as tx:
        asset = tx.assets.asset(asset_id)
    job_id = new_id()
    state = yt.begin_upload(job_id, user_id=user.id, project_id=project_id, asset=asset)
    yt.save_session(state, f"https://upload.example/session/{user.id}")
    return job_id


def _data(client: Any, container: Any, user: UserHandle, other: UserHandle, fake: FakeYoutube  # noqa: F811
          ) -> dict[str, Any]:
    own = make_project(user, title=f"{user.email}'s film", script=FOUNTAIN)
    given = user.post(f"/v1/projects/{own['id']}/shares", json={"user_id": other.id})
    assert given.status_code == 201, given.text
    connect(client, user, fake)
    assert user.post("/v1/film/youtube/connect").status_code == 200  # a pending state too
    return {"project": own["id"], "share": given.json()["id"], "upload": _upload(container, user, own["id"])}


def _export(user: UserHandle) -> zipfile.ZipFile:
    r = user.get("/v1/account/export")
    assert r.status_code == 200, r.text
    return zipfile.ZipFile(io.BytesIO(r.content))


def _film_rows(container: Any, user_id: str) -> dict[str, int]:
    counts = {}
    for table, col in (("film_projects", "owner_id"), ("film_youtube_connections", "user_id"),
                       ("film_youtube_states", "user_id"), ("film_youtube_uploads", "user_id")):
        counts[table] = len(rows(container, f"SELECT 1 FROM {table} WHERE {col} = :u", u=user_id))
    counts["shares"] = len(rows(container, "SELECT 1 FROM film_project_shares WHERE owner_id = :u OR user_id = :u",
                                u=user_id))
    return counts


def test_export_holds_the_callers_film_records_without_secrets(client: Any, container: Any, alice: UserHandle,
                                                              bob: UserHandle, fake: FakeYoutube) -> None:  # noqa: F811
    a = _data(client, container, alice, bob, fake)
    b = _data(client, container, bob, alice, fake)
    z = _export(alice)
    names = set(z.namelist())
    assert {f"apps/film/{n}.json" for n in ("projects", "shares_given", "shares_received", "youtube_connection",
                                            "youtube_uploads")} <= names

    projects = json.loads(z.read("apps/film/projects.json"))
    assert [p["id"] for p in projects] == [a["project"]] and projects[0]["script"] == FOUNTAIN
    given = json.loads(z.read("apps/film/shares_given.json"))
    assert [(s["id"], s["user_id"]) for s in given] == [(a["share"], bob.id)]
    received = json.loads(z.read("apps/film/shares_received.json"))
    assert [(s["id"], s["project_id"], s["owner_id"]) for s in received] == [(b["share"], b["project"], bob.id)]
    conn = json.loads(z.read("apps/film/youtube_connection.json"))
    assert conn["channel_id"] == fake.channel["id"] and conn["status"] == "connected"
    uploads = json.loads(z.read("apps/film/youtube_uploads.json"))
    assert [u["job_id"] for u in uploads] == [a["upload"]] and "session_uri" not in uploads[0]

    film = b"".join(z.read(n) for n in names if n.startswith("apps/film/"))
    others = b"".join(z.read(f"apps/film/{n}.json") for n in ("projects", "shares_given", "youtube_connection",
                                                              "youtube_uploads"))
    assert b["project"].encode() not in others  # bob's project appears only as the share alice received
    assert b["upload"].encode() not in film and b"bob@example.com's film" not in film
    # never a token, sealed or plain, nor an upload session
    assert b"rfenc1:" not in film and b"upload.example" not in film
    assert not any(token.encode() in film for token in fake.issued)


def test_deletion_removes_the_callers_film_rows_only(client: Any, container: Any, alice: UserHandle,
                                                     bob: UserHandle, fake: FakeYoutube) -> None:  # noqa: F811
    _data(client, container, alice, bob, fake)
    b = _data(client, container, bob, alice, fake)
    carol = register(client, "carol@example.com")
    assert bob.post(f"/v1/projects/{b['project']}/shares", json={"user_id": carol.id}).status_code == 201
    before_bob = _film_rows(container, bob.id)
    assert all(before_bob.values()) and all(_film_rows(container, alice.id).values())
    live = len(fake.live_refresh_tokens())

    r = alice.client.request("DELETE", "/v1/account", headers=alice.headers, json={"password": alice.password})
    assert r.status_code == 202, r.text
    Maintenance(container, "w1", stopping=threading.Event(), wake=threading.Event()).sweep()
    assert container.accounts.status(alice.id).status == "deleted"

    assert _film_rows(container, alice.id) == dict.fromkeys(before_bob, 0)
    # bob keeps his project, his connection and uploads; his share with alice is gone, the one with carol stays
    after_bob = _film_rows(container, bob.id)
    assert after_bob == {**before_bob, "shares": before_bob["shares"] - 2}
    assert [s["user_id"] for s in bob.get(f"/v1/projects/{b['project']}/shares").json()["data"]] == [carol.id]
    assert carol.get(f"/v1/projects/{b['project']}").status_code == 200
    assert len(fake.live_refresh_tokens()) == live - 1  # alice's grant was revoked at Google

    # the hook again (the sweeper may call it more than once): nothing changes
    hook = next(a for a in container.apps if a.name == "film").account_delete
    assert hook is not None
    hook(container, alice.id)
    hook(container, alice.id)
    assert _film_rows(container, bob.id) == after_bob
