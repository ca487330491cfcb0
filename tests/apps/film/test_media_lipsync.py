"""Lip-sync: face location on a real photo, the mouth opening with the voice, measured from rendered frames."""

from __future__ import annotations

import os
import types
from collections.abc import Iterator

import numpy as np
import pytest

from reelforge.apps.film.media import lipsync, visuals, voices

CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need(engine: str) -> None:
    why = voices.engines()[engine]
    if why:
        if CI:
            pytest.fail(f"{engine}: {why} (required under CI)")
        pytest.skip(f"{engine}: {why}")


def syllables(rate: int = 22050, seconds: float = 4.0) -> types.SimpleNamespace:
    """A voice-like test signal without phoneme timings: a 140 Hz buzz opening and closing ~4 times a second,
    with a silent second in the middle."""
    t = np.arange(int(seconds * rate)) / rate
    buzz = np.sign(np.sin(2 * np.pi * 140 * t)) * 0.3
    amp = np.clip(np.sin(2 * np.pi * 2.1 * t), 0, None) ** 1.5
    amp[(t > 1.5) & (t < 2.5)] = 0
    return types.SimpleNamespace(samples=(buzz * amp).astype(np.float32), sample_rate=rate)


def test_face_found_on_the_astronaut_and_heuristic_elsewhere() -> None:
    face = lipsync.detect_face(visuals.sample_photo("astronaut"))
    assert face.detected, face
    # her face is around (225, 115) in the 512x512 photo, about 90-100 px wide
    assert face.x < 225 < face.x + face.w and face.y < 115 < face.y + face.h
    assert 70 <= face.w <= 130
    flat = lipsync.detect_face(np.full((360, 640, 3), 120, np.uint8))
    assert not flat.detected and flat.method.startswith("centred-heuristic")
    assert 0 < flat.x < 640 / 2 < flat.x + flat.w


@pytest.mark.parametrize("engine", [voices.PIPER, voices.ESPEAK])
def test_mouth_follows_the_voice(engine: str) -> None:
    need(engine)
    speech = voices.synthesize("Somebody is knocking at the door. Open it, please! Who could it be at this hour?",
                               voices.Voice(engine=engine))
    assert speech.phonemes
    sync = lipsync.LipSync(visuals.sample_photo("astronaut"), speech, fps=24, size=(640, 360))
    assert sync.face.detected and "visemes from phoneme timings" in sync.method
    frames = sync.frames()
    assert isinstance(frames, Iterator)
    first = next(frames)
    assert first.shape == (360, 640, 3) and first.dtype == np.uint8
    measured = lipsync.measure_mouth_signal([first, *frames], sync.box, sync.still)
    assert measured.size == len(sync) == round(speech.duration_s * 24)
    r = lipsync.sync_correlation(measured, speech.samples, speech.sample_rate, 24)
    assert r > 0.5, r
    # the mouth region is where the frames change; outside it the still is untouched
    frame = sync.frame(int(np.argmax(sync.opening)))
    b = sync.box
    outside = frame.copy()
    outside[b.y0:b.y1, b.x0:b.x1] = sync.still[b.y0:b.y1, b.x0:b.x1]
    assert np.array_equal(outside, sync.still)
    assert np.abs(frame[b.y0:b.y1, b.x0:b.x1].astype(int) - sync.still[b.y0:b.y1, b.x0:b.x1]).mean() > 3


def test_mouth_follows_an_envelope_without_phonemes() -> None:
    voice = syllables()
    sync = lipsync.LipSync(visuals.sample_photo("astronaut"), voice, fps=25)
    assert sync.opening_method.startswith("RMS envelope")
    measured = lipsync.measure_mouth_signal(sync.frames(), sync.box, sync.still)
    assert lipsync.sync_correlation(measured, voice.samples, voice.sample_rate, 25) > 0.5
    # silence closes the mouth: frames in the silent second are the still itself
    assert np.array_equal(sync.frame(50), sync.still)


def test_measurement_is_zero_for_a_still_and_correlation_fails_when_shifted() -> None:
    voice = syllables()
    sync = lipsync.LipSync(visuals.sample_photo("astronaut"), voice, fps=25)
    assert not lipsync.measure_mouth_signal([sync.still] * 5, sync.box, sync.still).any()
    measured = lipsync.measure_mouth_signal(sync.frames(), sync.box, sync.still)
    # half a syllable out of step, the same rendering correlates badly
    shifted = np.roll(measured, 6)
    assert lipsync.sync_correlation(shifted, voice.samples, voice.sample_rate, 25) < 0.3


def test_portrait_without_a_face_still_speaks() -> None:
    voice = syllables(seconds=2.0)
    sync = lipsync.LipSync(visuals.sample_photo("coffee"), voice, fps=24, size=(320, 180))
    assert sync.face.method.startswith("centred-heuristic") and "centred-heuristic" in sync.method
    frames = list(sync.frames())
    assert len(frames) == 48 and frames[0].shape == (180, 320, 3)
    assert lipsync.measure_mouth_signal(frames, sync.box, sync.still).max() > 1


def test_visemes() -> None:
    assert lipsync.viseme_opening("\u0251") == 1.0 and lipsync.viseme_opening("m") == 0.0
    assert lipsync.viseme_opening("'oU") == 0.8 and lipsync.viseme_opening("\u02c8") is None
    assert (lipsync.viseme_opening("i") or 0) < (lipsync.viseme_opening("a") or 0)
