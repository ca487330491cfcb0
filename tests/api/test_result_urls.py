"""Result URLs: job outputs carry a signed `*asset_url` beside each `*asset_id` of the caller's own assets."""

from __future__ import annotations

from typing import Any

from tests.conftest import UserHandle
from tests.fixtures.hashing import fast_password_hashing  # noqa: F401


def finished_job(container: Any, user: UserHandle, outputs: dict[str, Any]) -> str:
    """A job of `user` that succeeded with these outputs (written as a pipeline's last step would)."""
    job_id = user.post("/v1/jobs", json={"kind": "system.noop"}).json()["id"]
    with container.store.tx() as tx:
        tx.jobs.update_job(job_id, status="succeeded", outputs=outputs)
    return job_id


def stored(container: Any, user: UserHandle, data: bytes, content_type: str = "image/png") -> str:
    return str(container.assets.store_output(owner_id=user.id, job_id=None, data=data, content_type=content_type,
                                             filename="out.png").id)


def fetch(client: Any, url: str) -> Any:
    return client.get(url.removeprefix("http://testserver"))


def test_job_outputs_carry_signed_urls(client: Any, container: Any, alice: UserHandle, bob: UserHandle) -> None:
    image = stored(container, alice, b"image bytes")
    thumb = stored(container, alice, b"thumb bytes", "image/jpeg")
    video = stored(container, alice, b"video bytes", "video/mp4")
    bobs = stored(container, bob, b"bob's")
    outputs = {"images": [{"asset_id": image, "seed": 1}], "thumbnail_asset_id": thumb,
               "chunk_asset_ids": [video, bobs, "missing"], "nested": {"deep": [{"video_asset_id": video}]},
               "stolen_asset_id": bobs, "note": "asset_id in text is left alone"}
    job_id = finished_job(container, alice, outputs)
    r = alice.get(f"/v1/jobs/{job_id}")
    assert r.status_code == 200
    out = r.json()["outputs"]
    assert fetch(client, out["images"][0]["asset_url"]).content == b"image bytes"
    assert fetch(client, out["thumbnail_asset_url"]).content == b"thumb bytes"
    assert fetch(client, out["nested"]["deep"][0]["video_asset_url"]).content == b"video bytes"
    urls = out["chunk_asset_urls"]
    assert fetch(client, urls[0]).content == b"video bytes" and urls[1:] == [None, None]
    # Another account's asset named in my outputs gets no URL; ids and other fields are kept as they were.
    assert "stolen_asset_url" not in out and out["stolen_asset_id"] == bobs
    assert out["images"][0]["seed"] == 1 and out["note"] == outputs["note"]
    # The list carries them too (one lookup for the page).
    listed = alice.get("/v1/jobs").json()["data"]
    assert [j["outputs"]["thumbnail_asset_url"] for j in listed if j["id"] == job_id] == [out["thumbnail_asset_url"]]
    # A job without asset ids is served as before.
    plain = finished_job(container, alice, {"echo": 1})
    assert alice.get(f"/v1/jobs/{plain}").json()["outputs"] == {"echo": 1}
    # Another user still cannot read the job.
    assert bob.get(f"/v1/jobs/{job_id}").status_code == 404


def test_urls_are_short_lived_and_the_etag_holds_within_a_period(client: Any, container: Any,
                                                                  alice: UserHandle) -> None:
    from urllib.parse import parse_qs, urlsplit

    image = stored(container, alice, b"png")
    job_id = finished_job(container, alice, {"asset_id": image})
    first = alice.get(f"/v1/jobs/{job_id}")
    url = first.json()["outputs"]["asset_url"]
    expires = int(parse_qs(urlsplit(url).query)["exp"][0])
    ttl = container.settings.storage.result_url_ttl_s
    import time

    assert time.time() + ttl * 2 / 3 - 2 <= expires <= time.time() + ttl + 1
    again = alice.get(f"/v1/jobs/{job_id}", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304
    # In the next period the URL is new and the ETag changes with it.
    links = container.results
    period = links.period()
    links.period = lambda now=None: period + 1  # type: ignore[method-assign]
    later = alice.get(f"/v1/jobs/{job_id}", headers={"If-None-Match": first.headers["etag"]})
    assert later.status_code == 200 and later.headers["etag"] != first.headers["etag"]
    assert later.json()["outputs"]["asset_url"] != url


def test_url_count_is_bounded(client: Any, container: Any, alice: UserHandle) -> None:
    assert container.results.max_urls == container.settings.storage.result_urls_max == 200
    container.results.max_urls = 2  # as storage.result_urls_max=2 would
    ids = [stored(container, alice, bytes([i])) for i in range(4)]
    job_id = finished_job(container, alice, {"asset_ids": ids})
    urls = alice.get(f"/v1/jobs/{job_id}").json()["outputs"]["asset_urls"]
    assert sum(u is not None for u in urls) == 2 and urls[2:] == [None, None]


def test_submit_with_wait_links_outputs(client: Any, container: Any, alice: UserHandle) -> None:
    """The synchronous answer (`?wait=`) links too (a noop job's outputs name no asset: served as before)."""
    r = alice.post("/v1/jobs?wait=0.01", json={"kind": "system.noop", "input": {"echo": {"asset_id": "x"}}})
    assert r.status_code in (200, 202)


def test_link_rules() -> None:
    from reelforge.services.results import asset_ids, has_asset_ids, with_urls

    value = {"asset_id": "a", "x": [{"poster_asset_id": "b"}, {"asset_ids": ["a", "c"]}], "asset_url": "kept"}
    assert asset_ids([value], 10) == ["a", "b", "c"] and asset_ids([value], 2) == ["a", "b"]
    assert has_asset_ids(value) and not has_asset_ids({"id": "a", "list": [1, {"y": "z"}]})
    linked = with_urls(value, {"a": "U-a", "b": "U-b"})
    assert linked["asset_url"] == "kept"  # never overwritten
    assert linked["x"][0]["poster_asset_url"] == "U-b" and linked["x"][1]["asset_urls"] == ["U-a", None]
