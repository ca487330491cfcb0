"""Rotoscoping's part of an account's export and deletion: sessions, objects, prompts, masks and spans in
`GET /v1/account/export`; all of them gone after `DELETE /v1/account` and the sweeper, another account's untouched;
the hook safe to run twice. SQLite and PostgreSQL."""

from __future__ import annotations

import io
import json
import threading
import zipfile
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from reelforge.apps.roto.records import Mask, Span
from reelforge.apps.roto.service import PromptInput
from reelforge.domain.types import Principal, Role
from reelforge.runtime.maintenance import Maintenance
from tests.apps.roto.roto_env import clip_named, encode_clip
from tests.conftest import UserHandle, make_settings

TABLES = ("roto_objects", "roto_prompts", "roto_masks", "roto_spans")


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Any:
    return make_settings(tmp_path, db_url, rate_limit={"enabled": False})


@pytest.fixture(scope="module")
def clip_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return encode_clip(tmp_path_factory.mktemp("clips") / "pan_blob.mp4", clip_named("pan_blob", size=(64, 48),
                                                                                      frames=6))


def _session(c: Any, user: UserHandle, clip: Path) -> dict[str, Any]:
    """A session with an object, a prompt, its mask, a stored span and a finished propagation."""
    svc = c.app("roto")
    p = Principal(user.id, user.email, Role.user)
    video = c.assets.store_output(owner_id=user.id, job_id=None, data=clip.read_bytes(), content_type="video/mp4",
                                  filename="clip.mp4")
    s = svc.create_session(p, video.id)
    _, prompt, _ = svc.add_prompt(p, s.id, PromptInput(1, None, ((10.0, 10.0, 1),), None))
    svc.put_masks(user.id, s.id, [Mask(session_id=s.id, frame=1, object_id=prompt.object_id, prompt_key="k" * 64,
                                       rle={"size": [48, 64], "counts": "0"}, area=1, bbox=(10, 10, 1, 1),
                                       engine=s.engine)])
    part = c.assets.store_output(owner_id=user.id, job_id=None, data=b"span", content_type="application/json",
                                 filename="span.json")
    span = svc.add_span(Span(session_id=s.id, key="s" * 64, direction="forward", start=1, stop=5, asset_id=part.id,
                             frames=5, job_id=None, created_at=0.0))
    svc.set_propagation(user.id, s.id, job_id=None, manifest={"parts": [{"key": span.key}]})
    return {"session": s.id, "prompt": prompt.id, "span_asset": part.id}


def _counts(c: Any, user_id: str) -> dict[str, int]:
    with c.db.engine.connect() as conn:
        sessions = [r[0] for r in conn.execute(sa.text("SELECT id FROM roto_sessions WHERE owner_id = :u"),
                                               {"u": user_id})]
        out = {"roto_sessions": len(sessions)}
        for table in TABLES:
            out[table] = sum(int(conn.execute(sa.text(f"SELECT count(*) FROM {table} WHERE session_id = :s"),
                                              {"s": s}).scalar_one()) for s in sessions)
        out["orphans"] = sum(int(conn.execute(sa.text(
            f"SELECT count(*) FROM {t} WHERE session_id NOT IN (SELECT id FROM roto_sessions)")).scalar_one())
            for t in TABLES)
    return out


def test_export_holds_the_callers_sessions_only(client: Any, container: Any, alice: UserHandle, bob: UserHandle,
                                                clip_path: Path) -> None:
    a = _session(container, alice, clip_path)
    b = _session(container, bob, clip_path)
    r = alice.get("/v1/account/export")
    assert r.status_code == 200, r.text
    z = zipfile.ZipFile(io.BytesIO(r.content))
    got = {n: json.loads(z.read(f"apps/roto/{n}.json")) for n in ("sessions", "objects", "prompts", "masks", "spans")}
    assert [s["id"] for s in got["sessions"]] == [a["session"]]
    assert got["sessions"][0]["propagation"] == {"parts": [{"key": "s" * 64}]}
    assert [o["object_id"] for o in got["objects"]] == [1]
    assert [p["id"] for p in got["prompts"]] == [a["prompt"]] and got["prompts"][0]["points"] == [[10.0, 10.0, 1]]
    assert [(m["frame"], m["rle"]["counts"]) for m in got["masks"]] == [(1, "0")]
    assert [s["asset_id"] for s in got["spans"]] == [a["span_asset"]]
    for rows in got.values():
        assert all(row.get("session_id", row.get("id")) == a["session"] for row in rows)
    everything = b"".join(z.read(n) for n in z.namelist() if n.startswith("apps/roto/"))
    assert b["session"].encode() not in everything and b["prompt"].encode() not in everything


def test_deletion_removes_the_callers_sessions_only(client: Any, container: Any, alice: UserHandle,
                                                    bob: UserHandle, clip_path: Path) -> None:
    a = _session(container, alice, clip_path)
    _session(container, alice, clip_path)
    _session(container, bob, clip_path)
    bob_before = _counts(container, bob.id)
    assert _counts(container, alice.id) == {"roto_sessions": 2, **dict.fromkeys(TABLES, 2), "orphans": 0}

    r = alice.client.request("DELETE", "/v1/account", headers=alice.headers, json={"password": alice.password})
    assert r.status_code == 202, r.text
    Maintenance(container, "w1", stopping=threading.Event(), wake=threading.Event()).sweep()
    assert container.accounts.status(alice.id).status == "deleted"

    assert _counts(container, alice.id) == {"roto_sessions": 0, **dict.fromkeys(TABLES, 0), "orphans": 0}
    assert _counts(container, bob.id) == bob_before == {"roto_sessions": 1, **dict.fromkeys(TABLES, 1), "orphans": 0}
    with container.store.tx(write=False) as tx:
        assert tx.assets.asset(a["span_asset"]) is None  # the span's object went with the account's assets

    hook = next(m for m in container.apps if m.name == "roto").account_delete
    assert hook is not None
    hook(container, alice.id)
    hook(container, alice.id)
    assert _counts(container, bob.id) == bob_before
