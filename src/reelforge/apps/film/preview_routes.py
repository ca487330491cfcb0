"""Voice previews: `POST /v1/film/voices/{voice_id}/preview` speaks a short line with one of the voices a character
may take, at a character's rate and pitch, on a worker (the interactive call `film.voice`), and answers the WAV.

| answer | when |
| --- | --- |
| 200 `audio/wav` | headers `X-Voice-Engine` (piper or espeak-ng), `X-Voice-Timing`, `X-Voice-Notes` (when any) |
| 422 `unknown_voice` | the voice is not one of `GET /v1/film/voices` |
| 422 `voice_out_of_range` | rate or pitch outside the ranges `GET /v1/film/voices` gives |
| 422 `text_too_long`, `empty_text` | more than 300 characters, or no word to speak |
| 503 `workers_unavailable`, 504 `call_timeout` | no worker answers calls, or not in time |
"""

from __future__ import annotations

import base64
import re
from typing import Annotated

from fastapi import APIRouter, Path, Request, Response
from pydantic import Field
from starlette.concurrency import run_in_threadpool

from reelforge.api.deps import CurrentUser, container_of
from reelforge.api.openapi import problems
from reelforge.api.schemas.common import Strict
from reelforge.apps.film.calls import DEFAULT_TEXT, MAX_TEXT_CHARS, VOICE_CALL, preview_request

router = APIRouter(tags=["film"])

VoiceId = Annotated[str, Path(min_length=1, max_length=200)]
# A header value carries printable ASCII only.
_UNPRINTABLE = re.compile(r"[^\x20-\x7e]+")


class VoicePreview(Strict):
    # The hard cap of the request's shape is looser than the preview's limit, so that a long text gets its own
    # code (`text_too_long`) rather than a generic validation error.
    text: str | None = Field(default=None, max_length=20_000,
                             description=f"What to say ({MAX_TEXT_CHARS} characters at most); "
                                         f"\"{DEFAULT_TEXT}\" when absent")
    rate: float | None = Field(default=None, allow_inf_nan=False,
                               description="Speaking rate, a multiplier of the voice's pace (film.rate_min to "
                                           "film.rate_max)")
    pitch: float | None = Field(default=None, allow_inf_nan=False,
                                description="Pitch shift in semitones (film.pitch_min to film.pitch_max)")


def _header(text: str, limit: int = 500) -> str:
    return _UNPRINTABLE.sub(" ", text)[:limit].strip()


@router.post("/film/voices/{voice_id}/preview", response_class=Response,
             responses={200: {"description": "The line spoken, 16-bit PCM WAV", "content": {"audio/wav": {}}},
                        **problems(503, 504)})
async def preview_voice(voice_id: VoiceId, p: CurrentUser, request: Request,
                        body: VoicePreview | None = None) -> Response:
    """Hear a voice of `GET /v1/film/voices` with a character's rate and pitch, speaking `text` (a short line,
    a default greeting when absent), as the render speaks dialogue. Runs on a worker; answers `audio/wav`."""
    c = container_of(request)
    body = body or VoicePreview()
    cfg = c.app("film").cfg
    payload = preview_request(cfg, voice_id, body.text, body.rate, body.pitch)
    # One affinity key for every preview: the worker that loaded the speech model keeps answering them.
    result = await c.calls.call(VOICE_CALL, payload, affinity=VOICE_CALL)
    wav = await run_in_threadpool(base64.b64decode, str(result.get("wav_b64") or ""))
    headers = {"X-Voice-Engine": _header(str(result.get("engine") or "")),
               "X-Voice-Timing": _header(str(result.get("timing") or "")),
               "X-Voice-Duration": f"{float(result.get('duration_s') or 0.0):.3f}",
               "Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff"}
    notes = [str(n) for n in result.get("notes") or ()]
    if notes:
        headers["X-Voice-Notes"] = _header("; ".join(notes))
    return Response(content=wav, media_type="audio/wav", headers=headers)

