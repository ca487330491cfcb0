"""Video understanding's part of an account's export and deletion: videos with their analysis and validation, mob
memberships, mob events and vectors in `GET /v1/account/export`; after `DELETE /v1/account` and the sweeper the
account's videos have left the shared mobs (counts and centroids exact, as the admin's deletion leaves them), the
index and the database, the events keep no trace of them, and another account's videos are untouched; the hook safe
to run twice. SQLite and PostgreSQL."""

from __future__ import annotations

import io
import json
import threading
import zipfile
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

from reelforge.apps.mobs.repository import MobsRepo, blob_to_vec
from reelforge.domain.types import Principal, Role
from reelforge.runtime.maintenance import Maintenance
from tests.api import test_mobs_api as mobs_api
from tests.conftest import UserHandle
from tests.fixtures.mob_corpus import clean_mobs


@pytest.fixture(autouse=True)
def _clean(container: Any) -> Any:
    """PostgreSQL databases are shared by the session: start from empty mobs tables and namespace."""
    clean_mobs(container)
    yield


def _seed(c: Any, alice: UserHandle, bob: UserHandle) -> dict[str, Any]:
    """A mob shared by alice (first, so its `created` event names her video) and bob, a mob of alice's alone, and a
    video of alice's still uploading."""
    shared, own = mobs_api.trend_vectors(2, 4, seed=5)
    a_shared = [mobs_api.seed(c, alice, v, tag="skate") for v in shared[:2]]
    b_shared = [mobs_api.seed(c, bob, v, tag="skate") for v in shared[2:]]
    a_own = [mobs_api.seed(c, alice, v, tag="surf") for v in own[:2]]
    pending, _ = c.app("mobs").uploads.submit(Principal(alice.id, alice.email, Role.user), filename="later.mp4",
                                              content_type="video/mp4", size=1000, caption="#later")
    with c.store.tx(write=False) as tx:
        repo = MobsRepo(tx)
        shared_mob = repo.video(a_shared[0]).mob_id
        own_mob = repo.video(a_own[0]).mob_id
    assert shared_mob and own_mob and shared_mob != own_mob
    with c.store.tx(write=False) as tx:
        repo = MobsRepo(tx)
        assert {repo.video(v).mob_id for v in b_shared} == {shared_mob}
    return {"alice": [*a_shared, *a_own, pending.id], "alice_indexed": [*a_shared, *a_own], "bob": b_shared,
            "shared_mob": shared_mob, "own_mob": own_mob}


def _events(c: Any) -> str:
    with c.db.engine.connect() as conn:
        return str(list(conn.execute(sa.text("SELECT mob_id, kind, details FROM mob_events")).all()))


def test_export_holds_the_callers_videos_memberships_events_and_vectors(client: Any, container: Any,
                                                                         alice: UserHandle, bob: UserHandle) -> None:
    s = _seed(container, alice, bob)
    r = alice.get("/v1/account/export")
    assert r.status_code == 200, r.text
    z = zipfile.ZipFile(io.BytesIO(r.content))
    got = {n: json.loads(z.read(f"apps/mobs/{n}.json")) for n in ("videos", "memberships", "mob_events", "vectors")}
    videos = {v["id"]: v for v in got["videos"]}
    assert set(videos) == set(s["alice"])
    validated = videos[s["alice_indexed"][0]]
    assert validated["status"] == "validated" and validated["analysis"]["hashtags"] == ["skate"]
    assert validated["scores"]["reasons"] and validated["embedding_dim"] == mobs_api.DIM
    assert videos[s["alice"][-1]]["status"] == "uploading"
    assert {(m["video_id"], m["mob_id"]) for m in got["memberships"]} == \
        {(v, s["shared_mob"]) for v in s["alice_indexed"][:2]} | {(v, s["own_mob"]) for v in s["alice_indexed"][2:]}
    created = [e for e in got["mob_events"] if e["kind"] == "created"]
    assert {e["details"]["video_id"] for e in created} == {s["alice_indexed"][0], s["alice_indexed"][2]}
    assert {v["id"] for v in got["vectors"]} == set(s["alice_indexed"])
    assert all(len(v["vector"]) == mobs_api.DIM for v in got["vectors"])
    everything = b"".join(z.read(n) for n in z.namelist() if n.startswith("apps/mobs/"))
    assert not any(v.encode() in everything for v in s["bob"])


def test_deletion_takes_the_callers_videos_out_of_shared_mobs(client: Any, container: Any, alice: UserHandle,
                                                              bob: UserHandle) -> None:
    s = _seed(container, alice, bob)
    before = {v: bob.get(f"/v1/videos/{v}").json() for v in s["bob"]}

    r = alice.client.request("DELETE", "/v1/account", headers=alice.headers, json={"password": alice.password})
    assert r.status_code == 202, r.text
    Maintenance(container, "w1", stopping=threading.Event(), wake=threading.Event()).sweep()
    assert container.accounts.status(alice.id).status == "deleted"

    with container.store.tx(write=False) as tx:
        repo = MobsRepo(tx)
        assert list(repo.owned_videos(alice.id)) == []
        shared = repo.mob(s["shared_mob"])
        own = repo.mob(s["own_mob"])
        assert shared is not None and own is not None
        shared_count, shared_centroid, own_status, own_count = shared.count, shared.centroid, own.status, own.count
        terms = dict(shared.term_counts)
    # the shared mob holds bob's videos only, exactly; alice's own mob is empty, kept for links and history
    n, mean = mobs_api._recomputed(container, s["shared_mob"])
    assert shared_count == n == len(s["bob"]) and np.allclose(blob_to_vec(shared_centroid), mean, atol=1e-9)
    assert terms == {"#skate": len(s["bob"]), "challenge": len(s["bob"])}  # the terms of bob's videos only
    assert own_status == "empty" and own_count == 0
    assert all(container.vectors.get("videos", v) is None for v in s["alice_indexed"])
    assert all(container.vectors.get("videos", v) is not None for v in s["bob"])
    events = _events(container)
    assert not any(v in events for v in s["alice"]) and "emptied" in events
    # bob's videos and the mob page are as they were
    for v, body in before.items():
        now = bob.get(f"/v1/videos/{v}").json()
        assert now["status"] == body["status"] and now["mob_id"] == body["mob_id"] == s["shared_mob"]
    page = bob.get(f"/v1/mobs/{s['shared_mob']}").json()
    assert page["count"] == len(s["bob"]) and {v["id"] for v in page["videos"]} == set(s["bob"])

    hook = next(m for m in container.apps if m.name == "mobs").account_delete
    assert hook is not None
    hook(container, alice.id)
    hook(container, alice.id)
    with container.store.tx(write=False) as tx:
        again = MobsRepo(tx).mob(s["shared_mob"])
        assert again is not None and again.count == len(s["bob"])
