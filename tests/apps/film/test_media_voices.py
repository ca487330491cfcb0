"""Dialogue voices: Piper (joe voice) with phoneme alignments and espeak-ng with its events, real engines."""

from __future__ import annotations

import os

import numpy as np
import pytest

from reelforge import errors
from reelforge.apps.film.media import audio, voices
from reelforge.apps.film.media.voices import Voice

CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
LINE = "The storm came in from the north. Martha closed the shutters, and listened to the rain."


def need(engine: str) -> None:
    why = voices.engines()[engine]
    if why:
        if CI:
            pytest.fail(f"{engine}: {why} (required under CI)")
        pytest.skip(f"{engine}: {why}")


def f0(samples: np.ndarray, rate: int) -> float:
    """Median fundamental frequency of the voiced 40 ms frames (autocorrelation, 70-400 Hz)."""
    x = audio.as_mono(samples)
    n = int(0.04 * rate)
    loud = np.percentile(np.abs(x), 99)
    out = []
    for i in range(0, x.size - n, n):
        seg = x[i:i + n] - x[i:i + n].mean()
        if np.sqrt(np.mean(seg ** 2)) < 0.08 * loud:
            continue
        ac = np.correlate(seg, seg, "full")[n - 1:]
        lo, hi = int(rate / 400), int(rate / 70)
        lag = lo + int(np.argmax(ac[lo:hi]))
        if ac[lag] > 0.4 * ac[0]:
            out.append(rate / lag)
    return float(np.median(out))


def check_words(speech: voices.Speech, text: str) -> None:
    assert [w.word for w in speech.words] == text.split()
    last = 0.0
    for w in speech.words:
        assert w.start >= last - 1e-6 and w.end > w.start, w
        last = w.end
    assert speech.words[-1].end <= speech.duration_s + 1e-6
    # speech is louder inside the words than in the pauses between sentences/clauses
    env = audio.rms_envelope(speech.samples, speech.sample_rate, 100.0)
    t = (np.arange(env.size) + 0.5) / 100
    inside = np.zeros(env.size, bool)
    for w in speech.words:
        inside |= (t >= w.start) & (t < w.end)
    assert env[inside].mean() > 3 * env[~inside].mean()


def test_piper_speaks_with_aligned_word_timings() -> None:
    need(voices.PIPER)
    speech = voices.synthesize(LINE, Voice())
    assert speech.engine == voices.PIPER and speech.timing == "piper-alignment", speech.notes
    assert speech.sample_rate == 22050 and speech.samples.dtype == np.float32
    assert 0.8 <= float(np.abs(speech.samples).max()) <= 0.9
    check_words(speech, LINE)
    assert speech.phonemes and speech.phonemes[0].start < speech.words[0].end
    # the pause Piper gets between the two sentences shows as a gap between "north." and "Martha"
    north, martha = speech.words[6], speech.words[7]
    assert north.word == "north." and martha.start - north.end >= 0.2
    wav = speech.wav_bytes()
    assert wav[:4] == b"RIFF" and len(wav) == 44 + 2 * speech.samples.size


def test_piper_rate_and_pitch() -> None:
    need(voices.PIPER)
    line = "Somebody is knocking at the door, so please open it now."
    base = voices.synthesize(line, Voice())
    slow = voices.synthesize(line, Voice(rate=0.7))
    fast = voices.synthesize(line, Voice(rate=1.5))
    high = voices.synthesize(line, Voice(pitch=5.0))
    assert fast.duration_s < base.duration_s < slow.duration_s
    assert slow.duration_s / fast.duration_s > 1.6  # 1.5 / 0.7 = 2.1, less the fixed pauses
    ratio = f0(high.samples, high.sample_rate) / f0(base.samples, base.sample_rate)
    assert 1.2 < ratio < 1.5, ratio  # +5 semitones = 1.335
    # pitch keeps the duration (Piper's durations vary a little from run to run)
    assert abs(high.duration_s - base.duration_s) / base.duration_s < 0.15
    assert high.timing == "piper-alignment" and "resampling" in high.notes[0]
    check_words(high, line)


def test_piper_words_that_read_as_several() -> None:
    need(voices.PIPER)
    line = "It was 2026 when Dr. Smith left."
    speech = voices.synthesize(line)
    check_words(speech, line)
    year = speech.words[2]
    assert year.word == "2026" and year.end - year.start > 0.5  # "twenty twenty-six"


def test_espeak_voices_with_event_timings() -> None:
    need(voices.ESPEAK)
    speech = voices.synthesize(LINE, Voice(engine=voices.ESPEAK))
    assert speech.engine == voices.ESPEAK and speech.timing == "espeak-events"
    check_words(speech, LINE)
    low = voices.synthesize(LINE, Voice(engine=voices.ESPEAK, pitch=-6))
    high = voices.synthesize(LINE, Voice(engine=voices.ESPEAK, pitch=6))
    assert f0(high.samples, high.sample_rate) > 1.2 * f0(low.samples, low.sample_rate)
    fast = voices.synthesize(LINE, Voice(engine=voices.ESPEAK, rate=1.5))
    assert fast.duration_s < 0.8 * speech.duration_s


def test_cast_gives_distinct_voices() -> None:
    cast = voices.cast(["ANNA", "BEN", "ANNA", "CLARA", "DAN"])
    assert list(cast) == ["ANNA", "BEN", "CLARA", "DAN"]
    assert len({(v.pitch, v.rate, v.espeak_voice) for v in cast.values()}) == 4
    assert voices.cast(["ANNA", "BEN"]) == {k: cast[k] for k in ("ANNA", "BEN")}
    many = voices.cast([f"C{i}" for i in range(12)])
    assert len({(v.pitch, v.rate) for v in many.values()}) == 12
    need(voices.ESPEAK)
    pitches = [f0(voices.synthesize("Hello, who is there?", v, engine=voices.ESPEAK).samples, 22050)
               for v in cast.values()]
    assert len({round(p / 10) for p in pitches}) >= 3, pitches


def test_fallback_to_espeak_and_nothing_left(monkeypatch: pytest.MonkeyPatch) -> None:
    need(voices.ESPEAK)
    monkeypatch.setattr(voices, "piper_available", lambda: "not installed: piper (test)")
    speech = voices.synthesize("Hello there.", Voice(engine=voices.PIPER))
    assert speech.engine == voices.ESPEAK
    assert any("piper unavailable" in n for n in speech.notes) and any("instead of piper" in n for n in speech.notes)
    monkeypatch.setattr(voices, "espeak_available", lambda: "not installed: espeakng_loader (test)")
    with pytest.raises(errors.ModelUnavailable, match="no speech engine"):
        voices.synthesize("Hello there.")


def test_estimated_timings_follow_the_aligned_ones() -> None:
    need(voices.PIPER)
    speech = voices.synthesize(LINE)
    model, _ = voices.piper_voice()
    words = [w.word for w in speech.words]
    counts = [voices._phoneme_count(model, w) for w in words]
    est = voices.estimate_word_timings(speech.samples, speech.sample_rate, words, counts)
    assert [w.word for w in est] == words
    starts = np.array([w.start for w in est]) - np.array([w.start for w in speech.words])
    assert float(np.median(np.abs(starts))) < 0.12, starts
    assert float(np.max(np.abs(starts))) < 0.5, starts


def test_bad_input_is_refused() -> None:
    with pytest.raises(errors.ValidationFailed):
        voices.synthesize("  ... ")
    with pytest.raises(errors.ValidationFailed):
        Voice(rate=3.0)
    with pytest.raises(errors.ValidationFailed):
        Voice(engine="festival")
