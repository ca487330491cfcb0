"""The rotoscoping routes through the real API, a real worker (its call server on a loopback port, the offline engine)
and the test's database (SQLite and PostgreSQL): sessions, prompts answered with masks and overlays, frames, deletes,
every refusal with its code, ownership on every route, state across a restart, and no worker at all."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.apps.roto.roto_env import (
    box_of,
    click,
    clip_named,
    decode_rle,
    encode_clip,
    http,
    iou,
    new_session,
    roto_env,
    truth,
    upload,
)
from tests.conftest import register

CLIP = clip_named("pan_blob", frames=24)


@pytest.fixture(scope="module")
def clip_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return encode_clip(tmp_path_factory.mktemp("clips") / "pan_blob.mp4", CLIP)


def problem(r: Any, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert body["code"] == code, body
    assert r.headers["content-type"].startswith("application/problem+json")
    return dict(body)


def png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def test_session_prompts_frames_and_deletes(tmp_path: Path, db_url: str, clip_path: Path) -> None:
    with roto_env(tmp_path, db_url) as env:
        alice = register(env.client, "alice@example.com")
        asset = upload(env, alice, clip_path)
        r = alice.post("/v1/roto/sessions", json={"asset_id": asset, "name": "blob"})
        assert r.status_code == 201, r.text
        s = r.json()
        assert r.headers["location"] == f"/v1/roto/sessions/{s['id']}"
        assert (s["width"], s["height"], s["frame_count"], s["state"]) == (854, 480, 24, "new")
        assert s["fps"] == pytest.approx(24.0) and s["duration_s"] == pytest.approx(1.0, abs=0.05)
        assert s["video"]["rotation"] == 0 and not s["video"]["vfr"]
        base = f"/v1/roto/sessions/{s['id']}"

        # a click on the object: a new object, its mask on that frame, an overlay URL
        r = alice.post(f"{base}/prompts", json={"frame": 3, "points": [click(CLIP, 3)]})
        assert r.status_code == 200, r.text
        answer = r.json()
        assert answer["object_created"] and answer["prompt"]["object_id"] == 1 and answer["frame"] == 3
        [mask] = answer["masks"]
        assert mask["source"] == "prompt" and mask["object_id"] == 1
        got = decode_rle(mask["rle"])
        assert got.shape == (480, 854) and iou(got, truth(CLIP, 3)) > 0.9
        assert mask["area"] == int(got.sum())
        x, y, w, h = mask["bbox"]
        ys, xs = np.nonzero(got)
        assert (x, y, w, h) == (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
        overlay = http(env, "GET", answer["overlay"]["url"])
        assert overlay.status_code == 200 and overlay.headers["content-type"] == "image/png"
        picture = png(overlay.content)
        assert picture.shape == (480, 854, 3)

        # a box and a negative click for the same object: recomputed from all of its prompts
        truth3 = truth(CLIP, 3)
        r = alice.post(f"{base}/prompts", json={"frame": 3, "object_id": 1, "box": box_of(truth3),
                                                 "points": [{"x": 5.0, "y": 5.0, "label": 0}]})
        assert r.status_code == 200, r.text
        assert not r.json()["object_created"] and iou(decode_rle(r.json()["masks"][0]["rle"]), truth3) > 0.9
        second = r.json()["prompt"]["id"]

        detail = alice.get(base).json()
        assert detail["state"] == "prompted" and detail["revision"] == 3
        assert [p["frame"] for p in detail["prompts"]] == [3, 3]
        assert [o["object_id"] for o in detail["objects"]] == [1]
        assert [(m["frame"], m["object_id"]) for m in detail["masks"]] == [(3, 1)]
        assert detail["propagation"] == {"job_id": None, "status": None, "progress": None, "progress_message": None,
                                         "range": None, "revision": None, "stale": False, "spans": [],
                                         "finished_at": None}

        # the frame's overlay as PNG: the same picture the prompt's URL gave (the same masks, the same asset)
        r = alice.get(f"{base}/frames/3")
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        r2 = alice.get(f"{base}/frames/3/masks")
        assert r2.status_code == 200
        same = http(env, "GET", r2.json()["overlay"]["url"])
        assert same.content == r.content
        # a frame nobody prompted, before any propagation: the frame as it is, no masks
        r = alice.get(f"{base}/frames/10/masks")
        assert r.status_code == 200 and r.json()["masks"] == []
        plain = png(alice.get(f"{base}/frames/10").content)
        colored = png(alice.get(f"{base}/frames/3").content)
        frame3 = CLIP.frame(3)[0].astype(int)
        inside = truth3 & (np.abs(colored.astype(int) - frame3).sum(axis=2) > 40)
        assert inside.sum() > 0.5 * truth3.sum()  # the object is tinted on the overlay
        assert np.abs(plain.astype(int) - CLIP.frame(10)[0].astype(int)).mean() < 8  # frame 10 as decoded

        # deleting the second prompt: the mask follows the prompt left
        assert alice.delete(f"{base}/prompts/{second}").status_code == 204
        problem(alice.delete(f"{base}/prompts/{second}"), 404, "prompt_not_found")
        r = alice.get(f"{base}/frames/3/masks")
        assert [m["source"] for m in r.json()["masks"]] == ["prompt"]
        assert r.json()["cache"]["session"] == "hit"

        # a second object made explicitly, then the first one deleted with its prompts and masks
        r = alice.post(f"{base}/objects", json={"name": "background blob"})
        assert r.status_code == 201 and r.json()["object_id"] == 2
        assert alice.delete(f"{base}/objects/1").status_code == 204
        problem(alice.delete(f"{base}/objects/1"), 404, "object_not_found")
        detail = alice.get(base).json()
        assert detail["prompts"] == [] and detail["masks"] == [] and [o["object_id"] for o in detail["objects"]] == [2]
        assert alice.get(f"{base}/frames/3/masks").json()["masks"] == []

        listing = alice.get("/v1/roto/sessions").json()
        assert [x["id"] for x in listing["data"]] == [s["id"]] and listing["next_cursor"] is None

        assert alice.delete(base).status_code == 204
        problem(alice.get(base), 404, "session_not_found")
        assert alice.get("/v1/roto/sessions").json()["data"] == []


def test_refusals_have_codes_and_change_nothing(tmp_path: Path, db_url: str, clip_path: Path) -> None:
    with roto_env(tmp_path, db_url) as env:
        alice = register(env.client, "alice@example.com")
        s = new_session(alice, upload(env, alice, clip_path))
        base = f"/v1/roto/sessions/{s['id']}"
        r = alice.post(f"{base}/prompts", json={"frame": 0, "points": [click(CLIP, 0)]})
        assert r.status_code == 200, r.text
        ok = {"frame": 1, "object_id": 1, "points": [{"x": 10, "y": 10, "label": 1}]}
        cases = [
            ({**ok, "frame": 24}, 422, "frame_out_of_range"),
            ({**ok, "frame": -1}, 422, "frame_out_of_range"),
            ({**ok, "points": [{"x": 854, "y": 10}]}, 422, "point_outside_frame"),
            ({**ok, "points": [{"x": 10, "y": -1}]}, 422, "point_outside_frame"),
            ({**ok, "points": [{"x": 10, "y": 10, "label": 2}]}, 422, "invalid_label"),
            ({**ok, "points": [{"x": 10, "y": 10, "label": -1}]}, 422, "invalid_label"),
            ({**ok, "points": []}, 422, "empty_prompt"),
            ({"frame": 1, "object_id": 1}, 422, "empty_prompt"),
            ({**ok, "points": [], "box": [100, 100, 50, 200]}, 422, "box_inverted"),
            ({**ok, "points": [], "box": [100, 100, 200, 100]}, 422, "box_inverted"),
            ({**ok, "points": [], "box": [-5, 0, 100, 100]}, 422, "box_outside_frame"),
            ({**ok, "points": [], "box": [0, 0, 100, 481]}, 422, "box_outside_frame"),
            ({**ok, "object_id": 9}, 422, "unknown_object"),
            ({**ok, "points": [{"x": 1, "y": 1}] * 65}, 422, "too_many_points"),
            ({**ok, "points": [{"x": "left", "y": 1}]}, 422, "validation_error"),
            ({**ok, "box": [1, 2, 3]}, 422, "validation_error"),
            ({**ok, "colour": "red"}, 422, "validation_error"),
        ]
        for body, status, code in cases:
            problem(alice.post(f"{base}/prompts", json=body), status, code)
        after = alice.get(base).json()
        assert after["revision"] == 2 and len(after["prompts"]) == 1 and len(after["objects"]) == 1

        problem(alice.get(f"{base}/frames/24"), 422, "frame_out_of_range")
        problem(alice.get(f"{base}/frames/99999/masks"), 422, "frame_out_of_range")
        problem(alice.get(f"{base}/frames/-1"), 422, "validation_error")
        problem(alice.get("/v1/roto/sessions/" + "0" * 32), 404, "session_not_found")
        problem(alice.get("/v1/roto/sessions/not-an-id"), 404, "session_not_found")
        problem(alice.delete(f"{base}/prompts/nope"), 404, "prompt_not_found")
        problem(alice.get("/v1/roto/sessions?cursor=%25%25"), 422, "invalid_cursor")

        problem(alice.post("/v1/roto/sessions", json={"asset_id": "0" * 32}), 404, "asset_not_found")
        problem(alice.post("/v1/roto/sessions", json={"asset_id": s["asset_id"], "engine": "nope"}), 422,
                "unknown_engine")
        still = tmp_path / "still.png"
        Image.new("RGB", (64, 48), (0, 128, 255)).save(still)
        problem(alice.post("/v1/roto/sessions", json={"asset_id": upload(env, alice, still, "image/png")}), 422,
                "not_a_video")

        # propagation: a range past the end, inverted, or without a prompt inside
        problem(alice.post(f"{base}/propagate", json={"range": {"start": 0, "end": 24}}), 422, "frame_out_of_range")
        problem(alice.post(f"{base}/propagate", json={"range": {"start": 9, "end": 3}}), 422, "invalid_range")
        problem(alice.post(f"{base}/propagate", json={"range": {"start": 5, "end": 20}}), 422, "no_prompts")
        problem(alice.post("/v1/jobs", json={"kind": "video.rotoscope", "input": {"session_id": "0" * 32}}), 404,
                "session_not_found")


def test_another_users_session_is_missing_on_every_route(tmp_path: Path, db_url: str, clip_path: Path) -> None:
    with roto_env(tmp_path, db_url) as env:
        alice = register(env.client, "alice@example.com")
        bob = register(env.client, "bob@example.com")
        asset = upload(env, alice, clip_path)
        s = new_session(alice, asset)
        base = f"/v1/roto/sessions/{s['id']}"
        r = alice.post(f"{base}/prompts", json={"frame": 2, "points": [click(CLIP, 2)]})
        assert r.status_code == 200, r.text
        prompt_id = r.json()["prompt"]["id"]
        calls = [
            ("GET", base, None), ("DELETE", base, None),
            ("POST", f"{base}/objects", {}), ("DELETE", f"{base}/objects/1", None),
            ("POST", f"{base}/prompts", {"frame": 2, "object_id": 1, "points": [click(CLIP, 2)]}),
            ("POST", f"{base}/prompts", {"frame": 2, "points": [click(CLIP, 2)]}),
            ("DELETE", f"{base}/prompts/{prompt_id}", None),
            ("GET", f"{base}/frames/2", None), ("GET", f"{base}/frames/2/masks", None),
            ("POST", f"{base}/propagate", {}),
        ]
        for method, url, body in calls:
            r = bob.client.request(method, url, headers=bob.headers, **({"json": body} if body is not None else {}))
            problem(r, 404, "session_not_found")
        problem(bob.post("/v1/jobs", json={"kind": "video.rotoscope", "input": {"session_id": s["id"]}}), 404,
                "session_not_found")
        problem(bob.post("/v1/roto/sessions", json={"asset_id": asset}), 404, "asset_not_found")
        assert bob.get("/v1/roto/sessions").json()["data"] == []
        # ... and nothing changed for its owner
        detail = alice.get(base).json()
        assert [p["id"] for p in detail["prompts"]] == [prompt_id] and detail["revision"] == 2


def test_state_survives_a_restart(tmp_path: Path, db_url: str, clip_path: Path) -> None:
    with roto_env(tmp_path, db_url) as env:
        alice = register(env.client, "alice@example.com")
        s = new_session(alice, upload(env, alice, clip_path))
        base = f"/v1/roto/sessions/{s['id']}"
        first = alice.post(f"{base}/prompts", json={"frame": 6, "points": [click(CLIP, 6)]}).json()
        token = alice.token
    # a new API and a new worker (new containers, empty caches) on the same database and store
    with roto_env(tmp_path, db_url) as env:
        headers = {"Authorization": f"Bearer {token}"}
        detail = env.client.get(base, headers=headers).json()
        assert [p["id"] for p in detail["prompts"]] == [first["prompt"]["id"]]
        assert detail["prompts"][0]["points"] == first["prompt"]["points"]
        assert [(m["frame"], m["rle"]) for m in detail["masks"]] == [(6, first["masks"][0]["rle"])]
        r = env.client.get(f"{base}/frames/6/masks", headers=headers)
        assert r.status_code == 200
        body = r.json()
        assert body["cache"]["session"] == "miss"  # a fresh worker opened it
        assert [m["rle"] for m in body["masks"]] == [first["masks"][0]["rle"]]  # the stored mask, not redone
        r = env.client.post(f"{base}/prompts", headers=headers,
                            json={"frame": 6, "object_id": 1, "points": [{"x": 2, "y": 2, "label": 0}]})
        assert r.status_code == 200 and r.json()["revision"] == first["revision"] + 1


def test_without_a_worker_a_prompt_is_refused_and_not_kept(tmp_path: Path, sqlite_url: str,
                                                           clip_path: Path) -> None:
    with roto_env(tmp_path, sqlite_url, worker=False) as env:
        alice = register(env.client, "alice@example.com")
        s = new_session(alice, upload(env, alice, clip_path))
        base = f"/v1/roto/sessions/{s['id']}"
        problem(alice.post(f"{base}/prompts", json={"frame": 1, "points": [click(CLIP, 1)]}), 503,
                "workers_unavailable")
        problem(alice.get(f"{base}/frames/1"), 503, "workers_unavailable")
        detail = alice.get(base).json()
        assert detail["prompts"] == [] and detail["objects"] == []
        assert alice.delete(base).status_code == 204  # deleting needs no worker


def test_models_list_the_engines_and_admins_see_figures(tmp_path: Path, sqlite_url: str, clip_path: Path) -> None:
    from reelforge.domain.types import Role

    with roto_env(tmp_path, sqlite_url, worker=False) as env:
        alice = register(env.client, "alice@example.com")
        new_session(alice, upload(env, alice, clip_path))
        env.container.auth.register("root@example.com", "admin password 1", role=Role.admin)
        token = env.client.post("/v1/auth/token", json={"email": "root@example.com",
                                                         "password": "admin password 1"}).json()["access_token"]
        r = env.client.get("/v1/admin/stats", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200 and r.json()["roto"] == {"sessions": 1, "users": 1, "prompts": 0, "spans": 0}
        r = alice.get("/v1/models", params={"task": "video.segment"})
        assert r.status_code == 200
        names = {m["name"]: m for m in r.json()["data"]}
        assert "roto-offline" in names and names["roto-offline"]["available"] is True
        assert names["roto-offline"]["task"] == "video.segment"


def test_a_rotated_video_is_prompted_as_shown(tmp_path: Path, sqlite_url: str) -> None:
    from tests.fixtures.videos import make_rotated_video

    path = make_rotated_video(tmp_path / "phone.mp4", 90, seconds=1.0, size=(160, 96))
    with roto_env(tmp_path, sqlite_url) as env:
        alice = register(env.client, "alice@example.com")
        s = new_session(alice, upload(env, alice, path))
        assert (s["width"], s["height"]) == (96, 160)  # as a player shows it
        assert s["video"]["rotation"] == 90 and (s["video"]["coded_width"], s["video"]["coded_height"]) == (160, 96)
        assert s["video"]["has_audio"] is True and s["frame_count"] == 24
        base = f"/v1/roto/sessions/{s['id']}"
        problem(alice.post(f"{base}/prompts", json={"frame": 0, "points": [{"x": 150, "y": 20}]}), 422,
                "point_outside_frame")  # inside the stored picture, outside the shown one
        r = alice.post(f"{base}/prompts", json={"frame": 0, "points": [{"x": 60, "y": 150}]})
        assert r.status_code == 200, r.text
        assert decode_rle(r.json()["masks"][0]["rle"]).shape == (160, 96)
        assert png(alice.get(f"{base}/frames/0").content).shape == (160, 96, 3)
