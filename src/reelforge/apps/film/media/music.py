"""Scene music, ducking under dialogue, sound effects and mixing, all synthesised with NumPy/SciPy.

**Score** (:func:`score`): each mood has a key, a mode, a chord progression, a tempo and an ensemble
(:data:`MOODS`). Chords last one bar (four beats); instruments are wavetable additive voices (pad, strings,
bass, brass) and FM voices (piano, pluck, bell), each with its own envelope, plus synthesised drums where the
mood has them. What varies by ``seed`` (arpeggio patterns, melody notes, velocities, the starting chord of the
progression) comes from one NumPy generator, so the same mood, duration and seed give the same samples.

**Ducking** (:func:`duck`): a sidechain gain from the dialogue's RMS envelope (20 ms windows at 200 Hz):
where the dialogue is above ``threshold_db`` the music goes to ``depth_db`` (default -12 dB), reached with
the ``attack_s`` time constant and left with ``release_s``, starting ``lookahead_s`` before the speech.

**Effects** (:func:`effects_for`, :func:`sound_effect`): keywords of an action line (knock, footsteps, thunder,
rain, phone, wind, clock) to short synthesised effects (resonant knocks, stepped thumps and scuffs, noise
rumble with a crack, droplets on a noise bed, a two-tone ringer, band-passed gusts, ticks).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from reelforge import errors
from reelforge.apps.film.media import audio

RATE = audio.MIX_RATE
_TABLE = 4096

_NOTE = {"C": 0, "C#": 1, "Db": 1, "D": 2, "D#": 3, "Eb": 3, "E": 4, "F": 5, "F#": 6, "Gb": 6, "G": 7,
         "G#": 8, "Ab": 8, "A": 9, "A#": 10, "Bb": 10, "B": 11}
_SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}
_TRIADS = {"maj": (0, 4, 7), "min": (0, 3, 7), "dim": (0, 3, 6), "sus4": (0, 5, 7)}


@dataclass(frozen=True)
class Mood:
    tempo: float  # beats per minute
    key: str
    mode: str
    progression: tuple[tuple[int, str], ...]  # (semitones above the key, triad quality), one chord per bar
    ensemble: tuple[str, ...]  # parts: pad, strings, piano, pluck, bass, brass, bell, drone, drums, tremolo
    level_db: float = -18.0  # the score's RMS level before mixing


MOODS: dict[str, Mood] = {
    "calm": Mood(72, "D", "major", ((0, "maj"), (9, "min"), (5, "maj"), (7, "maj")), ("pad", "piano", "bass")),
    "happy": Mood(120, "G", "major", ((0, "maj"), (7, "maj"), (9, "min"), (5, "maj")),
                  ("pluck", "bass", "drums", "bell")),
    "sad": Mood(62, "A", "minor", ((0, "min"), (8, "maj"), (3, "maj"), (10, "maj")), ("strings", "piano", "bass")),
    "tense": Mood(96, "C", "minor", ((0, "min"), (1, "maj"), (0, "min"), (6, "dim")),
                  ("drone", "tremolo", "bass", "drums")),
    "epic": Mood(100, "D", "minor", ((0, "min"), (8, "maj"), (3, "maj"), (10, "maj")),
                 ("strings", "brass", "bass", "drums")),
}
ALIASES = {
    "peaceful": "calm", "neutral": "calm", "quiet": "calm", "romantic": "calm", "hopeful": "calm",
    "joyful": "happy", "cheerful": "happy", "playful": "happy", "comic": "happy", "upbeat": "happy",
    "melancholy": "sad", "sorrowful": "sad", "somber": "sad", "sombre": "sad", "grief": "sad",
    "suspense": "tense", "scary": "tense", "dark": "tense", "mysterious": "tense", "horror": "tense",
    "action": "epic", "heroic": "epic", "triumphant": "epic", "battle": "epic", "dramatic": "epic",
}


def mood_name(name: str) -> str:
    """A mood of :data:`MOODS` for a name or one of its aliases (case-insensitive)."""
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key not in MOODS:
        raise errors.ValidationFailed(f"unknown mood {name!r}; one of {', '.join(sorted(MOODS))} "
                                      f"(or {', '.join(sorted(ALIASES))})")
    return key


@dataclass(frozen=True)
class Score:
    samples: np.ndarray  # mono float32
    sample_rate: int
    mood: str
    tempo: float
    key: str
    chords: tuple[str, ...]  # the chords played, in order, one per bar
    seed: int
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def duration_s(self) -> float:
        return self.samples.size / self.sample_rate


def _hz(midi: float) -> float:
    return float(440.0 * 2.0 ** ((midi - 69) / 12))


@lru_cache(maxsize=32)
def _wavetable(harmonics: tuple[float, ...]) -> np.ndarray:
    phase = np.arange(_TABLE) / _TABLE * 2 * np.pi
    table = sum(a * np.sin((k + 1) * phase) for k, a in enumerate(harmonics) if a)
    table = np.asarray(table, np.float64)
    return (table / np.max(np.abs(table))).astype(np.float32)


_SAWISH = tuple(1.0 / k for k in range(1, 13))
_SOFT = (1.0, 0.5, 0.22, 0.12, 0.05, 0.03)
_BRASS = tuple(1.0 / k ** 0.8 for k in range(1, 15))


def _adsr(n: int, rate: int, attack: float, decay: float, sustain: float, release: float) -> np.ndarray:
    """An envelope of n samples: attack, decay to sustain, hold, release over the last ``release`` seconds."""
    t = np.arange(n, dtype=np.float32) / rate
    env = np.where(t < attack, t / max(attack, 1e-4),
                   sustain + (1 - sustain) * np.exp(-(t - attack) / max(decay, 1e-4)))
    rel = int(min(n, release * rate))
    if rel > 0:
        env[n - rel:] *= np.linspace(1.0, 0.0, rel, dtype=np.float32) ** 2
    return env.astype(np.float32)


def _table_voice(freq: float, n: int, rate: int, table: np.ndarray, *, detune_cents: float = 0.0,
                 vibrato: float = 0.0, phase0: float = 0.0) -> np.ndarray:
    t = np.arange(n, dtype=np.float64) / rate
    f = freq * 2 ** (detune_cents / 1200)
    phase = f * t + phase0
    if vibrato:
        phase += vibrato * f / (2 * np.pi * 5.0) * np.sin(2 * np.pi * 5.0 * t)
    idx = (phase * _TABLE).astype(np.int64) & (_TABLE - 1)
    return table[idx]


def _fm(freq: float, n: int, rate: int, ratio: float, index: np.ndarray | float) -> np.ndarray:
    t = np.arange(n, dtype=np.float64) / rate
    return np.sin(2 * np.pi * freq * t + index * np.sin(2 * np.pi * freq * ratio * t)).astype(np.float32)


def _instrument(name: str, freq: float, dur: float, rate: int, vel: float) -> np.ndarray:
    """One note of an instrument, tail included."""
    if name == "pad":
        n = int((dur + 0.8) * rate)
        table = _wavetable(_SOFT)
        x = sum(_table_voice(freq, n, rate, table, detune_cents=c, phase0=p)
                for c, p in ((-7, 0.0), (0, 0.3), (7, 0.6)))
        return (np.asarray(x) / 3 * _adsr(n, rate, 0.5, 1.0, 0.8, 0.8) * vel).astype(np.float32)
    if name == "strings":
        n = int((dur + 0.6) * rate)
        table = _wavetable(_SAWISH)
        x = sum(_table_voice(freq, n, rate, table, detune_cents=c, vibrato=0.004, phase0=p)
                for c, p in ((-5, 0.1), (5, 0.7)))
        return (np.asarray(x) / 2 * _adsr(n, rate, 0.35, 1.2, 0.85, 0.6) * vel).astype(np.float32)
    if name == "brass":
        n = int((dur + 0.3) * rate)
        env = _adsr(n, rate, 0.08, 0.4, 0.75, 0.3)
        x = _fm(freq, n, rate, 1.0, 0.5 + 2.5 * env) * 0.6 + _table_voice(freq, n, rate, _wavetable(_BRASS)) * 0.4
        return (x * env * vel).astype(np.float32)
    if name == "bass":
        n = int((dur + 0.15) * rate)
        x = _table_voice(freq, n, rate, _wavetable((1.0, 0.35, 0.1)))
        return (x * _adsr(n, rate, 0.01, 0.3, 0.6, 0.12) * vel).astype(np.float32)
    if name in ("piano", "pluck", "bell"):
        tail = {"piano": 1.6, "pluck": 0.6, "bell": 2.0}[name]
        n = int((dur + tail) * rate)
        t = np.arange(n, dtype=np.float32) / rate
        decay = np.exp(-t / {"piano": 0.9, "pluck": 0.25, "bell": 1.2}[name])
        ratio, depth = {"piano": (1.0, 2.2), "pluck": (2.0, 3.0), "bell": (3.5, 4.0)}[name]
        x = _fm(freq, n, rate, ratio, depth * np.exp(-t / 0.25))
        attack = np.minimum(1.0, t / 0.004)
        release = np.ones(n, np.float32)
        end = int(dur * rate)
        if name != "bell" and end < n:
            release[end:] = np.exp(-(t[end:] - t[end]) / 0.12)
        return (x * decay * attack * release * vel).astype(np.float32)
    if name == "drone":
        n = int((dur + 0.5) * rate)
        t = np.arange(n, dtype=np.float32) / rate
        x = _table_voice(freq, n, rate, _wavetable(_SOFT)) + 0.6 * _table_voice(freq * 1.5, n, rate,
                                                                                 _wavetable(_SOFT))
        swell = 0.75 + 0.25 * np.sin(2 * np.pi * 0.15 * t)
        return (x / 1.6 * swell * _adsr(n, rate, 1.0, 2.0, 0.9, 0.5) * vel).astype(np.float32)
    if name == "tremolo":
        n = int((dur + 0.3) * rate)
        t = np.arange(n, dtype=np.float32) / rate
        x = _table_voice(freq, n, rate, _wavetable(_SAWISH)) + _table_voice(freq * 2 ** (1 / 12), n, rate,
                                                                             _wavetable(_SAWISH))
        trem = 0.5 + 0.5 * np.sin(2 * np.pi * 9.0 * t) ** 2
        return (x / 2 * trem * _adsr(n, rate, 0.3, 1.0, 0.8, 0.3) * vel).astype(np.float32)
    raise ValueError(f"no instrument {name!r}")


def _drum(kind: str, rate: int, vel: float, rng: np.random.Generator) -> np.ndarray:
    if kind == "kick":
        n = int(0.35 * rate)
        t = np.arange(n) / rate
        f = 45 + 90 * np.exp(-t / 0.04)
        x = np.sin(2 * np.pi * np.cumsum(f) / rate) * np.exp(-t / 0.12)
    elif kind == "tom":
        n = int(0.6 * rate)
        t = np.arange(n) / rate
        f = 70 + 40 * np.exp(-t / 0.08)
        x = (np.sin(2 * np.pi * np.cumsum(f) / rate) * np.exp(-t / 0.25)
             + 0.15 * rng.standard_normal(n) * np.exp(-t / 0.03))
    elif kind == "hat":
        n = int(0.08 * rate)
        t = np.arange(n) / rate
        noise = rng.standard_normal(n)
        x = np.diff(noise, prepend=0.0) * 0.5 * np.exp(-t / 0.018)
    else:  # snare
        n = int(0.25 * rate)
        t = np.arange(n) / rate
        x = 0.7 * rng.standard_normal(n) * np.exp(-t / 0.06) + 0.4 * np.sin(2 * np.pi * 190 * t) * np.exp(-t / 0.05)
    return (x * vel).astype(np.float32)


def _add(buf: np.ndarray, x: np.ndarray, at: int) -> None:
    if at >= buf.size:
        return
    end = min(buf.size, at + x.size)
    buf[at:end] += x[:end - at]


def score(mood: str, duration_s: float, *, seed: int = 0, sample_rate: int = RATE, fade_s: float = 1.5) -> Score:
    """A score for a scene of ``duration_s`` seconds in ``mood`` (see the module docstring)."""
    if duration_s <= 0:
        raise errors.ValidationFailed("a score needs a positive duration")
    name = mood_name(mood)
    m = MOODS[name]
    rng = np.random.default_rng(seed)
    n = round(duration_s * sample_rate)
    beat = 60.0 / m.tempo
    bar = 4 * beat
    tonic = 48 + _NOTE[m.key]  # the key's C3 octave
    scale = _SCALES[m.mode]
    start = int(rng.integers(0, 2)) * 2  # begin on the progression's first or third chord
    parts: dict[str, np.ndarray] = {}

    def part(name_: str) -> np.ndarray:
        return parts.setdefault(name_, np.zeros(n + sample_rate * 3, np.float32))

    chords: list[str] = []
    bars = int(np.ceil(duration_s / bar))
    melody_note = tonic + 24 + scale[int(rng.integers(0, 3)) * 2]
    for b in range(bars):
        root_off, quality = m.progression[(start + b) % len(m.progression)]
        root = tonic + root_off
        triad = [root + i for i in _TRIADS[quality]]
        chords.append(f"{_name(root)}{'' if quality == 'maj' else 'm' if quality == 'min' else quality}")
        t0 = b * bar
        at = int(t0 * sample_rate)
        for inst in m.ensemble:
            if inst in ("pad", "strings"):
                voicing = [triad[0] + 12, triad[1] + 12, triad[2] + 12] if inst == "pad" else [triad[0], triad[1] + 12,
                                                                                                triad[2] + 12]
                for note in voicing:
                    _add(part(inst), _instrument(inst, _hz(note), bar, sample_rate, 0.33), at)
            elif inst == "bass":
                pattern = (0, 2) if m.tempo < 90 else (0, 1, 2, 3) if name != "tense" else tuple(np.arange(8) / 2)
                for k in pattern:
                    note = triad[0] - 12 + (7 if (k == 2 and name in ("happy", "calm")) else 0)
                    length = beat * (0.45 if name == "tense" else 0.9 * (2 if len(pattern) == 2 else 1))
                    vel = 0.55 * (1.0 if k in (0, 2) else 0.8) * float(rng.uniform(0.9, 1.0))
                    _add(part(inst), _instrument("bass", _hz(note), length, sample_rate, vel),
                         at + int(k * beat * sample_rate))
            elif inst in ("piano", "pluck"):
                steps = 4 if inst == "piano" else 8
                step = bar / steps
                order = [0, 1, 2, 1] if rng.random() < 0.5 else [0, 2, 1, 2]
                for k in range(steps):
                    note = triad[order[k % 4]] + 12 + (12 if inst == "pluck" and k % 4 == 3 else 0)
                    vel = 0.32 * float(rng.uniform(0.75, 1.0)) * (1.1 if k % (steps // 4 or 1) == 0 else 1.0)
                    _add(part(inst), _instrument(inst, _hz(note), step * 0.9, sample_rate, vel),
                         at + int(k * step * sample_rate))
            elif inst == "bell":  # a short melody over the chord: chord tones and scale steps, by the seed
                for k in range(4):
                    if rng.random() < 0.3:
                        continue
                    choices = [t + 24 for t in triad] + [melody_note + s for s in (-2, -1, 1, 2)]
                    melody_note = int(min(choices, key=lambda c: abs(c - melody_note) + 3 * rng.random()))
                    melody_note = _in_scale(melody_note, tonic, scale)
                    _add(part(inst), _instrument("bell", _hz(melody_note), beat * 0.8, sample_rate, 0.16),
                         at + int(k * beat * sample_rate))
            elif inst == "brass":
                for k, length in ((0, 1.5), (2, 2.0)):
                    _add(part(inst), _instrument("brass", _hz(triad[0] + 12), beat * length, sample_rate, 0.3),
                         at + int(k * beat * sample_rate))
                    _add(part(inst), _instrument("brass", _hz(triad[2] + 12), beat * length, sample_rate, 0.22),
                         at + int(k * beat * sample_rate))
            elif inst == "drone" and b % 2 == 0:
                _add(part(inst), _instrument("drone", _hz(tonic - 12), 2 * bar, sample_rate, 0.5), at)
            elif inst == "tremolo":
                _add(part(inst), _instrument("tremolo", _hz(triad[0] + 24), bar, sample_rate, 0.12), at)
            elif inst == "drums":
                _drums(part(inst), name, at, beat, sample_rate, rng)
    mix = np.zeros(n, np.float32)
    weights = {"pad": 0.8, "strings": 0.8, "piano": 1.0, "pluck": 0.9, "bass": 0.9, "brass": 0.8, "bell": 0.7,
               "drone": 0.8, "tremolo": 0.7, "drums": 0.9}
    for inst, buf in parts.items():
        mix += buf[:n] * weights[inst]
    mix = audio_fade(mix, sample_rate, fade_in_s=min(0.3, duration_s / 4), fade_out_s=min(fade_s, duration_s / 3))
    rms = float(np.sqrt(np.mean(mix.astype(np.float64) ** 2))) if n else 0.0
    if rms > 0:
        mix *= audio.db_to_gain(m.level_db) / rms
    mix = soft_limit(mix, 0.95)
    return Score(mix.astype(np.float32), sample_rate, name, m.tempo, f"{m.key} {m.mode}", tuple(chords), seed,
                 (f"{len(parts)} parts: {', '.join(parts)}",))


def _drums(buf: np.ndarray, mood: str, at: int, beat: float, rate: int, rng: np.random.Generator) -> None:
    def hit(kind: str, pos_beats: float, vel: float) -> None:
        _add(buf, _drum(kind, rate, vel * float(rng.uniform(0.9, 1.0)), rng), at + int(pos_beats * beat * rate))

    if mood == "happy":
        for k in range(4):
            hit("kick" if k % 2 == 0 else "snare", k, 0.7 if k % 2 == 0 else 0.35)
            hit("hat", k + 0.5, 0.35)
    elif mood == "epic":
        hit("tom", 0, 0.9)
        hit("tom", 2, 0.8)
        hit("tom", 3.5, 0.5)
        hit("snare", 3, 0.3)
    elif mood == "tense":  # a heartbeat
        hit("kick", 0, 0.7)
        hit("kick", 0.4, 0.45)
        hit("kick", 2, 0.7)
        hit("kick", 2.4, 0.45)
    else:
        hit("kick", 0, 0.5)


def _in_scale(note: int, tonic: int, scale: Sequence[int]) -> int:
    while (note - tonic) % 12 not in scale:
        note -= 1
    return note


def _name(midi: int) -> str:
    return ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")[midi % 12]


# Ducking ----------------------------------------------------------------------------------------------------


def sidechain_gain(dialogue: np.ndarray, sample_rate: int, n: int | None = None, *, depth_db: float = -12.0,
                   threshold_db: float = -45.0, attack_s: float = 0.08, release_s: float = 0.5,
                   lookahead_s: float = 0.05, control_hz: float = 200.0) -> np.ndarray:
    """The music's gain per sample (1.0 .. 10^(depth_db/20)) from the dialogue track (same rate)."""
    x = audio.as_mono(dialogue)
    n = x.size if n is None else int(n)
    if n == 0:
        return np.ones(0, np.float32)
    env = audio.rms_envelope(x, sample_rate, control_hz, window_s=0.02)
    level = 20 * np.log10(np.maximum(env, 1e-9))
    low = audio.db_to_gain(depth_db)
    target = np.where(level > threshold_db, low, 1.0)
    ahead = round(lookahead_s * control_hz)
    if ahead and target.size:
        target = np.minimum(target, np.concatenate([target[ahead:], np.full(ahead, target[-1])]))
    a_att = 1 - np.exp(-1.0 / (attack_s * control_hz))
    a_rel = 1 - np.exp(-1.0 / (release_s * control_hz))
    gain = np.empty(target.size, np.float64)
    g = 1.0
    for i, want in enumerate(target.tolist()):
        g += (want - g) * (a_att if want < g else a_rel)
        gain[i] = g
    t_ctl = (np.arange(gain.size) + 0.5) / control_hz
    t = np.arange(n) / sample_rate
    return np.interp(t, t_ctl, gain, left=gain[0] if gain.size else 1.0,
                     right=gain[-1] if gain.size else 1.0).astype(np.float32)


def duck(music: np.ndarray, dialogue: np.ndarray, sample_rate: int, **kwargs: float) -> np.ndarray:
    """``music`` turned down under ``dialogue`` (both mono at ``sample_rate``; see :func:`sidechain_gain`)."""
    m = audio.as_mono(music)
    d = audio.as_mono(dialogue)
    if d.size < m.size:
        d = np.pad(d, (0, m.size - d.size))
    return (m * sidechain_gain(d[:m.size], sample_rate, m.size, **kwargs)).astype(np.float32)


# Sound effects ----------------------------------------------------------------------------------------------

EFFECT_WORDS: dict[str, tuple[str, ...]] = {
    "knock": ("knock", "knocks", "knocking", "knocked", "raps on"),
    "footsteps": ("footstep", "footsteps", "steps", "walks", "walking", "walked", "paces", "pacing", "runs",
                  "running", "hurries", "approaches"),
    "thunder": ("thunder", "thunderstorm", "lightning", "storm"),
    "rain": ("rain", "raining", "rainy", "drizzle", "downpour", "storm"),
    "phone": ("phone", "telephone", "ringing", "rings"),
    "wind": ("wind", "windy", "gust", "gusts", "breeze", "howling"),
    "clock": ("clock", "ticking", "ticks"),
}
DEFAULT_EFFECT_S = {"knock": 1.2, "footsteps": 3.0, "thunder": 4.5, "rain": 6.0, "phone": 3.0, "wind": 6.0,
                    "clock": 4.0}


def effects_for(action: str) -> list[str]:
    """Effects named or implied by an action line, in the order their words appear."""
    text = action.lower()
    found: list[tuple[int, int, str]] = []
    for order, (name, words) in enumerate(EFFECT_WORDS.items()):
        hits = [m.start() for w in words for m in re.finditer(rf"\b{re.escape(w)}\b", text)]
        if hits:
            found.append((min(hits), order, name))  # one word implying two effects: the table's order
    return [name for _, _, name in sorted(found)]


def sound_effect(name: str, duration_s: float | None = None, *, sample_rate: int = RATE, seed: int = 0) -> np.ndarray:
    """A mono effect (float32, peak about 0.8) lasting ``duration_s`` (default per effect)."""
    if name not in _EFFECTS:
        raise errors.ValidationFailed(f"unknown sound effect {name!r}; one of {', '.join(sorted(_EFFECTS))}")
    dur = float(duration_s if duration_s is not None else DEFAULT_EFFECT_S[name])
    n = max(1, round(dur * sample_rate))
    rng = np.random.default_rng(seed)
    x = _EFFECTS[name](n, sample_rate, rng).astype(np.float32)
    x = audio_fade(x, sample_rate, fade_in_s=0.005, fade_out_s=min(0.3, dur / 4))
    peak = float(np.max(np.abs(x), initial=0.0))
    return (x * (0.8 / peak)).astype(np.float32) if peak > 0 else x


def _resonator(excite: np.ndarray, rate: int, freq: float, decay_s: float) -> np.ndarray:
    """A two-pole resonance at ``freq`` ringing for about ``decay_s``."""
    from scipy.signal import lfilter

    r = np.exp(-1.0 / (decay_s * rate))
    w = 2 * np.pi * freq / rate
    return lfilter([1 - r], [1, -2 * r * np.cos(w), r * r], excite)


def _bandpass(x: np.ndarray, rate: int, lo: float, hi: float, order: int = 2) -> np.ndarray:
    from scipy.signal import butter, sosfilt

    sos = butter(order, [lo, min(hi, rate / 2 * 0.95)], btype="bandpass", fs=rate, output="sos")
    return sosfilt(sos, x)


def _lowpass(x: np.ndarray, rate: int, hi: float, order: int = 2) -> np.ndarray:
    from scipy.signal import butter, sosfilt

    return sosfilt(butter(order, hi, btype="lowpass", fs=rate, output="sos"), x)


def _knock(n: int, rate: int, rng: np.random.Generator) -> np.ndarray:
    out = np.zeros(n)
    for t in (0.0, 0.2, 0.4):
        at = int((t + rng.uniform(-0.01, 0.01) + 0.02) * rate)
        if at >= n:
            break
        k = int(0.15 * rate)
        click = np.zeros(k)
        click[:int(0.002 * rate)] = rng.standard_normal(int(0.002 * rate))
        body = sum(_resonator(click, rate, f, d) * a for f, d, a in ((190, 0.05, 1.0), (430, 0.03, 0.6),
                                                                    (760, 0.02, 0.35)))
        seg = np.asarray(body)[:n - at]
        out[at:at + seg.size] += seg
    return out


def _footsteps(n: int, rate: int, rng: np.random.Generator) -> np.ndarray:
    out = np.zeros(n)
    t = 0.05
    while int(t * rate) < n:
        at = int(t * rate)
        k = int(0.18 * rate)
        tt = np.arange(k) / rate
        thump = np.sin(2 * np.pi * (70 + 30 * np.exp(-tt / 0.02)) * tt) * np.exp(-tt / 0.035)
        scuff = _bandpass(rng.standard_normal(k), rate, 300, 2500) * np.exp(-tt / 0.05) * 0.6
        step = (thump + scuff) * rng.uniform(0.7, 1.0)
        seg = step[:n - at]
        out[at:at + seg.size] += seg
        t += 0.52 + rng.uniform(-0.04, 0.04)
    return out


def _thunder(n: int, rate: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / rate
    brown = np.cumsum(rng.standard_normal(n))
    brown -= _lowpass(brown, rate, 5.0, 1)  # remove the drift
    rumble = _lowpass(brown, rate, 180, 2)
    rumble /= np.max(np.abs(rumble)) or 1.0
    swells = np.zeros(n)
    for _ in range(4):
        c, w = rng.uniform(0.2, 0.7) * n / rate, rng.uniform(0.3, 1.0)
        swells += rng.uniform(0.4, 1.0) * np.exp(-((t - c) / w) ** 2)
    env = np.minimum(1.0, t / 0.05) * np.exp(-t / (0.45 * n / rate)) * (0.5 + swells)
    crack = _bandpass(rng.standard_normal(n), rate, 800, 6000) * np.exp(-t / 0.06) * 0.5
    return rumble * env + crack


def _rain(n: int, rate: int, rng: np.random.Generator) -> np.ndarray:
    bed = _bandpass(rng.standard_normal(n), rate, 1500, 9000) * 0.15
    drops = np.zeros(n)
    count = int(n / rate * 180)
    pos = rng.integers(0, n, count)
    drops[pos] = rng.uniform(0.2, 1.0, count) * rng.choice([-1, 1], count)
    drops = _bandpass(drops, rate, 2500, 12000)
    return bed + drops * 1.5


def _phone(n: int, rate: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / rate
    tone = 0.5 * np.sin(2 * np.pi * 440 * t) + 0.5 * np.sin(2 * np.pi * 480 * t)
    cycle = t % 2.4  # two short rings, then quiet
    gate = ((cycle < 0.4) | ((cycle > 0.6) & (cycle < 1.0))).astype(float)
    gate = _lowpass(gate, rate, 80, 1)
    trill = 0.85 + 0.15 * np.sign(np.sin(2 * np.pi * 20 * t))
    return tone * gate * trill


def _wind(n: int, rate: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / rate
    noise = rng.standard_normal(n)
    out = np.zeros(n)
    for lo, hi in ((150, 400), (400, 900), (900, 1800)):
        band = _bandpass(noise, rate, lo, hi)
        lfo = 0.55 + 0.45 * np.sin(2 * np.pi * rng.uniform(0.08, 0.3) * t + rng.uniform(0, 2 * np.pi))
        out += band * lfo
    return out


def _clock(n: int, rate: int, rng: np.random.Generator) -> np.ndarray:
    out = np.zeros(n)
    k = int(0.08 * rate)
    for i, t in enumerate(np.arange(0.05, n / rate, 1.0)):
        at = int(t * rate)
        click = np.zeros(k)
        click[:int(0.001 * rate) or 1] = 1.0
        f = 2400 if i % 2 == 0 else 2000
        tick = _resonator(click, rate, f, 0.012) + 0.5 * _resonator(click, rate, f * 1.9, 0.006)
        seg = tick[:n - at]
        out[at:at + seg.size] += seg
    return out


_EFFECTS: dict[str, Callable[[int, int, np.random.Generator], np.ndarray]] = {
    "knock": _knock, "footsteps": _footsteps, "thunder": _thunder, "rain": _rain, "phone": _phone,
    "wind": _wind, "clock": _clock,
}


# Mixing -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Track:
    """A mono signal placed at ``start_s`` with a gain in dB."""

    samples: np.ndarray
    start_s: float = 0.0
    gain_db: float = 0.0


def audio_fade(x: np.ndarray, sample_rate: int, *, fade_in_s: float = 0.0, fade_out_s: float = 0.0) -> np.ndarray:
    """``x`` with linear fades in and out (a copy)."""
    y = audio.as_mono(x).copy()
    a = min(y.size, int(fade_in_s * sample_rate))
    b = min(y.size, int(fade_out_s * sample_rate))
    if a > 0:
        y[:a] *= np.linspace(0.0, 1.0, a, dtype=np.float32)
    if b > 0:
        y[y.size - b:] *= np.linspace(1.0, 0.0, b, dtype=np.float32)
    return y


def soft_limit(x: np.ndarray, ceiling: float = 0.95) -> np.ndarray:
    """Peaks above ``ceiling`` bent smoothly under it (tanh knee over the top 20 %); quieter samples untouched."""
    y = np.asarray(x, np.float32).copy()
    knee = 0.8 * ceiling
    over = np.abs(y) > knee
    if np.any(over):
        span = ceiling - knee
        y[over] = np.sign(y[over]) * (knee + span * np.tanh((np.abs(y[over]) - knee) / span))
    return y


def mix(tracks: Sequence[Track], sample_rate: int, duration_s: float | None = None, *,
        ceiling: float | None = 0.95) -> np.ndarray:
    """Tracks summed into one mono signal (as long as the longest unless ``duration_s``), soft-limited."""
    end = max((t.start_s * sample_rate + t.samples.shape[0] for t in tracks), default=0)
    n = round(duration_s * sample_rate) if duration_s is not None else int(np.ceil(end))
    out = np.zeros(n, np.float32)
    for t in tracks:
        x = audio.as_mono(t.samples) * audio.db_to_gain(t.gain_db)
        at = round(t.start_s * sample_rate)
        if at < 0:
            x, at = x[-at:], 0
        _add(out, x, at)
    return soft_limit(out, ceiling) if ceiling else out
