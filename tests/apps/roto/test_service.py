"""Rotoscoping's service and worker side without HTTP: the propagation plan (which frame gets which object's mask
from which anchor, spans and their keys), prompts and ownership on both databases, and the workers' session cache
(idle timeout, memory cap, one open per session) answering real calls on a real video with the offline engine."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from reelforge import errors
from reelforge.apps.roto.pipeline import BACKWARD, FORWARD, direction, object_anchors, part_key, plan_parts
from tests.apps.roto.roto_env import clip_named, encode_clip, iou, truth
from tests.apps.roto.synthetic import click_inside
from tests.conftest import make_settings

# --- the plan -------------------------------------------------------------------------------------------------


def test_direction_is_the_nearer_anchor_forward_on_ties() -> None:
    anchors = [10, 20]
    assert direction(anchors, 10) is None and direction(anchors, 20) is None  # prompted: the prompt's mask
    assert direction(anchors, 5) == BACKWARD and direction(anchors, 0) == BACKWARD
    assert direction(anchors, 12) == FORWARD and direction(anchors, 15) == FORWARD  # 15: equal distance
    assert direction(anchors, 16) == BACKWARD and direction(anchors, 19) == BACKWARD
    assert direction(anchors, 21) == FORWARD and direction(anchors, 99) == FORWARD
    assert direction([], 3) is None


def _check_plan(anchors: dict[int, list[int]], lo: int, hi: int) -> dict[str, list[dict[str, Any]]]:
    """Every (frame, object) that is not prompted gets exactly one span, of the direction of its nearer anchor,
    and every object a span carries without a prompt on its anchor is given there by the span before it."""
    parts = {way: plan_parts(anchors, lo, hi, way) for way in (FORWARD, BACKWARD)}
    given: dict[tuple[int, int], str] = {}
    for way, ps in parts.items():
        for p in ps:
            assert p["start"] <= p["stop"]
            for f, objs in p["needed"].items():
                f = int(f)
                assert p["start"] <= f <= p["stop"]
                for o in objs:
                    assert (f, o) not in given, (f, o)
                    given[(f, o)] = way
    for o, fs in anchors.items():
        for f in range(lo, hi + 1):
            want = direction(fs, f)
            assert given.get((f, o)) == want, (o, f, want, given.get((f, o)))
    for way, ps in parts.items():
        for prev, part in zip(ps, ps[1:], strict=False):
            a = part["anchor"]
            for o in part["objects"]:
                if a not in anchors.get(o, []):
                    assert o in prev["needed"].get(str(a), []), (way, a, o)
        if ps:
            a = ps[0]["anchor"]
            assert all(a in anchors[o] for o in ps[0]["objects"])  # the first span starts on prompts only
    return parts


def test_plan_one_object_two_anchors_splits_at_the_midpoint() -> None:
    parts = _check_plan({1: [10, 20]}, 0, 29)
    fwd = {p["anchor"]: p for p in parts[FORWARD]}
    bwd = {p["anchor"]: p for p in parts[BACKWARD]}
    assert [p["anchor"] for p in parts[FORWARD]] == [10, 20]
    assert [p["anchor"] for p in parts[BACKWARD]] == [20, 10]  # right to left
    assert sorted(map(int, fwd[10]["needed"])) == list(range(11, 16)) and fwd[10]["last"] == 15
    assert sorted(map(int, bwd[20]["needed"])) == list(range(16, 20)) and bwd[20]["last"] == 16
    assert sorted(map(int, fwd[20]["needed"])) == list(range(21, 30))
    assert sorted(map(int, bwd[10]["needed"])) == list(range(0, 10))


def test_plan_carries_objects_prompted_elsewhere() -> None:
    # object 1 prompted on 10 only, object 2 on 30 only: frames after 30 need object 1 carried through 30
    parts = _check_plan({1: [10], 2: [30]}, 0, 40)
    fwd = {p["anchor"]: p for p in parts[FORWARD]}
    assert fwd[30]["objects"] == [1, 2]
    assert 1 in fwd[10]["needed"]["30"]
    bwd = {p["anchor"]: p for p in parts[BACKWARD]}
    assert bwd[10]["objects"] == [1, 2]  # object 1 from its prompt, object 2 carried backwards through 10
    assert 2 in bwd[30]["needed"]["10"]


def test_plan_random_prompts_cover_every_frame_once() -> None:
    rng = random.Random(7)
    for _ in range(60):
        lo = rng.randint(0, 20)
        hi = lo + rng.randint(0, 80)
        anchors: dict[int, list[int]] = {}
        for o in range(1, rng.randint(1, 4) + 1):
            fs = sorted(rng.sample(range(lo, hi + 1), k=min(hi - lo + 1, rng.randint(1, 4))))
            anchors[o] = fs
        _check_plan(anchors, lo, hi)


def test_object_anchors_keep_the_range() -> None:
    prompted = {2: {1: "a"}, 8: {1: "b", 2: "c"}, 30: {2: "d"}}
    assert object_anchors(prompted, 0, 10) == {1: [2, 8], 2: [8]}
    assert object_anchors(prompted, 9, 40) == {2: [30]}


def test_part_key_follows_what_the_span_is_made_of() -> None:
    plan = {"engine": "roto-offline", "window": 8, "source_sha256": "ab" * 32}
    part = plan_parts({1: [10, 20]}, 0, 29, FORWARD)[0]
    rle = {"size": [4, 4], "counts": "04<0"}
    key = part_key(plan, part, {1: rle})
    assert key == part_key(plan, dict(part), {1: dict(rle)})
    assert key != part_key(plan, part, {1: {"size": [4, 4], "counts": "0:4"}})  # another starting mask
    assert key != part_key({**plan, "window": 4}, part, {1: rle})
    other = plan_parts({1: [10, 24]}, 0, 29, FORWARD)[0]  # the next prompt moved: the midpoint moved
    assert key != part_key(plan, other, {1: rle})


# --- the service on the database -----------------------------------------------------------------------------


@pytest.fixture
def clip_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return encode_clip(tmp_path_factory.mktemp("clips") / "pan_blob.mp4", clip_named("pan_blob", frames=24))


def _stored_video(c: Any, owner_id: str, path: Path, content_type: str = "video/mp4") -> str:
    from reelforge.domain.keys import new_key

    key = new_key(f"{owner_id}/uploads", path.suffix)
    info = c.objects.put_bytes(key, path.read_bytes(), content_type)
    with c.store.tx() as tx:
        return str(tx.assets.add_asset(owner_id=owner_id, key=key, content_type=content_type, size=info.size,
                                       sha256=info.sha256, lifecycle="hot", filename=path.name, meta={}).id)


def _user(c: Any, email: str) -> Any:
    from reelforge.domain.types import Principal, Role

    user = c.auth.register(email, "correct horse battery")
    return Principal(user_id=user.id, email=email, role=Role.user)


def test_prompts_objects_and_revisions(container: Any, clip_path: Path) -> None:
    from reelforge.apps.roto.service import PromptInput

    svc = container.app("roto")
    alice, bob = _user(container, "alice@example.com"), _user(container, "bob@example.com")
    asset = _stored_video(container, alice.user_id, clip_path)
    s = svc.create_session(alice, asset)
    assert (s.width, s.height, s.frame_count, s.revision) == (854, 480, 24, 0)
    assert s.engine == "roto-offline" and s.video["sha256"]

    s2, p1, created = svc.add_prompt(alice, s.id, PromptInput(3, None, ((100.0, 50.0, 1),), None))
    assert created and p1.object_id == 1 and s2.revision == 2  # the object, then the prompt
    _, p2, created = svc.add_prompt(alice, s.id, PromptInput(3, 1, ((10.0, 5.0, 0),), (0.0, 0.0, 200.0, 100.0)))
    assert not created and p2.seq > p1.seq
    view = svc.view(alice, s.id)
    assert [p.id for p in view.prompts] == [p1.id, p2.id] and [o.object_id for o in view.objects] == [1]

    # bad prompts are refused with their codes and change nothing
    bad = [(PromptInput(24, 1, ((1.0, 1.0, 1),), None), "frame_out_of_range"),
           (PromptInput(-1, 1, ((1.0, 1.0, 1),), None), "frame_out_of_range"),
           (PromptInput(0, 1, (), None), "empty_prompt"),
           (PromptInput(0, 1, ((854.0, 1.0, 1),), None), "point_outside_frame"),
           (PromptInput(0, 1, ((1.0, -0.5, 1),), None), "point_outside_frame"),
           (PromptInput(0, 1, ((1.0, 1.0, 2),), None), "invalid_label"),
           (PromptInput(0, 1, (), (50.0, 10.0, 40.0, 20.0)), "box_inverted"),
           (PromptInput(0, 1, (), (0.0, 0.0, 900.0, 20.0)), "box_outside_frame"),
           (PromptInput(0, 7, ((1.0, 1.0, 1),), None), "unknown_object")]
    for body, code in bad:
        with pytest.raises(errors.ValidationFailed) as exc:
            svc.add_prompt(alice, s.id, body)
        assert exc.value.code == code, (body, exc.value.code)
    assert svc.session(alice, s.id).revision == 3

    # another user's session is missing for every use case
    for call in (lambda: svc.session(bob, s.id), lambda: svc.view(bob, s.id),
                 lambda: svc.add_prompt(bob, s.id, PromptInput(3, 1, ((1.0, 1.0, 1),), None)),
                 lambda: svc.add_object(bob, s.id), lambda: svc.delete_prompt(bob, s.id, p1.id),
                 lambda: svc.delete_object(bob, s.id, 1), lambda: svc.delete_session(bob, s.id)):
        with pytest.raises(errors.NotFound) as nf:
            call()
        assert nf.value.code == "session_not_found"
    with pytest.raises(errors.NotFound) as nf:
        svc.create_session(bob, asset)  # alice's video
    assert nf.value.code == "asset_not_found"

    svc.delete_prompt(alice, s.id, p1.id)
    with pytest.raises(errors.NotFound) as nf:
        svc.delete_prompt(alice, s.id, p1.id)
    assert nf.value.code == "prompt_not_found"
    obj = svc.add_object(alice, s.id, "second")
    assert obj.object_id == 2
    svc.delete_object(alice, s.id, 1)
    view = svc.view(alice, s.id)
    assert view.prompts == [] and [o.object_id for o in view.objects] == [2]
    with pytest.raises(errors.NotFound) as nf:
        svc.delete_object(alice, s.id, 1)
    assert nf.value.code == "object_not_found"

    # the failed-answer path: a prompt taken back leaves no trace, nor the object made for it
    before = svc.view(alice, s.id)
    _, p3, created = svc.add_prompt(alice, s.id, PromptInput(5, None, ((100.0, 50.0, 1),), None))
    svc.undo_prompt(alice.user_id, p3, object_created=created)
    after = svc.view(alice, s.id)
    assert after.prompts == before.prompts and after.objects == before.objects


def test_sessions_survive_a_new_container(tmp_path: Path, db_url: str, clip_path: Path) -> None:
    from reelforge.apps.roto.service import PromptInput
    from reelforge.container import Container

    first = Container(make_settings(tmp_path, db_url))
    alice = _user(first, "alice@example.com")
    s = first.app("roto").create_session(alice, _stored_video(first, alice.user_id, clip_path), name="take 1")
    _, prompt, _ = first.app("roto").add_prompt(alice, s.id, PromptInput(4, None, ((120.0, 60.0, 1),), None))
    first.close()
    second = Container(make_settings(tmp_path, db_url))
    try:
        view = second.app("roto").view(alice, s.id)
        assert view.session.name == "take 1" and [p.id for p in view.prompts] == [prompt.id]
        assert view.prompts[0].points == ((120.0, 60.0, 1),)
        rows, nxt = second.app("roto").sessions(alice, limit=10)
        assert [r.id for r in rows] == [s.id] and nxt is None
    finally:
        second.close()


def test_session_list_pages(container: Any, clip_path: Path) -> None:
    svc = container.app("roto")
    alice = _user(container, "alice@example.com")
    asset = _stored_video(container, alice.user_id, clip_path)
    made = [svc.create_session(alice, asset).id for _ in range(3)]
    page1, cursor = svc.sessions(alice, limit=2)
    page2, end = svc.sessions(alice, limit=2, cursor=cursor)
    assert [s.id for s in page1 + page2] == list(reversed(made)) and end is None
    with pytest.raises(errors.ValidationFailed) as exc:
        svc.sessions(alice, cursor="not a cursor")
    assert exc.value.code == "invalid_cursor"


def test_only_videos_make_sessions(container: Any, tmp_path: Path) -> None:
    from PIL import Image

    svc = container.app("roto")
    alice = _user(container, "alice@example.com")
    png = tmp_path / "still.png"
    Image.new("RGB", (64, 48), (200, 10, 10)).save(png)
    with pytest.raises(errors.ValidationFailed) as exc:
        svc.create_session(alice, _stored_video(container, alice.user_id, png, "image/png"))
    assert exc.value.code == "not_a_video"
    text = tmp_path / "clip.mp4"
    text.write_bytes(b"not a video at all " * 100)
    with pytest.raises(errors.ValidationFailed) as exc:
        svc.create_session(alice, _stored_video(container, alice.user_id, text))
    assert exc.value.code == "not_a_video"
    with pytest.raises(errors.ValidationFailed) as exc:
        svc.engine_for("no-such-engine")
    assert exc.value.code == "unknown_engine"


# --- the workers' session cache --------------------------------------------------------------------------------


def _services(c: Any) -> Any:
    from reelforge.runtime.worker import StepServices

    return StepServices(settings=c.settings, models=c.models, assets=c.assets, objects=c.objects, store=c.store,
                        apps={"roto": c.app("roto")}, media=c.media)


@pytest.fixture
def sqlite_container(tmp_path: Path, sqlite_url: str) -> Any:
    from reelforge.container import Container

    c = Container(make_settings(tmp_path, sqlite_url, roto={"cache_dir": str(tmp_path / "cache"),
                                                            "session_idle_s": 0.5,
                                                            "cache_max_bytes": 16 * 1024**2}))
    yield c
    c.close()


def test_cache_answers_idles_out_and_keeps_to_its_cap(sqlite_container: Any, clip_path: Path) -> None:
    from reelforge.apps.roto.calls import answer
    from reelforge.apps.roto.service import PromptInput

    c = sqlite_container
    svc = c.app("roto")
    services = _services(c)
    clip = clip_named("pan_blob", frames=24)
    alice = _user(c, "alice@example.com")
    asset = _stored_video(c, alice.user_id, clip_path)
    a, b = svc.create_session(alice, asset), svc.create_session(alice, asset)
    point = click_inside(truth(clip, 2))
    assert point is not None
    svc.add_prompt(alice, a.id, PromptInput(2, None, ((point[0], point[1], 1),), None))

    first = answer(services, {"session_id": a.id, "owner_id": alice.user_id, "frame": 2})
    assert first["cache"]["session"] == "miss" and first["computed"] == [1]
    mask = first["masks"][0]
    assert mask["source"] == "prompt" and iou(_decode(mask["rle"]), truth(clip, 2)) > 0.9
    again = answer(services, {"session_id": a.id, "owner_id": alice.user_id, "frame": 2})
    assert again["cache"]["session"] == "hit" and again["computed"] == []  # stored mask still current
    assert again["overlay"]["asset_id"] == first["overlay"]["asset_id"] and again["cache"]["overlay"] == "hit"
    cache = svc.cache
    assert a.id in cache and cache.opened == 1
    entry_folder = next((cache.root / "sessions").iterdir())

    # the cap: many frames of one session, then another session, never more than cache_max_bytes held
    for frame in range(4, 20, 2):
        answer(services, {"session_id": a.id, "owner_id": alice.user_id, "frame": frame})
        assert cache.nbytes() <= cache.max_bytes
    for frame in range(0, 12, 2):
        answer(services, {"session_id": b.id, "owner_id": alice.user_id, "frame": frame})
        assert cache.nbytes() <= cache.max_bytes
    assert b.id in cache

    # idle: untouched for session_idle_s, a session is dropped with its files
    time.sleep(0.6)
    assert cache.sweep() >= 1
    assert len(cache) == 0 and not entry_folder.exists()
    # and an owner check on the worker side too: the payload's owner must own the session
    with pytest.raises(errors.NotFound):
        answer(services, {"session_id": a.id, "owner_id": "0" * 32, "frame": 2})


def test_cache_opens_a_session_once_for_concurrent_calls(sqlite_container: Any, clip_path: Path) -> None:
    from reelforge.apps.roto.calls import answer

    c = sqlite_container
    svc = c.app("roto")
    services = _services(c)
    alice = _user(c, "alice@example.com")
    s = svc.create_session(alice, _stored_video(c, alice.user_id, clip_path))
    results: list[Any] = []

    def run(frame: int) -> None:
        try:
            results.append(answer(services, {"session_id": s.id, "owner_id": alice.user_id, "frame": frame}))
        except Exception as exc:  # the assertion below shows it
            results.append(exc)

    threads = [threading.Thread(target=run, args=(f,)) for f in (1, 5, 9, 13)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(isinstance(r, dict) for r in results), results
    assert svc.cache.opened == 1 and len(svc.cache) == 1
    assert all(r["masks"] == [] for r in results)  # no prompt, no propagation: nothing drawn


def _decode(rle: dict[str, Any]) -> Any:
    from reelforge.apps.roto import masks

    return masks.decode(rle)
