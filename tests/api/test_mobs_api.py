"""/v1 video-understanding routes: submit and upload, visibility in feed/mobs/search, validation, history, admin.

Analysis results and vectors are built here (no models run): `store_results`, `apply_validation` and `assign`
are the pipeline's own writes. tests/integration/test_mobs_pipeline.py runs the real models.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pytest

from reelforge.apps.mobs.repository import MobsRepo, blob_to_f32, blob_to_vec
from reelforge.domain.types import Principal, Role
from tests.conftest import UserHandle
from tests.fixtures.hashing import fast_password_hashing  # noqa: F401
from tests.fixtures.mob_corpus import clean_mobs

PROBLEM = "application/problem+json"
DIM = 256
VERSION = "test-space-1"


def assert_problem(r: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM), r.headers
    body = r.json()
    if code is not None:
        assert body["code"] == code, body
    return body


@pytest.fixture(autouse=True)
def _clean(container: Any) -> Any:
    """PostgreSQL databases are shared by the session: start from empty mobs tables and namespace."""
    clean_mobs(container)
    yield


def trend_vectors(n_trends: int, per: int, seed: int = 0) -> list[list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    centers = [rng.normal(size=DIM) for _ in range(n_trends)]
    out = []
    for c in centers:
        vs = []
        for _ in range(per):
            v = c + 0.2 * rng.normal(size=DIM)
            vs.append((v / np.linalg.norm(v)).astype(np.float32))
        out.append(vs)
    return out


def principal(u: UserHandle, role: Role = Role.user) -> Principal:
    return Principal(u.id, u.email, role)


def seed(c: Any, u: UserHandle, vec: np.ndarray, *, tag: str, status: str = "validated",
         visibility: str = "public", score: float | None = None) -> str:
    """A video as the pipeline leaves it, from results built here."""
    v, _ = c.app("mobs").uploads.submit(principal(u), filename=f"{tag}.mp4", content_type="video/mp4", size=1000,
                         caption=f"#{tag} clip", visibility=visibility)
    analysis = {"ocr_text": [f"{tag.upper()} NOW"], "transcript": f"join the {tag} challenge",
                "words": [{"word": w, "start": i * 0.3, "end": i * 0.3 + 0.2, "probability": 0.9}
                          for i, w in enumerate(["join", "the", tag])],
                "hashtags": [tag], "mentions": [], "terms": [tag, "challenge"],
                "activity": {"coherence": 0.9, "contrast": 0.2, "black_fraction": 0.0}, "components": {},
                "score": 0.7, "model": "built-in-test", "notes": []}
    c.app("mobs").analysis.store_results(v.id, analysis=analysis, vector=vec, model_version=VERSION, participation_model="local",
                         embed_model="local", thumbnail_asset_id=None)
    sc = score if score is not None else (0.9 if status == "validated" else 0.1)
    c.app("mobs").analysis.apply_validation(v.id, {"status": status, "score": sc, "components": {"visual": sc},
                                   "reasons": [f"visual {sc:.2f}"], "threshold": 0.5})
    c.app("mobs").grouping.assign(v.id)
    return str(v.id)


ROUTES = [
    ("POST", "/v1/videos/submit"), ("POST", "/v1/videos/" + "a" * 32 + "/complete"), ("GET", "/v1/videos/user"),
    ("GET", "/v1/videos/" + "a" * 32), ("GET", "/v1/videos/feed"), ("GET", "/v1/feed"), ("GET", "/v1/mobs"),
    ("GET", "/v1/mobs/" + "a" * 32), ("GET", "/v1/search/similar?videoId=" + "a" * 32), ("POST", "/v1/validate"),
    ("GET", "/v1/validate/" + "a" * 32), ("GET", "/v1/execution-history?videoId=" + "a" * 32),
    ("GET", "/v1/admin/videos"), ("DELETE", "/v1/admin/videos/" + "a" * 32), ("GET", "/v1/admin/videos/stats"),
    ("GET", "/v1/admin/usage-stats"), ("POST", "/v1/admin/mobs/recluster"),
]


def test_every_route_needs_a_token(client: Any) -> None:
    for method, path in ROUTES:
        assert_problem(client.request(method, path, json={}), 401)


def test_admin_routes_refuse_users(client: Any, alice: UserHandle) -> None:
    for method, path in ROUTES:
        if "/admin/" in path:
            assert_problem(alice.client.request(method, path, headers=alice.headers, json={}), 403, "admin_only")


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A real short video (upload completion probes what arrived)."""
    from tests.fixtures.videos import make_testsrc

    return make_testsrc(tmp_path_factory.mktemp("clip") / "clip.mp4", seconds=0.5, size=(64, 48),
                        audio=False).read_bytes()


def test_submit_upload_complete_starts_one_job(client: Any, container: Any, alice: UserHandle,
                                               bob: UserHandle, clip: bytes) -> None:
    data = clip
    r = alice.post("/v1/videos/submit", json={"filename": "clip.mp4", "content_type": "video/mp4",
                                               "size": len(data), "caption": "#dance with @bob",
                                               "sha256": hashlib.sha256(data).hexdigest()})
    assert r.status_code == 201, r.text
    body = r.json()
    vid, up = body["video"]["id"], body["upload"]
    assert body["video"]["status"] == "uploading" and up["method"] == "PUT"
    # the upload is not complete yet: nothing arrived
    assert_problem(alice.post(f"/v1/videos/{vid}/complete", json={}), 409, "upload_missing")
    direct = {"kind": "video.analyze", "input": {"video_id": vid}}
    assert_problem(alice.post("/v1/jobs", json=direct), 409, "video_not_uploaded")
    assert_problem(bob.post("/v1/jobs", json=direct), 404, "video_not_found")
    assert_problem(alice.post("/v1/jobs", json={**direct, "input": {"video_id": "x"}}), 422, "validation_error")
    put = client.put(up["url"].replace("http://testserver", ""), content=data, headers=up["headers"])
    assert put.status_code == 200, put.text
    assert_problem(bob.post(f"/v1/videos/{vid}/complete", json={}), 404, "video_not_found")
    first = alice.post(f"/v1/videos/{vid}/complete", json={})
    assert first.status_code == 202, first.text
    again = alice.post(f"/v1/videos/{vid}/complete", json={})
    assert again.status_code == 202 and again.json()["job_id"] == first.json()["job_id"]
    job = alice.get(f"/v1/jobs/{first.json()['job_id']}").json()
    assert job["kind"] == "video.analyze" and job["input"] == {"video_id": vid} and job["status"] == "queued"
    v = alice.get(f"/v1/videos/{vid}").json()
    assert v["status"] == "processing" and v["job_id"] == job["id"] and v["playback_url"]
    assert v["scores"] is None and v["score"] is None
    assert_problem(bob.get(f"/v1/videos/{vid}"), 404, "video_not_found")
    mine = alice.get("/v1/videos/user").json()["data"]
    assert [x["id"] for x in mine] == [vid]
    # A creator's page: alice's processing (not yet validated) video is not listed to bob.
    assert bob.get(f"/v1/videos/user?userId={alice.id}").json()["data"] == []
    hist = alice.get(f"/v1/execution-history?videoId={vid}").json()
    assert hist["job_id"] == job["id"] and hist["events"][0]["type"] == "JobQueued"
    assert_problem(bob.get(f"/v1/execution-history?videoId={vid}"), 404, "video_not_found")
    # not yet analysed
    assert_problem(alice.get(f"/v1/validate/{vid}"), 409, "video_not_analyzed")
    assert_problem(alice.post("/v1/validate", json={"videoId": vid}), 409, "video_not_analyzed")


def test_submit_bad_input(client: Any, alice: UserHandle) -> None:
    ok = {"filename": "a.mp4", "content_type": "video/mp4", "size": 10}
    assert_problem(alice.post("/v1/videos/submit", json={**ok, "content_type": "image/png"}), 422,
                   "unsupported_video_type")
    assert_problem(alice.post("/v1/videos/submit", json={**ok, "size": 0}), 422, "validation_error")
    assert_problem(alice.post("/v1/videos/submit", json={**ok, "size": 10**12}), 413, "video_too_large")
    assert_problem(alice.post("/v1/videos/submit", json={**ok, "visibility": "friends"}), 422, "validation_error")
    assert_problem(alice.post("/v1/videos/submit", json={**ok, "extra": 1}), 422, "validation_error")
    assert_problem(alice.post("/v1/videos/submit", json={**ok, "caption": "x" * 2201}), 422, "validation_error")
    assert_problem(alice.get("/v1/videos/not-an-id"), 404, "video_not_found")
    assert_problem(alice.get("/v1/mobs/zzz"), 404, "mob_not_found")
    assert_problem(alice.get("/v1/feed?order=worst"), 422, "validation_error")
    assert_problem(alice.get("/v1/feed?cursor=%%%"), 422, "invalid_cursor")
    assert_problem(alice.get("/v1/search/similar?videoId=" + "a" * 32 + "&k=0"), 422, "validation_error")
    assert_problem(alice.get("/v1/search/similar"), 422, "validation_error")
    assert_problem(alice.post("/v1/validate", json={"videoId": "a" * 32, "x": 1}), 422, "validation_error")


def test_visibility_in_feed_mobs_and_search(client: Any, container: Any, alice: UserHandle,
                                            bob: UserHandle) -> None:
    (ta, tb) = trend_vectors(2, 4, seed=3)
    a_pub = [seed(container, alice, v, tag="dance") for v in ta[:3]]
    a_priv = seed(container, alice, ta[3], tag="dance", visibility="private")
    a_rej = seed(container, alice, tb[3], tag="cooking", status="rejected")
    b_pub = [seed(container, bob, v, tag="cooking") for v in tb[:3]]

    feed_ids = {v["id"] for v in bob.get("/v1/feed").json()["data"]}
    assert feed_ids == set(a_pub + b_pub)
    assert {v["id"] for v in bob.get("/v1/videos/feed?order=best").json()["data"]} == feed_ids
    # the owner sees her private and rejected videos; nobody else does
    for vid in (a_priv, a_rej):
        assert alice.get(f"/v1/videos/{vid}").status_code == 200
        assert_problem(bob.get(f"/v1/videos/{vid}"), 404, "video_not_found")
        assert_problem(bob.get(f"/v1/search/similar?videoId={vid}"), 404, "video_not_found")
        assert_problem(bob.get(f"/v1/validate/{vid}"), 404, "video_not_found")
    assert bob.get(f"/v1/videos/{a_pub[0]}").status_code == 200
    assert bob.get(f"/v1/videos/{a_pub[0]}").json()["playback_url"] is None  # no upload completed here

    # two mobs: dance (3 public + 1 private of alice), cooking (bob's 3); the rejected one is in none
    mobs = bob.get("/v1/mobs").json()["data"]
    assert len(mobs) == 2
    by_name = {m["top_terms"][0]: m for m in mobs}
    assert by_name["#dance"]["count"] == 3 and by_name["#cooking"]["count"] == 3
    dance_for_alice = alice.get(f"/v1/mobs/{by_name['#dance']['id']}").json()
    assert {v["id"] for v in dance_for_alice["videos"]} == set([*a_pub, a_priv])
    dance_for_bob = bob.get(f"/v1/mobs/{by_name['#dance']['id']}").json()
    assert {v["id"] for v in dance_for_bob["videos"]} == set(a_pub)
    assert dance_for_bob["name"].startswith("#dance")
    assert bob.get(f"/v1/feed?mobId={by_name['#cooking']['id']}").json()["data"][0]["id"] in b_pub
    with container.store.tx(write=False) as tx:
        assert MobsRepo(tx).video(a_rej).mob_id is None  # type: ignore[union-attr]

    # similar search: same trend first, never another user's private or rejected video
    hits = bob.get(f"/v1/search/similar?videoId={b_pub[0]}&k=10").json()["data"]
    ids = [h["video"]["id"] for h in hits]
    assert a_priv not in ids and a_rej not in ids and b_pub[0] not in ids
    assert set(ids[:2]) == set(b_pub[1:])
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    own = alice.get(f"/v1/search/similar?videoId={a_pub[0]}&k=3").json()["data"]
    assert {h["video"]["id"] for h in own} == {a_pub[1], a_pub[2], a_priv}

    # validation details with reasons
    val = bob.get(f"/v1/validate/{b_pub[0]}").json()
    assert val["status"] == "validated" and val["reasons"] and val["threshold"] == 0.5


def test_feed_pagination(client: Any, container: Any, alice: UserHandle) -> None:
    (vs,) = trend_vectors(1, 5, seed=5)
    ids = [seed(container, alice, v, tag="run", score=0.5 + 0.1 * i) for i, v in enumerate(vs)]
    seen: list[str] = []
    cursor = None
    while True:
        r = alice.get("/v1/feed", params={"limit": 2, "order": "best", **({"cursor": cursor} if cursor else {})})
        page = r.json()
        seen += [v["id"] for v in page["data"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == ids[::-1]
    newest = [v["id"] for v in alice.get("/v1/feed?limit=10").json()["data"]]
    assert sorted(newest) == sorted(ids)


def test_revalidate_follows_the_threshold(client: Any, container: Any, alice: UserHandle,
                                          bob: UserHandle) -> None:
    (vs,) = trend_vectors(1, 2, seed=9)
    a, b = (seed(container, alice, v, tag="yoga") for v in vs)
    assert_problem(bob.post("/v1/validate", json={"videoId": a}), 404, "video_not_found")
    r = alice.post("/v1/validate", json={"videoId": a})
    assert r.status_code == 200, r.text
    body = r.json()
    # computed from the stored analysis: every component has a reason
    assert body["status"] == "validated" and set(body["components"]) >= {"visual", "audio", "ocr", "hashtags"}
    assert len(body["reasons"]) >= 4 and body["mob_id"]
    container.settings.mobs.validation_threshold = 1.0
    try:
        body = alice.post("/v1/validate", json={"videoId": a}).json()
    finally:
        container.settings.mobs.validation_threshold = 0.5
    assert body["status"] == "rejected" and body["mob_id"] is None
    assert a not in {v["id"] for v in bob.get("/v1/feed").json()["data"]}
    assert_problem(bob.get(f"/v1/search/similar?videoId={a}"), 404)
    assert all(h["video"]["id"] != a for h in alice.get(f"/v1/search/similar?videoId={b}").json()["data"])
    body = alice.post("/v1/validate", json={"videoId": a}).json()
    assert body["status"] == "validated" and body["mob_id"]


def _recomputed(container: Any, mob_id: str) -> tuple[int, np.ndarray | None]:
    with container.store.tx(write=False) as tx:
        repo = MobsRepo(tx)
        vecs = [v for _, v, _ in repo.members_with_vectors(mob_id) if v is not None]
    return len(vecs), (np.mean(np.vstack(vecs).astype(np.float64), axis=0) if vecs else None)


def test_admin_list_delete_keeps_mobs_exact(client: Any, container: Any, alice: UserHandle, bob: UserHandle,
                                            admin: UserHandle) -> None:
    (vs,) = trend_vectors(1, 4, seed=11)
    ids = [seed(container, alice, v, tag="skate") for v in vs]
    mob_id = alice.get(f"/v1/videos/{ids[0]}").json()["mob_id"]
    listed = admin.get("/v1/admin/videos").json()["data"]
    assert {v["id"] for v in listed} == set(ids)
    assert {v["id"] for v in admin.get(f"/v1/videos/user?userId={alice.id}").json()["data"]} == set(ids)
    assert admin.get(f"/v1/execution-history?videoId={ids[0]}").status_code == 200
    assert admin.get(f"/v1/admin/videos?userId={bob.id}").json()["data"] == []
    assert_problem(bob.delete(f"/v1/admin/videos/{ids[1]}"), 403, "admin_only")
    assert admin.delete(f"/v1/admin/videos/{ids[1]}").status_code == 204
    assert_problem(admin.delete(f"/v1/admin/videos/{ids[1]}"), 404, "video_not_found")
    assert_problem(admin.delete("/v1/admin/videos/" + "b" * 32), 404, "video_not_found")
    assert_problem(alice.get(f"/v1/videos/{ids[1]}"), 404)
    assert container.vectors.get("videos", ids[1]) is None
    with container.store.tx(write=False) as tx:
        m = MobsRepo(tx).mob(mob_id)
    n, mean = _recomputed(container, mob_id)
    assert m is not None and m.count == n == 3
    assert np.allclose(blob_to_vec(m.centroid), mean, atol=1e-9)
    assert alice.get(f"/v1/mobs/{mob_id}").json()["count"] == 3
    for vid in ids[2:]:
        admin.delete(f"/v1/admin/videos/{vid}")
    n, _ = _recomputed(container, mob_id)
    with container.store.tx(write=False) as tx:
        m = MobsRepo(tx).mob(mob_id)
    assert m is not None and m.count == n == 1
    admin.delete(f"/v1/admin/videos/{ids[0]}")
    with container.store.tx(write=False) as tx:
        m = MobsRepo(tx).mob(mob_id)
    assert m is not None and m.count == 0 and m.status == "empty"
    gone = alice.get(f"/v1/mobs/{mob_id}").json()  # kept for links and history, with nobody in it
    assert gone["status"] == "empty" and gone["videos"] == [] and gone["events"][0]["kind"] == "emptied"
    assert mob_id not in {m["id"] for m in alice.get("/v1/mobs").json()["data"]}
    assert [v["status"] for v in admin.get("/v1/admin/videos?status=deleted").json()["data"]] == ["deleted"] * 4
    assert_problem(admin.get("/v1/admin/videos?status=weird"), 422, "invalid_status")


def test_admin_stats_usage_and_recluster(client: Any, container: Any, alice: UserHandle,
                                         admin: UserHandle) -> None:
    groups = trend_vectors(3, 4, seed=13)
    tags = ["dance", "cooking", "skate"]
    ids = {t: [seed(container, alice, v, tag=t) for v in vs] for t, vs in zip(tags, groups, strict=True)}
    seed(container, alice, groups[0][0], tag="noise", status="rejected")
    with container.store.tx() as tx:
        for ok in (True, True, False):
            tx.alarms.add_model_invocation(task="video.embed", model="local", job_id=None, worker_id="w", ok=ok,
                                           error=None if ok else "model_unavailable", seconds=1.5, load_s=None,
                                           unit="frames", units=8.0)
    stats = admin.get("/v1/admin/videos/stats").json()
    assert stats["videos"]["validated"] == 12 and stats["videos"]["rejected"] == 1
    assert stats["validation_rate"] == pytest.approx(12 / 13) and stats["mobs"]["active"] == 3
    platform = admin.get("/v1/admin/stats").json()  # the issue's path: platform figures plus the videos'
    assert platform["videos"]["videos"] == stats["videos"] and "jobs_per_hour" in platform
    usage = admin.get("/v1/admin/usage-stats?days=2").json()["data"]
    assert usage == [{"date": usage[0]["date"], "task": "video.embed", "model": "local",
                      "unit": "frames", "invocations": 3, "errors": 1, "units": 24.0, "seconds": 4.5}]
    assert_problem(admin.get("/v1/admin/usage-stats?days=0"), 422)
    before = {t: alice.get(f"/v1/videos/{ids[t][0]}").json()["mob_id"] for t in tags}
    run = admin.post("/v1/admin/mobs/recluster").json()
    assert run["k"] == 3 and run["videos"] == 12 and sorted(run["mobs"]) == sorted(before.values())
    for t in tags:  # ids stable, membership unchanged
        assert {alice.get(f"/v1/videos/{v}").json()["mob_id"] for v in ids[t]} == {before[t]}
    for mob_id in before.values():
        with container.store.tx(write=False) as tx:
            m = MobsRepo(tx).mob(mob_id)
        n, mean = _recomputed(container, mob_id)
        assert m is not None and m.count == n == 4 and np.allclose(blob_to_vec(m.centroid), mean)
    runs = admin.get("/v1/admin/videos/stats").json()["recluster_runs"]
    assert runs[0]["status"] == "succeeded" and runs[0]["k"] == 3 and "silhouette" in runs[0]["criterion"]


def test_recluster_merges_and_splits(container: Any, alice: UserHandle, client: Any) -> None:
    (ta, tb) = trend_vectors(2, 4, seed=17)
    container.settings.mobs.mob_distance_threshold = 2.0  # everything joins the first mob incrementally
    try:
        ids = [seed(container, alice, v, tag="mix") for v in ta + tb]
    finally:
        container.settings.mobs.mob_distance_threshold = 0.35
    with container.store.tx(write=False) as tx:
        repo = MobsRepo(tx)
        assert len(repo.mobs()) == 1
        first = repo.video(ids[0]).mob_id  # type: ignore[union-attr]
    run = container.app("mobs").grouping.recluster(runner="test")
    assert run["k"] == 2
    assert [e["kind"] for e in run["events"]] == ["split"] and run["events"][0]["parent"] == first
    with container.store.tx(write=False) as tx:
        repo = MobsRepo(tx)
        events = {(e.kind, e.mob_id) for e in repo.mob_events(run_id=run["run_id"])}
        a_mob = {repo.video(i).mob_id for i in ids[:4]}  # type: ignore[union-attr]
        b_mob = {repo.video(i).mob_id for i in ids[4:]}  # type: ignore[union-attr]
        vec = blob_to_f32(repo.video(ids[0]).embedding)  # type: ignore[union-attr]
    assert len(a_mob) == len(b_mob) == 1 and a_mob != b_mob and first in a_mob | b_mob
    assert ("split", first) in events and vec is not None
    # same input again: nothing moves, no events
    again = container.app("mobs").grouping.recluster(runner="test")
    assert again["events"] == [] and sorted(again["mobs"]) == sorted(a_mob | b_mob)


def test_recluster_schedule_has_one_runner(container: Any, client: Any) -> None:
    other = type(container.app("mobs"))(container.store, container.settings, assets=container.assets,
                                 objects=container.objects, jobs=container.jobs, vectors=lambda: container.vectors)
    assert container.app("mobs").grouping.tick("worker-1") is True
    assert other.grouping.tick("worker-2") is False and container.app("mobs").grouping.tick("worker-1") is False
    container.app("mobs").grouping._recluster_thread.join(10)
    runs = container.app("mobs").grouping.runs()
    assert len(runs) == 1 and runs[0].runner == "worker-1" and runs[0].status == "succeeded"


def test_console_pages(client: Any) -> None:
    for path in ("/mobs/feed", "/mobs", "/mobs/upload", "/mobs/videos/" + "a" * 32, "/admin/videos",
                 "/admin/video-stats"):
        r = client.get(path)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html"), path
        assert "mobs.js" in r.text and "script-src 'self'" in r.headers["content-security-policy"]
    assert client.get("/static/mobs.js").status_code == 200
    assert client.get("/mobs/videos/bad$id").status_code == 422


def test_completed_upload_without_job_is_resumed_once(client: Any, container: Any, alice: UserHandle,
                                                      clip: bytes) -> None:
    data = clip
    r = alice.post("/v1/videos/submit", json={"filename": "c.mp4", "size": len(data)}).json()
    vid, up = r["video"]["id"], r["upload"]
    assert client.put(up["url"].replace("http://testserver", ""), content=data, headers=up["headers"]).status_code == 200
    # the upload completes, then the process stops before the job is queued
    container.assets.complete_upload(principal(alice), up["id"])
    assert alice.get(f"/v1/videos/{vid}").json()["status"] == "uploading"
    assert container.app("mobs").uploads.resume_stalled() == 1
    v = alice.get(f"/v1/videos/{vid}").json()
    assert v["status"] == "processing" and v["job_id"]
    assert container.app("mobs").uploads.resume_stalled() == 0
    assert alice.post(f"/v1/videos/{vid}/complete", json={}).json()["job_id"] == v["job_id"]
    jobs = alice.get("/v1/jobs?kind=video.analyze").json()["data"]
    assert [j["id"] for j in jobs] == [v["job_id"]]


def _upload_video(client: Any, user: UserHandle, data: bytes, filename: str = "clip.mp4") -> str:
    r = user.post("/v1/videos/submit", json={"filename": filename, "content_type": "video/mp4", "size": len(data)})
    assert r.status_code == 201, r.text
    up = r.json()["upload"]
    assert client.put(up["url"].replace("http://testserver", ""), content=data, headers=up["headers"]).status_code \
        == 200
    return str(r.json()["video"]["id"])


def test_complete_probes_the_upload(client: Any, container: Any, alice: UserHandle, tmp_path: Any) -> None:
    """Completion probes the bytes under the media policy: anything refused answers 422 with its code, the video is
    left failed with that error (its bytes deleted, nothing to play) and no job is queued or charged."""
    from tests.fixtures import hostile

    truncated = hostile.make_truncated_mp4(tmp_path / "cut.mp4", keep=0.3).read_bytes()
    playlist = hostile.make_hls_playlist(tmp_path / "list.m3u8", [str(tmp_path / "cut.mp4")]).read_bytes()
    cases = [(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8, "clip.mp4", "not_a_video"),
             (truncated, "cut.mp4", "media_truncated"),
             (playlist, "list.m3u8", "unsupported_format")]
    before = alice.get("/v1/credits").json()["balance"]
    for data, name, code in cases:
        vid = _upload_video(client, alice, data, name)
        body = assert_problem(alice.post(f"/v1/videos/{vid}/complete", json={}), 422, code)
        assert "/" not in body["detail"].replace("/v1/", ""), body
        v = alice.get(f"/v1/videos/{vid}").json()
        assert v["status"] == "failed" and v["error"]["code"] == code and v["job_id"] is None, v
        assert v["playback_url"] is None
        # settled: completing again, or asking for the analysis directly, queues nothing
        assert_problem(alice.post(f"/v1/videos/{vid}/complete", json={}), 409, "video_not_uploading")
        assert_problem(alice.post("/v1/jobs", json={"kind": "video.analyze", "input": {"video_id": vid}}), 409,
                       "video_not_uploaded")
    assert alice.get("/v1/jobs").json()["data"] == []
    assert alice.get("/v1/credits").json()["balance"] == before
    assert alice.get("/v1/assets").json()["data"] == []
    assert container.app("mobs").uploads.resume_stalled() == 0


def test_complete_refuses_videos_over_the_policy(client: Any, container: Any, alice: UserHandle,
                                                tmp_path: Any) -> None:
    """The same media policy as upscaling (settings `media`, tightened by `mobs`): a video over the size limit is
    refused at completion, before any worker decodes it."""
    from tests.fixtures import hostile

    wide = hostile.make_huge_video(tmp_path / "wide.mp4", size=(4352, 64)).read_bytes()
    vid = _upload_video(client, alice, wide)
    body = assert_problem(alice.post(f"/v1/videos/{vid}/complete", json={}), 422, "video_too_large")
    assert "4352x64" in body["detail"]
    from tests.fixtures.videos import make_testsrc

    container.settings.media.max_fps = 20.0
    try:
        fast = _upload_video(client, alice, make_testsrc(tmp_path / "fast.mp4", seconds=0.5, fps=24).read_bytes())
        assert_problem(alice.post(f"/v1/videos/{fast}/complete", json={}), 422, "frame_rate_too_high")
    finally:
        container.settings.media.max_fps = 240.0
    assert alice.get("/v1/jobs").json()["data"] == []
