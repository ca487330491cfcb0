"""`film.render`: a project's script to one MP4 with voices, lip-synced faces, music, effects and subtitles.

    plan -> scenes (a Map over the scenes: voices -> visuals -> sound, per scene) -> compose -> cleanup

- **plan** reads the project and its script's breakdown (the stored one when it is current, so a language
  model's descriptions and image prompts are used; the parser's otherwise), casts a voice per speaker (the
  project's choice, or a distinct voice of the engines' palette for a speaker it does not define), decides
  whether action is narrated (`narration`: `auto` narrates prose scripts, not screenplays) and lays out the
  scenes.
- **voices** speaks the scene's lines (Piper, espeak-ng as the fallback; `media.voices`), places them one after
  another with the breakdown's pauses, keeps every word's and phoneme's time, and stores the scene's dialogue
  track (a temporary asset). The scene lasts as long as its speech and silent action beats, at least
  `film.min_scene_seconds`.
- **visuals** picks the scene's picture: the image model (`image.generate` adapters) from the scene's image
  prompt when one is installed and chosen (`film.render.image_model`, or the job's `image_model`), else the
  project's background for the scene's location, else a sample photo that ships with the platform; finds the
  face in each speaking character's portrait; stores a poster (the scene's first frame) that outlives the job.
- **sound** scores the scene for its mood (the project's music for that mood when it has some, else a score
  synthesized for the mood), adds effects that the action lines name, ducks music and effects under the
  dialogue and stores the scene's mix (a temporary asset).
- **compose** lays the scenes end to end with crossfades (and a title card first when the script has a title),
  shows each speaking character's lip-synced portrait while the line is spoken and the scene's picture with a
  camera move otherwise, builds subtitles from the spoken words (SRT and WebVTT, burned in or as a soft track,
  other languages through the translation adapter), and encodes one H.264/AAC MP4 at -14 LUFS with a
  thumbnail (`media.compose`).
- **cleanup** removes the scenes' temporary tracks once the film is stored.

Every Task's output is checkpointed, so a crashed render resumes at the first scene step without one; the
assets a step stores have ids derived from the job, the scene and the step, so a retried step finds what an
earlier attempt stored instead of storing it twice. Progress: one share per scene step, then composition.

Price: credits per rendered second, at least one (`film.render.credits_per_second`). Reserved at submit for the
planned film (the breakdown's estimate plus the title card) times `film.render.reserve_margin`; when the film is
made the seconds it lasts set the price (never more than the reservation) and the platform refunds the rest; a
failed render is refunded whole.
"""

from __future__ import annotations

import io
import logging
import math
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from reelforge import errors
from reelforge.domain.pipeline import Graph, Map, Pipeline, Resources, Retry, Task
from reelforge.runtime.context import StepContext

log = logging.getLogger("reelforge.film.render")

KIND = "film.render"
CATEGORY = "film"
SAMPLE_PHOTOS = ("coffee", "rocket", "chelsea", "astronaut", "motorcycle")
MOVES = ("zoom_in", "zoom_out", "pan_right", "pan_left")
NARRATOR = "Narrator"
_LANG = r"^[a-z]{2,3}(-[A-Za-z]{2,4})?$"


class RenderOptions(BaseModel):
    """What `POST /v1/projects/{id}/render` takes (`POST /v1/jobs` with kind `film.render`: the same and the
    `project_id`)."""

    model_config = ConfigDict(extra="forbid")

    aspect: Literal["16:9", "9:16"] = Field("16:9", description="Landscape or portrait (shorts)")
    height: int = Field(720, ge=144, le=1080, description="The short side in pixels (720: 1280x720 or 720x1280)")
    fps: int = Field(24, ge=12, le=30)
    subtitles: Literal["burn", "soft", "none"] = Field(
        "soft", description="Burned into the picture, a soft track in the MP4, or none (the SRT and WebVTT "
                            "files are made either way)")
    languages: list[str] = Field(default_factory=list, max_length=8,
                                 description="Subtitle languages besides the script's (translation adapter)")
    music: bool = Field(True, description="A score per scene mood, ducked under dialogue")
    effects: bool = Field(True, description="Sound effects the action lines name")
    narration: Literal["auto", "always", "never"] = Field(
        "auto", description="Speak action lines with the narrator's voice: auto does for prose, not for "
                            "screenplays")
    title_card: bool = Field(True, description="Open on a title card when the script has a title")
    image_model: str | None = Field(None, description="An image.generate model for the scenes' pictures; "
                                                      "`none` for the project's and sample pictures only; "
                                                      "absent: the setting film.render.image_model")

    @field_validator("languages")
    @classmethod
    def _languages(cls, v: list[str]) -> list[str]:
        import re

        out: list[str] = []
        for lang in v:
            if not re.match(_LANG, lang):
                raise ValueError(f"{lang!r} is not a language code such as fr or pt-BR")
            if lang not in out:
                out.append(lang)
        return out


class RenderInput(RenderOptions):
    project_id: str = Field(max_length=64, description="The project to render (yours)")


# --- ids, pricing ------------------------------------------------------------------------------------------------

def step_asset_id(job_id: str, *parts: object) -> str:
    """The asset id a step stores under: the same for every attempt of the step."""
    return uuid.uuid5(uuid.NAMESPACE_URL, "reelforge:film:" + ":".join([job_id, *map(str, parts)])).hex


def credits_for(seconds: float, per_second: float) -> int:
    return max(1, math.ceil(seconds * per_second - 1e-9))


def make_price(settings: Any) -> tuple[Any, Any]:
    """The reservation at submit (the estimate with a margin) and the final price (the rendered seconds)."""
    cfg = getattr(settings, "film", None)
    per_second = float(cfg.render.credits_per_second) if cfg is not None else 0.1
    margin = float(cfg.render.reserve_margin) if cfg is not None else 1.25

    def price(data: dict[str, Any]) -> int:
        """Credits for the estimated seconds times the margin (module docstring)."""
        return credits_for(float((data.get("estimate") or {}).get("seconds") or 1.0) * margin, per_second)

    def settle(outputs: dict[str, Any], reserved: int) -> int:
        """Credits for the seconds rendered (at most the reservation: the platform refunds the rest)."""
        return credits_for(float(outputs["duration_s"]), per_second)

    return price, settle


def _title_seconds(cfg: Any, data: Mapping[str, Any], title: str | None) -> float:
    return float(cfg.render.title_card_s) if data.get("title_card", True) and title else 0.0


def current_breakdown(svc: Any, project: Any) -> dict[str, Any]:
    """The stored analysis when it was made from the project as it is now (it was checked then, and keeps a
    language model's descriptions and image prompts), else the parser's breakdown made now."""
    if project.breakdown and project.analyzed_revision == project.revision:
        return dict(project.breakdown)
    return dict(svc.breakdown_of(project))


def submit_check(container: Any, principal: Any, data: dict[str, Any]) -> None:
    """At submit time: the project is the caller's own (404; 403 for a read-only share), its script gives a
    breakdown (422 `empty_script`, `unknown_character`), the film is not longer than allowed and a named image
    model exists; the estimate is noted for the price."""
    svc = container.app("film")
    cfg = svc.cfg
    access = svc.get(principal, str(data["project_id"]))
    if access.role != "owner":
        raise errors.Forbidden("This project is shared with you to read; only its owner may render it",
                               code="read_only_share")
    project = access.project
    doc = current_breakdown(svc, project)
    title = doc.get("title") or None
    seconds = float(doc["totals"]["estimated_seconds"]) + _title_seconds(cfg, data, title)
    if seconds > cfg.render.max_seconds:
        raise errors.ValidationFailed(
            f"The script would make a film of about {seconds:.0f} s; the limit is {cfg.render.max_seconds:.0f} s",
            code="film_too_long", field="project_id", limit=cfg.render.max_seconds, seconds=round(seconds, 1))
    model = _wanted_model(cfg, data)
    if model not in (None, "none", "auto"):
        infos = {m.name: m for m in container.models.list("image.generate")}
        if model not in infos:
            raise errors.ValidationFailed(f"Unknown image model {model!r}; known: {', '.join(sorted(infos))}",
                                          code="unknown_model", field="image_model")
        if not infos[model].available:
            raise errors.ModelUnavailable(infos[model].reason or "model cannot run here", field="image_model",
                                          model=model)
    data["project_id"] = project.id
    data["estimate"] = {"seconds": round(seconds, 2), "scenes": len(doc["scenes"]), "revision": project.revision}


def _wanted_model(cfg: Any, data: Mapping[str, Any]) -> str | None:
    return data.get("image_model") or cfg.render.image_model or None


# --- plan ----------------------------------------------------------------------------------------------------

def _cast(cfg: Any, project: Any, doc: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Each speaker's voice (engine voice fields), voice id and portrait. Speakers the project does not define
    get the engines' palette voices, in the order they speak first."""
    from reelforge.apps.film.casting import media_voice
    from reelforge.apps.film.media import voices
    from reelforge.apps.film.script import name_key

    defined = {name_key(c["name"]): c for c in project.characters}
    cast: dict[str, dict[str, Any]] = {}
    unknown = [st["name"] for st in doc["characters"] if name_key(st["name"]) not in defined]
    palette = voices.cast(unknown)
    for st in doc["characters"]:
        own = defined.get(name_key(st["name"]))
        if own is not None:
            v = media_voice(cfg, own.get("voice"), name=own["name"])
            cast[own["name"]] = {"voice_id": (own.get("voice") or {}).get("id") or cfg.default_voice,
                                 "portrait_asset_id": own.get("portrait_asset_id"), **_voice_fields(v)}
        else:
            cast[st["name"]] = {"voice_id": None, "portrait_asset_id": None, **_voice_fields(palette[st["name"]])}
    narrator = defined.get(name_key(NARRATOR))
    v = media_voice(cfg, narrator.get("voice") if narrator else None, name=NARRATOR)
    cast.setdefault(NARRATOR, {"voice_id": (narrator or {}).get("voice", {}).get("id") or cfg.default_voice,
                               "portrait_asset_id": (narrator or {}).get("portrait_asset_id"),
                               **_voice_fields(v)})
    return cast


def _voice_fields(v: Any) -> dict[str, Any]:
    return {"name": v.name, "engine": v.engine, "rate": v.rate, "pitch": v.pitch, "espeak_voice": v.espeak_voice}


def _scene_spec(sc: Mapping[str, Any]) -> dict[str, Any]:
    keep = ("type", "text", "character", "parenthetical", "dual", "dual_group", "estimated_seconds")
    return {"index": sc["index"], "heading": sc.get("heading"), "location": sc.get("location"),
            "time_of_day": sc.get("time_of_day"), "mood": sc.get("mood"),
            "description": sc.get("description"), "image_prompt": sc.get("image_prompt"),
            "background": sc.get("background"), "characters": list(sc.get("characters") or []),
            "elements": [{k: e.get(k) for k in keep if k in e} for e in sc.get("elements") or []],
            "estimated_seconds": sc.get("estimated_seconds")}


def plan(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    """Read the project, take its breakdown and lay out the render (module docstring)."""
    from reelforge.apps.film.media.visuals import frame_size

    svc = ctx.services.app("film")
    cfg = svc.cfg
    project = svc.owned_project(ctx.owner_id, str(data["project_id"]))
    ctx.progress(0.005, "reading the script")
    doc = current_breakdown(svc, project)
    svc.set_last_render(ctx.owner_id, project.id, ctx.job_id)
    narrate = data.get("narration", "auto")
    fmt = doc.get("format")
    narrated = narrate == "always" or (narrate == "auto" and fmt == "prose")
    title = doc.get("title") or (project.title if data.get("title_card", True) and fmt == "prose" else None)
    aspect, short = data.get("aspect", "16:9"), int(data.get("height") or 720)
    # frame_size takes the frame's height; `height` here is the short side, whichever way the frame stands
    size = frame_size(aspect, short if aspect == "16:9" else round(short * 16 / 9))
    model = _wanted_model(cfg, data)
    fps = int(data.get("fps") or 24)
    title_s = _title_seconds(cfg, data, title)
    common = {
        "project_id": project.id, "title": title, "revision": project.revision, "format": fmt,
        "aspect": data.get("aspect", "16:9"), "size": list(size), "fps": fps,
        "subtitles": data.get("subtitles", "soft"), "languages": list(data.get("languages") or []),
        "music": bool(data.get("music", True)), "effects": bool(data.get("effects", True)),
        "narrated": narrated, "cast": _cast(cfg, project, doc),
        "title_card_s": math.ceil(title_s * fps - 1e-6) / fps,
        # in whole frames, like every duration on the film's timeline (see voices_step)
        "transition_s": round(float(cfg.render.transition_s) * fps) / fps, "image_model": model,
        "project_music": [dict(m) for m in project.music], "started_at": time.time(),
        "scenes": len(doc["scenes"]),
    }
    scenes = [_scene_spec(sc) for sc in doc["scenes"]]
    ctx.progress(0.01, f"{len(scenes)} scene(s), {len(common['cast'])} voice(s)")
    return {"common": common, "scenes": scenes}


def scene_items(out: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [{"common": out["common"], "scene": sc} for sc in out["scenes"]]


# --- progress ----------------------------------------------------------------------------------------------------

_STEPS = ("voices", "visuals", "sound")


class _Progress:
    def __init__(self, scenes: int) -> None:
        self.total = max(1, scenes * len(_STEPS))
        self.done: set[tuple[int, str]] = set()
        self.lock = threading.Lock()


_PROGRESS_LOCK = threading.Lock()


def _report(ctx: StepContext, item: Mapping[str, Any], step: str, done: bool) -> None:
    common, scene = item["common"], item["scene"]
    holder = ctx.services
    with _PROGRESS_LOCK:
        states: dict[str, _Progress] = getattr(holder, "_film_jobs", None) or {}
        holder._film_jobs = states
        state = states.setdefault(ctx.job_id, _Progress(int(common["scenes"])))
    with state.lock:
        if done:
            state.done.add((int(scene["index"]), step))
        fraction = 0.02 + 0.6 * len(state.done) / state.total
    word = "done" if done else "running"
    ctx.progress(fraction, f"scene {int(scene['index']) + 1}/{common['scenes']}: {step} {word}")


def _forget(ctx: StepContext) -> None:
    states = getattr(ctx.services, "_film_jobs", None)
    if states is not None:
        with _PROGRESS_LOCK:
            states.pop(ctx.job_id, None)


# --- voices ----------------------------------------------------------------------------------------------------

LEAD_IN_S = 0.4
TAIL_S = 0.6


def _media_voice(fields: Mapping[str, Any]) -> Any:
    from reelforge.apps.film.media import voices

    return voices.Voice(name=fields["name"], engine=fields["engine"], rate=float(fields["rate"]),
                        pitch=float(fields["pitch"]), espeak_voice=fields["espeak_voice"])


def _speaker(common: Mapping[str, Any], name: str | None) -> str:
    cast = common["cast"]
    if name and name in cast:
        return name
    if name:
        low = {k.lower(): k for k in cast}
        if name.lower() in low:
            return low[name.lower()]
    return NARRATOR


def voices_step(ctx: StepContext, item: dict[str, Any]) -> dict[str, Any]:
    """Speak the scene's lines and lay out its timeline (module docstring)."""
    from reelforge.apps.film.media import audio, music, voices

    _report(ctx, item, "voices", False)
    common, scene = item["common"], item["scene"]
    cfg = ctx.services.app("film").cfg
    pause = float(cfg.line_pause_s)
    # A crossfade covers the first and last `transition_s` of a scene that has a neighbour there: speech starts
    # after the fade in and ends before the fade out, so every spoken frame shows its speaker cleanly.
    clear = float(common["transition_s"]) + 0.15
    faded_in = int(scene["index"]) > 0 or float(common.get("title_card_s") or 0) > 0
    faded_out = int(scene["index"]) < int(common["scenes"]) - 1
    t = max(LEAD_IN_S, clear) if faded_in else LEAD_IN_S
    tail = max(TAIL_S, clear) if faded_out else TAIL_S
    lines: list[dict[str, Any]] = []
    beats: list[dict[str, Any]] = []
    tracks: list[Any] = []
    notes: list[str] = []
    engines: dict[str, str] = {}
    elements = scene["elements"]
    i = 0
    while i < len(elements):
        ctx.check_cancelled()
        el = elements[i]
        kind = el.get("type")
        if kind in ("dialogue", "lyrics") or (kind == "action" and common["narrated"]):
            group = [el]
            if kind == "dialogue" and el.get("dual") and el.get("dual_group") is not None:
                while i + 1 < len(elements) and elements[i + 1].get("dual_group") == el.get("dual_group"):
                    i += 1
                    group.append(elements[i])
            longest = 0.0
            for g in group:
                who = _speaker(common, g.get("character")) if g.get("type") != "action" else NARRATOR
                text = str(g.get("text") or "")
                if not any(ch.isalnum() for ch in text):
                    continue
                speech = voices.synthesize(text, _media_voice(common["cast"][who]))
                engines[who] = speech.engine
                notes.extend(n for n in speech.notes if n not in notes)
                samples = audio.resample(speech.samples, speech.sample_rate, audio.MIX_RATE)
                tracks.append(music.Track(samples, t))
                lines.append({"kind": "narration" if g.get("type") == "action" else "dialogue",
                              "character": who, "text": text, "start_s": round(t, 4),
                              "end_s": round(t + speech.duration_s, 4), "engine": speech.engine,
                              "timing": speech.timing,
                              "words": [[w.word, round(w.start, 4), round(w.end, 4)] for w in speech.words],
                              "phonemes": [[p.phoneme, round(p.start, 4), round(p.end, 4)]
                                           for p in speech.phonemes]})
                if kind == "action":
                    beats.append({"text": text, "start_s": round(t, 4), "end_s": round(t + speech.duration_s, 4)})
                longest = max(longest, speech.duration_s)
            t += longest + pause
        elif kind in ("action", "centered"):
            seconds = float(el.get("estimated_seconds") or 0.0)
            beats.append({"text": str(el.get("text") or ""), "start_s": round(t, 4), "end_s": round(t + seconds, 4)})
            t += seconds
        i += 1
    duration = max(float(cfg.min_scene_seconds), t + tail - (pause if lines else 0.0))
    # Whole frames: the picture is cut in frames, and the sound placed by these durations must not drift from it.
    fps = float(common["fps"])
    duration = math.ceil(duration * fps - 1e-6) / fps
    dialogue = music.mix(tracks, audio.MIX_RATE, duration, ceiling=None) if tracks else \
        np.zeros(round(duration * audio.MIX_RATE), np.float32)
    asset = ctx.services.assets.store_output(
        owner_id=ctx.owner_id, job_id=ctx.job_id, data=audio.wav_bytes(dialogue, audio.MIX_RATE),
        content_type="audio/wav", filename=f"scene-{scene['index'] + 1}-voices.wav", lifecycle="temporary",
        metadata={"kind": "film.scene.voices", "scene": scene["index"]}, category=CATEGORY,
        asset_id=step_asset_id(ctx.job_id, scene["index"], "voices"))
    _report(ctx, item, "voices", True)
    return {**item, "voices": {"asset_id": asset.id, "duration_s": round(duration, 4), "lines": lines,
                               "beats": beats, "engines": engines, "notes": notes}}


# --- visuals ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _ImageRequest:
    """The `image.generate` task's request, field for field (its adapters read these attributes)."""

    prompt: str
    negative_prompt: str | None
    width: int
    height: int
    steps: int
    guidance_scale: float
    seed: int
    num_images: int


def _pick_model(ctx: StepContext, wanted: str | None) -> Any | None:
    """The image model to use: the one named, or with `auto` the first that can run and is not a test model."""
    if wanted in (None, "", "none"):
        return None
    models = ctx.services.models.list("image.generate")
    if wanted == "auto":
        return next((m for m in models if m.available and not m.test_model), None)
    return next((m for m in models if m.name == wanted and m.available), None)


def _prompt(scene: Mapping[str, Any]) -> str:
    if scene.get("image_prompt"):
        return str(scene["image_prompt"])
    bits = [str(scene.get("location") or "").lower(), str(scene.get("time_of_day") or "")]
    action = " ".join(e["text"] for e in scene["elements"] if e.get("type") == "action")[:300]
    head = ", ".join(b for b in bits if b)
    return f"A cinematic film still{': ' + head if head else ''}. {action}".strip()


def _generate_picture(ctx: StepContext, model: Any, scene: Mapping[str, Any], size: Sequence[int]) -> bytes:
    cfg = ctx.services.app("film").cfg.render
    w, h = size
    scale = min(1.0, math.sqrt(cfg.image_pixels / (w * h)))
    gw, gh = max(64, int(w * scale) // 8 * 8), max(64, int(h * scale) // 8 * 8)
    seed = int(uuid.UUID(step_asset_id(ctx.job_id, scene["index"], "seed")).int % 2**32)
    req = _ImageRequest(prompt=_prompt(scene), negative_prompt="text, watermark, blurry", width=gw, height=gh,
                        steps=int(cfg.image_steps), guidance_scale=float(cfg.image_guidance), seed=seed,
                        num_images=1)
    result = ctx.services.models.run("image.generate", model.name, req, cancelled=ctx.stopping)
    return bytes(result.images[0].png)


def _face_fields(face: Any) -> list[Any]:
    return [face.x, face.y, face.w, face.h, face.score, face.method]


def visuals_step(ctx: StepContext, item: dict[str, Any]) -> dict[str, Any]:
    """The scene's picture, the speakers' faces and the scene's poster (module docstring)."""
    from reelforge.apps.film.media import lipsync, visuals

    _report(ctx, item, "visuals", False)
    common, scene = item["common"], item["scene"]
    assets = ctx.services.assets
    index = int(scene["index"])
    size = tuple(common["size"])
    notes: list[str] = []
    picture_id: str | None = None
    method, source = "sample-photo", ""
    model = _pick_model(ctx, common.get("image_model"))
    if common.get("image_model") not in (None, "", "none", "auto") and model is None:
        notes.append(f"image model {common['image_model']!r} cannot run here: stock pictures used")
    if model is not None:
        try:
            png = _generate_picture(ctx, model, scene, size)
            picture_id = assets.store_output(
                owner_id=ctx.owner_id, job_id=ctx.job_id, data=png, content_type="image/png",
                filename=f"scene-{index + 1}.png", lifecycle="hot", category=CATEGORY,
                metadata={"kind": "film.scene.picture", "scene": index, "model": model.name,
                          "prompt": _prompt(scene), "test_model": bool(model.test_model)},
                asset_id=step_asset_id(ctx.job_id, index, "picture")).id
            method, source = "image-model", model.name
        except errors.JobCancelled:
            raise
        except errors.ReelforgeError as exc:
            notes.append(f"image model {model.name} failed ({exc.code}): stock pictures used")
    background = scene.get("background") or {}
    if picture_id is None and background.get("asset_id"):
        picture_id, method, source = background["asset_id"], "project-background", str(background.get("name") or "")
    if picture_id is None:
        source = SAMPLE_PHOTOS[(index + _stable(scene.get("location"))) % len(SAMPLE_PHOTOS)]
    image = _picture(ctx, picture_id, source)
    move = MOVES[(index + _stable(scene.get("heading"))) % len(MOVES)]
    faces: dict[str, list[Any]] = {}
    speakers = {ln_["character"] for ln_ in item["voices"]["lines"] if ln_["kind"] == "dialogue"}
    for who in sorted(speakers):
        portrait_id = common["cast"].get(who, {}).get("portrait_asset_id")
        if not portrait_id:
            notes.append(f"{who} has no portrait: the scene's picture shows while {who} speaks")
            continue
        face = lipsync.detect_face(_picture(ctx, portrait_id, ""))
        faces[who] = _face_fields(face)
        if not face.detected:
            notes.append(f"no face found in {who}'s portrait: the mouth is placed by a heuristic")
    first = next(iter(visuals.ken_burns(image, 1.0 / common["fps"], size=size, fps=common["fps"], move=move).frames))
    poster = assets.store_output(
        owner_id=ctx.owner_id, job_id=ctx.job_id, data=_jpeg(first), content_type="image/jpeg",
        filename=f"scene-{index + 1}.jpg", lifecycle="hot", category=CATEGORY,
        metadata={"kind": "film.scene.poster", "scene": index, "project_id": common["project_id"]},
        asset_id=step_asset_id(ctx.job_id, index, "poster"))
    _report(ctx, item, "visuals", True)
    return {**item, "visuals": {"picture_asset_id": picture_id, "method": method, "source": source,
                                "move": move, "faces": faces, "poster_asset_id": poster.id, "notes": notes}}


def _stable(text: Any) -> int:
    import zlib

    return zlib.crc32(str(text or "").encode()) if text else 0


def _picture(ctx: StepContext, asset_id: str | None, sample: str) -> np.ndarray:
    from reelforge.apps.film.media import visuals

    if not asset_id:
        return visuals.sample_photo(sample)
    _, data = ctx.services.assets.read_owned(ctx.owner_id, asset_id)
    return visuals.load_image(data)


def _jpeg(frame: np.ndarray, quality: int = 85) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


# --- sound -----------------------------------------------------------------------------------------------------

def _music_for(ctx: StepContext, common: Mapping[str, Any], mood: str, seconds: float,
               seed: int) -> tuple[np.ndarray, str]:
    """The project's music for the mood (decoded, looped or cut to the scene), else a score for the mood."""
    from reelforge.apps.film.media import audio, music

    entries = [m for m in common.get("project_music") or [] if m.get("asset_id")
               and (str(m.get("mood") or "").lower() == mood or str(m.get("name") or "").lower() == mood)]
    for entry in entries:
        try:
            samples = _decode_audio(ctx, entry["asset_id"])
        except errors.ReelforgeError as exc:
            log.warning("project music %s unusable: %s", entry.get("name"), exc)
            continue
        if samples.size:
            n = round(seconds * audio.MIX_RATE)
            reps = max(1, math.ceil(n / samples.size))
            looped = np.tile(samples, reps)[:n]
            return music.audio_fade(looped, audio.MIX_RATE, fade_in_s=0.5, fade_out_s=1.0), \
                f"project music: {entry.get('name') or entry['asset_id']}"
    own = [m for m in common.get("project_music") or [] if not m.get("asset_id") and m.get("mood")]
    if own and not any(str(m["mood"]).lower() == mood for m in own):
        mood = music.mood_name(str(own[0]["mood"]))
    return music.score(mood, seconds, seed=seed).samples, f"generated score: {mood}"


def _decode_audio(ctx: StepContext, asset_id: str) -> np.ndarray:
    import subprocess
    import tempfile

    from reelforge.adapters.media.ffmpeg import ffmpeg_exe
    from reelforge.apps.film.media import audio

    asset = ctx.services.assets.owned_asset(ctx.owner_id, asset_id)
    with tempfile.TemporaryDirectory(prefix="rf-film-music-") as tmp:
        src = Path(tmp) / "music"
        ctx.services.assets.fetch_to(asset, src)
        proc = subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(src), "-ac", "1", "-ar", str(audio.MIX_RATE),
                               "-f", "f32le", "-t", "1800", "-"], capture_output=True, timeout=600, check=False)
    if proc.returncode != 0:
        raise errors.ValidationFailed("The project's music could not be decoded", code="invalid_media",
                                      asset_id=asset_id)
    return np.frombuffer(proc.stdout, np.float32).copy()


def sound_step(ctx: StepContext, item: dict[str, Any]) -> dict[str, Any]:
    """Music, effects, ducking: the scene's mix (module docstring)."""
    from reelforge.apps.film.media import audio, music

    _report(ctx, item, "sound", False)
    common, scene, v = item["common"], item["scene"], item["voices"]
    index = int(scene["index"])
    seconds = float(v["duration_s"])
    rate = audio.MIX_RATE
    _, raw = ctx.services.assets.read_owned(ctx.owner_id, v["asset_id"])
    dialogue, got = _wav(raw)
    dialogue = audio.resample(dialogue, got, rate) if got != rate else dialogue
    tracks = [music.Track(dialogue)]
    bed = np.zeros(round(seconds * rate), np.float32)
    described = None
    if common["music"]:
        mood = music.mood_name(str(scene.get("mood") or "calm"))
        score, described = _music_for(ctx, common, mood, seconds, seed=index)
        bed = music.mix([music.Track(bed), music.Track(score, 0.0, -8.0)], rate, seconds, ceiling=None)
    effects: list[dict[str, Any]] = []
    if common["effects"]:
        for beat in v["beats"]:
            for k, name in enumerate(music.effects_for(beat["text"])[:2]):
                at = float(beat["start_s"]) + 0.3 * k
                if at >= seconds - 0.2:
                    continue
                fx = music.sound_effect(name, min(music.DEFAULT_EFFECT_S[name], seconds - at), seed=index + k)
                bed = music.mix([music.Track(bed), music.Track(fx, at, -10.0)], rate, seconds, ceiling=None)
                effects.append({"effect": name, "start_s": round(at, 3)})
    if common["music"] or effects:
        tracks.append(music.Track(music.duck(bed, dialogue, rate)))
    mix = music.mix(tracks, rate, seconds)
    asset = ctx.services.assets.store_output(
        owner_id=ctx.owner_id, job_id=ctx.job_id, data=audio.wav_bytes(mix, rate), content_type="audio/wav",
        filename=f"scene-{index + 1}-mix.wav", lifecycle="temporary", category=CATEGORY,
        metadata={"kind": "film.scene.mix", "scene": index}, asset_id=step_asset_id(ctx.job_id, index, "mix"))
    _report(ctx, item, "sound", True)
    return {**item, "sound": {"asset_id": asset.id, "music": described, "effects": effects}}


def _wav(data: bytes) -> tuple[np.ndarray, int]:
    import tempfile

    from reelforge.apps.film.media import audio

    with tempfile.NamedTemporaryFile(suffix=".wav") as f:
        f.write(data)
        f.flush()
        samples, rate = audio.read_wav(f.name)
    return audio.as_mono(samples), rate


# --- compose ---------------------------------------------------------------------------------------------------

class _Speech:
    """What LipSync reads of a line: its samples, rate and phonemes."""

    def __init__(self, samples: np.ndarray, rate: int, phonemes: Sequence[Any]) -> None:
        self.samples, self.sample_rate, self.phonemes = samples, rate, tuple(phonemes)


def _scene_frames(common: Mapping[str, Any], item: Mapping[str, Any], picture: np.ndarray,
                  portraits: Mapping[str, np.ndarray], dialogue: np.ndarray, rate: int,
                  talking: list[dict[str, Any]]) -> Any:
    """The scene's clip: the picture with a camera move, cut to a speaker's lip-synced portrait while a line is
    spoken (when the speaker has a portrait)."""
    from reelforge.apps.film.media import lipsync, visuals
    from reelforge.apps.film.media.voices import PhonemeTiming

    size, fps = tuple(common["size"]), float(common["fps"])
    v = item["voices"]
    seconds = float(v["duration_s"])
    n = max(1, round(seconds * fps))
    kb = visuals.ken_burns(picture, seconds, size=size, fps=fps, move=item["visuals"]["move"])
    segments: list[tuple[int, int, Any]] = []
    for line in v["lines"]:
        who = line["character"]
        if line["kind"] != "dialogue" or who not in portraits:
            continue
        a = max(0, round(float(line["start_s"]) * fps) - 2)
        b = min(n, round(float(line["end_s"]) * fps) + 3)
        if segments and a < segments[-1][1]:
            continue  # a second voice at once (dual dialogue): the first speaker stays on screen
        if b - a < 3:
            continue
        s0 = round(a / fps * rate)
        part = dialogue[s0:s0 + round((b - a) / fps * rate)]
        phon = [PhonemeTiming(p, s - a / fps + float(line["start_s"]), e - a / fps + float(line["start_s"]))
                for p, s, e in line["phonemes"]]
        fx, fy, fw, fh, score, method = item["visuals"]["faces"][who]
        face = lipsync.FaceBox(int(fx), int(fy), int(fw), int(fh), float(score), str(method))
        sync = lipsync.LipSync(portraits[who], _Speech(part, rate, phon), fps=fps, size=size,
                               duration_s=(b - a) / fps, face=face)
        segments.append((a, b, sync))
        box = sync.box
        talking.append({"character": who, "start_s": round(a / fps, 4), "end_s": round(b / fps, 4),
                        "frames": [a, b], "mouth_box": [box.x0, box.y0, box.x1, box.y1],
                        "method": sync.method})

    def frames() -> Iterator[np.ndarray]:
        k = 0
        for i, still in enumerate(kb.frames):
            while k < len(segments) and i >= segments[k][1]:
                k += 1
            if k < len(segments) and segments[k][0] <= i < segments[k][1]:
                yield segments[k][2].frame(i - segments[k][0])
            else:
                yield still

    return visuals.Clip(frames(), kb.n_frames, fps, size, "ken-burns + lip-sync" if segments else kb.method)


def _cues(items: Sequence[Mapping[str, Any]], starts: Sequence[float]) -> list[Any]:
    from reelforge.apps.film.media import subtitles

    cues: list[Any] = []
    for item, start in zip(items, starts, strict=True):
        for line in item["voices"]["lines"]:
            words = [(w, float(s) + float(line["start_s"]), float(e) + float(line["start_s"]))
                     for w, s, e in line["words"]]
            speaker = line["character"] if line["kind"] == "dialogue" else None
            cues += subtitles.shift(subtitles.build_cues(words, speaker=speaker), start)
    return subtitles.time_cues(cues)  # across lines too: no cue runs into the next one


def compose_step(ctx: StepContext, items: list[dict[str, Any]]) -> dict[str, Any]:
    """The film: clips, mix, subtitles, one encode, stored assets (module docstring)."""
    import tempfile

    from reelforge.apps.film.media import audio, compose, music, subtitles, visuals
    from reelforge.apps.film.translate import translator_for

    items = sorted(items, key=lambda it: int(it["scene"]["index"]))
    common = items[0]["common"]
    svc = ctx.services.app("film")
    cfg = svc.cfg
    assets = ctx.services.assets
    size, fps = tuple(common["size"]), float(common["fps"])
    rate = audio.MIX_RATE
    transition = float(common["transition_s"])
    ctx.progress(0.63, "composing: loading the scenes")
    durations = [float(it["voices"]["duration_s"]) for it in items]
    title_s = float(common.get("title_card_s") or 0.0)
    all_durations = ([title_s] if title_s else []) + durations
    starts_all = compose.scene_starts(all_durations, transition)
    starts = starts_all[1:] if title_s else starts_all
    planned = starts_all[-1] + all_durations[-1]
    tracks = []
    clips: list[Any] = []
    talking: dict[int, list[dict[str, Any]]] = {}
    if title_s:
        clips.append(visuals.title_card(str(common["title"]), title_s, size=size, fps=fps))
        if common["music"]:
            tracks.append(music.Track(music.audio_fade(music.score("calm", title_s, seed=99).samples, rate,
                                                       fade_out_s=0.5), 0.0, -6.0))
    portrait_cache: dict[str, np.ndarray] = {}
    for it, start in zip(items, starts, strict=True):
        ctx.check_cancelled()
        _, raw = assets.read_owned(ctx.owner_id, it["sound"]["asset_id"])
        mix, got = _wav(raw)
        tracks.append(music.Track(audio.resample(mix, got, rate) if got != rate else mix, start))
        _, raw = assets.read_owned(ctx.owner_id, it["voices"]["asset_id"])
        dialogue, got = _wav(raw)
        dialogue = audio.resample(dialogue, got, rate) if got != rate else dialogue
        vis = it["visuals"]
        picture = _picture(ctx, vis["picture_asset_id"], vis["source"])
        portraits = {}
        for who in vis["faces"]:
            pid = common["cast"][who]["portrait_asset_id"]
            if pid not in portrait_cache:
                portrait_cache[pid] = _picture(ctx, pid, "")
            portraits[who] = portrait_cache[pid]
        talk: list[dict[str, Any]] = []
        clips.append(_scene_frames(common, it, picture, portraits, dialogue, rate, talk))
        talking[int(it["scene"]["index"])] = talk
    film_mix = music.mix(tracks, rate, planned)
    cues = _cues(items, starts)
    mode = {"burn": "burn", "soft": "soft", "none": "none"}[common["subtitles"]]
    notes: list[str] = []
    for it in items:
        for key in ("voices", "visuals"):
            notes.extend(n for n in it[key].get("notes") or [] if n not in notes)
    with tempfile.TemporaryDirectory(prefix="rf-film-render-") as tmp:
        work = Path(tmp)
        total_frames = sum(c.n_frames for c in clips)
        shown = {"n": 0, "at": 0.0}

        def counted(clip: Any) -> Any:
            def frames() -> Iterator[np.ndarray]:
                for frame in clip.frames:
                    shown["n"] += 1
                    now = time.monotonic()
                    if now - shown["at"] > 0.5:
                        shown["at"] = now
                        ctx.check_cancelled()
                        ctx.progress(0.63 + 0.3 * min(1.0, shown["n"] / max(1, total_frames)),
                                     f"composing: {shown['n']}/{total_frames} frames")
                    yield frame
            return visuals.Clip(frames(), clip.n_frames, clip.fps, clip.size, clip.method)

        ctx.progress(0.64, "composing: encoding")
        film = compose.compose([counted(c) for c in clips], film_mix, rate, work / "film.mp4",
                               transition_s=transition, cues=cues, subtitles=mode,
                               encode=compose.Encode(preset=cfg.render.preset, crf=cfg.render.crf),
                               thumbnail=work / "thumb.jpg", timeout_s=float(cfg.render.compose_timeout_s))
        notes.extend(film.notes)
        loud = compose.measure_loudness(film.path) if cfg.render.measure_loudness else None
        ctx.progress(0.95, "storing the film")
        title = str(common.get("title") or "film")
        video = assets.store_output_file(
            film.path, owner_id=ctx.owner_id, job_id=ctx.job_id, content_type="video/mp4",
            filename=_filename(title, "mp4"), lifecycle="hot", category=CATEGORY,
            metadata={"kind": "film.render", "project_id": common["project_id"], "duration_s": film.duration_s,
                      "width": size[0], "height": size[1]},
            asset_id=step_asset_id(ctx.job_id, "film"))
        thumb_id = None
        if film.thumbnail is not None and film.thumbnail.exists():
            thumb_id = assets.store_output(
                owner_id=ctx.owner_id, job_id=ctx.job_id, data=film.thumbnail.read_bytes(),
                content_type="image/jpeg", filename=_filename(title, "jpg"), lifecycle="hot", category=CATEGORY,
                metadata={"kind": "film.thumbnail", "project_id": common["project_id"]},
                asset_id=step_asset_id(ctx.job_id, "thumbnail")).id
    subs: dict[str, dict[str, str]] = {}
    translations: dict[str, dict[str, Any]] = {}
    source_lang = "en"
    tracks_by_lang: dict[str, Sequence[Any]] = {source_lang: cues}
    translator, why = translator_for(cfg)
    for lang in common["languages"]:
        if lang.split("-")[0] == source_lang:
            continue
        result = subtitles.translate_cues(cues, lang, translator, source=source_lang)
        if result.available:
            tracks_by_lang[lang] = result.cues
            translations[lang] = {"available": True, "engine": result.engine}
        else:
            translations[lang] = {"available": False, "reason": result.reason if translator else why}
    for lang, lang_cues in tracks_by_lang.items():
        if not lang_cues:
            continue
        entry = {}
        for fmt, text, ctype in (("srt", subtitles.to_srt(lang_cues), "application/x-subrip"),
                                 ("vtt", subtitles.to_vtt(lang_cues), "text/vtt")):
            entry[f"{fmt}_asset_id"] = assets.store_output(
                owner_id=ctx.owner_id, job_id=ctx.job_id, data=text.encode("utf-8"), content_type=ctype,
                filename=_filename(f"{title}.{lang}", fmt), lifecycle="hot", category=CATEGORY,
                metadata={"kind": "film.subtitles", "language": lang, "project_id": common["project_id"]},
                asset_id=step_asset_id(ctx.job_id, "subtitles", lang, fmt)).id
        subs[lang] = entry
    _forget(ctx)
    wall = time.time() - float(common.get("started_at") or time.time())
    scenes_out = []
    for it, start in zip(items, starts, strict=True):
        sc, vis, v = it["scene"], it["visuals"], it["voices"]
        lips = {t["method"] for t in talking[int(sc["index"])]}
        scenes_out.append({"index": sc["index"], "heading": sc.get("heading"), "start_s": round(start, 3),
                           "duration_s": round(float(v["duration_s"]), 3), "poster_asset_id": vis["poster_asset_id"],
                           "visual": {"method": vis["method"], "source": vis["source"], "move": vis["move"]},
                           "picture_asset_id": vis["picture_asset_id"],
                           "lipsync": "; ".join(sorted(lips)) or None, "talking": talking[int(sc["index"])],
                           "lines": len(v["lines"]), "music": it["sound"]["music"],
                           "effects": it["sound"]["effects"], "mood": sc.get("mood")})
    voices_used = {}
    for it in items:
        for who, engine in it["voices"]["engines"].items():
            voices_used[who] = {"engine": engine, "voice": common["cast"][who]["voice_id"]}
    ctx.progress(0.99, f"composed: {film.duration_s:.1f} s, {len(items)} scene(s)")
    return {"temporary_asset_ids": [it[k]["asset_id"] for it in items for k in ("voices", "sound")],
            "project_id": common["project_id"], "video_asset_id": video.id, "thumbnail_asset_id": thumb_id,
            "subtitles": subs, "subtitles_mode": film.subtitles, "translations": translations,
            "duration_s": round(film.duration_s, 3), "planned_duration_s": round(planned, 3),
            "title_card_s": title_s, "transition_s": transition, "size": list(size), "aspect": common["aspect"],
            "fps": fps, "frames": film.frames, "loudness_lufs": loud.integrated_lufs if loud else None,
            "loudness_target_lufs": -14.0, "scenes": scenes_out, "voices": voices_used,
            "cues": len(cues), "notes": notes, "wall_s": round(wall, 2),
            "steps_s": {k: round(v, 3) for k, v in film.timings.items()}}


def cleanup_step(ctx: StepContext, out: dict[str, Any]) -> dict[str, Any]:
    """Remove the scenes' temporary tracks once the film is stored (a separate step, after composition's
    checkpoint: a retried composition still finds them)."""
    out = dict(out)
    ctx.services.assets.delete_owned(ctx.owner_id, list(out.pop("temporary_asset_ids", None) or []))
    ctx.progress(1.0, f"done: {out['duration_s']:.1f} s, {len(out['scenes'])} scene(s)")
    return out


def _filename(title: str, ext: str) -> str:
    import re

    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", title).strip("-.")[:60] or "film"
    return f"{stem}.{ext}"


_RETRY = (Retry(errors=("transient_error", "storage_error"), interval_s=1, max_attempts=2),)


def build_pipeline(settings: Any = None) -> Pipeline:
    """`film.render`, priced from `settings` (the `film` section)."""
    cfg = getattr(settings, "film", None)
    concurrency = int(cfg.render.scene_concurrency) if cfg is not None else 2
    price, settle = make_price(settings)
    scene = Graph(start_at="voices", states=(
        Task("voices", voices_step, resources=Resources(cpu=1, memory_mb=1024), timeout_s=1800, next="visuals",
             retry=_RETRY, comment="the scene's lines spoken, timed word by word; its dialogue track"),
        Task("visuals", visuals_step, resources=Resources(cpu=1, memory_mb=2048), timeout_s=1800, next="sound",
             retry=_RETRY, comment="picture (image model, project background or sample), faces, poster"),
        Task("sound", sound_step, resources=Resources(cpu=1, memory_mb=1024), timeout_s=900, end=True,
             retry=_RETRY, comment="score for the mood, effects, ducking: the scene's mix"),
    ))
    return Pipeline(
        kind=KIND,
        version=1,
        description="A project's script to a film: voices, lip-synced faces, music, effects, subtitles, one MP4.",
        graph=Graph(start_at="plan", states=(
            Task("plan", plan, resources=Resources(cpu=0.5, memory_mb=512), timeout_s=300, next="scenes",
                 retry=_RETRY, comment="breakdown, cast and scenes"),
            Map("scenes", iterator=scene, items=scene_items, max_concurrency=concurrency, next="compose",
                comment="each scene's voices, visuals and sound, scenes in parallel"),
            Task("compose", compose_step, resources=Resources(cpu=2, memory_mb=2048), timeout_s=6 * 3600,
                 next="cleanup", retry=_RETRY, comment="one H.264/AAC MP4 at -14 LUFS, subtitles, thumbnail"),
            Task("cleanup", cleanup_step, resources=Resources(cpu=0.1, memory_mb=128), timeout_s=300, end=True,
                 retry=_RETRY, comment="the scenes' temporary tracks removed"),
        )),
        input_model=RenderInput,
        price=price,
        settle=settle,
    )
