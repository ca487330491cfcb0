"""/v1/projects: create, list, read, update and delete; characters, backgrounds and music with their assets
checked; read-only shares; the analysis route; ownership on every route. Each test runs on SQLite and on
PostgreSQL (the `db_url` fixture behind `client`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.apps.film.helpers import FOUNTAIN, assert_problem, audio_asset, image_asset, make_project
from tests.conftest import UserHandle, make_settings, register


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Any:
    return make_settings(tmp_path, db_url, film={"max_script_bytes": 4000, "max_shares": 3, "max_characters": 4})


@pytest.fixture
def carol(client: Any) -> UserHandle:
    return register(client, "carol@example.com")


def anna(container: Any, owner: UserHandle, **voice: Any) -> dict[str, Any]:
    return {"name": "Anna", "portrait_asset_id": image_asset(container, owner.id),
            "voice": {"id": "warm-female", "rate": 1.0, "pitch": 0, **voice}}


# --- create, read, list, update, delete -------------------------------------------------------------------------
def test_a_project_is_created_read_updated_and_deleted(client: Any, container: Any, alice: UserHandle) -> None:
    portrait = image_asset(container, alice.id)
    background = image_asset(container, alice.id)
    theme = audio_asset(container, alice.id)
    created = make_project(
        alice, description="A keeper waits.", script=FOUNTAIN, script_format="fountain",
        characters=[{"name": "Anna", "aliases": ["Annie"], "portrait_asset_id": portrait,
                     "voice": {"id": "warm-female", "rate": 1.25, "pitch": -2}},
                    {"name": "Tom"}],
        backgrounds=[{"name": "Lighthouse", "asset_id": background}],
        music=[{"name": "Theme", "asset_id": theme}, {"mood": "tense"}])
    assert created["role"] == "owner" and created["owner_id"] == alice.id
    assert created["script_bytes"] == len(FOUNTAIN.encode()) and created["script_format"] == "fountain"
    assert created["counts"] == {"characters": 2, "backgrounds": 1, "music": 2}
    assert created["characters"][0]["voice"] == {"id": "warm-female", "rate": 1.25, "pitch": -2.0}
    assert created["characters"][1]["voice"] == {"id": "narrator", "rate": 1.0, "pitch": 0.0}  # the default
    assert created["music"][1] == {"name": "", "asset_id": None, "mood": "tense"}
    assert set(created["asset_urls"]) == {portrait, background, theme}
    assert created["analysis"] is None and created["revision"] == 1

    got = alice.get(f"/v1/projects/{created['id']}")
    assert got.status_code == 200 and got.json()["script"] == FOUNTAIN
    # The signed URL serves the portrait.
    url = got.json()["asset_urls"][portrait]
    assert client.get(url.replace("http://testserver", "")).content.startswith(b"\x89PNG")

    listed = alice.get("/v1/projects").json()
    assert [p["id"] for p in listed["data"]] == [created["id"]] and listed["next_cursor"] is None
    assert "script" not in listed["data"][0]

    r = alice.patch(f"/v1/projects/{created['id']}", json={"title": "The Keeper", "music": []})
    assert r.status_code == 200, r.text
    assert r.json()["title"] == "The Keeper" and r.json()["music"] == [] and r.json()["revision"] == 1
    r = alice.patch(f"/v1/projects/{created['id']}", json={"script": "INT. HALL - DAY\n\nA door opens.\n"})
    assert r.json()["revision"] == 2 and r.json()["script_format"] == "fountain"

    assert alice.delete(f"/v1/projects/{created['id']}").status_code == 204
    assert_problem(alice.get(f"/v1/projects/{created['id']}"), 404, "project_not_found")
    assert alice.get("/v1/projects").json()["data"] == []


def test_the_list_is_paginated_newest_first(client: Any, alice: UserHandle) -> None:
    ids = [make_project(alice, title=f"P{i}")["id"] for i in range(5)]
    seen: list[str] = []
    cursor = None
    while True:
        r = alice.get("/v1/projects", params={"limit": 2, **({"cursor": cursor} if cursor else {})})
        assert r.status_code == 200, r.text
        page = r.json()
        assert len(page["data"]) <= 2
        seen += [p["id"] for p in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))
    assert_problem(alice.get("/v1/projects", params={"cursor": "not-a-cursor"}), 422, "invalid_cursor")
    assert_problem(alice.get("/v1/projects", params={"limit": 0}), 422)
    assert_problem(alice.get("/v1/projects", params={"scope": "everything"}), 422)


def test_input_is_checked(client: Any, container: Any, alice: UserHandle, bob: UserHandle) -> None:
    mine = image_asset(container, alice.id)
    theirs = image_asset(container, bob.id)
    sound = audio_asset(container, alice.id)
    temporary = image_asset(container, alice.id, lifecycle="temporary")
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"characters": [{"name": "Anna", "portrait_asset_id": theirs}]}, 422, "asset_not_found"),
        ({"characters": [{"name": "Anna", "portrait_asset_id": "f" * 32}]}, 422, "asset_not_found"),
        ({"characters": [{"name": "Anna", "portrait_asset_id": "../../etc"}]}, 422, "asset_not_found"),
        ({"characters": [{"name": "Anna", "portrait_asset_id": sound}]}, 422, "invalid_asset_type"),
        ({"characters": [{"name": "Anna", "portrait_asset_id": temporary}]}, 422, "temporary_asset"),
        ({"backgrounds": [{"name": "Sea", "asset_id": sound}]}, 422, "invalid_asset_type"),
        ({"music": [{"asset_id": mine}]}, 422, "invalid_asset_type"),
        ({"music": [{"asset_id": sound, "mood": "calm"}]}, 422, "validation_error"),
        ({"music": [{}]}, 422, "validation_error"),
        ({"music": [{"mood": "angry"}]}, 422, "validation_error"),
        ({"characters": [{"name": "Anna", "voice": {"id": "robot"}}]}, 422, "unknown_voice"),
        ({"characters": [{"name": "Anna", "voice": {"rate": 2.5}}]}, 422, "voice_out_of_range"),
        ({"characters": [{"name": "Anna", "voice": {"rate": 0.1}}]}, 422, "voice_out_of_range"),
        ({"characters": [{"name": "Anna", "voice": {"pitch": 13}}]}, 422, "voice_out_of_range"),
        ({"characters": [{"name": "Anna"}, {"name": "ANNA"}]}, 422, "duplicate_character"),
        ({"characters": [{"name": "Anna", "aliases": ["Tom"]}, {"name": "Tom"}]}, 422, "duplicate_character"),
        ({"characters": [{"name": f"C{i}"} for i in range(5)]}, 422, "too_many_items"),
        ({"characters": [{"name": "   "}]}, 422, "validation_error"),
        ({"characters": [{"name": "Anna\nTom"}]}, 422, "validation_error"),
        ({"script": "x" * 4001}, 413, "script_too_large"),
        ({"script": "é" * 2001}, 413, "script_too_large"),  # bytes, not characters
        ({"script_format": "screenplay"}, 422, "validation_error"),
        ({"script": "a\x00b"}, 422, "validation_error"),
        ({"unknown": 1}, 422, "validation_error"),
    ]
    for fields, status, code in cases:
        body = assert_problem(alice.post("/v1/projects", json={"title": "T", **fields}), status, code)
        if code == "script_too_large":
            assert body["limit"] == 4000
    assert_problem(alice.post("/v1/projects", json={"title": ""}), 422, "validation_error")
    assert_problem(alice.post("/v1/projects", json={}), 422, "validation_error")
    assert alice.get("/v1/projects").json()["data"] == []  # nothing was made

    project = make_project(alice, characters=[{"name": "Anna", "portrait_asset_id": mine}])
    for fields, status, code in cases[:6]:
        assert_problem(alice.patch(f"/v1/projects/{project['id']}", json=fields), status, code)
    assert_problem(alice.patch(f"/v1/projects/{project['id']}", json={"title": None}), 422)
    same = alice.get(f"/v1/projects/{project['id']}").json()
    assert same["characters"][0]["portrait_asset_id"] == mine and same["revision"] == 1


# --- ownership ------------------------------------------------------------------------------------------------
def _routes(project_id: str, share_id: str) -> list[tuple[str, str, dict[str, Any] | None]]:
    return [
        ("get", f"/v1/projects/{project_id}", None),
        ("patch", f"/v1/projects/{project_id}", {"title": "Mine now"}),
        ("delete", f"/v1/projects/{project_id}", None),
        ("post", f"/v1/projects/{project_id}/analyze", None),
        ("post", f"/v1/projects/{project_id}/shares", {"email": "mallory@example.com"}),
        ("get", f"/v1/projects/{project_id}/shares", None),
        ("delete", f"/v1/projects/{project_id}/shares/{share_id}", None),
    ]


def _call(user: UserHandle, method: str, url: str, body: dict[str, Any] | None) -> Any:
    return getattr(user, method)(url, **({"json": body} if body is not None else {}))


def test_another_users_project_answers_404_on_every_route(client: Any, alice: UserHandle, bob: UserHandle,
                                                          carol: UserHandle) -> None:
    project = make_project(alice, script=FOUNTAIN)
    share = alice.post(f"/v1/projects/{project['id']}/shares", json={"email": carol.email}).json()
    for method, url, body in _routes(project["id"], share["id"]):
        assert_problem(_call(bob, method, url, body), 404, "project_not_found")
    assert bob.get("/v1/projects").json()["data"] == []
    for scope in ("all", "owned", "shared"):
        assert bob.get("/v1/projects", params={"scope": scope}).json()["data"] == []
    # Nothing changed, nothing was shared with mallory.
    after = alice.get(f"/v1/projects/{project['id']}").json()
    assert after["title"] == project["title"] and after["analysis"] is None
    assert [s["email"] for s in alice.get(f"/v1/projects/{project['id']}/shares").json()["data"]] == [carol.email]
    # Ids that are no project's, and malformed ones, answer the same.
    for pid in ("0" * 32, "x", "%2e%2e"):
        for method, url, body in _routes(pid, share["id"])[:6]:
            assert_problem(_call(alice, method, url, body), 404, "project_not_found")


# --- shares -------------------------------------------------------------------------------------------------------
def test_a_share_gives_read_access_and_writes_answer_403(client: Any, alice: UserHandle, bob: UserHandle,
                                                         carol: UserHandle) -> None:
    project = make_project(alice, script=FOUNTAIN, script_format="fountain")
    pid = project["id"]
    r = alice.post(f"/v1/projects/{pid}/shares", json={"email": " Bob@Example.com "})
    assert r.status_code == 201, r.text
    share = r.json()
    assert share["email"] == "bob@example.com" and share["user_id"] is None  # an address share shows no account
    again = alice.post(f"/v1/projects/{pid}/shares", json={"user_id": bob.id})
    assert again.status_code == 200 and again.json()["id"] == share["id"]  # the same account: the same share

    got = bob.get(f"/v1/projects/{pid}")
    assert got.status_code == 200 and got.json()["role"] == "viewer" and got.json()["script"] == FOUNTAIN
    assert [p["id"] for p in bob.get("/v1/projects", params={"scope": "shared"}).json()["data"]] == [pid]
    assert [p["role"] for p in bob.get("/v1/projects").json()["data"]] == ["viewer"]
    assert bob.get("/v1/projects", params={"scope": "owned"}).json()["data"] == []
    assert [p["id"] for p in alice.get("/v1/projects", params={"scope": "owned"}).json()["data"]] == [pid]
    assert alice.get("/v1/projects", params={"scope": "shared"}).json()["data"] == []

    carol_share = alice.post(f"/v1/projects/{pid}/shares", json={"user_id": carol.id}).json()
    assert carol_share["user_id"] == carol.id and carol_share["email"] is None
    for method, url, body in _routes(pid, carol_share["id"]):
        if method == "get" and url.endswith(pid):
            continue
        assert_problem(_call(bob, method, url, body), 403, "read_only_share")
    assert alice.get(f"/v1/projects/{pid}").json()["title"] == project["title"]

    # Analysis made by the owner is readable by the share.
    assert alice.post(f"/v1/projects/{pid}/analyze").status_code == 200
    assert bob.get(f"/v1/projects/{pid}").json()["analysis"]["totals"]["scenes"] == 2

    # A share's account may leave; then the project is gone for it.
    assert bob.delete(f"/v1/projects/{pid}/shares/{share['id']}").status_code == 204
    assert_problem(bob.get(f"/v1/projects/{pid}"), 404, "project_not_found")
    assert carol.get(f"/v1/projects/{pid}").status_code == 200
    assert alice.delete(f"/v1/projects/{pid}/shares/{carol_share['id']}").status_code == 204
    assert_problem(carol.get(f"/v1/projects/{pid}"), 404, "project_not_found")
    assert_problem(alice.delete(f"/v1/projects/{pid}/shares/{carol_share['id']}"), 404, "share_not_found")
    assert_problem(alice.delete(f"/v1/projects/{pid}/shares/nonsense"), 404, "share_not_found")


def test_share_rules(client: Any, container: Any, alice: UserHandle, bob: UserHandle) -> None:
    pid = make_project(alice)["id"]
    other = make_project(alice, title="Other")["id"]
    assert_problem(alice.post(f"/v1/projects/{pid}/shares", json={"email": "ALICE@example.com"}), 422,
                   "share_with_owner")
    assert_problem(alice.post(f"/v1/projects/{pid}/shares", json={"user_id": alice.id}), 422, "share_with_owner")
    assert_problem(alice.post(f"/v1/projects/{pid}/shares", json={"user_id": "0" * 32}), 422, "user_not_found")
    assert_problem(alice.post(f"/v1/projects/{pid}/shares", json={"email": "not an address"}), 422, "invalid_email")
    assert_problem(alice.post(f"/v1/projects/{pid}/shares", json={}), 422, "validation_error")
    assert_problem(alice.post(f"/v1/projects/{pid}/shares", json={"email": bob.email, "user_id": bob.id}), 422,
                   "validation_error")
    # A share of one project is not a share of another, nor removable through it.
    s = alice.post(f"/v1/projects/{pid}/shares", json={"user_id": bob.id}).json()
    assert_problem(bob.get(f"/v1/projects/{other}"), 404, "project_not_found")
    assert_problem(alice.delete(f"/v1/projects/{other}/shares/{s['id']}"), 404, "share_not_found")
    # At most film.max_shares (3 here).
    for i in range(2):
        assert alice.post(f"/v1/projects/{pid}/shares", json={"email": f"p{i}@example.com"}).status_code == 201
    assert_problem(alice.post(f"/v1/projects/{pid}/shares", json={"email": "p9@example.com"}), 409,
                   "share_limit_reached")
    assert len(alice.get(f"/v1/projects/{pid}/shares").json()["data"]) == 3


def test_a_share_by_address_reaches_an_account_registered_later(client: Any, alice: UserHandle) -> None:
    pid = make_project(alice, title="For Dave")["id"]
    r = alice.post(f"/v1/projects/{pid}/shares", json={"email": "dave@example.com"})
    assert r.status_code == 201 and r.json()["user_id"] is None
    dave = register(client, "dave@example.com")
    assert dave.get(f"/v1/projects/{pid}").json()["role"] == "viewer"
    assert [p["id"] for p in dave.get("/v1/projects").json()["data"]] == [pid]


def test_deleting_a_project_removes_its_shares(client: Any, container: Any, alice: UserHandle,
                                               bob: UserHandle) -> None:
    from reelforge.apps.film.repository import FilmRepo

    pid = make_project(alice)["id"]
    alice.post(f"/v1/projects/{pid}/shares", json={"user_id": bob.id})
    alice.post(f"/v1/projects/{pid}/shares", json={"email": "later@example.com"})
    with container.store.tx(write=False) as tx:
        assert FilmRepo(tx).count_shares(pid) == 2
    assert alice.delete(f"/v1/projects/{pid}").status_code == 204
    with container.store.tx(write=False) as tx:
        assert FilmRepo(tx).count_shares(pid) == 0
        assert FilmRepo(tx).project(pid) is None
    assert_problem(bob.get(f"/v1/projects/{pid}"), 404, "project_not_found")
    assert bob.get("/v1/projects").json()["data"] == []


# --- analysis -------------------------------------------------------------------------------------------------
def test_analysis_is_stored_and_returned(client: Any, container: Any, alice: UserHandle) -> None:
    background = image_asset(container, alice.id)
    project = make_project(alice, script=FOUNTAIN, characters=[anna(container, alice, rate=2.0), {"name": "Tom"}],
                           backgrounds=[{"name": "Pier", "asset_id": background}])
    r = alice.post(f"/v1/projects/{project['id']}/analyze")
    assert r.status_code == 200, r.text
    analysis = r.json()["analysis"]
    assert analysis["format"] == "fountain" and analysis["requested_format"] == "auto"
    assert analysis["title"] == "The Lighthouse" and analysis["revision"] == 1
    assert analysis["enrichment"] == {"used": False, "reason": "not_configured"}
    assert analysis["proposed_characters"] == []
    first, second = analysis["scenes"]
    assert (first["heading"], first["location"], first["time_of_day"]) == ("INT. LIGHTHOUSE - NIGHT", "LIGHTHOUSE",
                                                                           "night")
    assert first["dialogue"][0] == {"character": "Anna", "text": "Where are you?", "parenthetical": "whispering",
                                    "extension": None, "dual": False, "dual_group": None, "words": 3,
                                    "estimated_seconds": pytest.approx(3 / 300 * 60 + 0.3)}  # Anna speaks at 2x
    assert first["dialogue"][1]["character"] == "Tom" and first["dialogue"][1]["extension"] == "V.O."
    assert second["background"] == {"name": "Pier", "asset_id": background}
    assert {c["name"]: c["defined"] for c in analysis["characters"]} == {"Anna": True, "Tom": True}
    assert r.json()["analyzed_at"] is not None and r.json()["analysis_stale"] is False

    got = alice.get(f"/v1/projects/{project['id']}").json()
    assert got["analysis"]["scenes"] == analysis["scenes"]
    # Changing the script makes the stored analysis stale until the next one.
    changed = alice.patch(f"/v1/projects/{project['id']}", json={"script": FOUNTAIN + "\nANNA\nGoodbye.\n"})
    assert changed.json()["analysis_stale"] is True and changed.json()["analysis"]["revision"] == 1
    again = alice.post(f"/v1/projects/{project['id']}/analyze").json()
    assert again["analysis_stale"] is False and again["analysis"]["revision"] == 2
    assert again["analysis"]["totals"]["dialogue_lines"] == 4


def test_analysis_refuses_unknown_characters_and_empty_scripts(client: Any, container: Any,
                                                               alice: UserHandle) -> None:
    project = make_project(alice, script=FOUNTAIN, characters=[anna(container, alice)])
    body = assert_problem(alice.post(f"/v1/projects/{project['id']}/analyze"), 422, "unknown_character")
    assert body["names"] == ["TOM"]
    assert alice.get(f"/v1/projects/{project['id']}").json()["analysis"] is None
    # An alias makes the cue known.
    alice.patch(f"/v1/projects/{project['id']}", json={"characters": [anna(container, alice),
                                                                       {"name": "Thomas", "aliases": ["Tom"]}]})
    r = alice.post(f"/v1/projects/{project['id']}/analyze")
    assert r.status_code == 200, r.text
    assert r.json()["analysis"]["scenes"][0]["dialogue"][1]["character"] == "Thomas"

    for script in ("", "   \n\n  ", "/* all of it cut */", "[[only a note]]", "# Act One\n\n= synopsis\n"):
        empty = make_project(alice, title="Empty", script=script)
        assert_problem(alice.post(f"/v1/projects/{empty['id']}/analyze"), 422, "empty_script")
    assert_problem(alice.post(f"/v1/projects/{make_project(alice, title='None')['id']}/analyze"), 422,
                   "empty_script")


def test_analysis_without_characters_proposes_them(client: Any, alice: UserHandle) -> None:
    prose = ('Anna stood in the kitchen of the lighthouse. It was almost midnight.\n\n'
             '"He should be back by now," said Anna.\n\n'
             '"The sea is too rough," Tom replied.\n')
    project = make_project(alice, script=prose)
    r = alice.post(f"/v1/projects/{project['id']}/analyze")
    assert r.status_code == 200, r.text
    analysis = r.json()["analysis"]
    assert analysis["format"] == "prose"
    assert [c["name"] for c in analysis["proposed_characters"]] == ["Anna", "Tom"]
    assert all(c["defined"] is False for c in analysis["characters"])
    assert analysis["scenes"][0]["location"] == "KITCHEN" and analysis["scenes"][0]["time_of_day"] == "night"


def test_voices_and_moods(client: Any, alice: UserHandle) -> None:
    voices = alice.get("/v1/film/voices").json()
    assert voices["default"] == "narrator" and "warm-female" in {v["id"] for v in voices["data"]}
    assert voices["rate"] == {"min": 0.5, "max": 2.0, "default": 1.0}
    assert voices["pitch"] == {"min": -12.0, "max": 12.0, "default": 0.0}
    assert "tense" in alice.get("/v1/film/moods").json()["data"]
    assert_problem(client.get("/v1/film/voices"), 401)
    assert_problem(client.get("/v1/projects"), 401)
