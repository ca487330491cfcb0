"""`film.render` through the API: refusals with their codes, ownership, the price refunded when a render
fails, portrait films, subtitle translation through the language model (a local fake server) or an honest
"not available", and pictures from an installed image model. The renders that check media, not the database, run
on SQLite only."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.apps.film.helpers import assert_problem, make_project
from tests.apps.film.render_env import SCRIPT, cast, download, wait_job
from tests.conftest import make_settings, register

SHORT = """INT. ROOM - DAY

ANNA
Hello there.
"""


def test_refusals(client: Any, alice: Any, bob: Any, container: Any) -> None:
    empty = make_project(alice, script="")
    assert_problem(alice.post(f"/v1/projects/{empty['id']}/render", json={}), 422, "empty_script")
    only_notes = make_project(alice, script="[[a note]]\n")
    assert_problem(alice.post(f"/v1/projects/{only_notes['id']}/render", json={}), 422, "empty_script")
    strangers = make_project(alice, script=SCRIPT, characters=[{"name": "Martha"}])
    body = assert_problem(alice.post(f"/v1/projects/{strangers['id']}/render", json={}), 422, "unknown_character")
    assert body["names"] == ["JOHN"]
    mine = make_project(alice, script=SHORT)
    # not yours: the same 404 as a project that does not exist; shared read-only: 403
    assert_problem(bob.post(f"/v1/projects/{mine['id']}/render", json={}), 404, "project_not_found")
    assert_problem(bob.post("/v1/projects/" + "0" * 32 + "/render", json={}), 404, "project_not_found")
    assert_problem(bob.post("/v1/jobs", json={"kind": "film.render", "input": {"project_id": mine["id"]}}), 404,
                   "project_not_found")
    assert alice.post(f"/v1/projects/{mine['id']}/shares", json={"email": bob.email}).status_code == 201
    assert_problem(bob.post(f"/v1/projects/{mine['id']}/render", json={}), 403, "read_only_share")
    # options
    for bad in ({"aspect": "4:3"}, {"height": 100}, {"fps": 60}, {"subtitles": "loud"}, {"languages": ["french"]},
                {"colour": "blue"}):
        assert_problem(alice.post(f"/v1/projects/{mine['id']}/render", json=bad), 422)
    body = assert_problem(alice.post(f"/v1/projects/{mine['id']}/render", json={"image_model": "no-such-model"}),
                          422, "unknown_model")
    assert body["field"] == "image_model"
    # nothing was queued or charged by any of these
    assert alice.get("/v1/jobs").json()["data"] == []


def test_too_long(tmp_path: Any, db_url: str) -> None:
    from fastapi.testclient import TestClient

    from reelforge.api.app import create_app
    from reelforge.container import Container

    settings = make_settings(tmp_path, db_url, film={"render": {"max_seconds": 10}})
    with TestClient(create_app(container=Container(settings))) as client:
        user = register(client, "long@example.com")
        project = make_project(user, script=SCRIPT)
        body = assert_problem(user.post(f"/v1/projects/{project['id']}/render", json={}), 422, "film_too_long")
        assert body["limit"] == 10 and body["seconds"] > 10


def test_failed_render_is_refunded(client: Any, container: Any, worker: Any, alice: Any) -> None:
    characters = cast(container, alice.id)
    project = make_project(alice, script=SCRIPT, characters=characters)
    before = alice.get("/v1/credits").json()["balance"]
    # the portrait goes away after the project names it: the visuals step cannot read it
    container.assets.delete_owned(alice.id, [characters[0]["portrait_asset_id"]])
    r = alice.post(f"/v1/projects/{project['id']}/render", json={"height": 144})
    assert r.status_code == 202 and r.json()["credits"] >= 1
    job = wait_job(alice, r.json()["id"])
    assert job["status"] in ("failed", "dead") and job["error"]["code"] == "asset_not_found", job
    assert job["credits_state"] == "refunded"
    assert alice.get("/v1/credits").json()["balance"] == before


def test_portrait_film_without_title_or_music(client: Any, container: Any, worker: Any, alice: Any) -> None:
    project = make_project(alice, script=SHORT)  # no characters defined: the speaker gets a palette voice
    r = alice.post(f"/v1/projects/{project['id']}/render",
                   json={"aspect": "9:16", "height": 180, "music": False, "subtitles": "burn", "fps": 12})
    job = wait_job(alice, r.json()["id"])
    assert job["status"] == "succeeded", job["error"]
    out = job["outputs"]
    assert out["size"] == [180, 320] and out["aspect"] == "9:16" and out["fps"] == 12
    assert out["title_card_s"] == 0 and out["subtitles_mode"] in ("libass", "pillow")
    assert out["scenes"][0]["music"] is None and out["scenes"][0]["lipsync"] is None
    assert out["voices"]["ANNA"]["voice"] is None  # not defined by the project: cast from the palette
    assert any("no portrait" in n for n in out["notes"])
    assert out["scenes"][0]["visual"]["method"] == "sample-photo"
    assert out["duration_s"] == pytest.approx(out["planned_duration_s"], abs=0.5)
    data = download(container, alice.id, out["video_asset_id"])
    assert data[4:8] == b"ftyp"


# --- translation through the language model -------------------------------------------------------------------

class FakeTranslator:
    """An OpenAI-compatible chat server that translates subtitle texts by prefixing them with `[fr]`."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append(body)
                ask = json.loads(body["messages"][-1]["content"])
                texts = [f"[{ask['target_language']}] {t}" for t in ask["texts"]]
                doc = {"id": "c1", "object": "chat.completion", "model": body["model"],
                       "choices": [{"index": 0, "finish_reason": "stop",
                                    "message": {"role": "assistant", "content": json.dumps({"texts": texts})}}]}
                raw = json.dumps(doc).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"


@pytest.fixture
def translator() -> Iterator[FakeTranslator]:
    fake = FakeTranslator()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


def _render(tmp_path: Any, db_url: str, body: dict[str, Any], **film: Any) -> tuple[dict[str, Any], Any, Any]:
    from fastapi.testclient import TestClient

    from reelforge.api.app import create_app
    from reelforge.container import Container
    from reelforge.runtime.worker import Worker

    settings = make_settings(tmp_path, db_url, film=film)
    container = Container(settings)
    with TestClient(create_app(container=container)) as client:
        user = register(client, "lang@example.com")
        project = make_project(user, script=SHORT)
        w = Worker(container, concurrency=2)
        w.start()
        try:
            r = user.post(f"/v1/projects/{project['id']}/render", json={"height": 144, "fps": 12, **body})
            assert r.status_code == 202, r.text
            job = wait_job(user, r.json()["id"])
        finally:
            w.stop(grace_s=5)
        assert job["status"] == "succeeded", job["error"]
        return job["outputs"], container, user


def test_subtitles_translated_by_the_language_model(tmp_path: Any, sqlite_url: str,
                                                  translator: FakeTranslator) -> None:
    out, container, user = _render(tmp_path, sqlite_url, {"languages": ["fr", "de"]},
                                   llm={"base_url": translator.base_url, "model": "tiny-translate"})
    assert out["translations"]["fr"] == {"available": True, "engine": "llm:tiny-translate"}
    srt = download(container, user.id, out["subtitles"]["fr"]["srt_asset_id"]).decode()
    assert "[fr] Hello there." in srt
    vtt = download(container, user.id, out["subtitles"]["de"]["vtt_asset_id"]).decode()
    assert vtt.startswith("WEBVTT") and "[de] Hello there." in vtt
    assert {r["model"] for r in translator.requests} == {"tiny-translate"}


def test_translation_not_available_says_so(tmp_path: Any, sqlite_url: str) -> None:
    out, _, _ = _render(tmp_path, sqlite_url, {"languages": ["fr"]})
    assert out["translations"]["fr"]["available"] is False
    assert "no translation engine is configured" in out["translations"]["fr"]["reason"]
    assert set(out["subtitles"]) == {"en"}


def test_pictures_from_an_image_model(tmp_path: Any, sqlite_url: str) -> None:
    pytest.importorskip("diffusers")
    out, container, user = _render(tmp_path, sqlite_url, {"image_model": "tiny-sd"})
    scene = out["scenes"][0]
    assert scene["visual"] == {"method": "image-model", "source": "tiny-sd", "move": scene["visual"]["move"]}
    asset = container.assets.owned_asset(user.id, scene["picture_asset_id"])
    assert asset.content_type == "image/png" and asset.meta["test_model"] is True
    assert "Hello" not in asset.meta["prompt"] and "room" in asset.meta["prompt"].lower()
