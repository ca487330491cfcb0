"""Creators' pages, execution history refusals, the similar-search floor, one score per video, usage dates,
stable names and the merge check through the service (vectors built here, as in test_mobs_api.py)."""

from __future__ import annotations

from typing import Any

import numpy as np

from reelforge.apps.mobs.repository import MobsRepo
from tests.api.test_mobs_api import _clean, assert_problem, seed, trend_vectors  # noqa: F401
from tests.conftest import UserHandle
from tests.fixtures.hashing import fast_password_hashing  # noqa: F401


def test_creator_page_lists_public_validated_videos_only(client: Any, container: Any, alice: UserHandle,
                                                         bob: UserHandle) -> None:
    (ta,) = trend_vectors(1, 4, seed=5)
    public = seed(container, alice, ta[0], tag="dance")
    private = seed(container, alice, ta[1], tag="dance", visibility="private")
    rejected = seed(container, alice, ta[2], tag="dance", status="rejected")
    page = bob.get(f"/v1/videos/user?userId={alice.id}")
    assert page.status_code == 200, page.text
    assert [v["id"] for v in page.json()["data"]] == [public]
    mine = {v["id"] for v in alice.get(f"/v1/videos/user?userId={alice.id}").json()["data"]}
    assert mine == {public, private, rejected}
    assert bob.get("/v1/videos/user?userId=" + "0" * 32).json()["data"] == []  # nobody: an empty page


def test_history_says_what_is_refused(client: Any, container: Any, alice: UserHandle, bob: UserHandle) -> None:
    (ta,) = trend_vectors(1, 2, seed=6)
    public = seed(container, alice, ta[0], tag="dance")
    private = seed(container, alice, ta[1], tag="dance", visibility="private")
    assert bob.get(f"/v1/videos/{public}").status_code == 200  # bob sees the video ...
    body = assert_problem(bob.get(f"/v1/execution-history?videoId={public}"), 403, "history_owner_only")
    assert "owner" in body["detail"]  # ... and is told why its history is not his to read
    assert_problem(bob.get(f"/v1/execution-history?videoId={private}"), 404, "video_not_found")
    assert alice.get(f"/v1/execution-history?videoId={public}").status_code == 200


def test_similar_search_has_a_floor_and_says_when_fewer_than_k_pass(client: Any, container: Any,
                                                                   alice: UserHandle) -> None:
    ta, tb = trend_vectors(2, 3, seed=7)  # two unrelated trends: similarity about 0 across them
    a = [seed(container, alice, v, tag="dance") for v in ta]
    b = [seed(container, alice, v, tag="cooking") for v in tb]
    res = alice.get(f"/v1/search/similar?videoId={a[0]}&k=5").json()
    assert {h["video"]["id"] for h in res["data"]} == set(a[1:])
    assert res["fewer_than_k"] is True and res["min_similarity"] == 0.3
    assert all(h["score"] >= 0.3 for h in res["data"])
    loose = alice.get(f"/v1/search/similar?videoId={a[0]}&k=5&minSimilarity=-1").json()
    assert {h["video"]["id"] for h in loose["data"]} == set(a[1:] + b) and loose["fewer_than_k"] is False
    assert_problem(alice.get(f"/v1/search/similar?videoId={a[0]}&minSimilarity=2"), 422)


def test_one_score_per_video(client: Any, container: Any, alice: UserHandle) -> None:
    (ta,) = trend_vectors(1, 1, seed=8)
    vid = seed(container, alice, ta[0], tag="dance")
    v = alice.get(f"/v1/videos/{vid}").json()
    assert v["score"] == v["scores"]["score"]
    assert "score" not in v["analysis"] and "components" not in v["analysis"]
    assert v["analysis"]["participation"]["score"] == 0.7  # the participation figure, named as such


def test_usage_rows_carry_a_date_only(client: Any, container: Any, admin: UserHandle) -> None:
    with container.store.tx() as tx:
        tx.alarms.add_model_invocation(task="video.embed", model="local", job_id=None, worker_id="w", ok=True,
                                       error=None, seconds=1.0, load_s=None, unit="frames", units=8.0)
    rows = admin.get("/v1/admin/usage-stats?days=1").json()["data"]
    assert rows and all("day" not in r and len(r["date"]) == 10 for r in rows)


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v)).astype(np.float32)


def _loose_trend(container: Any, user: UserHandle, seed_: int) -> list[str]:
    """A trend that grows loose: a tight core, members 0.3-0.34 from the mob's centroid, then a clip 0.36
    from it (just past the 0.35 base threshold). Returns the video ids."""
    rng = np.random.default_rng(seed_)
    centre = _unit(rng.normal(size=256))

    def at(c: np.ndarray, d: float) -> np.ndarray:
        c = _unit(c)
        r = rng.normal(size=256)
        r -= r.dot(c) * c
        r /= np.linalg.norm(r)
        return _unit((1 - d) * c + np.sqrt(1 - (1 - d) ** 2) * r)

    def centroid_of(vid: str) -> np.ndarray:
        from reelforge.apps.mobs.repository import blob_to_vec

        with container.store.tx(write=False) as tx:
            repo = MobsRepo(tx)
            c = blob_to_vec(repo.mob(repo.video(vid).mob_id).centroid)  # type: ignore[arg-type, union-attr]
        assert c is not None
        return c

    ids = [seed(container, user, at(centre, 0.1), tag="latteart") for _ in range(3)]
    for d in (0.3, 0.32, 0.33, 0.33, 0.34, 0.34):
        ids.append(seed(container, user, at(centroid_of(ids[0]), d), tag="latteart"))
    ids.append(seed(container, user, at(centroid_of(ids[0]), 0.36), tag="latteart"))
    return ids


def _active_mobs(container: Any) -> list[Any]:
    with container.store.tx(write=False) as tx:
        return list(MobsRepo(tx).mobs(status="active"))


def test_a_growing_loose_mob_takes_a_clip_just_past_the_base_threshold(client: Any, container: Any,
                                                                        alice: UserHandle) -> None:
    """The duplicate mob users saw: with the earlier fixed rule the last clip starts a second mob of the
    same trend; with each mob's own threshold it joins."""
    from tests.fixtures.mob_corpus import clean_mobs

    mobs = container.settings.mobs
    mobs.quick_recluster_min_videos = 0  # the threshold rule alone
    fixed = {"mob_distance_cap": mobs.mob_distance_cap, "mob_merge_check": mobs.mob_merge_check}
    mobs.mob_distance_cap, mobs.mob_merge_check = mobs.mob_distance_threshold, False
    try:
        _loose_trend(container, alice, 11)
        assert len(_active_mobs(container)) == 2  # the earlier rule splits the trend
    finally:
        mobs.mob_distance_cap, mobs.mob_merge_check = fixed["mob_distance_cap"], fixed["mob_merge_check"]
    clean_mobs(container)
    ids = _loose_trend(container, alice, 11)
    active = _active_mobs(container)
    assert len(active) == 1 and active[0].count == len(ids), [(m.id, m.count) for m in active]


def test_merge_check_folds_a_new_mob_into_its_neighbour(client: Any, container: Any, alice: UserHandle) -> None:
    """Two mobs whose centroids come within a join threshold of each other become one (recorded as a merge)."""
    container.settings.mobs.quick_recluster_min_videos = 0
    rng = np.random.default_rng(12)
    centre = _unit(rng.normal(size=256))
    side = rng.normal(size=256)
    side -= side.dot(centre) * centre
    side = _unit(side)
    # Two clips 0.4 apart (two mobs), then one between them: it joins one mob, whose centroid moves within
    # reach of the other's.
    a = _unit(centre + 0.5 * side)
    b = _unit(centre - 0.5 * side)
    first = seed(container, alice, a, tag="latteart")
    seed(container, alice, b, tag="latteart")
    assert len(_active_mobs(container)) == 2
    seed(container, alice, _unit(centre + 0.05 * side), tag="latteart")
    active = _active_mobs(container)
    assert len(active) == 1 and active[0].count == 3
    with container.store.tx(write=False) as tx:
        repo = MobsRepo(tx)
        merged = [m for m in repo.mobs(status="merged")]
        assert len(merged) == 1 and merged[0].merged_into == active[0].id
        kinds = [e.kind for e in repo.mob_events(mob_id=active[0].id)]
        assert "merge" in kinds and repo.video(first).mob_id == active[0].id  # type: ignore[union-attr]


def test_mob_name_is_stable_as_members_arrive(client: Any, container: Any, alice: UserHandle) -> None:
    container.settings.mobs.quick_recluster_min_videos = 0
    (ta,) = trend_vectors(1, 6, seed=10)
    first = seed(container, alice, ta[0], tag="latteartspeedrun")
    with container.store.tx(write=False) as tx:
        repo = MobsRepo(tx)
        mob_id = repo.video(first).mob_id  # type: ignore[union-attr]
        name = repo.mob(mob_id).name  # type: ignore[arg-type, union-attr]
    assert name.startswith("#latteartspeedrun")
    for v in ta[1:]:
        seed(container, alice, v, tag="latteartspeedrun")
    with container.store.tx(write=False) as tx:
        assert MobsRepo(tx).mob(mob_id).name == name  # type: ignore[arg-type, union-attr]


def test_a_new_mob_starts_a_quick_recluster(client: Any, container: Any, alice: UserHandle) -> None:
    ta, tb = trend_vectors(2, 6, seed=13)
    for v in ta:
        seed(container, alice, v, tag="dance")
    grouping = container.app("mobs").grouping
    assert grouping._recluster_thread is None  # one mob so far: nothing to re-cluster
    seed(container, alice, tb[0], tag="cooking")  # a new mob, 7 validated videos
    t = grouping._recluster_thread
    assert t is not None
    t.join(60)
    runs = grouping.runs(5)
    assert runs[0].runner == "quick" and runs[0].status == "succeeded" and runs[0].k == 2, runs[0].details
    assert runs[0].details["projection"]["refit"] is False  # the scheduled run refits, not the quick one
