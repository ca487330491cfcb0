"""Score, ducking, sound effects and mixing: signals checked by measurement."""

from __future__ import annotations

import numpy as np
import pytest

from reelforge import errors
from reelforge.apps.film.media import audio, music

RATE = 48000


def tempo_of(x: np.ndarray, rate: int) -> float:
    """Tempo (BPM, 40-200) from the autocorrelation of the onset strength (positive log-energy flux)."""
    env = audio.rms_envelope(x, rate, 100, window_s=0.03)
    flux = np.maximum(np.diff(np.log(env + 1e-4)), 0)
    flux -= flux.mean()
    ac = np.correlate(flux, flux, "full")[flux.size - 1:]
    bpms = np.arange(40, 201)
    return float(bpms[int(np.argmax([ac[round(6000 / b)] for b in bpms]))])


def test_score_is_deterministic_per_seed() -> None:
    a = music.score("happy", 6.0, seed=7)
    b = music.score("happy", 6.0, seed=7)
    c = music.score("happy", 6.0, seed=8)
    assert np.array_equal(a.samples, b.samples)
    assert not np.array_equal(a.samples, c.samples)
    assert a.samples.size == 6 * RATE and a.samples.dtype == np.float32
    assert np.isfinite(a.samples).all() and np.abs(a.samples).max() <= 0.95
    rms_db = audio.gain_to_db(float(np.sqrt(np.mean(a.samples.astype(np.float64) ** 2))))
    assert -21 < rms_db < -15


@pytest.mark.parametrize("mood", sorted(music.MOODS))
def test_each_mood_plays_its_tempo_and_chords(mood: str) -> None:
    s = music.score(mood, 16.0, seed=1)
    m = music.MOODS[mood]
    assert s.tempo == m.tempo and s.key == f"{m.key} {m.mode}"
    bars = int(np.ceil(16.0 / (4 * 60 / m.tempo)))
    assert len(s.chords) == bars
    est = tempo_of(s.samples, RATE)
    assert any(abs(est - m.tempo * k) <= 0.04 * m.tempo * k for k in (0.5, 1.0, 2.0)), (mood, est, m.tempo)


def test_moods_sound_different() -> None:
    def centroid(x: np.ndarray) -> float:
        spec = np.abs(np.fft.rfft(x[: 8 * RATE]))
        f = np.fft.rfftfreq(8 * RATE, 1 / RATE)
        return float((spec * f).sum() / spec.sum())

    tense, happy = music.score("tense", 8.0).samples, music.score("happy", 8.0).samples
    assert centroid(tense) != pytest.approx(centroid(happy), rel=0.1)
    assert music.mood_name("Suspense") == "tense" and music.mood_name("JOYFUL") == "happy"
    with pytest.raises(errors.ValidationFailed):
        music.mood_name("baroque")


def test_ducking_under_dialogue() -> None:
    n = 6 * RATE
    t = np.arange(n) / RATE
    bed = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    talk = np.zeros(n, np.float32)
    talk[2 * RATE:4 * RATE] = 0.3 * np.sin(2 * np.pi * 180 * t[2 * RATE:4 * RATE])
    gain = music.sidechain_gain(talk, RATE, depth_db=-12, attack_s=0.05, release_s=0.4, lookahead_s=0.05)
    db = 20 * np.log10(gain)
    assert db[int(1.0 * RATE)] == pytest.approx(0.0, abs=0.01)  # before the speech
    assert db[int(3.0 * RATE)] == pytest.approx(-12.0, abs=0.3)  # during it
    # attack: most of the way down within 0.2 s of the start (look-ahead starts it early)
    assert db[int(2.2 * RATE)] < -10
    assert db[int(1.9 * RATE)] > -1  # no earlier than the look-ahead allows
    # release: recovering after the speech, back near unity after five release times
    assert -12 < db[int(4.3 * RATE)] < -2 and db[int(5.9 * RATE)] > -1
    ducked = music.duck(bed, talk, RATE, depth_db=-12)
    assert np.abs(ducked[3 * RATE:3 * RATE + 4800]).max() == pytest.approx(0.3 * 10 ** (-12 / 20), rel=0.05)


def onsets(x: np.ndarray, rate: int) -> int:
    env = audio.rms_envelope(x, rate, 200, window_s=0.01)
    on = env > 0.25 * env.max()
    return int(np.count_nonzero(on[1:] & ~on[:-1]) + int(on[0]))


def test_sound_effects() -> None:
    for name in music.DEFAULT_EFFECT_S:
        x = music.sound_effect(name, sample_rate=RATE)
        assert x.size == round(music.DEFAULT_EFFECT_S[name] * RATE) and np.isfinite(x).all()
        assert np.abs(x).max() == pytest.approx(0.8, abs=1e-3)
        assert np.array_equal(x, music.sound_effect(name, sample_rate=RATE))  # deterministic
    assert onsets(music.sound_effect("knock"), RATE) == 3
    assert 5 <= onsets(music.sound_effect("footsteps", 3.0), RATE) <= 6  # a step every ~0.52 s
    assert onsets(music.sound_effect("clock", 4.0), RATE) == 4
    phone = music.sound_effect("phone", 1.0)
    spec = np.abs(np.fft.rfft(phone))
    freqs = np.fft.rfftfreq(phone.size, 1 / RATE)
    top = set(np.round(freqs[np.argsort(spec)[-12:]], -1))
    assert {440.0, 480.0} <= top
    thunder = music.sound_effect("thunder")
    spec = np.abs(np.fft.rfft(thunder)) ** 2
    freqs = np.fft.rfftfreq(thunder.size, 1 / RATE)
    assert spec[freqs < 300].sum() > spec[freqs >= 300].sum()  # mostly rumble
    rain = music.sound_effect("rain")
    spec = np.abs(np.fft.rfft(rain)) ** 2
    freqs = np.fft.rfftfreq(rain.size, 1 / RATE)
    assert spec[freqs > 1500].sum() > 5 * spec[freqs <= 1500].sum()  # hiss and droplets
    with pytest.raises(errors.ValidationFailed):
        music.sound_effect("explosion")


def test_effects_from_action_lines() -> None:
    assert music.effects_for("Rain hammers the window. Somebody knocks at the door.") == ["rain", "knock"]
    assert music.effects_for("A storm breaks over the hills.") == ["thunder", "rain"]
    assert music.effects_for("The phone rings while she walks to the clock.") == ["phone", "footsteps", "clock"]
    assert music.effects_for("She smiles.") == []
    assert music.effects_for("Knockout punch.") == []  # whole words only


def test_mix_places_tracks_and_limits() -> None:
    one = np.full(RATE, 0.5, np.float32)
    out = music.mix([music.Track(one, 0.0), music.Track(one, 0.5, gain_db=-6.0)], RATE, ceiling=None)
    assert out.size == int(1.5 * RATE)
    assert out[int(0.25 * RATE)] == pytest.approx(0.5)
    assert out[int(0.75 * RATE)] == pytest.approx(0.5 + 0.5 * 10 ** (-6 / 20), rel=1e-4)
    assert out[int(1.25 * RATE)] == pytest.approx(0.5 * 10 ** (-6 / 20), rel=1e-4)
    loud = music.mix([music.Track(one * 3)], RATE, 1.0)
    assert loud.size == RATE and np.abs(loud).max() <= 0.95
    quiet = music.soft_limit(np.array([0.1, -0.5, 0.7], np.float32))
    assert np.array_equal(quiet, np.array([0.1, -0.5, 0.7], np.float32))
