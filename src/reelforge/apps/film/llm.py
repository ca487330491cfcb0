"""The optional language model: an OpenAI-compatible chat-completions API (`POST <base_url>/chat/completions`,
hosted or local) that writes better scene descriptions and image prompts than the parser's, and may name a
scene's mood.

The model is asked for one JSON object; its answer is checked (every scene asked about answered once, strings
within their limits, moods from `script.MOODS`) before anything is used. Whatever goes wrong (not configured,
unreachable, an HTTP error, past the time limit, an answer that is not that object) leaves the parser's
breakdown as it was, and `enrich` says why: `{"used": false, "reason": "timeout", "detail": "..."}`.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from reelforge import errors
from reelforge.apps.film.script import MOODS
from reelforge.apps.film.settings import FilmLLMSettings

log = logging.getLogger("reelforge.film.llm")

MAX_RESPONSE_BYTES = 4 * 1024 * 1024
# What no database column can hold (PostgreSQL refuses NUL in text and JSONB; a lone surrogate is no UTF-8).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL | re.IGNORECASE)

SYSTEM_PROMPT = (
    "You help prepare a film from its script. For each scene you are given, write:\n"
    "- description: one to three sentences, present tense, of what the audience sees and hears;\n"
    "- image_prompt: a prompt for an image generator showing the scene's key frame: setting, time of day, "
    "lighting, the characters present and what they do, camera framing; no dialogue, no text in the image;\n"
    "- mood: one of " + ", ".join(MOODS) + ", or null.\n"
    "Answer with one JSON object and nothing else: "
    '{"scenes": [{"index": <the scene\'s index>, "description": "...", "image_prompt": "...", "mood": "..."}]} '
    "with exactly one entry for each scene you were given."
)


def storable(text: str) -> str:
    """`text` without the characters a database cannot store (the model and its server are not trusted)."""
    return _UNSTORABLE.sub("", text)


class LLMError(Exception):
    """The model could not be used: `reason` is one of timeout, unreachable, http_error, malformed."""

    def __init__(self, reason: str, detail: str) -> None:
        detail = storable(detail)
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass
class ChatClient:
    """A minimal OpenAI-compatible chat-completions client (one POST per call, JSON in and out)."""

    cfg: FilmLLMSettings
    transport: httpx.BaseTransport | None = None

    @property
    def url(self) -> str:
        return self.cfg.base_url.rstrip("/") + "/chat/completions"

    def complete(self, messages: Sequence[dict[str, str]], *, deadline: float) -> str:
        """The first choice's message content, answered before `deadline` (time.monotonic()); LLMError for
        anything else."""
        timeout_s = max(0.001, deadline - time.monotonic())
        body: dict[str, Any] = {"model": self.cfg.model, "messages": list(messages),
                                "temperature": self.cfg.temperature, "max_tokens": self.cfg.max_tokens}
        if self.cfg.json_mode:
            body["response_format"] = {"type": "json_object"}
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        key = self.cfg.api_key.get_secret_value()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        try:
            with httpx.Client(timeout=httpx.Timeout(timeout_s), transport=self.transport,
                              follow_redirects=False) as http, \
                    http.stream("POST", self.url, json=body, headers=headers) as r:
                raw = bytearray()
                for chunk in r.iter_bytes():
                    if time.monotonic() > deadline:
                        raise httpx.ReadTimeout("the answer is still arriving")
                    raw.extend(chunk)
                    if len(raw) > MAX_RESPONSE_BYTES:
                        raise LLMError("malformed", f"the answer is larger than {MAX_RESPONSE_BYTES} bytes")
                status = r.status_code
        except httpx.TimeoutException as exc:
            raise LLMError("timeout", f"no answer within {timeout_s:.1f} s") from exc
        except httpx.HTTPError as exc:
            raise LLMError("unreachable", errors.scrub(f"{type(exc).__name__}: {exc}")[:300]) from exc
        if status != 200:
            raise LLMError("http_error", f"HTTP {status}" + _error_message(bytes(raw)))
        try:
            doc = json.loads(bytes(raw))
            choice = doc["choices"][0]
            content = choice["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise LLMError("malformed", "the answer is not a chat completion") from exc
        if not isinstance(content, str) or not content.strip():
            finish = choice.get("finish_reason") if isinstance(choice, dict) else None
            raise LLMError("malformed", f"the completion has no text (finish_reason {finish!r})")
        return content


def _error_message(raw: bytes) -> str:
    """`: <message>` of an OpenAI-style error body, shortened; empty when there is none."""
    try:
        doc = json.loads(raw)
        msg = doc.get("error", {}).get("message") if isinstance(doc.get("error"), dict) else doc.get("error")
    except (ValueError, AttributeError):
        return ""
    return f": {errors.scrub(str(msg))[:200]}" if msg else ""


@dataclass
class SceneText:
    description: str
    image_prompt: str
    mood: str | None


@dataclass
class Enrichment:
    used: bool
    reason: str | None = None
    detail: str | None = None
    model: str | None = None
    requests: int = 0
    seconds: float = 0.0
    scenes: dict[int, SceneText] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"used": self.used}
        if self.reason:
            out["reason"] = self.reason
        if self.detail:
            out["detail"] = self.detail
        if self.model:
            out["model"] = self.model
            out["requests"] = self.requests
            out["seconds"] = round(self.seconds, 3)
        if self.used:
            out["scenes"] = len(self.scenes)
        return out


def scene_brief(scene: dict[str, Any], *, max_chars: int = 900) -> dict[str, Any]:
    """What the model is told about one scene of a breakdown (bounded, whatever the script's size)."""
    action = " ".join(scene.get("action_lines") or [])
    lines = [f"{d.get('character') or 'SOMEONE'}: {d.get('text', '')}" for d in scene.get("dialogue") or []]
    dialogue = " / ".join(lines)
    return {"index": scene["index"], "heading": scene.get("heading"), "location": scene.get("location"),
            "time_of_day": scene.get("time_of_day"), "characters": list(scene.get("characters") or [])[:12],
            "action": action[:max_chars], "dialogue": dialogue[: max_chars // 2],
            "synopsis": scene.get("synopsis")}


def parse_answer(content: str, indexes: Sequence[int], cfg: FilmLLMSettings) -> dict[int, SceneText]:
    """The model's answer checked against what was asked; LLMError("malformed") when it does not fit."""
    text = content.strip()
    m = _FENCE.match(text)
    if m:
        text = m.group(1)
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise LLMError("malformed", "the answer is not JSON") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("scenes"), list):
        raise LLMError("malformed", 'the answer has no "scenes" list')
    wanted = set(indexes)
    out: dict[int, SceneText] = {}
    for item in doc["scenes"]:
        if not isinstance(item, dict):
            raise LLMError("malformed", "a scene entry is not an object")
        index = item.get("index")
        if isinstance(index, bool) or not isinstance(index, int) or index not in wanted or index in out:
            raise LLMError("malformed", f"unexpected or repeated scene index {index!r}")
        description, prompt, mood = item.get("description"), item.get("image_prompt"), item.get("mood")
        if not isinstance(description, str) or not description.strip() or \
                len(description) > cfg.max_description_chars:
            raise LLMError("malformed", f"scene {index}: description missing, empty or too long")
        if not isinstance(prompt, str) or not prompt.strip() or len(prompt) > cfg.max_prompt_chars:
            raise LLMError("malformed", f"scene {index}: image_prompt missing, empty or too long")
        if mood is not None and not isinstance(mood, str):
            raise LLMError("malformed", f"scene {index}: mood is not a string")
        mood = mood.strip().lower() if isinstance(mood, str) else None
        out[index] = SceneText(storable(" ".join(description.split())), storable(" ".join(prompt.split())),
                               mood if mood in MOODS else None)
    missing = sorted(wanted - set(out))
    if missing:
        raise LLMError("malformed", f"no answer for scenes {missing[:10]}")
    return out


def enrich(cfg: FilmLLMSettings, breakdown: dict[str, Any], *,
           transport: httpx.BaseTransport | None = None) -> Enrichment:
    """Ask the model about every scene of `breakdown` (in batches of `scenes_per_request`, all within
    `timeout_s`). Nothing of the breakdown is changed here: `apply` does that with a successful result."""
    if not cfg.configured:
        return Enrichment(used=False, reason="not_configured")
    scenes = list(breakdown.get("scenes") or [])
    if not scenes:
        return Enrichment(used=False, reason="no_scenes")
    client = ChatClient(cfg, transport)
    result = Enrichment(used=False, model=cfg.model)
    started = time.monotonic()
    deadline = started + cfg.timeout_s
    found: dict[int, SceneText] = {}
    title = breakdown.get("title")
    try:
        for start in range(0, len(scenes), cfg.scenes_per_request):
            batch = scenes[start:start + cfg.scenes_per_request]
            if deadline - time.monotonic() <= 0:
                raise LLMError("timeout", f"the enrichment took longer than {cfg.timeout_s:.1f} s")
            ask = {"title": title, "scenes": [scene_brief(s) for s in batch]}
            messages = [{"role": "system", "content": SYSTEM_PROMPT},
                        {"role": "user", "content": json.dumps(ask, ensure_ascii=False)}]
            result.requests += 1
            content = client.complete(messages, deadline=deadline)
            found.update(parse_answer(content, [s["index"] for s in batch], cfg))
    except LLMError as exc:
        log.warning("scene enrichment not used: %s", exc)
        result.reason, result.detail = exc.reason, exc.detail
        result.seconds = time.monotonic() - started
        return result
    result.seconds = time.monotonic() - started
    result.used = True
    result.scenes = found
    return result


def apply(breakdown: dict[str, Any], result: Enrichment) -> dict[str, Any]:
    """The breakdown with the model's descriptions, prompts and moods, and `enrichment` saying what happened;
    the parser's own text is kept under `parser_description` and `parser_image_prompt`."""
    if result.used:
        for scene in breakdown.get("scenes") or []:
            got = result.scenes.get(scene["index"])
            if got is None:
                continue
            scene["parser_description"] = scene.get("description")
            scene["parser_image_prompt"] = scene.get("image_prompt")
            scene["description"] = got.description
            scene["image_prompt"] = got.image_prompt
            if got.mood:
                scene["mood"] = got.mood
                scene["mood_source"] = "model"
    breakdown["enrichment"] = result.summary()
    return breakdown
