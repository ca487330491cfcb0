"""Small audio helpers the film's media steps share: mono float32 signals in [-1, 1] at a given sample rate.

Resampling is polyphase (SciPy), envelopes are RMS per window, WAV files are 16-bit PCM through the standard
library's ``wave``.
"""

from __future__ import annotations

import io
import wave
from fractions import Fraction
from pathlib import Path

import numpy as np

MIX_RATE = 48000  # the rate the film's audio is mixed and encoded at


def db_to_gain(db: float) -> float:
    return float(10.0 ** (db / 20.0))


def gain_to_db(gain: float) -> float:
    return float(20.0 * np.log10(max(gain, 1e-12)))


def as_mono(samples: np.ndarray) -> np.ndarray:
    """float32 mono from int16 or float samples, (n,) or (n, channels)."""
    x = np.asarray(samples)
    if x.dtype == np.int16:
        x = x.astype(np.float32) / 32768.0
    x = x.astype(np.float32, copy=False)
    if x.ndim == 2:
        x = x.mean(axis=1, dtype=np.float32)
    return x


def resample(samples: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Polyphase resampling of a mono signal (exact rational ratio)."""
    x = as_mono(samples)
    if rate_in == rate_out or x.size == 0:
        return x.copy()
    from scipy.signal import resample_poly

    ratio = Fraction(int(rate_out), int(rate_in))
    return resample_poly(x, ratio.numerator, ratio.denominator).astype(np.float32)


def rms_envelope(samples: np.ndarray, rate: int, frame_rate: float, *, window_s: float | None = None) -> np.ndarray:
    """RMS of the signal at ``frame_rate`` points per second (one value per video frame, say), each taken over a
    window of ``window_s`` (default: two frame periods) centred on the frame's time."""
    x = as_mono(samples)
    n_frames = int(np.ceil(x.size / rate * frame_rate)) if x.size else 0
    if n_frames == 0:
        return np.zeros(0, np.float32)
    win = max(1, round((window_s if window_s is not None else 2.0 / frame_rate) * rate))
    csum = np.concatenate([[0.0], np.cumsum(x.astype(np.float64) ** 2)])
    centres = (np.arange(n_frames) + 0.5) / frame_rate * rate
    lo = np.clip((centres - win / 2).astype(np.int64), 0, x.size)
    hi = np.clip((centres + win / 2).astype(np.int64), 0, x.size)
    span = np.maximum(hi - lo, 1)
    return np.sqrt(np.maximum(csum[hi] - csum[lo], 0.0) / span).astype(np.float32)


def to_pcm16(samples: np.ndarray) -> np.ndarray:
    x = as_mono(samples) if np.asarray(samples).ndim == 1 else np.asarray(samples, np.float32)
    return (np.clip(x, -1.0, 1.0) * 32767.0).astype(np.int16)


def wav_bytes(samples: np.ndarray, rate: int) -> bytes:
    """A 16-bit PCM WAV of a mono (n,) or stereo (n, 2) float signal."""
    pcm = to_pcm16(samples)
    buf = io.BytesIO()
    with wave.open(buf, "wb") as wf:
        wf.setnchannels(1 if pcm.ndim == 1 else pcm.shape[1])
        wf.setsampwidth(2)
        wf.setframerate(int(rate))
        wf.writeframes(pcm.tobytes())
    return buf.getvalue()


def write_wav(path: Path | str, samples: np.ndarray, rate: int) -> Path:
    path = Path(path)
    path.write_bytes(wav_bytes(samples, rate))
    return path


def read_wav(path: Path | str) -> tuple[np.ndarray, int]:
    """A 16-bit PCM WAV as float32 (n,) mono or (n, channels), and its rate."""
    with wave.open(str(path), "rb") as wf:
        if wf.getsampwidth() != 2:
            raise ValueError("only 16-bit PCM WAV files are read here")
        channels, rate = wf.getnchannels(), wf.getframerate()
        pcm = np.frombuffer(wf.readframes(wf.getnframes()), dtype=np.int16)
    x = pcm.astype(np.float32) / 32768.0
    return (x if channels == 1 else x.reshape(-1, channels)), rate
