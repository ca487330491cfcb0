"""Signed URLs in the video-understanding answers: every list and detail carries, per video it shows, `video_url`
and `thumbnail_url` (signed like job outputs' result URLs, `storage.result_url_ttl_s`) and `urls_expire_at`;
only for videos the caller may see, and with a number of queries that does not grow with the list."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import event

from reelforge.apps.mobs.repository import MobsRepo
from tests.api.test_mobs_api import seed, trend_vectors
from tests.conftest import UserHandle, make_settings
from tests.fixtures.hashing import fast_password_hashing  # noqa: F401
from tests.fixtures.mob_corpus import clean_mobs


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Any:
    # No rate-limit counters: their occasional shared write would blur the query counts.
    return make_settings(tmp_path, db_url, rate_limit={"enabled": False})


@pytest.fixture(autouse=True)
def _clean(container: Any) -> Any:
    """PostgreSQL databases are shared by the session: start from empty mobs tables and namespace."""
    clean_mobs(container)
    yield


def with_media(c: Any, u: UserHandle, vec: Any, *, tag: str, **kw: Any) -> tuple[str, bytes, bytes]:
    """A seeded video whose stored video and thumbnail are real assets of its owner: (id, video, thumbnail)."""
    vid = seed(c, u, vec, tag=tag, **kw)
    video, thumb = f"video of {vid}".encode(), f"thumbnail of {vid}".encode()
    src = c.assets.store_output(owner_id=u.id, job_id=None, data=video, content_type="video/mp4",
                                filename=f"{tag}.mp4", category="videos")
    th = c.assets.store_output(owner_id=u.id, job_id=None, data=thumb, content_type="image/jpeg",
                               filename=f"{tag}.jpg", category="thumbnails")
    with c.store.tx() as tx:
        MobsRepo(tx).update_video(vid, asset_id=src.id, thumbnail_asset_id=th.id)
    return vid, video, thumb


def fetch(client: Any, url: str) -> bytes:
    r = client.get(url.removeprefix("http://testserver"))
    assert r.status_code == 200, r.text
    return bytes(r.content)


def check(client: Any, container: Any, v: dict[str, Any], media: dict[str, tuple[bytes, bytes]]) -> None:
    """`v` carries working URLs for its stored video and thumbnail, expiring within the TTL."""
    video, thumb = media[v["id"]]
    assert fetch(client, v["video_url"]) == video
    assert fetch(client, v["thumbnail_url"]) == thumb
    ttl = container.settings.storage.result_url_ttl_s
    expires = int(parse_qs(urlsplit(v["video_url"]).query)["exp"][0])
    assert time.time() + ttl * 2 / 3 - 2 <= expires <= time.time() + ttl + 1
    assert v["urls_expire_at"] is not None


def test_lists_and_details_carry_signed_urls(client: Any, container: Any, alice: UserHandle, bob: UserHandle,
                                            admin: UserHandle) -> None:
    (ta, tb) = trend_vectors(2, 4, seed=5)
    media: dict[str, tuple[bytes, bytes]] = {}
    a_pub = []
    for v in ta[:3]:
        vid, video, thumb = with_media(container, alice, v, tag="dance")
        media[vid] = (video, thumb)
        a_pub.append(vid)
    a_priv, *m = with_media(container, alice, ta[3], tag="dance", visibility="private")
    media[a_priv] = (m[0], m[1])
    a_rej, *m = with_media(container, alice, tb[3], tag="cooking", status="rejected")
    media[a_rej] = (m[0], m[1])
    b_pub, *m = with_media(container, bob, tb[0], tag="cooking")
    media[b_pub] = (m[0], m[1])

    # the feed (both paths, both orders): public validated videos, for anyone
    for path in ("/v1/feed", "/v1/videos/feed?order=best"):
        data = bob.get(path).json()["data"]
        assert {v["id"] for v in data} == {*a_pub, b_pub}
        for v in data:
            check(client, container, v, media)

    # the owner's list: private and rejected ones too
    mine = alice.get("/v1/videos/user").json()["data"]
    assert {v["id"] for v in mine} == {*a_pub, a_priv, a_rej}
    for v in mine:
        check(client, container, v, media)
    # another user lists only her public validated ones (a creator's page), with their URLs
    page = bob.get(f"/v1/videos/user?userId={alice.id}").json()["data"]
    assert {v["id"] for v in page} == set(a_pub)
    for v in page:
        check(client, container, v, media)

    # details: the owner gets every URL; another user gets those of public videos, and 404 for the rest
    for vid in (a_pub[0], a_priv, a_rej):
        d = alice.get(f"/v1/videos/{vid}").json()
        check(client, container, d, media)
        assert d["playback_url"] == d["video_url"]
    d = bob.get(f"/v1/videos/{a_pub[0]}").json()
    check(client, container, d, media)
    for vid in (a_priv, a_rej):
        r = bob.get(f"/v1/videos/{vid}")
        assert r.status_code == 404 and "video_url" not in r.text and "thumbnail_url" not in r.text

    # mobs: thumbnails of public members; a mob page lists only what the viewer may see, each with URLs
    mobs = bob.get("/v1/mobs").json()["data"]
    dance = next(m for m in mobs if m["top_terms"][0] == "#dance")
    public_thumbs = {media[v][1] for v in a_pub}
    assert dance["thumbnail_urls"] and dance["urls_expire_at"]
    assert {fetch(client, u) for u in dance["thumbnail_urls"]} <= public_thumbs
    page = bob.get(f"/v1/mobs/{dance['id']}").json()
    assert {v["id"] for v in page["videos"]} == set(a_pub)
    for v in page["videos"]:
        check(client, container, v, media)
    own_page = alice.get(f"/v1/mobs/{dance['id']}").json()
    assert {v["id"] for v in own_page["videos"]} == {*a_pub, a_priv}
    for v in own_page["videos"]:
        check(client, container, v, media)

    # similar search: bob sees alice's public ones with URLs, never her private one
    hits = bob.get(f"/v1/search/similar?videoId={a_pub[0]}&k=10").json()["data"]
    assert hits and a_priv not in {h["video"]["id"] for h in hits}
    for h in hits:
        check(client, container, h["video"], media)
    own_hits = alice.get(f"/v1/search/similar?videoId={a_pub[0]}&k=10").json()["data"]
    assert a_priv in {h["video"]["id"] for h in own_hits}
    for h in own_hits:
        check(client, container, h["video"], media)

    # the admin list links every video
    listed = admin.get("/v1/admin/videos").json()["data"]
    assert {v["id"] for v in listed} == set(media)
    for v in listed:
        check(client, container, v, media)

    # nothing anywhere in bob's answers points at alice's private or rejected objects
    private_keys = set()
    with container.store.tx(write=False) as tx:
        for vid in (a_priv, a_rej):
            row = MobsRepo(tx).video(vid)
            assert row is not None
            for asset_id in (row.asset_id, row.thumbnail_asset_id):
                asset = tx.assets.asset(asset_id)
                private_keys.add(asset.key)
    seen = "".join(bob.get(p).text for p in ("/v1/feed", "/v1/videos/feed?order=best", "/v1/mobs",
                                              f"/v1/mobs/{dance['id']}",
                                              f"/v1/search/similar?videoId={a_pub[0]}&k=10"))
    assert not any(key in seen or key.replace("/", "%2F") in seen for key in private_keys)


def test_a_video_without_stored_objects_has_no_urls(client: Any, container: Any, alice: UserHandle) -> None:
    (ta,) = trend_vectors(1, 1, seed=7)
    vid = seed(container, alice, ta[0], tag="dance")
    for v in (alice.get("/v1/feed").json()["data"][0], alice.get("/v1/videos/user").json()["data"][0],
              alice.get(f"/v1/videos/{vid}").json()):
        assert v["video_url"] is None and v["thumbnail_url"] is None and v["urls_expire_at"] is None


def test_another_owners_asset_is_never_linked(client: Any, container: Any, alice: UserHandle,
                                             bob: UserHandle) -> None:
    """A video naming an asset that is not its owner's gets no URL for it (the joins check the owner)."""
    (ta,) = trend_vectors(1, 1, seed=8)
    vid = seed(container, alice, ta[0], tag="dance")
    bobs = container.assets.store_output(owner_id=bob.id, job_id=None, data=b"bob's", content_type="image/jpeg",
                                         filename="b.jpg")
    with container.store.tx() as tx:
        MobsRepo(tx).update_video(vid, asset_id=bobs.id, thumbnail_asset_id=bobs.id)
    for v in (bob.get("/v1/feed").json()["data"][0], alice.get("/v1/videos/user").json()["data"][0],
              alice.get(f"/v1/videos/{vid}").json()):
        assert v["video_url"] is None and v["thumbnail_url"] is None


@contextmanager
def counted(container: Any) -> Iterator[list[str]]:
    """Every statement the database runs meanwhile: through the engine, and the event-loop reads."""
    seen: list[str] = []
    engine = container.store.db.engine
    reads = container.store.reads

    def on_execute(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    original = reads.all

    async def all_counted(stmt: Any, **params: Any) -> Any:
        seen.append(str(stmt))
        return await original(stmt, **params)

    event.listen(engine, "before_cursor_execute", on_execute)
    reads.all = all_counted
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", on_execute)
        del reads.all


def test_lists_make_a_constant_number_of_queries(client: Any, container: Any, alice: UserHandle,
                                                 admin: UserHandle) -> None:
    (ta,) = trend_vectors(1, 10, seed=9)
    first = [with_media(container, alice, v, tag="dance")[0] for v in ta[:2]]
    mob_id = alice.get(f"/v1/videos/{first[0]}").json()["mob_id"]
    paths = {"feed": (alice, "/v1/feed"), "user": (alice, "/v1/videos/user"), "mobs": (alice, "/v1/mobs"),
             "mob": (alice, f"/v1/mobs/{mob_id}"), "similar": (alice, f"/v1/search/similar?videoId={first[0]}"),
             "admin": (admin, "/v1/admin/videos")}

    def queries() -> dict[str, int]:
        out = {}
        for name, (user, path) in paths.items():
            user.get(path)  # warm: sessions, caches
            counts = []
            for _ in range(2):
                with counted(container) as seen:
                    r = user.get(path)
                assert r.status_code == 200, r.text
                counts.append(len(seen))
            out[name] = min(counts)
        return out

    few = queries()
    more = [with_media(container, alice, v, tag="dance")[0] for v in ta[2:]]
    many = queries()
    # the lists did grow, and every video in them is linked ...
    assert len(alice.get("/v1/videos/user").json()["data"]) == 2 + len(more)
    assert all(v["video_url"] and v["thumbnail_url"] for v in alice.get(f"/v1/mobs/{mob_id}").json()["videos"])
    # ... with the same number of queries
    assert many == few, (few, many)
