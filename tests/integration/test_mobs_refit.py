"""The local embedding projection refitted by the re-clustering, on both database engines.

Raw features are built here (three "trends" in the 1664-d raw space) and stored through the pipeline's own
service writes, as tests/api/test_mobs_api.py does with vectors; the refit, the re-projection, the index,
the mobs and the search are the real ones. The last test runs `video.analyze` through a worker with adapters
that give synthetic features, to check what the pipeline stores and meters.
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from reelforge.apps.mobs.models import RAW_DIM, Projection
from reelforge.apps.mobs.repository import MobsRepo, blob_to_f32, blob_to_vec
from reelforge.domain.types import Principal, Role
from tests.conftest import UserHandle, wait_for
from tests.fixtures.hashing import fast_password_hashing  # noqa: F401
from tests.fixtures.mob_corpus import clean_mobs

MIN_VIDEOS = 10
HOSTED_VERSION = "marengo-2.7/test"


@pytest.fixture(autouse=True)
def _clean(container: Any) -> Any:
    """PostgreSQL databases are shared by the session: start from empty mobs tables and namespace."""
    clean_mobs(container)
    container.settings.mobs.projection_min_videos = MIN_VIDEOS
    # These tests refit on a few videos on purpose; the per-dimension requirement has its own test.
    container.settings.mobs.projection_samples_per_dim = 0.0
    yield


class Trends:
    """Raw features of three trends: a centre each plus noise."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.centres = self.rng.standard_normal((3, RAW_DIM))

    def raw(self, trend: int) -> np.ndarray:
        return (self.centres[trend] + 0.3 * self.rng.standard_normal(RAW_DIM)).astype(np.float32)


def principal(u: UserHandle) -> Principal:
    return Principal(u.id, u.email, Role.user)


def analysis(tag: str) -> dict[str, Any]:
    return {"ocr_text": [f"{tag.upper()} NOW"], "transcript": f"join the {tag} challenge",
            "words": [{"word": w, "start": i * 0.3, "end": i * 0.3 + 0.2, "probability": 0.9}
                      for i, w in enumerate(["join", "the", tag])],
            "hashtags": [tag], "mentions": [], "terms": [tag, "challenge"],
            "activity": {"coherence": 0.9, "contrast": 0.2, "black_fraction": 0.0}, "components": {},
            "score": 0.7, "model": "built-in-test", "notes": []}


def add(c: Any, u: UserHandle, raw: np.ndarray, *, tag: str, projection: Projection | None = None,
        status: str = "validated", visibility: str = "public", hosted: bool = False) -> str:
    """A video as the pipeline leaves it: the local model's vector projected from `raw` by `projection`
    (default: the current one), or a hosted model's vector (that also comes with raw features here)."""
    v, _ = c.app("mobs").uploads.submit(principal(u), filename=f"{tag}.mp4", content_type="video/mp4", size=1000,
                         caption=f"#{tag}", visibility=visibility)
    if hosted:
        h = np.random.default_rng(abs(hash(v.id)) % 2**32).standard_normal(256)
        vec, version, model = (h / np.linalg.norm(h)).astype(np.float32), HOSTED_VERSION, "bedrock"
    else:
        p = projection or c.app("mobs").ctx.projections.current()
        vec, version, model = p.project(raw), p.version, "local"
    c.app("mobs").analysis.store_results(v.id, analysis=analysis(tag), vector=vec, model_version=version,
                         participation_model="local", embed_model=model, thumbnail_asset_id=None, raw_features=raw)
    score = 0.9 if status == "validated" else 0.1
    c.app("mobs").analysis.apply_validation(v.id, {"status": status, "score": score, "components": {"visual": score},
                                   "reasons": [f"visual {score:.2f}"], "threshold": 0.5})
    c.app("mobs").grouping.assign(v.id)
    return str(v.id)


def f32(blob: bytes | None) -> np.ndarray:
    vec = blob_to_f32(blob)
    assert vec is not None
    return vec


def rows(c: Any) -> dict[str, Any]:
    with c.store.tx(write=False) as tx:
        return {v.id: v for v in MobsRepo(tx).list_videos(owner_id=None, limit=1000)}


def memberships(c: Any) -> dict[str, str | None]:
    return {vid: v.mob_id for vid, v in rows(c).items()}


def assert_mobs_exact(c: Any, version: str) -> None:
    """Every active mob of `version`: count and centroid equal to its members' vectors, all in `version`."""
    with c.store.tx(write=False) as tx:
        repo = MobsRepo(tx)
        mobs = [m for m in repo.mobs(status="active") if m.model_version == version]
        assert mobs
        for m in mobs:
            members = repo.mob_vectors([m.id])[m.id]
            assert {ver for _, ver, _, _ in members} == {version}
            stacked = np.vstack([f32(None) if vec is None else vec for _, _, vec, _ in members])
            mean = stacked.astype(np.float64).mean(axis=0)
            assert m.count == len(members) and np.allclose(np.asarray(blob_to_vec(m.centroid)), mean, atol=1e-6)


def test_refit_at_the_threshold_moves_every_local_vector_and_keeps_mobs(container: Any, alice: UserHandle,
                                                                        bob: UserHandle) -> None:
    c = container
    trends = Trends(seed=5)
    rp = c.app("mobs").ctx.projections.current()
    assert rp.kind == "rp"
    hosted = [add(c, bob, trends.raw(i % 3), tag="hosted", hosted=True) for i in range(6)]
    ids: dict[int, list[str]] = {t: [add(c, alice, trends.raw(t), tag=f"t{t}") for _ in range(3 if t < 2 else 2)]
                                 for t in range(3)}
    private = add(c, alice, trends.raw(2), tag="t2", visibility="private")
    ids[2].append(private)
    rejected = add(c, alice, trends.raw(1), tag="junk", status="rejected")
    # 10 local videos with raw features, one rejected: 9 validated (the 6 hosted ones do not count)
    below = c.app("mobs").grouping.recluster(runner="test")["projection"]
    assert below["refit"] is False and below["videos"] == 9 and "fewer than 10" in below["reason"]
    assert {v.embed_model_version for v in rows(c).values() if v.embed_model == "local"} == {rp.version}
    hosted_before = {vid: (v.embed_model_version, bytes(v.embedding), v.mob_id) for vid, v in rows(c).items()
                     if vid in hosted}
    ids[0].append(add(c, alice, trends.raw(0), tag="t0"))  # the 10th validated one
    before = memberships(c)
    visibility = {vid: c.vectors.get("videos", vid).visibility for members in ids.values()
                  for vid in members}

    run = c.app("mobs").grouping.recluster(runner="test")
    p = run["projection"]
    new = c.app("mobs").ctx.projections.current()
    assert p["refit"] is True and p["old_version"] == rp.version and p["new_version"] == new.version
    assert new.kind == "pca" and new.version.startswith("pca-256-") and new.n_fit == p["videos"] == 10
    assert 0.5 < p["explained_variance"] <= 1.0 and p["reprojected"] == 11 and p["left_mobs"] == 0
    record = c.app("mobs").grouping.runs(1)[0]
    assert record.details["projection"]["new_version"] == new.version and record.status == "succeeded"
    assert record.details["projection"]["explained_variance"] == p["explained_variance"]
    assert record.model_version == new.version  # k-means ran in the new space
    # rows and index: every local vector re-projected from its raw features, visibility kept
    with c.store.tx(write=False) as tx:
        raws = {r[0]: r[4] for r in MobsRepo(tx).raw_features("local")}
    after = rows(c)
    for vid, v in after.items():
        if v.embed_model != "local":
            continue
        assert v.embed_model_version == new.version
        assert np.allclose(f32(v.embedding), new.project(raws[vid]), atol=1e-6)
        rec = c.vectors.get("videos", vid)
        if vid == rejected:
            assert rec is None  # a rejected video stays out of the index
            continue
        assert rec.model_version == new.version and rec.visibility == visibility[vid]
        assert np.allclose(rec.vector, f32(v.embedding), atol=1e-6)
    assert visibility[private] == "private"
    # hosted videos untouched
    assert {vid: (v.embed_model_version, bytes(v.embedding), v.mob_id) for vid, v in after.items()
            if vid in hosted} == hosted_before
    assert {c.vectors.get("videos", h).model_version for h in hosted} == {HOSTED_VERSION}
    # mob ids and memberships unchanged; centroids equal the members' mean in the new space
    assert memberships(c) == before
    assert all(len({before[v] for v in members}) == 1 for members in ids.values())
    assert_mobs_exact(c, new.version)
    # similar search: same-trend videos first, only in the new space, private ones only for their owner
    for members in ids.values():
        hits = asyncio.run(c.app("mobs").reads.similar(principal(alice), members[0], k=len(members) - 1))
        assert {v.id for v, _ in hits} == set(members[1:])
    bob_hits = {v.id for v, _ in asyncio.run(c.app("mobs").reads.similar(principal(bob), ids[2][0], k=20))}
    assert private not in bob_hits and not bob_hits & set(hosted) and ids[2][1] in bob_hits

    # a worker that projected with the old projection during the refit: re-projected when stored, joins its mob
    late_raw = trends.raw(1)
    late = add(c, alice, late_raw, tag="t1", projection=rp)
    v = rows(c)[late]
    assert v.embed_model_version == new.version and v.mob_id == before[ids[1][0]]
    assert np.allclose(f32(v.embedding), new.project(late_raw), atol=1e-6)
    rec = c.vectors.get("videos", late)
    assert rec.model_version == new.version and rec.visibility == "public"

    # no refit until the videos more than double (11 now, fitted on 10); then again, without moving anyone
    assert c.app("mobs").grouping.refit_projection()["refit"] is False
    for i in range(10):
        add(c, alice, trends.raw(i % 3), tag=f"t{i % 3}")
    before = memberships(c)
    p2 = c.app("mobs").grouping.refit_projection()
    newer = c.app("mobs").ctx.projections.current()
    assert p2["refit"] is True and p2["videos"] == 21 and p2["old_version"] == new.version != newer.version
    assert p2["reprojected"] == 22 and memberships(c) == before
    assert_mobs_exact(c, newer.version)
    assert {r.model_version for r in c.vectors.iter_all("videos")} == {newer.version, HOSTED_VERSION}
    assert c.app("mobs").grouping.refit_projection()["reprojected"] == 0


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_refit_stopped_before_its_index_update_is_completed_by_the_next_run(container: Any,
                                                                              alice: UserHandle) -> None:
    c = container
    trends = Trends(seed=7)
    ids = [add(c, alice, trends.raw(i % 3), tag=f"t{i % 3}") for i in range(MIN_VIDEOS)]
    index = c.vectors

    class Stopping:
        """The index as a process sees it that stops after two more writes."""

        writes = 0

        def __getattr__(self, name: str) -> Any:
            return getattr(index, name)

        def upsert(self, namespace: str, records: Any) -> None:
            Stopping.writes += 1
            if Stopping.writes > 2:
                raise RuntimeError("worker stopped")
            index.upsert(namespace, records)

    c.app("mobs").ctx._vectors = Stopping
    first = c.app("mobs").grouping.recluster(runner="test")
    new = c.app("mobs").ctx.projections.current()
    assert "worker stopped" in first["projection"]["error"] and new.kind == "pca"
    assert {v.embed_model_version for v in rows(c).values()} == {new.version}  # the rows moved
    assert c.app("mobs").grouping.runs(1)[0].details["index_pending"] == new.version
    assert sum(index.get("videos", i).model_version != new.version for i in ids) == MIN_VIDEOS - 2
    c.app("mobs").ctx._vectors = lambda: index
    second = c.app("mobs").grouping.recluster(runner="test")["projection"]
    assert second["refit"] is False and second["index_repaired"] == MIN_VIDEOS
    assert {index.get("videos", i).model_version for i in ids} == {new.version}
    assert not any(r.details.get("index_pending") for r in c.app("mobs").grouping.runs(5))
    hits = asyncio.run(c.app("mobs").reads.similar(principal(alice), ids[0], k=3))
    assert {v.id for v, _ in hits} == {ids[3], ids[6], ids[9]}


class _Participation:
    """Participation results built here (validating: speech, text, hashtag, coherent frames)."""

    task = "video.participation"
    name = "local"
    description = "synthetic participation"
    test_model = True

    def availability(self) -> Any:
        from reelforge.ports.models import Availability

        return Availability(True)

    def setup(self) -> None:
        pass

    def run(self, request: Any, *, progress: Any = None, cancelled: Any = None) -> Any:
        from reelforge.apps.mobs.ports import ParticipationResult

        a = analysis("skate")
        return ParticipationResult(ocr_text=a["ocr_text"], transcript=a["transcript"], words=a["words"],
                                   hashtags=a["hashtags"], mentions=[], terms=a["terms"], activity=a["activity"],
                                   components={}, score=0.7, model="synthetic")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_pipeline_stores_raw_features_and_meters_video_seconds(container: Any, client: Any, alice: UserHandle,
                                                               admin: UserHandle, tmp_path: Path) -> None:
    from reelforge.apps.mobs.models import projection_path
    from reelforge.apps.mobs.models.local import AnalysisCache, LocalEmbedAdapter
    from reelforge.runtime.worker import Worker
    from tests.fixtures.mob_corpus import make_noise_video

    c = container
    raw = Trends(seed=2).raw(0)

    class SyntheticEmbed(LocalEmbedAdapter):
        """The local embedding adapter (real projection file and versions) on features given here."""

        test_model = True

        def availability(self) -> Any:
            from reelforge.ports.models import Availability

            return Availability(True)

        def setup(self) -> None:
            pass

        def raw_features(self, request: Any, *, cancelled: Any = None) -> np.ndarray:
            return raw

    c.models.register(_Participation(), replace=True)
    c.models.register(SyntheticEmbed(c.settings.mobs, AnalysisCache(), projection_path(c.settings)), replace=True)
    clip = make_noise_video(tmp_path / "clip.mp4", 1, seconds=1.0)
    data = clip.path.read_bytes()
    r = alice.post("/v1/videos/submit", json={"filename": "clip.mp4", "content_type": "video/mp4",
                                              "size": len(data), "caption": "#skate",
                                              "sha256": hashlib.sha256(data).hexdigest()})
    assert r.status_code == 201, r.text
    vid, up = r.json()["video"]["id"], r.json()["upload"]
    assert client.put(up["url"].replace("http://testserver", ""), content=data, headers=up["headers"]).status_code == 200
    assert alice.post(up["complete_url"], json={}).status_code == 202
    w = Worker(c, concurrency=1)
    w.start()
    try:
        v = wait_for(lambda: (x := alice.get(f"/v1/videos/{vid}").json())["status"] != "processing" and x,
                     timeout=60, interval=0.2)
    finally:
        w.stop(grace_s=5)
    assert v["status"] == "validated", v
    rp = c.app("mobs").ctx.projections.current()
    with c.store.tx(write=False) as tx:
        stored = MobsRepo(tx).raw_features("local")
        row = MobsRepo(tx).video(vid)
    assert [(s[0], s[3]) for s in stored] == [(vid, rp.version)] and np.array_equal(stored[0][4], raw)
    assert row is not None and np.allclose(f32(row.embedding), rp.project(raw), atol=1e-6)
    usage = admin.get("/v1/admin/usage-stats?days=1").json()["data"]
    units = {(u["task"], u["unit"]): u["units"] for u in usage}
    for task in ("video.participation", "video.embed"):
        assert 0.9 <= units[(task, "video_seconds")] <= 1.2, usage
