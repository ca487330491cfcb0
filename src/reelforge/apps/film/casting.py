"""From a project's voice choice (a voice of `film.voices` plus the character's own rate and pitch) to the
speech engines' :class:`~reelforge.apps.film.media.voices.Voice`: the voice's base pitch and rate, shifted by the
character's pitch and multiplied by its rate, kept inside what the engines accept."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reelforge import errors
from reelforge.apps.film.settings import FilmSettings


def media_voice(cfg: FilmSettings, choice: Mapping[str, Any] | None, *, name: str = "narrator",
                engine: str | None = None) -> Any:
    """The engine voice for ``choice`` (``{"id", "rate", "pitch"}``; the default voice when None or without an
    id). Raises 422 ``unknown_voice`` for a voice the settings do not list."""
    from reelforge.apps.film.media import voices

    choice = dict(choice or {})
    voice_id = choice.get("id") or cfg.default_voice
    styles = {v.id: v for v in cfg.voices}
    style = styles.get(voice_id)
    if style is None:
        raise errors.ValidationFailed(f"Unknown voice {voice_id!r}; GET /v1/film/voices lists them",
                                      code="unknown_voice", field="voice.id", voice=voice_id)
    rate = float(choice["rate"]) if choice.get("rate") is not None else 1.0
    pitch = float(choice["pitch"]) if choice.get("pitch") is not None else 0.0
    return voices.Voice(name=name, engine=engine or voices.PIPER,
                        rate=min(2.0, max(0.5, style.base_rate * rate)),
                        pitch=min(12.0, max(-12.0, style.base_pitch + pitch)),
                        espeak_voice=style.espeak_voice)
