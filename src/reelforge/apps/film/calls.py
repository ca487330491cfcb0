"""The interactive call workers answer for the film studio (`AppManifest.calls`):

- `film.voice` {voice_id, text?, rate?, pitch?}: a short line spoken by one of `film.voices` with a character's
  rate and pitch, as the render pipeline would speak it (`casting.media_voice` + `media.voices.synthesize`):
  `{"wav_b64", "engine", "timing", "notes", "duration_s", "sample_rate", "voice_id", "text"}`.

The speech engines run on the workers only (Piper loads its model once per process, so the API sends every
preview with the same affinity key and one worker keeps it warm). The request is checked by :func:`preview_request`
in the API process before the call, and again here (a call may come from elsewhere).
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping
from typing import Any

from reelforge import errors

VOICE_CALL = "film.voice"
DEFAULT_TEXT = "Hello, this is how I sound."
MAX_TEXT_CHARS = 300


def preview_request(cfg: Any, voice_id: str, text: str | None, rate: float | None,
                    pitch: float | None) -> dict[str, Any]:
    """The call's payload for a preview of `voice_id`, or a 422: `unknown_voice`, `voice_out_of_range` (rate or pitch
    outside the settings' ranges), `text_too_long` (over 300 characters), `empty_text` (no word to speak)."""
    if voice_id not in cfg.voice_ids():
        raise errors.ValidationFailed(f"Unknown voice {voice_id!r}; GET /v1/film/voices lists them",
                                      code="unknown_voice", field="voice_id", voice=voice_id[:64])
    r = 1.0 if rate is None else float(rate)
    p = 0.0 if pitch is None else float(pitch)
    if not math.isfinite(r) or not cfg.rate_min <= r <= cfg.rate_max:
        raise errors.ValidationFailed(f"A voice's rate is between {cfg.rate_min} and {cfg.rate_max}",
                                      code="voice_out_of_range", field="rate", min=cfg.rate_min, max=cfg.rate_max)
    if not math.isfinite(p) or not cfg.pitch_min <= p <= cfg.pitch_max:
        raise errors.ValidationFailed(f"A voice's pitch is between {cfg.pitch_min} and {cfg.pitch_max} semitones",
                                      code="voice_out_of_range", field="pitch", min=cfg.pitch_min,
                                      max=cfg.pitch_max)
    line = DEFAULT_TEXT if text is None else " ".join(str(text).split())
    if len(line) > MAX_TEXT_CHARS:
        raise errors.ValidationFailed(f"A preview speaks at most {MAX_TEXT_CHARS} characters",
                                      code="text_too_long", field="text", limit=MAX_TEXT_CHARS)
    if not any(ch.isalnum() for ch in line):
        raise errors.ValidationFailed("The preview text has no word to speak", code="empty_text", field="text")
    return {"voice_id": voice_id, "text": line, "rate": r, "pitch": p}


def voice_call(services: Any, payload: dict[str, Any]) -> dict[str, Any]:
    """`film.voice`: the line spoken (module docstring)."""
    from reelforge.apps.film import casting
    from reelforge.apps.film.media import voices

    cfg = services.app("film").cfg
    data: Mapping[str, Any] = payload if isinstance(payload, Mapping) else {}

    def number(key: str) -> float | None:
        v = data.get(key)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise errors.ValidationFailed(f"{key} must be a number", code="voice_out_of_range", field=key)
        return float(v)

    text = data.get("text")
    req = preview_request(cfg, str(data.get("voice_id") or ""), None if text is None else str(text),
                          number("rate"), number("pitch"))
    voice = casting.media_voice(cfg, {"id": req["voice_id"], "rate": req["rate"], "pitch": req["pitch"]},
                                name="preview")
    speech = voices.synthesize(req["text"], voice)
    return {"wav_b64": base64.b64encode(speech.wav_bytes()).decode("ascii"), "engine": speech.engine,
            "timing": speech.timing, "notes": list(speech.notes), "duration_s": round(speech.duration_s, 3),
            "sample_rate": int(speech.sample_rate), "voice_id": req["voice_id"], "text": req["text"]}


def calls(settings: Any = None) -> list[Any]:
    """The manifest's `calls`."""
    from reelforge.applications import Call
    from reelforge.domain.pipeline import Resources

    # The first preview on a worker loads Piper's model (a few seconds on a small machine).
    return [Call(VOICE_CALL, voice_call, resources=Resources(cpu=1, memory_mb=512), timeout_s=60.0)]
