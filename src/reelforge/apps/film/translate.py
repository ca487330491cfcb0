"""Subtitle translation through the optional language model (`film.llm`, an OpenAI-compatible chat API).

The platform ships no offline translation model: without a configured model, or with `film.translation: none`,
:func:`translator_for` answers None and the reason, and the render reports each other language as not
available instead of pretending."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from reelforge.apps.film.llm import ChatClient, LLMError
from reelforge.apps.film.settings import FilmSettings

MAX_TEXTS = 200  # cues per request

_SYSTEM = ("You translate film subtitles. Answer with one JSON object {\"texts\": [...]} holding exactly one "
           "translation per input text, in the same order, nothing else. Keep names as they are; keep each "
           "translation about as short as its original.")


class LLMTranslator:
    """Cue texts translated by the chat model, `MAX_TEXTS` per request, within `film.llm.timeout_s` each."""

    def __init__(self, cfg: FilmSettings, transport: Any = None) -> None:
        self.cfg = cfg.llm
        self.client = ChatClient(cfg.llm, transport=transport)
        self.name = f"llm:{cfg.llm.model}"

    def translate(self, texts: Sequence[str], *, source: str, target: str) -> list[str]:
        out: list[str] = []
        for i in range(0, len(texts), MAX_TEXTS):
            batch = list(texts[i:i + MAX_TEXTS])
            ask = json.dumps({"source_language": source, "target_language": target, "texts": batch},
                             ensure_ascii=False)
            content = self.client.complete([{"role": "system", "content": _SYSTEM}, {"role": "user", "content": ask}],
                                           deadline=time.monotonic() + self.cfg.timeout_s)
            content = content.strip()
            if content.startswith("```"):
                content = content.strip("`").split("\n", 1)[-1]
            try:
                got = json.loads(content)["texts"]
            except (ValueError, KeyError, TypeError) as exc:
                raise LLMError("malformed", "the answer is not {\"texts\": [...]}") from exc
            if not isinstance(got, list) or len(got) != len(batch) or not all(isinstance(t, str) for t in got):
                raise LLMError("malformed", f"{len(got) if isinstance(got, list) else 0} texts for {len(batch)}")
            out.extend(t.strip() or b for t, b in zip(got, batch, strict=True))
        return out


def translator_for(cfg: FilmSettings) -> tuple[LLMTranslator | None, str]:
    """The translator the settings give, or None and why there is none."""
    if cfg.translation == "none":
        return None, "subtitle translation is turned off (film.translation: none)"
    if not cfg.llm.configured:
        return None, ("no translation engine is configured: set film.llm (an OpenAI-compatible chat API) to "
                      "translate subtitles; the platform ships no offline translation model")
    return LLMTranslator(cfg), ""
