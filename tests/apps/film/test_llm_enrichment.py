"""The optional language model, against a local HTTP server that speaks the OpenAI chat-completions protocol
(`POST /v1/chat/completions`): answers used when they are right; errors, timeouts and malformed answers leave
the parser's breakdown and say why."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from reelforge.apps.film import llm
from reelforge.apps.film.script import breakdown, parse
from reelforge.apps.film.settings import FilmLLMSettings
from tests.apps.film.helpers import FOUNTAIN, make_project
from tests.conftest import UserHandle, make_settings


class FakeChat:
    """A chat-completions server. `mode` says how it answers: ok, fenced, error, unauthorized, slow,
    not_json, wrong_index, missing_scene, no_choices, long, bad_mood, html."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.requests: list[dict[str, Any]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                if self.path != "/v1/chat/completions":
                    return self._send(404, {"error": {"message": "no such route", "type": "invalid_request_error"}})
                status, doc = fake.answer(body)
                if fake.mode == "slow":
                    time.sleep(1.5)
                self._send(status, doc)

            def _send(self, status: int, doc: Any) -> None:
                raw = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def answer(self, body: dict[str, Any]) -> tuple[int, Any]:
        mode = self.mode
        if mode == "error":
            return 500, {"error": {"message": "The server had an error while processing your request.",
                                   "type": "server_error"}}
        if mode == "nul_error":
            return 503, {"error": {"message": "overloaded\u0000", "type": "server_error"}}
        if mode == "unauthorized":
            return 401, {"error": {"message": "Incorrect API key provided.", "type": "invalid_request_error"}}
        if mode == "html":
            return 200, b"<html>gateway</html>"
        asked = json.loads(body["messages"][-1]["content"])["scenes"]
        scenes = [{"index": s["index"], "description": f"Model description of {s['location']}.",
                   "image_prompt": f"A wide shot of the {str(s['location']).lower()}, {s['time_of_day']}.",
                   "mood": "mysterious"} for s in asked]
        if mode == "wrong_index":
            scenes[0]["index"] = 99
        if mode == "missing_scene":
            scenes = scenes[1:]
        if mode == "long":
            scenes[0]["description"] = "x" * 5000
        if mode == "bad_mood":
            scenes[0]["mood"] = "furious"
        if mode == "unstorable":
            scenes[0]["description"] = "A\u0000B \ud800C"
        content = json.dumps({"scenes": scenes})
        if mode == "fenced":
            content = f"```json\n{content}\n```"
        if mode == "not_json":
            content = "Sure! Here are your scenes: scene 1 is dark."
        doc = {"id": "chatcmpl-1", "object": "chat.completion", "created": int(time.time()), "model": body["model"],
               "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                            "finish_reason": "stop"}],
               "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20}}
        if mode == "no_choices":
            doc["choices"] = []
        return 200, doc

    def __enter__(self) -> FakeChat:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeChat]:
    with FakeChat() as server:
        yield server


@pytest.fixture(autouse=True)
def _reset(fake: FakeChat) -> None:
    fake.mode = "ok"
    fake.requests.clear()


def cfg(fake: FakeChat, **over: Any) -> FilmLLMSettings:
    values = {"base_url": fake.base_url, "model": "tiny-film", "api_key": "sk-test", "timeout_s": 5.0,
              "scenes_per_request": 20, **over}
    return FilmLLMSettings(**values)


def doc() -> dict[str, Any]:
    return breakdown(parse(FOUNTAIN))


# --- the adapter ------------------------------------------------------------------------------------------------
def test_answers_are_used_and_the_request_is_the_protocols(fake: FakeChat) -> None:
    d = doc()
    parser_prompt = d["scenes"][0]["image_prompt"]
    result = llm.enrich(cfg(fake), d)
    assert result.used and result.requests == 1
    llm.apply(d, result)
    first = d["scenes"][0]
    assert first["description"] == "Model description of LIGHTHOUSE."
    assert first["image_prompt"] == "A wide shot of the lighthouse, night."
    assert first["parser_image_prompt"] == parser_prompt
    assert (first["mood"], first["mood_source"]) == ("mysterious", "model")
    assert d["enrichment"]["used"] is True and d["enrichment"]["scenes"] == 2 and d["enrichment"]["model"] == "tiny-film"

    req = fake.requests[0]
    assert req["path"] == "/v1/chat/completions"
    assert req["headers"]["Authorization"] == "Bearer sk-test"
    body = req["body"]
    assert body["model"] == "tiny-film" and body["response_format"] == {"type": "json_object"}
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    asked = json.loads(body["messages"][1]["content"])
    assert [s["index"] for s in asked["scenes"]] == [0, 1] and asked["title"] == "The Lighthouse"
    assert "ANNA: Where are you?" in asked["scenes"][0]["dialogue"]


def test_batches_and_fenced_answers(fake: FakeChat) -> None:
    fake.mode = "fenced"
    d = doc()
    result = llm.enrich(cfg(fake, scenes_per_request=1, api_key="", json_mode=False), d)
    assert result.used and result.requests == 2 and set(result.scenes) == {0, 1}
    assert all("Authorization" not in r["headers"] for r in fake.requests)
    assert all("response_format" not in r["body"] for r in fake.requests)


@pytest.mark.parametrize(("mode", "reason", "detail"), [
    ("error", "http_error", "HTTP 500: The server had an error"),
    ("unauthorized", "http_error", "HTTP 401: Incorrect API key"),
    ("not_json", "malformed", "not JSON"),
    ("html", "malformed", "not a chat completion"),
    ("no_choices", "malformed", "not a chat completion"),
    ("wrong_index", "malformed", "unexpected or repeated scene index 99"),
    ("missing_scene", "malformed", "no answer for scenes [0]"),
    ("long", "malformed", "description missing, empty or too long"),
])
def test_failures_keep_the_parsers_breakdown(fake: FakeChat, mode: str, reason: str, detail: str) -> None:
    fake.mode = mode
    d = doc()
    before = json.loads(json.dumps(d["scenes"]))
    result = llm.enrich(cfg(fake), d)
    llm.apply(d, result)
    assert d["scenes"] == before
    assert d["enrichment"]["used"] is False and d["enrichment"]["reason"] == reason
    assert detail in d["enrichment"]["detail"]
    assert "sk-test" not in json.dumps(d)


def test_a_mood_outside_the_list_is_dropped(fake: FakeChat) -> None:
    fake.mode = "bad_mood"
    d = doc()
    llm.apply(d, llm.enrich(cfg(fake), d))
    assert d["enrichment"]["used"] is True
    assert d["scenes"][0]["mood_source"] != "model" and d["scenes"][1]["mood"] == "mysterious"


def test_timeout_and_unreachable(fake: FakeChat) -> None:
    fake.mode = "slow"
    start = time.monotonic()
    result = llm.enrich(cfg(fake, timeout_s=0.5), doc())
    assert time.monotonic() - start < 1.4
    assert (result.used, result.reason) == (False, "timeout")

    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = llm.enrich(FilmLLMSettings(base_url=f"http://127.0.0.1:{port}/v1", model="m", timeout_s=2), doc())
    assert (result.used, result.reason) == (False, "unreachable")


def test_not_configured() -> None:
    result = llm.enrich(FilmLLMSettings(), doc())
    assert result.summary() == {"used": False, "reason": "not_configured"}
    assert llm.enrich(FilmLLMSettings(base_url="http://127.0.0.1:9/v1"), doc()).reason == "not_configured"


# --- through the API ----------------------------------------------------------------------------------------------
@pytest.fixture
def settings(tmp_path: Path, db_url: str, fake: FakeChat) -> Any:
    return make_settings(tmp_path, db_url, film={"llm": {"base_url": fake.base_url, "model": "tiny-film",
                                                         "timeout_s": 1.0}})


def test_analysis_uses_the_model_when_configured(client: Any, alice: UserHandle, fake: FakeChat) -> None:
    project = make_project(alice, script=FOUNTAIN)
    r = alice.post(f"/v1/projects/{project['id']}/analyze")
    assert r.status_code == 200, r.text
    analysis = r.json()["analysis"]
    assert analysis["enrichment"]["used"] is True
    assert analysis["scenes"][1]["description"] == "Model description of PIER."
    stored = alice.get(f"/v1/projects/{project['id']}").json()["analysis"]
    assert stored["scenes"][1]["image_prompt"] == "A wide shot of the pier, dawn."


def test_what_no_database_can_store_is_dropped(client: Any, alice: UserHandle, fake: FakeChat) -> None:
    """A NUL or a lone surrogate in the model's answer (or in its server's error) would make PostgreSQL refuse
    the breakdown: they are removed before it is stored."""
    project = make_project(alice, script=FOUNTAIN)
    fake.mode = "unstorable"
    r = alice.post(f"/v1/projects/{project['id']}/analyze")
    assert r.status_code == 200, r.text
    assert r.json()["analysis"]["scenes"][0]["description"] == "AB C"
    fake.mode = "nul_error"
    r = alice.post(f"/v1/projects/{project['id']}/analyze")
    assert r.status_code == 200, r.text
    assert r.json()["analysis"]["enrichment"]["detail"] == "HTTP 503: overloaded"


@pytest.mark.parametrize("mode", ["error", "slow", "not_json"])
def test_analysis_survives_a_failing_model(client: Any, alice: UserHandle, fake: FakeChat, mode: str) -> None:
    fake.mode = mode
    project = make_project(alice, script=FOUNTAIN)
    r = alice.post(f"/v1/projects/{project['id']}/analyze")
    assert r.status_code == 200, r.text
    analysis = r.json()["analysis"]
    assert analysis["enrichment"]["used"] is False
    assert analysis["enrichment"]["reason"] == {"error": "http_error", "slow": "timeout",
                                                "not_json": "malformed"}[mode]
    assert analysis["scenes"][0]["description"].startswith("Rain hammers the glass.")  # the parser's
    assert analysis["totals"]["scenes"] == 2
