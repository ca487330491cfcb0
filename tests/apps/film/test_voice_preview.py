"""Voice previews through the real API and a real worker (its call server on a loopback port, the real speech
engines): `POST /v1/film/voices/{id}/preview` answers a WAV of the line, its length follows the text and the rate,
the pitch moves the fundamental frequency by the semitones asked (on top of the voice's own), and every bad input
has its code; without a worker the answer is 503 `workers_unavailable`."""

from __future__ import annotations

import io
import wave
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.apps.film.helpers import PROBLEM
from tests.apps.film.test_media_voices import f0
from tests.conftest import make_settings, register, wait_for

PREVIEW = "/v1/film/voices/{}/preview"


@contextmanager
def film_env(tmp_path: Path, db_url: str, *, worker: bool = True) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from reelforge.api.app import create_app
    from reelforge.container import Container
    from reelforge.runtime.worker import Worker
    from reelforge.services.stats import lost_after_s

    def live() -> bool:
        with c.store.tx(write=False) as tx:
            return bool(tx.ops.call_workers(lost_after_s(c.settings)))

    c = Container(make_settings(tmp_path, db_url, rate_limit={"writes_per_window_ip": 100_000,
                                                              "writes_per_window_account": 100_000}))
    w = Worker(c, concurrency=2) if worker else None
    if w is not None:
        w.start()
    try:
        with TestClient(create_app(container=c)) as client:
            if w is not None:  # the API sees the worker once it has heartbeated with its call URL
                wait_for(live, timeout=15)
            yield client, c
    finally:
        if w is not None:
            w.stop(grace_s=5)
        c.close()


def read_wav(data: bytes) -> tuple[np.ndarray, int]:
    with wave.open(io.BytesIO(data)) as w:
        assert w.getnchannels() == 1 and w.getsampwidth() == 2
        rate = w.getframerate()
        pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2")
    return pcm.astype(np.float32) / 32768.0, rate


def problem(r: Any, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith(PROBLEM)
    body = r.json()
    assert body["code"] == code, body
    return dict(body)


def test_preview_speaks_the_line_with_rate_and_pitch(tmp_path: Path, db_url: str) -> None:
    with film_env(tmp_path, db_url) as (client, _):
        alice = register(client, "alice@example.com")
        r = alice.post(PREVIEW.format("warm-male"))  # no body: the default line at the voice's own pace
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "audio/wav"
        assert r.headers["x-voice-engine"] in ("piper", "espeak-ng")
        assert r.headers["cache-control"] == "private, no-store"
        base, rate = read_wav(r.content)
        seconds = base.size / rate
        # "Hello, this is how I sound.": six words, about two seconds of speech at a normal pace
        assert 0.8 <= seconds <= 5.0, seconds
        assert float(r.headers["x-voice-duration"]) == pytest.approx(seconds, abs=0.01)
        assert 0.5 <= float(np.abs(base).max()) <= 0.95  # spoken, normalised with headroom
        engine = r.headers["x-voice-engine"]

        # a longer text takes longer; a faster rate takes less time
        line = "The storm came in from the north, and Martha closed the shutters one by one."
        long_ = read_wav(alice.post(PREVIEW.format("warm-male"), json={"text": line}).content)[0]
        fast = alice.post(PREVIEW.format("warm-male"), json={"text": line, "rate": 1.8})
        assert fast.status_code == 200 and fast.headers["x-voice-engine"] == engine
        fast_ = read_wav(fast.content)[0]
        assert long_.size > 1.5 * base.size
        assert fast_.size < 0.8 * long_.size

        # six semitones up raise the fundamental by about 2^(6/12) = 1.41 (same engine, same voice; kept above
        # 85 Hz, where the estimate is sure of its octave)
        low = alice.post(PREVIEW.format("narrator"), json={"text": line, "pitch": 1})
        high = alice.post(PREVIEW.format("narrator"), json={"text": line, "pitch": 7})
        assert low.status_code == high.status_code == 200
        assert low.headers["x-voice-engine"] == high.headers["x-voice-engine"] == engine
        f_low, f_high = f0(*read_wav(low.content)), f0(*read_wav(high.content))
        assert 1.25 <= f_high / f_low <= 1.6, (f_low, f_high)
        if engine == "piper":
            assert "pitch" in r.headers["x-voice-notes"]  # the voice's own shift, by resampling

        # voices differ by their base pitch: "young" (+8 st) sounds higher than "warm-male" (-2 st)
        male = f0(*read_wav(alice.post(PREVIEW.format("warm-male"), json={"text": line}).content))
        young = f0(*read_wav(alice.post(PREVIEW.format("young"), json={"text": line}).content))
        assert young > 1.4 * male, (male, young)


def test_preview_refuses_bad_input(tmp_path: Path, sqlite_url: str) -> None:
    with film_env(tmp_path, sqlite_url) as (client, c):
        alice = register(client, "alice@example.com")
        url = PREVIEW.format("narrator")
        problem(alice.post(PREVIEW.format("nobody")), 422, "unknown_voice")
        problem(alice.post(PREVIEW.format("%E2%80%AEnarrator")), 422, "unknown_voice")
        problem(alice.post(PREVIEW.format("x" * 200)), 422, "unknown_voice")
        body = problem(alice.post(url, json={"rate": 2.5}), 422, "voice_out_of_range")
        assert body["field"] == "rate" and (body["min"], body["max"]) == (0.5, 2.0)
        problem(alice.post(url, json={"rate": 0.1}), 422, "voice_out_of_range")
        body = problem(alice.post(url, json={"pitch": -13}), 422, "voice_out_of_range")
        assert body["field"] == "pitch" and (body["min"], body["max"]) == (-12.0, 12.0)
        body = problem(alice.post(url, json={"text": "word " * 61}), 422, "text_too_long")
        assert body["limit"] == 300
        problem(alice.post(url, json={"text": ""}), 422, "empty_text")
        problem(alice.post(url, json={"text": " ... !? "}), 422, "empty_text")
        problem(alice.post(url, json={"text": "hi", "speed": 2}), 422, "validation_error")
        problem(alice.post(url, json={"rate": "fast"}), 422, "validation_error")
        problem(alice.post(url, content=b'{"pitch": NaN}', headers={"Content-Type": "application/json"}), 422,
                "validation_error")
        problem(alice.post(url, json={"text": "x" * 20_001}), 422, "validation_error")
        assert client.post(url).status_code == 401
        # exactly 300 characters is allowed
        r = alice.post(url, json={"text": ("abcd " * 60)[:300]})
        assert r.status_code == 200, r.text
        # the worker checks a call that did not come through the route as well
        from reelforge.services.calls import CallFailed

        with pytest.raises(CallFailed) as exc:
            c.calls.call_sync("film.voice", {"voice_id": "narrator", "pitch": 40})
        assert exc.value.status == 422 and exc.value.code == "voice_out_of_range"
        with pytest.raises(CallFailed) as exc:
            c.calls.call_sync("film.voice", {"voice_id": "ghost"})
        assert exc.value.code == "unknown_voice"


def test_preview_without_a_worker(tmp_path: Path, sqlite_url: str) -> None:
    with film_env(tmp_path, sqlite_url, worker=False) as (client, _):
        alice = register(client, "alice@example.com")
        problem(alice.post(PREVIEW.format("narrator")), 503, "workers_unavailable")
        # input is checked before a worker is looked for
        problem(alice.post(PREVIEW.format("nobody")), 422, "unknown_voice")


def test_voices_list_what_the_preview_accepts(tmp_path: Path, sqlite_url: str) -> None:
    with film_env(tmp_path, sqlite_url, worker=False) as (client, _):
        alice = register(client, "alice@example.com")
        voices = alice.get("/v1/film/voices").json()
        ids = [v["id"] for v in voices["data"]]
        assert voices["default"] in ids and "warm-male" in ids
        assert "/v1/film/voices/{voice_id}/preview" in client.get("/openapi.json").json()["paths"]
